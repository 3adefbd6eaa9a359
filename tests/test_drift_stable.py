"""Stable traffic, night after night: no false alarm, and the sequential detector sees each pair once."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pyarrow.parquet as pq

from distill_cli import schemas
from distill_cli.drift import run_drift

DAY = timedelta(days=1)


# ---- stable traffic: no false alarm ---------------------------------------------------------------------------------


def test_stable_traffic_raises_no_alarm_over_30_daily_runs(site, queries):
    held, _ = queries
    rng = random.Random(30)
    results = []
    for day in range(30):
        now = site.day(rng.sample(held, 120), day, rng)
        results.append(run_drift(site.student, site.stores, now=now, log=site.log))
    alarms = [r for r in results if r.drifted]
    false_alarm_rate = len(alarms) / len(results)
    assert false_alarm_rate == 0.0, [r.reasons for r in alarms]
    # Every check ran every night and stayed well inside its limits.
    for r in results:
        assert [c.status for c in r.checks] == ["ok", "ok", "ok", "ok"]
        assert r.agreement == 1.0 and r.pairs > 30
        assert r.evidence < 1.0  # evidence against the student decays while it agrees
        assert r.input_shift < r.input_shift_threshold
    # The detector folded every run in, each run's pairs once.
    assert results[-1].detector_runs == 30
    log = pq.read_table(site.log)
    assert schemas.read_kind(site.log) == schemas.DRIFT
    assert log.num_rows == 30 and not any(log["drifted"].to_pylist())
    increments = [json.loads(x)["checks"]["agreement"] for x in log["reasons"].to_pylist()]
    assert all(a["new_n"] == a["n"] for a in increments)  # daily windows do not overlap


def test_overlapping_windows_count_each_pair_once(site, queries):
    """Drift every 6 hours over a 24h window: the detector takes only the pairs new since the previous run."""
    held, _ = queries
    rng = random.Random(6)
    now = site.day(rng.sample(held, 200), 0, rng)
    totals = run_drift(site.student, site.stores, now=now + DAY, since="48h")  # no log: sees everything once
    for hours in (6, 12, 18, 24):
        r = run_drift(site.student, site.stores, now=now - DAY + timedelta(hours=hours), log=site.log)
    rows = [json.loads(x)["checks"]["agreement"] for x in pq.read_table(site.log)["reasons"].to_pylist()]
    assert sum(a["new_n"] for a in rows) == totals.check("agreement").details["n"]
    assert r.pairs == totals.pairs  # the last run's window covers the whole day for display


