"""distill report on a chain's calls: how they split across tiers, what each tier cost and saved, honest totals."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from distill_cli import schemas, store
from distill_cli.cli import app
from distill_cli.console.report import render_csv, render_markdown, render_table
from distill_cli.report import build_report
from distill_cli.students import StudentSpec, write_student_file

runner = CliRunner()
SONNET = "claude-sonnet-5-5"
CALL = 0.003  # a teacher call
B_COST = 0.0005  # an attempt of tier b (an LLM tier), answered or declined
CHAIN = "tier-a > tier-b"


def tiers(*attempts) -> dict:
    """The router's metadata of a chain's row: (student_id, answered, cost, error) per tier asked."""
    answered = [i for i, a in enumerate(attempts) if a[1]]
    return {"chain": {"id": CHAIN, "tier": answered[0] if answered else None,
                      "tiers": [{"tier": i, "student_id": s, "answered": ok, "cost_usd": c, "error": e}
                                for i, (s, ok, c, e) in enumerate(attempts)]}}


A_YES = ("tier-a", True, 0.0, None)
A_NO = ("tier-a", False, 0.0, None)
B_YES = ("tier-b", True, B_COST, None)
B_NO = ("tier-b", False, B_COST, None)


def row(i, served_by="teacher", *, task="t1", student=None, cost=CALL, metadata=None, **extra) -> dict:
    on_student = served_by == "student"
    out = {
        "ts": f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}+00:00", "task": task, "source": "proxy",
        "provider": "student" if on_student else "anthropic", "model": student if on_student else SONNET,
        "served_by": served_by, "student_id": student, "input": f"question {i}", "output": f"answer {i % 3}",
        "request_json": json.dumps({"model": SONNET, "messages": [{"role": "user", "content": f"question {i}"}]}),
        "status": 200, "input_tokens": 0 if on_student else 1000, "output_tokens": 0 if on_student else 100,
        "cost_usd": cost, "input_hash": f"h-{i}", "stream": False, "metadata": metadata,
    }
    out.update(extra)
    return store.complete_row(out)


def chain_rows(teacher: int = 2) -> list[dict]:
    """`teacher` plain teacher calls; the chain: 5 answered by a, 3 by b after a declined, 2 both declined
    (the teacher answered), and one shadow check of a call b answered (it copies the call's metadata)."""
    rows = [row(i) for i in range(teacher)]
    n = teacher
    rows += [row(n + i, "student", student="tier-a", cost=0.0, metadata=tiers(A_YES)) for i in range(5)]
    served_b = [row(n + 5 + i, "student", student="tier-b", cost=B_COST, metadata=tiers(A_NO, B_YES)) for i in range(3)]
    rows += served_b
    rows += [row(n + 8 + i, "fallback", student="tier-b", metadata=tiers(A_NO, B_NO)) for i in range(2)]
    rows.append(row(n + 10, "shadow", student="tier-b", pair_id=served_b[0]["id"], metadata=tiers(A_NO, B_YES)))
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    store.prepare_store(path)
    store.append_rows(path, rows)
    return path


@pytest.fixture
def runs(tmp_path) -> Path:
    return write(tmp_path / "runs", chain_rows())


def test_the_calls_split_across_tiers_with_each_tiers_cost_and_saving(runs):
    report = build_report([runs])
    [task] = report.tasks
    [chain] = task["chains"]
    assert chain["chain"] == CHAIN and chain["calls"] == 10
    assert chain["teacher_calls"] == 2 and chain["teacher_share"] == 0.2
    assert chain["teacher_cost_usd"] == pytest.approx(2 * CALL)
    assert chain["tiers_cost_on_teacher_calls_usd"] == pytest.approx(2 * B_COST)
    a, b = chain["tiers"]
    assert (a["tier"], a["student"], a["asked"], a["answered"], a["declined"], a["errors"]) == (0, "tier-a", 10, 5, 5, 0)
    assert (b["tier"], b["student"], b["asked"], b["answered"], b["declined"], b["errors"]) == (1, "tier-b", 5, 3, 2, 0)
    assert (a["share"], b["share"]) == (0.5, 0.3)
    # Tier b cost every time it was asked, declines included; what it answered would have cost the teacher 3 calls.
    assert b["cost_usd"] == pytest.approx(5 * B_COST)
    assert b["teacher_cost_usd"] == pytest.approx(3 * CALL)
    assert b["saved_usd"] == pytest.approx(3 * CALL - 5 * B_COST)
    assert a["cost_usd"] == 0.0 and a["saved_usd"] == pytest.approx(5 * CALL)


def test_spend_counts_the_tiers_a_fallback_asked_once(runs):
    """A fallback row's cost is the teacher's; its tiers' cost, in metadata only, is spend too. Served rows hold the
    whole chain's cost already; the shadow row copies the metadata and is not read for tiers: no double counting."""
    t = build_report([runs]).totals
    rows_cost = 2 * CALL + 3 * B_COST + 2 * CALL + CALL  # teacher, b served, fallback, shadow
    assert t["cost_usd"] == pytest.approx(rows_cost + 2 * B_COST)
    # Teacher-only: the teacher-side rows' own cost, and the 7 student calls without a shadow at the mean teacher call.
    assert t["teacher_only_cost_usd"] == pytest.approx(5 * CALL + 7 * CALL)
    assert t["savings_usd"] == pytest.approx(t["teacher_only_cost_usd"] - t["cost_usd"])
    assert (t["calls"], t["rows"], t["student_calls"], t["fallback_calls"], t["shadow_calls"]) == (12, 13, 8, 2, 1)


def test_every_table_adds_up_to_the_same_spend(runs):
    report = build_report([runs])
    total = report.totals["cost_usd"]
    assert sum(m["cost_usd"] for m in report.models) == pytest.approx(total)
    assert sum(d["cost_usd"] for d in report.days) == pytest.approx(total)
    assert sum(t["cost_usd"] for t in report.tasks) == pytest.approx(total)
    # The tier's declined attempts on calls the teacher answered are on the tier's line, not the teacher model's.
    models = {m["model"]: m for m in report.models}
    assert models["tier-b"]["cost_usd"] == pytest.approx(5 * B_COST)
    assert models[SONNET]["cost_usd"] == pytest.approx(5 * CALL)
    assert any("spend includes $0.001 that chains' tiers cost" in n for n in report.notes)


def test_a_failed_tier_and_a_timed_out_chain(tmp_path):
    """A tier that raised is counted as an error, its unknown cost named; a chain that ran out of time has no tiers
    to tell, so its call counts for the chain but for no tier."""
    failed = ("tier-a", False, None, "tier-a: upstream said no")
    rows = [row(0), row(1, "student", student="tier-b", cost=B_COST, metadata=tiers(failed, B_YES)),
            row(2, "fallback", student="tier-b", metadata={"chain": {"id": CHAIN, "tier": None, "tiers": []}})]
    report = build_report([write(tmp_path / "runs", rows)])
    [chain] = report.tasks[0]["chains"]
    assert chain["calls"] == 2 and chain["teacher_calls"] == 1
    a, b = chain["tiers"]
    assert (a["asked"], a["errors"], a["declined"], a["unknown_cost_attempts"]) == (1, 1, 0, 1)
    assert (b["asked"], b["answered"]) == (1, 1)
    assert any("1 attempts of a chain's tiers have no recorded cost" in n for n in report.notes)


def test_a_chain_key_that_is_no_chains_is_passed_over(tmp_path):
    rows = [row(0, metadata={"chain": "my pipeline"}), row(1, "fallback", student="s", metadata={"chain": [1, 2]}),
            row(2, "student", student="s", cost=0.0, metadata={"chain": "my pipeline"})]
    report = build_report([write(tmp_path / "runs", rows)])
    assert "chains" not in report.tasks[0]
    assert report.totals["cost_usd"] == pytest.approx(2 * CALL)


def test_no_chain_no_new_fields(tmp_path):
    report = build_report([write(tmp_path / "runs", [row(0), row(1, "student", student="s", cost=0.0)])])
    assert "chains" not in report.tasks[0]
    assert "Chains" not in render_markdown(report)
    assert render_csv(report).splitlines()[0].split(",")[-1] == "recommendation"


# ---- the outputs -------------------------------------------------------------------------------------------------


def test_json_csv_markdown_and_table_show_the_tiers(runs):
    result = runner.invoke(app, ["report", str(runs), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["student"] for t in data["tasks"][0]["chains"][0]["tiers"]] == ["tier-a", "tier-b"]

    report = build_report([runs], by="tier")
    lines = list(csv.reader(io.StringIO(render_csv(report))))
    assert lines[0][:6] == ["task", "chain", "tier", "student", "asked", "answered"]
    assert [(r[2], r[3], r[5]) for r in lines[1:]] == [("0", "tier-a", "5"), ("1", "tier-b", "3"), ("teacher", SONNET, "2")]
    result = runner.invoke(app, ["report", str(runs), "--by", "tier", "--format", "csv"])
    assert result.exit_code == 0 and result.stdout == render_csv(report)

    markdown = render_markdown(build_report([runs]))
    assert "## Chains, tier by tier" in markdown
    assert f"| t1 | {CHAIN} | 1 | tier-b | 5 | 3 | 0.3 | 2 | 0 | 0.0025 |" in markdown

    console = Console(record=True, width=140, color_system=None)
    render_table(build_report([runs]), console)
    text = console.export_text()
    assert "Chains, tier by tier" in text and f"t1: {CHAIN}" in text and "3 (30%)" in text


# ---- the budget decision and the gate's evidence ----------------------------------------------------------------


def chain_gate(path: Path, *, passed: bool = True, reduction=5.0, digests=("sha256:aa", "sha256:bb")) -> Path:
    summary = {
        "schema": "gate-summary/1", "student": CHAIN, "student_kind": "chain", "task": "t1", "passed": passed,
        "agreement": 0.97, "lower_bound": 0.955, "coverage": 0.8, "n": 400, "cost_reduction": reduction,
        "decision": "distilled" if passed else "keep_teacher", "student_digest": "sha256:cc",
        "created": "2026-11-20T12:00:00+00:00",
        "chain": [{"id": "tier-a", "kind": "classifier", "digest": digests[0]},
                  {"id": "tier-b", "kind": "few-shot", "digest": digests[1]}],
        "tier_answered": [250, 70],
    }
    cols = {name: [] for name in schemas.VERDICTS_SCHEMA.names}
    table = pa.table(cols, schema=schemas.tagged(schemas.VERDICTS_SCHEMA, schemas.VERDICTS,
                                                 {schemas.SUMMARY_KEY: json.dumps(summary)}))
    pq.write_table(table, path)
    return path


@pytest.fixture
def busy(tmp_path) -> Path:
    """Enough teacher answers (120) for the budget to decide."""
    return write(tmp_path / "busy", chain_rows(teacher=120))


def test_the_budget_takes_a_passing_chain_gate_like_any_students(tmp_path, busy):
    gate = chain_gate(tmp_path / "chain.verdicts.parquet")
    report = build_report([busy, gate], budget="0.0001/day")
    [t] = report.tasks
    assert t["recommendation"] == f"distilled: chain {CHAIN}, 5.0x (gate passed)"
    assert t["gate"]["chain"] == ["tier-a", "tier-b"]
    [line] = report.budget["tasks"]
    assert line["decision"] == "distilled" and line["cost_reduction"] == 5.0 and line["reduction_source"] == "gate"
    assert line["after_usd"] == pytest.approx(line["teacher_only_usd"] / 5.0, abs=1e-6)


def test_a_failed_chain_gate_keeps_the_teacher(tmp_path, busy):
    report = build_report([busy, chain_gate(tmp_path / "chain.verdicts.parquet", passed=False)], budget="0.0001/day")
    [line] = report.budget["tasks"]
    assert line["decision"] == "fallback_teacher"
    assert report.tasks[0]["recommendation"].startswith("keep teacher: gate failed")


def test_a_chain_member_changed_since_its_gate_uncovers_the_chain(tmp_path, busy):
    spec = StudentSpec(id="tier-b", kind="cache", task="t1", teacher_model=SONNET)
    student = write_student_file(tmp_path / "b.student", spec, pa.table({"input_hash": pa.array([], pa.string()),
                                                                          "output": pa.array([], pa.string())}))
    report = build_report([busy, chain_gate(tmp_path / "chain.verdicts.parquet"), student], budget="0.0001/day")
    assert report.gates[0]["changed_since"] is True
    assert any(f"student tier-b ({student}) changed since" in n and f"in chain {CHAIN}" in n for n in report.notes)
    assert report.tasks[0]["recommendation"] == "keep teacher: the gate does not cover the student file"
    assert report.budget["tasks"][0]["decision"] == "fallback_teacher"


def drift_log(path: Path, runs: list[dict]) -> Path:
    base = {"task": "t1", "window_start": "2026-11-20T00:00:00+00:00", "window_end": "2026-11-20T00:00:00+00:00",
            "pairs": 200, "agreeing": 190, "agreement": 0.95, "lower_bound": 0.92, "upper_bound": 0.99, "served": 1000,
            "decline_rate": 0.1, "input_shift": 0.5, "input_shift_threshold": 0.6, "output_shift": 0.0, "reasons": "[]",
            "drifted": False, "demoted": False}
    rows = [{**base, **r} for r in runs]
    for r in rows:
        for k in ("ts", "window_start", "window_end"):
            r[k] = datetime.fromisoformat(r[k]) if isinstance(r[k], str) else r[k]
    cols = {name: [r.get(name) for r in rows] for name in schemas.DRIFT_SCHEMA.names}
    pq.write_table(pa.table(cols, schema=schemas.DRIFT_SCHEMA), path)
    return path


def test_a_demoted_tier_keeps_the_chains_task_on_the_teacher(tmp_path, busy):
    """Each tier is checked on its own file; the latest run may be a healthy tier's while another stands demoted."""
    log = drift_log(tmp_path / "drift.parquet", [
        {"student_id": "tier-a", "ts": "2026-11-21T06:15:00+00:00", "drifted": True, "demoted": True},
        {"student_id": "tier-b", "ts": "2026-11-21T06:16:00+00:00"},
    ])
    report = build_report([busy, chain_gate(tmp_path / "chain.verdicts.parquet"), log], budget="0.0001/day")
    [t] = report.tasks
    assert t["drift"]["status"] == "demoted"
    assert [(x["student_id"], x["status"]) for x in t["drift"]["tiers"]] == [("tier-a", "demoted"), ("tier-b", "ok")]
    assert t["recommendation"] == "keep teacher: student demoted"
    assert report.budget["tasks"][0]["decision"] == "fallback_teacher"
    assert "_by_student" not in report.drift[0] and report.drift[0]["student_id"] == "tier-a"
    # Without a chain's gate the latest run decides, as before.
    alone = build_report([busy, log])
    assert alone.tasks[0]["drift"]["status"] == "ok" and "tiers" not in alone.tasks[0]["drift"]


def test_a_chain_gate_names_what_each_tier_answered(tmp_path, busy):
    markdown = render_markdown(build_report([busy, chain_gate(tmp_path / "chain.verdicts.parquet")]))
    assert "tiers answered tier-a 250, tier-b 70" in markdown
