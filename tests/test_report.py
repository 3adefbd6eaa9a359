"""distill report: totals and savings computed by hand, recommendations, levers, budget, inputs of every kind, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from distill_cli import schemas, store
from distill_cli.cli import app
from distill_cli.console.report import bar, chart_buckets, render_csv, render_markdown, render_table, sparkline
from distill_cli.errors import InputError
from distill_cli.report import build_report, parse_budget, parse_since
from distill_cli.students import StudentSpec, write_student_file

runner = CliRunner()
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
SONNET = "claude-sonnet-5-5"  # packaged price: $2 / $10 per million tokens
# 1000 input + 100 output tokens of Sonnet 5.5 = 0.002 + 0.001
CALL = 0.003


# ---- fixtures: stores and files written directly in their schemas ---------------------------------------------


def call(task="t1", served_by="teacher", *, ts="2026-11-20T10:00:00+00:00", model=SONNET, cost=CALL, i=0, **extra):
    provider = "student" if served_by == "student" else "anthropic"
    row = {
        "ts": ts,
        "task": task,
        "provider": provider,
        "source": "proxy",
        "model": model if served_by != "student" else "clf-1",
        "served_by": served_by,
        "input": f"question {task} {i}",
        "output": f"answer {i}",
        "request_json": json.dumps({"model": model, "messages": [{"role": "user", "content": f"question {i}"}]}),
        "status": 200,
        "input_tokens": 0 if served_by == "student" else 1000,
        "output_tokens": 0 if served_by == "student" else 100,
        "cost_usd": 0.0 if served_by == "student" else cost,
        "input_hash": f"h-{task}-{i}",
        "stream": False,
    }
    row.update(extra)
    return row


def write_store(path: Path, rows: list[dict]) -> Path:
    store.prepare_store(path)
    store.append_rows(path, [store.complete_row(r) for r in rows])
    return path


@pytest.fixture
def mixed(tmp_path) -> Path:
    """t1: 4 teacher, 1 fallback, 5 student, 2 shadow, 1 failed (529) call; t2: 3 calls of a model with no price."""
    rows = [call(i=i) for i in range(4)]
    rows.append(call(served_by="fallback", i=4))
    rows += [call(served_by="student", i=10 + i) for i in range(5)]
    rows += [call(served_by="shadow", i=10 + i, pair_id=f"p{i}") for i in range(2)]
    rows.append(call(i=99, status=529, error="overloaded_error: Overloaded", output=None, input_tokens=0, output_tokens=0, cost=None))
    rows += [call("t2", model="mystery-1", cost=None, i=i, input_tokens=500, output_tokens=50) for i in range(3)]
    return write_store(tmp_path / "mixed", rows)


def write_verdicts(path: Path, summary: dict, verdicts: list[dict]) -> Path:
    cols = {name: [v.get(name) for v in verdicts] for name in schemas.VERDICTS_SCHEMA.names}
    table = pa.table(cols, schema=schemas.tagged(schemas.VERDICTS_SCHEMA, schemas.VERDICTS, {schemas.SUMMARY_KEY: json.dumps(summary)}))
    pq.write_table(table, path)
    return path


def gate_summary(task="t1", passed=True, **extra) -> dict:
    return {
        "schema": "gate-summary/1", "student": "clf-1", "student_kind": "classifier", "task": task, "n": 4, "answered": 3,
        "coverage": 0.75, "agreement": 0.75, "lower_bound": 0.3, "upper_bound": 0.95, "min_agreement": 0.95,
        "passed": passed, "errors": 1, "teacher_cost_per_call": CALL, "routed_cost_per_call": CALL / 14.2,
        "cost_reduction": 14.2, "decision": "distilled" if passed else "fallback_teacher", "reason": "", **extra,
    }


def verdict(i, answered=True, agree=True, confidence=0.9, error=None, score=None):
    return {"example_id": f"e{i}", "task": "t1", "student_id": "clf-1", "input": f"in {i}", "teacher_output": "a",
            "student_output": "a" if agree else "b", "answered": answered, "agree": agree,
            "score": score if score is not None else (1.0 if agree else 0.0), "judge": "exact", "error": error,
            "confidence": confidence}


def write_drift(path: Path, runs: list[dict]) -> Path:
    base = {"student_id": "clf-1", "task": "t1", "window_start": NOW, "window_end": NOW, "pairs": 200, "agreeing": 190,
            "upper_bound": 0.99, "served": 1000, "decline_rate": 0.1, "input_shift_threshold": 0.2,
            "output_shift": 0.0, "reasons": "[]", "demoted": False}
    rows = [{**base, **r} for r in runs]
    cols = {name: [r.get(name) for r in rows] for name in schemas.DRIFT_SCHEMA.names}
    pq.write_table(pa.table(cols, schema=schemas.DRIFT_SCHEMA), path)
    return path


def task_of(report, name):
    return next(t for t in report.tasks if t["task"] == name)


# ---- the economics, by hand ---------------------------------------------------------------------------------------


def test_spend_teacher_only_and_savings_by_hand(mixed):
    r = build_report([mixed], now=NOW)
    t1 = task_of(r, "t1")
    # Calls the job made: 5 teacher (one failed) + 5 student + 1 fallback; shadow checks are extra spend.
    assert (t1["calls"], t1["teacher_calls"], t1["student_calls"], t1["fallback_calls"], t1["shadow_calls"]) == (11, 5, 5, 1, 2)
    assert t1["errors"] == 1
    # Spend: 4 teacher + 1 fallback + 2 shadow calls at 0.003; students free; the unbilled failure costs 0.
    assert t1["cost_usd"] == pytest.approx(7 * CALL)
    # Teacher-only: the 5 teacher-answered calls, the 2 student calls the shadows priced exactly,
    # and the other 3 student calls at the mean teacher call (0.003).
    assert t1["teacher_only_cost_usd"] == pytest.approx(10 * CALL)
    assert t1["savings_usd"] == pytest.approx(3 * CALL)
    assert t1["savings_pct"] == pytest.approx(30.0)
    assert t1["unknown_cost_calls"] == 0
    assert (t1["student_share"], t1["fallback_share"]) == (pytest.approx(5 / 11, abs=1e-4), pytest.approx(1 / 11, abs=1e-4))


def test_unknown_cost_is_counted_and_named_never_summed_as_zero(mixed):
    r = build_report([mixed], now=NOW)
    t2 = task_of(r, "t2")
    assert t2["unknown_cost_calls"] == 3 and t2["unknown_cost_models"] == {"mystery-1": 3}
    assert t2["cost_usd"] == 0.0 and t2["teacher_only_unknown_calls"] == 3
    totals = r.totals
    assert totals["calls"] == 14 and totals["shadow_calls"] == 2 and totals["rows"] == 16
    assert totals["cost_usd"] == pytest.approx(7 * CALL)
    assert totals["unknown_cost_calls"] == 3 and totals["unknown_cost_models"] == {"mystery-1": 3}
    assert any("3 calls of unknown cost" in n and "mystery-1" in n for n in r.notes)
    assert totals["input_tokens"] == 7 * 1000 + 3 * 500 and totals["output_tokens"] == 7 * 100 + 3 * 50


def test_prices_file_reprices_every_row_from_its_tokens(mixed, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {SONNET: {"input": 4, "output": 20}, "mystery-1": {"input": 2, "output": 4}}}))
    r = build_report([mixed], prices=prices, now=NOW)
    t1, t2 = task_of(r, "t1"), task_of(r, "t2")
    # Sonnet doubled: every teacher-side call now costs 0.006; students keep their own cost (0).
    assert t1["cost_usd"] == pytest.approx(7 * 2 * CALL)
    assert t1["teacher_only_cost_usd"] == pytest.approx(10 * 2 * CALL)
    # The model that had no price now has one: 500 x 2 + 50 x 4 per million = 0.0012 per call.
    assert t2["cost_usd"] == pytest.approx(3 * 0.0012) and t2["unknown_cost_calls"] == 0
    assert r.totals["cost_usd"] == pytest.approx(7 * 2 * CALL + 3 * 0.0012)
    assert r.prices["repriced"] and "+custom:" in r.prices["version"]


def test_repricing_uses_cache_rates_and_long_context_tiers(tmp_path):
    # claude-sonnet-4-5 on purpose: calls of 2026-11-20, before its end of life, and its long-context tier is
    # the point (its successor claude-sonnet-5-5 has none).
    s = write_store(tmp_path / "s", [
        call(i=0, input_tokens=100, output_tokens=10, cache_read_tokens=10_000, cache_write_5m_tokens=2_000, cost=0.123,
             model="claude-sonnet-4-5"),
        call(i=1, input_tokens=250_000, output_tokens=1_000, cost=0.5, model="claude-sonnet-4-5"),
    ])
    r = build_report([s], prices=tmp_path / "none.json" if False else None, now=NOW)
    assert r.totals["cost_usd"] == pytest.approx(0.623)  # recorded costs, untouched
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"models": {"claude-haiku-4-5": {"input": 1, "output": 5}}}))  # Sonnet keeps its packaged price
    r = build_report([s], prices=p, now=NOW)
    cached = (100 * 3 + 10 * 15 + 10_000 * 0.3 + 2_000 * 3.75) / 1e6
    long_context = (250_000 * 6 + 1_000 * 22.5) / 1e6  # over 200K prompt tokens: Sonnet 4.5's long-context rates
    assert r.totals["cost_usd"] == pytest.approx(cached + long_context)


def test_since_filters_calls_by_time(tmp_path):
    s = write_store(tmp_path / "s", [
        call(i=1, ts="2026-11-01T09:00:00+00:00"),
        call(i=2, ts="2026-11-10T09:00:00+00:00"),
        call(i=3, ts="2026-11-20T09:00:00+00:00"),
        call(i=4, ts="2026-11-20T15:00:00+00:00"),
    ])
    assert build_report([s], now=NOW).totals["calls"] == 4
    week = build_report([s], since="7d", now=NOW)
    assert week.totals["calls"] == 2 and week.period["since"] == "2026-11-14T12:00:00+00:00"
    assert build_report([s], since="2026-11-10", now=NOW).totals["calls"] == 3
    assert build_report([s], since="24h", now=NOW).totals["calls"] == 1
    assert build_report([s], since="2h", now=NOW).empty


def test_by_model_and_by_day(mixed):
    r = build_report([mixed], by="model", now=NOW)
    models = {m["model"]: m for m in r.models}
    assert set(models) == {SONNET, "clf-1", "mystery-1"}
    assert models[SONNET]["rows"] == 8 and models[SONNET]["shadow_calls"] == 2 and models[SONNET]["calls"] == 6
    assert models[SONNET]["cost_usd"] == pytest.approx(7 * CALL)
    assert models["clf-1"]["provider"] == "student" and models["clf-1"]["cost_usd"] == 0
    assert models["mystery-1"]["unknown_cost_calls"] == 3
    assert r.by == "model" and render_csv(r).splitlines()[0].startswith("model,provider,rows,calls")


def test_days_split_teacher_only_with_the_tasks_mean(tmp_path):
    s = write_store(tmp_path / "s", [
        call(i=1, ts="2026-11-19T09:00:00+00:00"),
        call(i=2, ts="2026-11-19T10:00:00+00:00", cost=0.0065),
        call("t1", "student", i=3, ts="2026-11-20T09:00:00+00:00"),
    ])
    r = build_report([s], by="day", now=NOW)
    assert [d["day"] for d in r.days] == ["2026-11-19", "2026-11-20"]
    d19, d20 = r.days
    assert d19["cost_usd"] == pytest.approx(0.0095) and d19["savings_usd"] == pytest.approx(0)
    assert d20["cost_usd"] == 0 and d20["teacher_only_cost_usd"] == pytest.approx(0.00475)  # the mean teacher call
    assert r.totals["teacher_only_cost_usd"] == pytest.approx(0.01425)
    head, *rows = render_csv(r).splitlines()
    assert head.startswith("day,calls") and rows[1].startswith("2026-11-20,1,")


def test_task_filter_and_unknown_task(mixed):
    r = build_report([mixed], task="t2", now=NOW)
    assert [t["task"] for t in r.tasks] == ["t2"] and r.totals["calls"] == 3
    with pytest.raises(InputError, match=r"no calls of task 'nope' in .*mixed; tasks recorded: t1, t2"):
        build_report([mixed], task="nope", now=NOW)


def test_a_store_in_object_storage(s3_store, mixed):
    store.append_rows(s3_store, [store.complete_row(call(i=i)) for i in range(3)])
    r = build_report([s3_store, mixed], now=NOW)
    assert r.totals["calls"] == 17 and r.inputs["stores"][0] == s3_store
    assert task_of(r, "t1")["teacher_calls"] == 8


# ---- the sample store ----------------------------------------------------------------------------------------------


def test_sample_store_totals_and_recommendation(sample_store):
    r = build_report([sample_store], budget="0.5/day")  # the sample costs ~$0.94 a day
    t = r.totals
    assert t["calls"] == t["teacher_calls"] == 13_083 and t["rows"] == 13_083
    assert t["cost_usd"] == pytest.approx(13.212302, abs=1e-5) == t["teacher_only_cost_usd"]
    assert t["savings_usd"] == 0 and t["unknown_cost_calls"] == 0
    assert r.period["start"].startswith("2026-11-06") and len(r.days) == 14
    (task,) = r.tasks
    assert task["task"] == "support-intent" and task["teacher_model"] == SONNET
    assert task["closed_set"] and task["distinct_outputs"] == 77 and task["top_outputs_coverage"] == 1.0
    assert task["repeat_share"] is None  # a closed set: whether inputs repeat changes nothing, so it is not measured
    assert task["recommendation"].startswith("distill: classifier, est. 10.0x (~$")
    assert task["advice"]["source"] == "estimate" and task["advice"]["expected_cost_reduction"] == 10.0
    # The system prompt is ~470 tokens, too short to cache; every call is non-streaming.
    assert [lv["lever"] for lv in task["levers"]] == ["batch"]
    assert task["levers"][0]["estimated_saving_usd"] == pytest.approx(t["cost_usd"] / 2, abs=1e-5)
    b = r.budget
    assert b["per"] == "day" and not b["fits"] and b["spend_usd"] == pytest.approx(13.212302 / r.period["days"], rel=1e-4)
    assert b["tasks"][0]["decision"] == "fallback_teacher" and "not gated yet" in b["tasks"][0]["reason"]
    assert r.to_dict()["schema"] == "report/1"


def test_sample_store_renders_at_100_columns(sample_store):
    r = build_report([sample_store])
    console = Console(width=100, record=True, no_color=True, force_terminal=True, color_system="truecolor")
    render_table(r, console)
    text = console.export_text()
    assert "support-intent" in text and "distill: classifier" in text and "Spend per day" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.count("2026-11-") >= 14 and "█" in text
    assert "\x1b[36m" not in console.export_text(styles=True)  # NO_COLOR: no colour codes, bars kept


# ---- recommendations ------------------------------------------------------------------------------------------------


def rows_for(task, n, *, output=lambda i: f"label {i % 5}", input_hash=lambda i: f"{i}", **extra):
    return [call(task, i=i, output=output(i), input_hash=input_hash(i), **extra) for i in range(n)]


def test_recommendations_follow_when_to_distill(tmp_path):
    rows = (
        rows_for("few", 40)
        + rows_for("labels", 300, output_tokens=3)
        + rows_for("long labels", 300, output_tokens=60)  # answers this long are no label set, whatever they say
        + rows_for("repeats", 300, output=lambda i: f"free text {i % 120} words", input_hash=lambda i: f"{i % 150}")
        + rows_for("prose", 300, output=lambda i: f"a long free answer number {i}")
        + rows_for("stakes", 300, metadata={"stakes": "high"})
        + rows_for("flagged", 150, metadata={"high_stakes": True})
    )
    r = build_report([write_store(tmp_path / "s", rows)], now=NOW)
    rec = {t["task"]: t["recommendation"] for t in r.tasks}
    assert rec["few"] == "collecting (40/100)"
    assert rec["labels"].startswith("distill: classifier, est. 10.0x")
    assert task_of(r, "labels")["distinct_outputs"] == 5 and task_of(r, "labels")["repeat_share"] is None
    assert rec["long labels"].startswith("distill: few-shot") and task_of(r, "long labels")["distinct_outputs"] is None
    repeats = task_of(r, "repeats")
    assert repeats["repeat_share"] == pytest.approx(0.5) and rec["repeats"].startswith("distill: cache, est. 2.0x")
    assert rec["prose"].startswith("distill: few-shot, est. ")
    assert task_of(r, "prose")["advice"]["reason"].startswith("open-ended outputs")
    assert rec["stakes"] == rec["flagged"] == "keep teacher (high-stakes)"
    assert task_of(r, "flagged")["high_stakes_calls"] == 150


def test_gate_result_decides_the_recommendation_and_names_the_worst(tmp_path):
    s = write_store(tmp_path / "s", rows_for("t1", 300))
    v = [verdict(1), verdict(2, agree=False, confidence=0.97), verdict(3, agree=False, confidence=0.6),
         verdict(4, answered=False, agree=False, confidence=None, error="timeout")]
    passed = write_verdicts(tmp_path / "gate.parquet", gate_summary(), v)
    r = build_report([s, passed], budget="0.0001/day", now=NOW)
    t = r.tasks[0]
    assert t["recommendation"] == "distill: classifier, 14.2x (gate passed)"
    assert t["advice"]["source"] == "gate" and t["gate"]["passed"] and t["gate"]["cost_reduction"] == 14.2
    (g,) = r.gates
    assert g["verdicts"] == {"n": 4, "answered": 3, "answered_disagreed": 2, "errors": 1}
    assert [w["example_id"] for w in g["worst_disagreements"]] == ["e4", "e2", "e3"]
    assert t["budget"]["decision"] == "distilled" and t["budget"]["after_usd"] == pytest.approx(t["budget"]["spend_usd"] / 14.2, abs=1e-6)
    failed = write_verdicts(tmp_path / "gate2.parquet", gate_summary(passed=False, agreement=0.912), v)
    r = build_report([s, failed], budget="0.0001/day", now=NOW)
    assert r.tasks[0]["recommendation"] == "keep teacher: gate failed (agreement 91.2%)"
    assert r.tasks[0]["budget"]["decision"] == "fallback_teacher"
    assert r.tasks[0]["budget"]["reason"] == "student quality too low (91.2%)"
    assert r.tasks[0]["advice"]["reason"] == "gate (gate2.parquet): agreement 91.2%, lower bound 30.0%, coverage 75.0%"


def test_a_free_student_reduction_stays_valid_json(tmp_path):
    s = write_store(tmp_path / "s", rows_for("t1", 300))
    gate = write_verdicts(tmp_path / "gate.parquet", gate_summary(cost_reduction="inf"), [verdict(1)])
    r = build_report([s, gate], budget="0.0001/day", now=NOW)
    assert r.tasks[0]["recommendation"] == "distill: classifier, inf (free) (gate passed)"
    assert r.tasks[0]["budget"]["after_usd"] == 0 and r.tasks[0]["budget"]["cost_reduction"] == "inf"
    json.loads(json.dumps(r.to_dict(), allow_nan=False, default=str))


def test_budget_that_fits_changes_nothing(sample_store):
    r = build_report([sample_store], budget="1000/month")
    assert r.budget["fits"] and r.budget["spend_usd"] == pytest.approx(13.212302 / r.period["days"] * 30, rel=1e-4)
    assert r.budget["tasks"][0]["decision"] == "no_change"


def test_drift_log_status_and_chart(tmp_path):
    s = write_store(tmp_path / "s", rows_for("t1", 120))
    log = write_drift(tmp_path / "drift.parquet", [
        {"ts": NOW - timedelta(days=2), "agreement": 0.97, "lower_bound": 0.95, "input_shift": 0.05, "drifted": False},
        {"ts": NOW - timedelta(days=1), "agreement": 0.96, "lower_bound": 0.94, "input_shift": 0.10, "drifted": False},
        {"ts": NOW, "agreement": 0.90, "lower_bound": 0.86, "input_shift": 0.30, "drifted": True},
    ])
    r = build_report([s, log], now=NOW)
    (d,) = r.drift
    assert d["status"] == "drifted" and [run["agreement"] for run in d["runs"]] == [0.97, 0.96, 0.90]
    assert r.tasks[0]["drift"]["status"] == "drifted" and r.tasks[0]["recommendation"] == "keep teacher: student drifted"
    console = Console(width=100, record=True, no_color=True)
    render_table(r, console)
    text = console.export_text()
    assert "Drift t1" in text and "█▆▁" in text and "▁▂█" in text
    assert build_report([s, log], since="12h", now=NOW).drift[0]["runs"][0]["agreement"] == 0.90


def test_student_file_spec_and_dev_metrics(tmp_path):
    s = write_store(tmp_path / "s", rows_for("t1", 120))
    spec = StudentSpec(id="clf-1", kind="classifier", task="t1", teacher_model=SONNET, created="2026-11-20T08:00:00+00:00",
                       split={"salt": "secret-salt", "holdout": 0.2, "rule": "sha256"}, threshold=0.8,
                       metrics={"dev_agreement": 0.97, "dev_coverage": 0.91})
    path = write_student_file(tmp_path / "intent.student", spec, pa.table({"w": [0.1, 0.2]}))
    r = build_report([s, path], now=NOW)
    (st,) = r.students
    assert (st["id"], st["kind"], st["task"], st["threshold"]) == ("clf-1", "classifier", "t1", 0.8)
    assert st["metrics"] == {"dev_agreement": 0.97, "dev_coverage": 0.91} and st["split"]["holdout"] == 0.2
    assert "dev: dev_agreement 0.97, dev_coverage 0.91" in render_markdown(r)


# ---- levers ---------------------------------------------------------------------------------------------------------


SYSTEM = "You extract invoice fields as JSON. " + "Rules: amounts are decimals; dates are ISO-8601. " * 120  # ~6,000 chars


def long_prompt_rows(task, n, model=SONNET, **extra):
    rows = []
    for i in range(n):
        request = {"model": model, "system": SYSTEM, "messages": [{"role": "user", "content": f"invoice {i}"}]}
        rows.append(call(task, i=i, model=model, request_json=json.dumps(request), input_tokens=1_520, output_tokens=40,
                         ts=f"2026-11-20T{10 + i // 60:02d}:{i % 60:02d}:00+00:00", **extra))
    return rows


def test_prompt_caching_lever_for_a_long_prefix_sent_uncached(tmp_path):
    rows = long_prompt_rows("uncached", 200) + long_prompt_rows("cached", 200, cache_read_tokens=1_500)
    rows += long_prompt_rows("haiku", 200, model="claude-haiku-4-5")  # 1,500 tokens is below Haiku's 2,048 minimum
    r = build_report([write_store(tmp_path / "s", rows)], now=NOW)
    (lever,) = [lv for lv in task_of(r, "uncached")["levers"] if lv["lever"] == "prompt_caching"]
    assert lever["calls"] == 200 and 1_450 <= lever["prefix_tokens"] <= 1_520
    # At most the input price less the cache read price (Sonnet 5.5: $2 - $0.10) saved on every repeat;
    # the writes' premium comes off.
    ceiling = (2 - 0.1) * lever["prefix_tokens"] / 1e6 * 200
    assert 0.5 * ceiling < lever["estimated_saving_usd"] < ceiling and lever["cache_writes"] >= 1
    assert not [lv for lv in task_of(r, "cached")["levers"] if lv["lever"] == "prompt_caching"]
    assert not [lv for lv in task_of(r, "haiku")["levers"] if lv["lever"] == "prompt_caching"]


def test_batch_lever_counts_non_streaming_teacher_and_shadow_calls(tmp_path):
    rows = rows_for("t1", 10) + rows_for("t1", 4, stream=True) + [call(served_by="shadow", i=50), call(served_by="fallback", i=51)]
    r = build_report([write_store(tmp_path / "s", rows)], now=NOW)
    (lever,) = r.tasks[0]["levers"]
    assert lever["lever"] == "batch" and lever["calls"] == 11
    assert lever["estimated_saving_usd"] == pytest.approx(11 * CALL / 2)
    assert "up to 50%" in lever["text"]


# ---- parsing -------------------------------------------------------------------------------------------------------


def test_since_and_budget_parsing():
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="expected a duration like 7d"):
        parse_since("last week", NOW)
    assert (parse_budget("50/day").amount, parse_budget("$1,000/month".replace(",", "")).per) == (50.0, "month")
    with pytest.raises(ValueError, match="like 50/day"):
        parse_budget("fifty")


def test_chart_helpers():
    assert str(bar(1.0, 2.0, 2.0, 10)) == "█████░░░░░"
    assert str(bar(0.3125, 0.3125, 1.0, 8)) == "██▌"
    assert sparkline([0.0, 0.5, 1.0]) == "▁▄█"
    days = [{"day": (datetime(2026, 1, 1) + timedelta(days=i)).date().isoformat(), "cost_usd": 1.0,
             "teacher_only_cost_usd": 2.0} for i in range(70)]
    weeks = chart_buckets(days)
    assert len(weeks) == 11 and weeks[1] == ("2026-01-05 wk", 7.0, 14.0)


# ---- the CLI --------------------------------------------------------------------------------------------------------


def test_cli_json_has_the_contract_keys(mixed):
    result = runner.invoke(app, ["report", str(mixed), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "report/1" and {"start", "end", "since", "days"} <= data["period"].keys()
    assert {"calls", "cost_usd", "teacher_only_cost_usd", "savings_usd", "input_tokens", "output_tokens"} <= data["totals"].keys()
    for t in data["tasks"]:
        assert {"task", "calls", "teacher_calls", "student_calls", "fallback_calls", "cost_usd", "recommendation"} <= t.keys()
    assert "Warning: no price known for model 'mystery-1'; its 3 calls have cost null (not 0)" in result.stderr


def test_cli_table_csv_markdown(mixed):
    table = runner.invoke(app, ["report", str(mixed)])
    assert table.exit_code == 0 and "+ 3 calls of unknown cost (model mystery-1)" in table.stdout
    csv_out = runner.invoke(app, ["report", str(mixed), "--format", "csv"]).stdout.splitlines()
    assert csv_out[0].startswith("task,calls,teacher_calls,student_calls,fallback_calls,shadow_calls")
    assert {line.split(",")[0] for line in csv_out[1:]} == {"t1", "t2"}
    md = runner.invoke(app, ["report", str(mixed), "--format", "markdown"]).stdout
    assert "## Tasks" in md and "## Models" in md and "## Spend per day" in md and "| t1 | 11 |" in md


def test_cli_empty_store_says_no_calls_recorded(tmp_path):
    empty = tmp_path / "empty"
    store.prepare_store(empty)
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 0 and "no calls recorded" in result.stdout
    result = runner.invoke(app, ["report", str(empty), "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["totals"]["calls"] == 0
    assert "no calls recorded" in result.stderr


def test_cli_bad_inputs_exit_3_naming_the_file(tmp_path, mixed):
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["report", str(missing)])
    assert result.exit_code == 3 and result.stderr == f"Error: {missing}: no such file or directory\n"
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    result = runner.invoke(app, ["report", str(mixed), str(junk)])
    assert result.exit_code == 3 and result.stderr.startswith(f"Error: {junk}: not a readable Parquet file")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    result = runner.invoke(app, ["report", str(plain)])
    assert result.exit_code == 3
    assert result.stderr == (
        "Error: plain.parquet: not a distill file (no distill.schema tag); "
        "report reads example stores, verdicts files, drift logs and student files\n"
    )
    newer = tmp_path / "gate.parquet"
    pq.write_table(pa.table({"a": [1]}, schema=schemas.tagged(pa.schema([("a", pa.int64())]), "verdicts/9")), newer)
    result = runner.invoke(app, ["report", str(mixed), str(newer)])
    assert result.exit_code == 3
    assert result.stderr == "Error: gate.parquet: verdicts/9 is newer than this distill understands (verdicts/1); upgrade distill-cli\n"
    result = runner.invoke(app, ["report", str(mixed), "--task", "nope"])
    assert result.exit_code == 3 and "no calls of task 'nope'" in result.stderr


def test_cli_bad_flags_are_usage_errors(mixed):
    assert runner.invoke(app, ["report", str(mixed), "--since", "yesterday-ish"]).exit_code == 2
    assert runner.invoke(app, ["report", str(mixed), "--budget", "lots"]).exit_code == 2
    assert runner.invoke(app, ["report", str(mixed), "--by", "week"]).exit_code == 2


def test_cli_end_to_end_in_a_process_with_no_color(sample_store):
    env = {"NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "distill_cli", "report", str(sample_store)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"\x1b\[", proc.stdout) and "distill: classifier" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


def test_calls_still_in_a_journal_are_named_in_the_notes(tmp_path):
    s = tmp_path / "live"
    writer = store.StoreWriter(s)
    for i in range(3):
        writer.append(call(i=i))
    r = build_report([s])
    assert r.empty and any("3 calls are still in the journal" in n for n in r.notes)
    writer.close()
    r = build_report([s])
    assert r.totals["calls"] == 3 and not any("journal" in n for n in r.notes)


def test_quarantined_journal_segments_are_named_in_the_notes(tmp_path):
    from test_store import BAD_SEGMENT, write_bad_segment

    s = write_store(tmp_path / "s", [call(i=0)])
    write_bad_segment(s)
    store.StoreWriter(s).close()
    result = runner.invoke(app, ["report", str(s)])
    assert result.exit_code == 0, result.output
    note = (f"Note: 1 journal segment (3 calls) could not be turned into parts and is quarantined, not counted here: "
            f"{s / '_quarantine' / BAD_SEGMENT}")
    assert "".join(note.split()) in "".join(result.output.split())  # rich folds the long path
    notes = json.loads(runner.invoke(app, ["report", str(s), "--format", "json"]).stdout)["notes"]
    assert note.removeprefix("Note: ") in notes


# ---- batch spend ---------------------------------------------------------------------------------------------------

BATCH_CALL = CALL / 2  # Sonnet 5.5 at batch rates ($1 / $5): 1000 x 1 + 100 x 5 = 1500 / 1e6


def test_batch_spend_is_its_own_line_and_the_batch_lever_counts_only_unbatched_calls(tmp_path):
    rows = [call(i=i) for i in range(4)]  # 4 live calls at 0.003
    # 3 batch calls, each marked a different way: the response's tier, a batch flag, a batch id
    rows += [call(i=10, cost=BATCH_CALL, metadata=json.dumps({"service_tier": "batch"})),
             call(i=11, cost=BATCH_CALL, metadata=json.dumps({"batch": True})),
             call(i=12, cost=BATCH_CALL, metadata=json.dumps({"batch_id": "msgbatch_01"}))]
    rows.append(call(i=20, cost=BATCH_CALL, metadata=json.dumps({"service_tier": "flex"})))  # batch rates, no batch
    rows.append(call("t2", i=30, cost=BATCH_CALL, metadata=json.dumps({"service_tier": "batch"})))
    r = build_report([write_store(tmp_path / "s", rows)], now=NOW)
    t1, t2 = task_of(r, "t1"), task_of(r, "t2")
    # t1: 4 x 0.003 + 4 x 0.0015 = 0.018 in all, of it 3 x 0.0015 = 0.0045 on batch calls (flex is not a batch)
    assert t1["cost_usd"] == pytest.approx(0.018)
    assert (t1["batch_calls"], t1["batch_cost_usd"]) == (3, pytest.approx(0.0045))
    assert (t2["batch_calls"], t2["batch_cost_usd"]) == (1, pytest.approx(0.0015))
    assert (r.totals["batch_calls"], r.totals["batch_cost_usd"]) == (4, pytest.approx(0.006))
    assert r.totals["cost_usd"] == pytest.approx(0.018 + 0.0015)  # batch spend is part of the spend, not added to it
    # The Batch-API lever: only the 4 live calls; batched and flex calls are at batch rates already. 4 x 0.003 / 2
    (lever,) = t1["levers"]
    assert lever["lever"] == "batch" and lever["calls"] == 4
    assert lever["estimated_saving_usd"] == pytest.approx(0.006)
    assert not task_of(r, "t2")["levers"]  # its only call was batched
    md = render_markdown(r)
    assert "- batch spend: $0.006 of it on 4 batch calls\n" in md
    head, *lines = render_csv(r).splitlines()
    assert "batch_calls,batch_cost_usd" in head
    console = Console(width=200, record=True)
    render_table(r, console)
    text = console.export_text()
    assert "Batch" in text and "4 batch calls" in text


def test_no_batch_line_without_batch_calls(mixed):
    r = build_report([mixed], now=NOW)
    assert r.totals["batch_calls"] == 0 and r.totals["batch_cost_usd"] == 0
    assert "batch spend" not in render_markdown(r)


def test_repricing_keeps_the_recorded_cost_of_a_call_priced_with_a_modifier(tmp_path):
    rows = [call(i=0),  # standard: repriced
            call(i=1, cost=BATCH_CALL, metadata=json.dumps({"service_tier": "flex"})),  # flex: batch rates, kept
            call(i=2, cost=None, metadata=json.dumps({"speed": "fast", "price_unverified": "no verified fast-mode price"}))]
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"models": {SONNET: {"input": 4, "output": 20}}}))
    r = build_report([write_store(tmp_path / "s", rows)], prices=p, now=NOW)
    # 1000 x 4 + 100 x 20 = 6000 / 1e6 for the standard call; the flex call keeps 0.0015; the fast one stays unknown
    assert r.totals["cost_usd"] == pytest.approx(0.006 + 0.0015)
    assert r.totals["unknown_cost_calls"] == 1
