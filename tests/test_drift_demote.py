"""Demotion: the marker drift writes, what the router asks (`is_demoted`), and what lifts it."""

from __future__ import annotations

import json
import os
import random
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from drift_support import (  # queries, site: shared fixtures
    STUDENT_ID,
    set_gated_at,
    write_student,
)

from distill_cli import serving
from distill_cli.drift import run_drift
from distill_cli.gate import run_gate
from distill_cli.serving import is_demoted

DAY = timedelta(days=1)


# ---- demotion --------------------------------------------------------------------------------------------------------


def test_demote_writes_the_marker_the_router_honours(site, queries, sample_store, tmp_path):
    held, _ = queries
    rng = random.Random(9)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    assert is_demoted(site.student) is None
    r = run_drift(site.student, site.stores, now=now, log=site.log, demote=True)
    marker = serving.marker_path(site.student)
    assert marker.name == "intent.student.demoted" and r.demotion.marker == str(marker)
    info = is_demoted(site.student)
    assert info is not None and info.student_id == STUDENT_ID and info.task == "support-intent"
    assert info.demoted_at == now.isoformat() and info.reasons[0].startswith("agreement: agreement is below 95.0%")
    assert info.drift["drifted"] is True and info.drift["pairs"] == r.pairs
    assert "the teacher answers until a new gate passes" in info.message
    assert is_demoted(site.student, student_id=STUDENT_ID) is not None
    assert json.loads(marker.read_text())["distill.schema"] == "demotion/1"
    assert pq.read_table(site.log)["demoted"].to_pylist() == [True]

    # The next run still reports the demotion (exit 1 for the CLI) even with nothing drifting in it.
    now = site.day(rng.sample(held, 200), 1, rng)
    again = run_drift(site.student, site.stores, now=now, log=site.log, demote=True)
    assert again.status == "demoted" and not again.drifted and not again.newly_demoted


def test_a_newer_passing_gate_lifts_the_demotion(site, queries, sample_store, tmp_path):
    held, _ = queries
    rng = random.Random(10)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    run_drift(site.student, site.stores, now=now, demote=True)
    gate_file = tmp_path / "gate.parquet"
    # The cache student has no answers: it declines every held-out call, so the teacher answers and the gate passes.
    summary = run_gate(site.student, sample_store, verdicts=gate_file, limit=200)
    assert summary.passed and summary.student == STUDENT_ID

    demoted_at = now.timestamp()
    set_gated_at(gate_file, now - timedelta(hours=1))  # gated before the demotion: does not lift it
    assert is_demoted(site.student, verdicts=[gate_file]) is not None
    # ... even when the file is copied, checked out or touched after it: when a gate ran is in its summary.
    os.utime(gate_file, (demoted_at + 3600, demoted_at + 3600))
    assert is_demoted(site.student, verdicts=[gate_file]) is not None
    set_gated_at(gate_file, now + timedelta(hours=1))
    assert is_demoted(site.student, verdicts=[gate_file]) is None
    assert is_demoted(site.student, verdicts=[tmp_path / "missing.parquet"]) is not None

    # drift --verdicts removes the lifted marker and says so; the student serves again.
    now = site.day(rng.sample(held, 200), 1, rng)
    r = run_drift(site.student, site.stores, now=now, verdicts=[gate_file])
    assert r.status == "ok" and r.cleared is not None
    assert not serving.marker_path(site.student).exists()
    assert any("lifted by a passing gate" in n for n in r.notes)


def test_only_the_newest_gate_of_the_student_decides(site, queries, tmp_path):
    """As the router gates: a failing gate, another student's gate, or a pass overtaken by a later failure lift nothing."""
    from distill_cli.gate import GateSummary, write_verdicts

    held, _ = queries
    rng = random.Random(11)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    run_drift(site.student, site.stores, now=now, demote=True)

    def gate(name: str, minutes_after: int, **fields) -> Path:
        gated_at = (now + timedelta(minutes=minutes_after)).isoformat()
        return write_verdicts(tmp_path / name, GateSummary(**{**_summary_fields(), "gated_at": gated_at, **fields}))

    failed = gate("failed.parquet", 2, passed=False)
    other = gate("other.parquet", 3, student="another-student")
    passed = gate("passed.parquet", 1)
    assert is_demoted(site.student, verdicts=[failed]) is not None
    assert is_demoted(site.student, verdicts=[other]) is not None
    assert is_demoted(site.student, verdicts=[passed]) is None
    assert is_demoted(site.student, verdicts=[passed, failed, other]) is not None  # the later failure decides
    # The router also looks beside the student file without being told; so does is_demoted.
    beside = Path(f"{site.student}.verdicts.parquet")
    passed.rename(beside)
    assert is_demoted(site.student) is None and is_demoted(site.student, verdicts=[failed]) is not None


