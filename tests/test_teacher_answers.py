"""Only complete teacher answers teach or judge: a stream cut or a call the job abandoned is never an answer.

One definition (`schemas.teacher_answer_sql`) is used by build-student, --export,
gate, drift and report; each is checked here on a store holding such rows.
"""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path

import duckdb
from drift_support import SAMPLE_END, traffic, write_day  # queries, site: shared fixtures
from gate_support import Row, make_rows, script_for, write_scripted, write_store

from distill_cli import schemas
from distill_cli.drift import run_drift
from distill_cli.gate import run_gate
from distill_cli.students.export import export_training
from distill_cli.students.training import select

ROOT = Path(__file__).resolve().parent.parent
CUT = "incomplete: upstream stream cut (ConnectionResetError: connection reset by peer)"
ABANDONED = "incomplete: the job closed the connection before the answer arrived"


def test_the_teacher_answer_predicate():
    rows = [
        # (name, served_by, status, output, error, is a teacher answer)
        ("teacher", "teacher", 200, "yes", None, True),
        ("fallback", "fallback", 200, "yes", None, True),
        ("shadow", "shadow", 200, "yes", None, True),
        ("student", "student", 200, "yes", None, False),
        ("cut", "teacher", 200, "ye", CUT, False),
        ("abandoned", "teacher", 200, "yes", ABANDONED, False),
        ("no output", "teacher", 200, None, None, False),
        ("rate limited", "teacher", 429, None, "rate_limit_error: slow down", False),
        ("server error with a body", "shadow", 500, "oops", None, False),
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE e (name VARCHAR, served_by VARCHAR, status INTEGER, output VARCHAR, error VARCHAR)")
    con.executemany("INSERT INTO e VALUES (?, ?, ?, ?, ?)", [r[:5] for r in rows])
    chosen = {r[0] for r in con.execute(f"SELECT name FROM e WHERE {schemas.teacher_answer_sql()}").fetchall()}
    assert chosen == {r[0] for r in rows if r[5]}
    aliased = {r[0] for r in con.execute(f"SELECT x.name FROM e x WHERE {schemas.teacher_answer_sql('x')}").fetchall()}
    assert aliased == chosen
    complete = {r[0] for r in con.execute(f"SELECT name FROM e WHERE {schemas.complete_answer_sql()}").fetchall()}
    assert complete == chosen | {"student"}


def test_a_teacher_answer_is_defined_once():
    """Every command selects teacher answers through schemas.teacher_answer_sql, never a hand-written copy."""
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "distill_cli").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"output\s+IS\s+NOT\s+NULL", line, re.IGNORECASE)
    ]
    assert len(found) == 1 and found[0].startswith("distill_cli/schemas.py:"), found


def test_build_student_and_export_learn_only_from_complete_answers(tmp_path):
    runs = write_store(tmp_path / "runs", make_rows(30, 120))
    write_store(runs, make_rows(10, 60, label=lambda i: "cut short"), error=CUT)
    write_store(runs, make_rows(10, 60, label=lambda i: "abandoned answer"), error=ABANDONED)
    selection = select([runs], task=None, holdout=0.2, seed=0)
    outputs = {e.output for e in selection.train}
    assert "cut short" not in outputs and "abandoned answer" not in outputs
    out = tmp_path / "train.jsonl"
    result = export_training([runs], out, fmt="openai")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.rows == len(lines) == len(selection.train)
    assert {line["messages"][-1]["content"] for line in lines} == outputs


def test_gate_judges_only_against_complete_answers(tmp_path):
    rows = make_rows(200, 120)
    runs = write_store(tmp_path / "runs", rows)
    cut = [Row(r.id, f"cut {r.text}", r.output, r.held_out) for r in make_rows(40, 0, label=lambda i: "cut short")]
    write_store(runs, cut[:20], error=CUT)
    write_store(runs, cut[20:], error=ABANDONED)
    # The student answers the cut calls with what the teacher would have said in full: against the
    # partial reference that counts as a disagreement, and would fail the gate.
    script = script_for(rows) | {r.text: "answer:label_full" for r in cut}
    student = write_scripted(tmp_path / "s.student", script)
    s = run_gate(student, runs, judge="normalized", verdicts=tmp_path / "gate.parquet")
    assert (s.n, s.held_out, s.teacher_rows, s.disagreements) == (200, 200, 320, 0)
    assert s.passed
    assert {v.example_id for v in s.verdicts} == {r.id for r in rows if r.held_out}


def test_drift_never_judges_against_a_cut_shadow_answer(site, queries):
    held, _ = queries
    rng = random.Random(3)
    rows = traffic(SAMPLE_END, rng.sample(held, 200), rng, wrong_shadow=0.3)
    cut = 0
    for row in rows:
        if row["served_by"] == "shadow" and row["output"] == "corrupted_intent":
            row["error"] = CUT  # what arrived before the cut is not the teacher's answer
            cut += 1
    assert cut > 10
    write_day(site.traffic, rows)
    r = run_drift(site.student, site.stores, now=SAMPLE_END + timedelta(days=1))
    shadows = sum(1 for row in rows if row["served_by"] == "shadow")
    assert r.pairs == shadows - cut
    assert not r.check("agreement").drifted and r.agreement == 1.0
    assert not any(d["teacher"] == "corrupted_intent" for d in r.disagreements)
