"""The gate as a library: which rows it scores, the pass rule, the economics, the verdicts file."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
from gate_support import (
    HOLDOUT,
    TASK,
    make_rows,
    script_for,
    write_scripted,
    write_store,
)
from scipy.stats import binomtest, norm

from distill_cli import schemas
from distill_cli.economics import cost_reduction, format_reduction, routed_cost
from distill_cli.errors import InputError, NotEnoughData, ProviderError
from distill_cli.gate import SUMMARY_SCHEMA, decide, run_gate
from distill_cli.serving import read_summary
from distill_cli.stats import wilson_bounds
from distill_cli.students import load_student


@pytest.fixture
def rows():
    return make_rows(200, 120)


@pytest.fixture
def runs(tmp_path, rows):
    return write_store(tmp_path / "runs", rows)


def gate(tmp_path, rows, runs, **kwargs):
    script_kwargs = {k: kwargs.pop(k) for k in ("disagree", "decline", "error", "train") if k in kwargs}
    student = write_scripted(tmp_path / "s.student", script_for(rows, **script_kwargs), **kwargs.pop("spec", {}))
    return run_gate(student, runs, judge=kwargs.pop("judge", "normalized"), **kwargs)


# ---- the pass rule ---------------------------------------------------------------------------------------------


def test_a_student_that_agrees_passes_and_is_distilled(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, decline=2)
    assert (s.n, s.answered, s.declined, s.agreeing, s.disagreements, s.errors) == (200, 198, 2, 198, 0, 0)
    assert s.agreement == 1.0 and s.agreement_answered == 1.0
    assert (s.lower_bound, s.upper_bound) == wilson_bounds(200, 200, 0.95)
    assert s.passed and s.decision == "distilled"
    assert s.coverage == pytest.approx(0.99)
    assert s.teacher_cost_per_call == pytest.approx(0.002)
    assert s.student_cost_per_call == 0.0
    assert s.routed_cost_per_call == pytest.approx(0.01 * 0.002)
    assert s.cost_reduction == pytest.approx(100.0)
    assert s.reason == "100.0x cheaper at 99% coverage"
    assert s.held_out == 200 and s.teacher_rows == 320


def test_declined_calls_count_as_agreeing_end_to_end(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, disagree=4, decline=50)
    assert s.agreement == pytest.approx(196 / 200)
    assert s.agreement_answered == pytest.approx(146 / 150)
    assert s.coverage == pytest.approx(150 / 200)


def test_the_lower_bound_not_the_point_estimate_decides(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, disagree=5)  # 97.5% agree, but the bound is 94.95%
    assert s.agreement == pytest.approx(0.975)
    assert s.lower_bound < 0.95 and not s.passed
    assert s.decision == "fallback_teacher"
    assert s.reason == "agreement 97.5%, lower bound 95.0% < 95.0% at 95% confidence; the teacher keeps answering"
    assert gate(tmp_path, rows, runs, disagree=4).passed  # 98%: bound 95.5%


def test_a_failing_student_falls_back_to_the_teacher(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, disagree=30)
    assert not s.passed and s.decision == "fallback_teacher"
    assert s.disagreements == 30 and s.agreement == pytest.approx(0.85)
    assert len(s.worst(100)) == 30 and all(v.disagreement for v in s.worst(100))


def test_min_agreement_and_confidence_are_honoured(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, disagree=30, min_agreement=0.75, confidence=0.99)
    assert s.passed and (s.lower_bound, s.upper_bound) == wilson_bounds(170, 200, 0.99)


def test_too_few_held_out_examples_is_collecting(tmp_path):
    rows = make_rows(40, 10)
    runs = write_store(tmp_path / "runs", rows)
    s = gate(tmp_path, rows, runs)
    assert s.n == 40 and not s.passed and s.decision == "collecting" and s.collecting
    assert s.reason == "collecting (40/100)"
    assert gate(tmp_path, rows, runs, min_examples=40, min_agreement=0.9).passed


def test_errors_count_as_disagreements_and_are_reported_apart(tmp_path, rows, runs):
    script = script_for(rows)
    held = [r for r in rows if r.held_out]
    script[held[0].text] = "error"
    script[held[1].text] = "crash"
    s = run_gate(write_scripted(tmp_path / "s.student", script), runs, judge="normalized")
    assert (s.errors, s.student_errors, s.judge_errors, s.disagreements) == (2, 2, 0, 0)
    assert s.agreement == pytest.approx(198 / 200)
    bad = {v.example_id: v for v in s.verdicts if v.error}
    assert bad[held[0].id].error == "student: upstream said no"
    assert bad[held[1].id].error == "student: ValueError: bug in student"
    assert not bad[held[0].id].agree and not bad[held[0].id].answered


def test_an_all_error_run_never_passes(tmp_path, rows, runs):
    script = {r.text: "crash" for r in rows}
    s = run_gate(write_scripted(tmp_path / "s.student", script), runs, judge="normalized", min_agreement=0.01)
    assert s.errors == 200 and s.agreement == 0.0 and not s.passed
    assert s.decision == "fallback_teacher" and s.reason.endswith("(200 errors counted as disagreements)")
    assert s.common_errors == [["student: ValueError: bug in student", 200]]


def test_a_student_that_cannot_answer_at_all_stops_the_gate(tmp_path, rows, runs):
    # StudentError on each of the first examples: no key, an unreachable upstream. Exit 4, not a verdict.
    verdicts = tmp_path / "gate.parquet"
    with pytest.raises(ProviderError) as e:
        gate(tmp_path, rows, runs, error=200, verdicts=verdicts)
    assert str(e.value) == (
        "student scripted-student could not answer any of the first 10 examples, so the gate stopped: "
        "student: upstream said no"
    )
    assert not verdicts.exists()
    s = gate(tmp_path, rows, runs, disagree=1, error=199, min_agreement=0.01)  # one answer among the first: a verdict
    assert s.student_errors == 199 and not s.passed


def test_judge_errors_are_errors(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, judge="json")  # labels are not JSON: the judge cannot judge
    assert s.judge_errors == 200 and s.errors == 200 and not s.passed
    assert s.verdicts[0].error.startswith("judge: teacher output is not JSON")


def test_a_provider_error_from_the_student_stops_the_gate(tmp_path, rows, runs):
    script = script_for(rows)
    script[[r for r in rows if r.held_out][10].text] = "provider"
    verdicts = tmp_path / "gate.parquet"
    with pytest.raises(ProviderError, match="authentication refused"):
        run_gate(write_scripted(tmp_path / "s.student", script), runs, judge="normalized", verdicts=verdicts)
    assert not verdicts.exists()


# ---- which rows ------------------------------------------------------------------------------------------------


def test_only_held_out_rows_are_scored(tmp_path, rows, runs):
    student = load_student(write_scripted(tmp_path / "s.student", script_for(rows)))
    s = run_gate(student, runs, judge="normalized")
    held = sorted(r.id for r in rows if r.held_out)
    assert [v.example_id for v in s.verdicts] == held  # in id order, and no training row (those crash)
    assert set(student.asked) == {r.text for r in rows if r.held_out}
    assert s.errors == 0


def test_limit_takes_the_first_held_out_rows_by_id(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, limit=150)
    assert [v.example_id for v in s.verdicts] == sorted(r.id for r in rows if r.held_out)[:150]
    assert s.held_out == 200 and s.n == 150


def test_only_successful_teacher_answers_are_examples(tmp_path, rows, runs):
    extra = make_rows(30)
    write_store(runs, extra[:10], served_by="student")  # the student's own answers: not a reference
    write_store(runs, extra[10:20], status=529, output=None)  # failed calls
    write_store(runs, extra[20:], served_by="shadow")  # the teacher checking the student: a reference
    script = script_for(rows) | {r.text: f"answer:{r.output}" for r in extra}
    s = run_gate(write_scripted(tmp_path / "s.student", script), runs, judge="normalized")
    assert s.n == 210 and {r.id for r in extra[20:]} <= {v.example_id for v in s.verdicts}


def test_a_student_without_a_split_is_refused(tmp_path, rows, runs):
    student = write_scripted(tmp_path / "s.student", script_for(rows), split={})
    with pytest.raises(InputError) as e:
        run_gate(student, runs)
    assert str(e.value) == (
        "student scripted-student: its spec records no train/holdout split, so gate cannot tell its training rows "
        "from held-out ones and will not risk scoring it on rows it learned from; rebuild it with build-student"
    )


def test_a_store_of_training_rows_is_refused_as_a_leak(tmp_path):
    rows = make_rows(0, 60)  # 0.8^60: no accident
    runs = write_store(tmp_path / "runs", rows)
    with pytest.raises(InputError) as e:
        gate(tmp_path, rows, runs)
    assert str(e.value) == (
        f"{runs}: all 60 teacher calls of task '{TASK}' are training rows of student scripted-student "
        "(its split holds out 20%, so this is no accident); gate never scores a student on its training rows: "
        "give it a store with calls it was not built from"
    )


def test_a_small_store_without_held_out_rows_is_not_enough_data(tmp_path):
    rows = make_rows(0, 5)  # 0.8^5 = 33%: chance
    runs = write_store(tmp_path / "runs", rows)
    with pytest.raises(NotEnoughData, match="none of the 5 teacher calls of task 'ticket-intent' is in the held-out 20%"):
        gate(tmp_path, rows, runs)
    assert HOLDOUT == 0.2


def test_empty_store_and_unknown_task(tmp_path, rows):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotEnoughData) as e:
        gate(tmp_path, rows, empty)
    assert str(e.value) == f"{empty}: no calls recorded yet; nothing to gate"
    other = write_store(tmp_path / "other", rows[:3], task="summaries")
    with pytest.raises(InputError) as e:
        gate(tmp_path, rows, other)
    assert str(e.value) == f"{other}: no calls of task '{TASK}', the task of student scripted-student; tasks there: summaries (3)"


def test_wrong_kinds_are_named(tmp_path, rows, runs):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    with pytest.raises(InputError, match="s.student is a student file; gate needs an example store"):
        run_gate(student, student)
    with pytest.raises(InputError, match=r"part-.*is an example store; gate needs a student file"):
        run_gate(next(runs.glob("date=*/*.parquet")), runs)


# ---- economics -------------------------------------------------------------------------------------------------


def test_routed_cost_and_cost_reduction():
    assert routed_cost(0.0001, 0.002, 0.9) == pytest.approx(0.0001 + 0.1 * 0.002)
    assert routed_cost(None, 0.002, 0.9) is None and routed_cost(0.0, None, 0.9) is None
    assert cost_reduction(0.002, 0.0003) == pytest.approx(0.002 / 0.0003)
    assert cost_reduction(0.002, 0.0) == math.inf
    assert cost_reduction(None, 0.0) is None and cost_reduction(0.002, None) is None
    assert format_reduction(14.234) == "14.2x" and format_reduction(math.inf) == "inf" and format_reduction(None) == "unknown"


@pytest.mark.parametrize(
    "n, passed, reduction, decision, reason",
    [
        (37, False, 9.0, "collecting", "collecting (37/100)"),
        (500, False, 9.0, "fallback_teacher", "agreement 91.0%, lower bound 89.0% < 95.0% at 95% confidence; the teacher keeps answering"),
        (500, True, 14.23, "distilled", "14.2x cheaper at 91% coverage"),
        (500, True, 0.8, "no_change", "not cheaper than the teacher (0.8x at 91% coverage)"),
        (500, True, math.inf, "distilled", "free: the student answers every call at no cost (91% coverage)"),
        (500, True, None, "distilled", "agrees 91.0% at 91% coverage; cost reduction unknown (teacher calls have no recorded cost)"),
    ],
)
def test_decide(n, passed, reduction, decision, reason):
    got = decide(n=n, min_examples=100, passed=passed, agreement=0.91, lower_bound=0.89, min_agreement=0.95,
                 coverage=0.91, cost_reduction=reduction)
    assert got == (decision, reason)


def test_a_free_student_answering_everything_is_infinitely_cheaper(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs)
    assert s.coverage == 1.0 and s.cost_reduction == math.inf
    assert s.to_dict()["cost_reduction"] == "inf" and float(s.to_dict()["cost_reduction"]) == math.inf
    json.dumps(s.to_dict(), allow_nan=False)


def test_a_student_that_costs_more_than_it_saves_is_no_change(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, decline=100, spec={"params": {"cost": 0.0015}})
    # routed = 0.0015 + 0.5 x 0.002 = 0.0025 > 0.002
    assert s.passed and s.decision == "no_change" and s.cost_reduction == pytest.approx(0.8)


def test_teacher_calls_without_a_cost_are_left_out_and_counted(tmp_path, rows):
    runs = tmp_path / "runs"
    held = [r for r in rows if r.held_out]
    write_store(runs, held[:50], cost=None)
    write_store(runs, held[50:] + [r for r in rows if not r.held_out], cost=0.004)
    s = gate(tmp_path, rows, runs, decline=100)
    assert s.teacher_cost_unknown == 50 and s.teacher_cost_per_call == pytest.approx(0.004)
    unpriced = tmp_path / "unpriced"
    write_store(unpriced, rows, cost=None)
    s = gate(tmp_path, rows, unpriced, decline=100)
    assert s.teacher_cost_per_call is None and s.routed_cost_per_call is None and s.cost_reduction is None
    assert s.decision == "distilled" and "cost reduction unknown" in s.reason


# ---- the bound against scipy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_bounds_match_scipy(confidence):
    # scipy's Wilson interval is two-sided: at level 1 - 2 alpha each side is the one-sided bound at 1 - alpha.
    two_sided = 1 - 2 * (1 - confidence)
    for n in (1, 2, 5, 10, 37, 100, 250, 1000, 5000):
        for k in sorted({0, 1, n // 3, n // 2, (9 * n) // 10, n - 1, n}):
            if not 0 <= k <= n:
                continue
            ci = binomtest(k, n).proportion_ci(confidence_level=two_sided, method="wilson")
            lower, upper = wilson_bounds(k, n, confidence)
            assert lower == pytest.approx(ci.low, abs=1e-12), (k, n)
            assert upper == pytest.approx(ci.high, abs=1e-12), (k, n)
    # and by hand, with scipy's normal quantile
    k, n = 190, 200
    z = norm.ppf(confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_bounds(k, n, confidence)[0] == pytest.approx(centre - half, abs=1e-12)


# ---- the verdicts file -----------------------------------------------------------------------------------------


def test_verdicts_file_holds_one_row_per_example_and_the_summary(tmp_path, rows, runs):
    path = tmp_path / "out" / "gate.parquet"
    s = gate(tmp_path, rows, runs, disagree=3, decline=7, verdicts=path)
    table = pq.read_table(path)
    assert schemas.read_kind(path) == schemas.VERDICTS
    assert table.schema.names == schemas.VERDICTS_SCHEMA.names and table.num_rows == 200
    assert table.column("example_id").to_pylist() == [v.example_id for v in s.verdicts]
    summary = read_summary(path)
    assert summary == json.loads(json.dumps(s.to_dict())) and summary["schema"] == SUMMARY_SCHEMA
    assert summary["verdicts_file"] == str(path)
    assert sum(table.column("answered").to_pylist()) == 193 and table.column("agree").to_pylist().count(False) == 3
    wrong = [r for r in table.to_pylist() if not r["agree"]]
    assert all(r["judge"] == "normalized" and r["student_output"].startswith("wrong_") for r in wrong)
    assert [p.name for p in path.parent.iterdir()] == ["gate.parquet"]  # no temporary left behind


def test_summary_has_every_field_the_issue_names(tmp_path, rows, runs):
    d = gate(tmp_path, rows, runs).to_dict()
    for key in ("schema", "student", "task", "n", "answered", "coverage", "agreement", "agreement_answered",
                "lower_bound", "upper_bound", "min_agreement", "confidence", "passed", "errors",
                "teacher_cost_per_call", "student_cost_per_call", "routed_cost_per_call", "cost_reduction",
                "decision", "reason"):
        assert key in d, key


def test_verdicts_never_overwrite_another_kind_of_file(tmp_path, rows, runs):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    with pytest.raises(InputError, match="exists and is a student file, not a verdicts file; gate will not overwrite it"):
        run_gate(student, runs, verdicts=student)
    assert load_student(student).spec.kind == "scripted"
    v = tmp_path / "gate.parquet"
    run_gate(student, runs, verdicts=v, judge="normalized")
    run_gate(student, runs, verdicts=v, judge="normalized")  # an earlier verdicts file is replaced


def test_settings_are_checked(tmp_path, rows, runs):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    for kwargs, message in [
        ({"min_agreement": 1.5}, "min_agreement must be in (0, 1], not 1.5"),
        ({"confidence": 1.0}, "confidence must be in [0.5, 1), not 1.0"),
        ({"judge": "vibes"}, "unknown judge 'vibes'; choose one of auto, exact, normalized, json, numeric, llm"),
    ]:
        with pytest.raises(InputError) as e:
            run_gate(student, runs, **kwargs)
        assert str(e.value) == message


def test_auto_judge_says_what_it_chose(tmp_path, rows, runs):
    s = gate(tmp_path, rows, runs, judge="auto")
    assert s.judge == "normalized" and s.judge_reason == "auto: teacher outputs are short (7 distinct)"


def test_progress_is_reported(tmp_path, rows, runs):
    seen = []
    gate(tmp_path, rows, runs, progress=lambda done, total, spent: seen.append((done, total)))
    assert seen[-1] == (200, 200) and len(seen) == 200


# ---- running under a spend cap (shared with drift) -----------------------------------------------------------------


def test_run_capped_stops_before_the_cap_and_keeps_order():
    import asyncio

    from distill_cli.economics import SpendCap
    from distill_cli.gate import run_capped

    peak, in_flight, seen = 0, 0, []

    async def work(i):
        nonlocal peak, in_flight
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return i

    spend = SpendCap(10.0)
    results = asyncio.run(run_capped(50, work, concurrency=4, spend=spend, cost_of=lambda r: 1.0,
                                     after=lambda i, r: seen.append(i)))
    assert results[:10] == list(range(10)) and results[10:] == [None] * 40
    assert spend.stopped and spend.total == 10.0 and sorted(seen) == list(range(10)) and peak <= 4
    free = SpendCap(None)
    assert asyncio.run(run_capped(20, work, concurrency=8, spend=free, cost_of=lambda r: 1.0)) == list(range(20))
    assert peak == 8 and not free.stopped


def test_run_capped_raises_the_first_failure():
    import asyncio

    from distill_cli.economics import SpendCap
    from distill_cli.gate import run_capped

    async def work(i):
        if i == 3:
            raise ProviderError("upstream gone")
        await asyncio.sleep(0.01)
        return i

    with pytest.raises(ProviderError, match="upstream gone"):
        asyncio.run(run_capped(100, work, concurrency=4, spend=SpendCap(None), cost_of=lambda r: 0.0))
