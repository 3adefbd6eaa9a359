"""drift through the library: each check catches its kind of drift; the sequential detector; the log."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from drift_support import (  # queries, site: shared fixtures
    SAMPLE_END,
    other_domain,
    scrambled,
    traffic,
    write_day,
)

from distill_cli import drift, schemas, store
from distill_cli.drift import AgreementDetector, run_drift
from distill_cli.errors import InputError, NotEnoughData
from distill_cli.gate import run_gate

DAY = timedelta(days=1)


# ---- real drift is caught ---------------------------------------------------------------------------------------------


def test_another_domains_queries_are_input_drift(site, queries):
    held, _ = queries
    rng = random.Random(1)
    now = site.day(other_domain(150, rng), 0, rng)
    r = run_drift(site.student, site.stores, now=now, log=site.log)
    inputs = r.check("input")
    assert r.drifted and r.status == "drifted" and inputs.drifted
    assert inputs.statistic > 0.95 > inputs.threshold
    assert "recent inputs differ from the training inputs" in inputs.message
    assert set(inputs.details["recent_terms"]) & {"degrees", "plant", "recipe", "wine", "trail", "oven", "old"}
    assert pq.read_table(site.log)["drifted"].to_pylist() == [True]
    assert "input" in json.loads(pq.read_table(site.log)["reasons"][0].as_py())["drifted"]


def test_scrambled_words_are_input_drift(site, queries):
    held, _ = queries
    rng = random.Random(2)
    now = site.day(scrambled(rng.sample(held, 150), rng), 0, rng)
    r = run_drift(site.student, site.stores, now=now)
    assert r.check("input").drifted and r.input_shift > 0.9
    assert not r.check("agreement").drifted  # the student still matches the teacher on these


def test_corrupted_shadow_answers_are_agreement_drift(site, queries):
    held, _ = queries
    rng = random.Random(3)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    r = run_drift(site.student, site.stores, now=now, log=site.log)
    agreement = r.check("agreement")
    assert agreement.drifted and r.status == "drifted"
    assert r.agreement < 0.85 and r.upper_bound < 0.95
    assert r.evidence >= r.evidence_threshold == 2000
    assert "agreement is below 95.0%" in agreement.message
    assert r.disagreements and r.disagreements[0]["teacher"] == "corrupted_intent"
    assert not r.check("input").drifted
    row = pq.read_table(site.log).to_pylist()[0]
    assert row["pairs"] == r.pairs and row["agreeing"] == r.agreeing and row["lower_bound"] == r.lower_bound


def test_min_agreement_1_drifts_on_one_disagreement_and_stays_valid_json(site, queries):
    held, _ = queries
    rng = random.Random(16)
    now = site.day(rng.sample(held, 100), 0, rng, wrong_shadow=0.05)
    r = run_drift(site.student, site.stores, now=now, min_agreement=1.0)
    assert r.check("agreement").drifted and r.pairs > r.agreeing
    json.dumps(r.to_dict(), allow_nan=False)


def test_a_modest_drop_is_caught_by_accumulating_runs(site, queries):
    """About 85% agreement on ~45 checks a night: no single night is enough evidence, a few nights are."""
    held, _ = queries
    rng = random.Random(4)
    statuses = []
    for day in range(8):
        now = site.day(rng.sample(held, 90), day, rng, wrong_shadow=0.17)
        statuses.append(run_drift(site.student, site.stores, now=now, log=site.log).check("agreement"))
    assert not statuses[0].drifted
    first = next(i for i, c in enumerate(statuses) if c.drifted)
    assert 1 <= first <= 6
    assert statuses[first].details["runs"] == first + 1
    # The evidence does not reset after an alarm: while the drop lasts the student stays drifted.
    assert statuses[-1].drifted


def test_decline_rate_rising_far_above_the_dev_split_is_drift(site, queries):
    held, _ = queries
    rng = random.Random(5)
    now = site.day(rng.sample(held, 300), 0, rng, decline_rate=0.45)
    r = run_drift(site.student, site.stores, now=now)
    assert r.check("decline").drifted
    assert re.search(r"declined \d\d\.\d% of 300 calls against 10\.0% on its dev split \(lower bound", r.check("decline").message)


def test_answers_collapsing_onto_one_label_is_output_drift(site, queries):
    held, _ = queries
    rng = random.Random(7)
    card = [q for q in held if q.label == held[0].label]
    now = site.day((card * 20)[:150], 0, rng)
    r = run_drift(site.student, site.stores, now=now)
    assert r.check("output").drifted
    assert repr(held[0].label) in r.check("output").message


# ---- the detector ----------------------------------------------------------------------------------------------------


def test_detector_false_alarms_stay_within_t_over_a_at_min_agreement():
    """Agreement exactly at min_agreement (the worst case), 400 simulated histories of 40 runs:
    the share that ever alarms stays within the bound P(alarm within T runs) <= T / A."""
    rng = np.random.default_rng(0)
    threshold, runs, trials = 100.0, 40, 400
    alarms = 0
    for agreeing in rng.binomial(60, 0.95, size=(trials, runs)):
        detector = AgreementDetector(0.95)
        alarms += any(detector.update(60, int(k)) >= math.log(threshold) for k in agreeing)
    assert alarms / trials <= runs / threshold
    # and a real drop to 85% is caught by the same detector within a few runs of 60
    detector = AgreementDetector(0.95)
    log_stats = [detector.update(60, int(k)) for k in rng.binomial(60, 0.85, size=10)]
    assert max(log_stats) >= math.log(threshold)


# ---- input errors and no data ------------------------------------------------------------------------------------------


def test_no_calls_in_the_window_is_not_enough_data(site, queries):
    with pytest.raises(NotEnoughData, match=r"no calls of task 'support-intent' between 2027-01-08 00:00 UTC and "
                       r"2027-01-09 00:00 UTC \(--since 24h\); nothing to check"):
        run_drift(site.student, site.stores, now=SAMPLE_END + 50 * DAY)


def test_an_empty_store_is_not_enough_data(site, tmp_path):
    store.prepare_store(tmp_path / "empty")
    with pytest.raises(NotEnoughData, match="no calls recorded yet"):
        run_drift(site.student, tmp_path / "empty", now=SAMPLE_END)


def test_a_store_without_the_task_is_an_input_error(site, queries, tmp_path):
    rows = traffic(SAMPLE_END, queries[0][:5], random.Random(0))
    for row in rows:
        row["task"] = "something-else"
    write_day(tmp_path / "other", rows)
    with pytest.raises(InputError, match=r"no calls of task 'support-intent', the task of the student; tasks there: something-else"):
        run_drift(site.student, tmp_path / "other", now=SAMPLE_END + DAY)


def test_a_log_of_another_kind_is_refused_and_left_alone(site, sample_store, tmp_path):
    gate_file = tmp_path / "gate.parquet"
    run_gate(site.student, sample_store, verdicts=gate_file, limit=100)
    before = gate_file.read_bytes()
    with pytest.raises(InputError, match="gate.parquet is a verdicts file; drift --log needs a drift log"):
        run_drift(site.student, site.stores, now=SAMPLE_END, log=gate_file)
    assert gate_file.read_bytes() == before


@pytest.mark.parametrize("since, message", [("yesterday", "not a duration"), ("2027-01-01", "is not before now")])
def test_bad_since_is_an_input_error(site, since, message):
    with pytest.raises(InputError, match=message):
        run_drift(site.student, site.stores, since=since, now=SAMPLE_END)


def test_since_takes_durations_and_moments():
    now = SAMPLE_END
    assert drift.window_start("90m", now) == now - timedelta(minutes=90)
    assert drift.window_start("2w", now) == now - timedelta(days=14)
    assert drift.window_start("2026-11-19T12:00:00Z", now) == now - timedelta(hours=12)


def test_the_log_keeps_old_rows_when_appending(site, queries):
    held, _ = queries
    rng = random.Random(13)
    for day in range(3):
        now = site.day(rng.sample(held, 60), day, rng)
        r = run_drift(site.student, site.stores, now=now, log=site.log)
    assert r.log_rows == 3
    table = pq.read_table(site.log)
    assert table.schema.names == schemas.DRIFT_SCHEMA.names
    assert [t.isoformat() for t in table["ts"].to_pylist()] == [(SAMPLE_END + (d + 1) * DAY).isoformat() for d in range(3)]
    assert not [p for p in Path(site.log).parent.iterdir() if ".tmp-" in p.name]


def test_result_to_dict_is_json(site, queries):
    held, _ = queries
    rng = random.Random(14)
    now = site.day(rng.sample(held, 80), 0, rng)
    data = json.loads(json.dumps(run_drift(site.student, site.stores, now=now).to_dict()))
    assert data["schema"] == "drift-result/1" and data["status"] == "ok" and data["reasons"] == []
    assert data["window_end"] == now.isoformat() and [c["name"] for c in data["checks"]] == list(drift.CHECKS)


def test_a_log_row_has_the_drift_log_columns_in_order():
    """The typed row drift appends is the drift/1 schema: a field added to one but not the other fails here."""
    assert [f.name for f in dataclasses.fields(drift.LogRow)] == schemas.DRIFT_SCHEMA.names
