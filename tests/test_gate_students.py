"""The gate over students that `build-student` makes: it scores exactly the holdout the build left out."""

from __future__ import annotations

import json
import random

import pytest
from gate_support import Row, write_store
from typer.testing import CliRunner

from distill_cli import store
from distill_cli.cli import app
from distill_cli.gate import run_gate
from distill_cli.students import in_holdout, load_student
from distill_cli.students.build import build_student

TOPICS = {
    "refund": ["money back", "refund please", "return my payment"],
    "card_lost": ["lost my card", "card stolen", "cannot find card"],
    "pin": ["forgot pin", "pin blocked", "change my pin"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """600 support tickets over three intents, one in ten labelled at random, and a classifier built from them."""
    work = tmp_path_factory.mktemp("classifier")
    rng = random.Random(7)
    rows = []
    for i in range(600):
        label = rng.choice(sorted(TOPICS))
        text = f"{rng.choice(['hi', 'hello', 'hey'])} {rng.choice(TOPICS[label])} {rng.choice(['now', 'today', ''])} {i}"
        if rng.random() < 0.1:
            label = rng.choice(sorted(TOPICS))  # the teacher is not always consistent
        rows.append(Row(store.new_id_from_int((1_760_000_000_000 + i) << 80 | rng.getrandbits(80)), text, label, False))
    runs = write_store(work / "runs", rows)
    build_student(runs, work / "intent.student", kind="classifier", embeddings="off", seed=3, min_agreement=0.8)
    return runs, work / "intent.student", rows


def test_the_gate_scores_the_holdout_build_student_left_out(built):
    runs, path, rows = built
    student = load_student(path)
    split = student.spec.split
    s = run_gate(student, runs, min_examples=50, min_agreement=0.8)
    held = sorted(r.id for r in rows if in_holdout(split["salt"], r.id, split["holdout"]))
    assert [v.example_id for v in s.verdicts] == held
    assert s.n == student.spec.built_from["holdout"] == len(held)
    assert s.judge == "normalized" and s.student_kind == "classifier"
    assert s.student_cost_per_call == 0.0 and s.errors == 0
    assert 0 < s.coverage <= 1 and s.declined == s.n - s.answered
    # declines happen below the build's calibrated threshold, and only there
    threshold = student.spec.threshold
    assert all(v.confidence < threshold for v in s.verdicts if not v.answered)
    assert all(v.confidence >= threshold for v in s.verdicts if v.answered)


def test_the_cli_agrees_with_the_library(built, tmp_path):
    runs, path, _ = built
    library = run_gate(path, runs, min_examples=50, min_agreement=0.8).to_dict()
    result = CliRunner().invoke(app, ["gate", str(path), str(runs), "--min-examples", "50", "--min-agreement", "0.8", "--format", "json"])
    cli = json.loads(result.stdout)
    assert result.exit_code == (0 if library["passed"] else 1)
    for key in ("n", "answered", "agreement", "lower_bound", "decision", "reason", "cost_reduction"):
        assert cli[key] == library[key], key