def _summary_fields() -> dict:
    return dict(
        student=STUDENT_ID, student_kind="cache", task="support-intent", n=200, answered=0, declined=200, agreeing=0,
        disagreements=0, errors=0, student_errors=0, judge_errors=0, coverage=0.0, agreement=1.0,
        agreement_answered=None, lower_bound=0.98, upper_bound=1.0, min_agreement=0.95, min_examples=100,
        confidence=0.95, passed=True, judge="normalized", judge_reason="auto", teacher_cost_per_call=0.002,
        teacher_cost_unknown=0, student_cost_per_call=0.0, routed_cost_per_call=0.002, cost_reduction=1.0,
        decision="no_change", reason="", held_out=200, teacher_rows=1000,
    )


def test_a_rebuilt_student_is_not_held_by_the_old_marker(site, queries):
    held, _ = queries
    rng = random.Random(12)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    run_drift(site.student, site.stores, now=now, demote=True)
    write_student(site.student, student_id="support-intent-rebuilt")
    assert is_demoted(site.student) is None
    assert is_demoted(site.student, student_id=STUDENT_ID) is not None  # the router's loaded student is the old one
    r = run_drift(site.student, site.stores, now=now)
    assert r.cleared.student_id == STUDENT_ID and not serving.marker_path(site.student).exists()
    assert any("stale demotion marker" in n for n in r.notes)


def test_an_unreadable_marker_keeps_the_teacher_answering(site):
    serving.marker_path(site.student).write_text("{not json")
    info = is_demoted(site.student)
    assert info is not None and info.damaged and "unreadable" in info.message


def test_detector_restarts_after_a_demotion(site, queries):
    held, _ = queries
    rng = random.Random(8)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    r = run_drift(site.student, site.stores, now=now, log=site.log, demote=True)
    assert r.newly_demoted and r.demoted
    serving.marker_path(site.student).unlink()  # as if a new gate had lifted it
    now = site.day(rng.sample(held, 200), 1, rng)
    r = run_drift(site.student, site.stores, now=now, log=site.log)
    assert r.status == "ok" and r.detector_runs == 1




def test_the_router_honours_the_demotion_and_its_lifting(site, queries, sample_store, tmp_path):
    """drift --demote, then the real router (record --student) re-reads the marker: the teacher takes the calls
    until a newer passing gate of the student exists."""
    from distill_cli.recorder.router import Router, load_routes

    gate_file = Path(f"{site.student}.verdicts.parquet")
    run_gate(site.student, sample_store, verdicts=gate_file, limit=200)
    warnings: list[str] = []
    router = Router(load_routes([site.student]), warn=warnings.append, recheck_seconds=0)
    route = router.routes["support-intent"]
    assert route.demotion is None

    held, _ = queries
    rng = random.Random(15)
    now = site.day(rng.sample(held, 200), 0, rng, wrong_shadow=0.3)
    set_gated_at(gate_file, now - timedelta(days=1))  # gated before this night
    run_drift(site.student, site.stores, now=now, demote=True)
    router.check_demotions()
    assert route.demotion is not None and route.demotion.student_id == STUDENT_ID
    assert warnings[-1].startswith(f"Warning: student {STUDENT_ID} demoted at {now.isoformat()} (agreement: ")

    run_gate(site.student, sample_store, verdicts=gate_file, limit=200)  # a new gate, written now: after the demotion
    set_gated_at(gate_file, now + timedelta(hours=1))
    router.check_demotions()
    assert route.demotion is None
    assert warnings[-1] == f"Student {STUDENT_ID} is no longer demoted; it answers again."
