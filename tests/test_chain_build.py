"""build-student --after: the next tier of a chain, built from what the earlier tiers decline, certified as a chain."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from gate_support import TASK, make_rows, request_for, write_scripted, write_store
from test_build_student import make_store, sample_rows
from typer.testing import CliRunner

from distill_cli import canonical
from distill_cli.cli import app
from distill_cli.errors import InputError
from distill_cli.students import classifier
from distill_cli.students.after import residue_of
from distill_cli.students.build import build_student
from distill_cli.students.registry import load_chain, load_student
from distill_cli.students.training import MIN_TRAINING, select, student_id

FAKE_KEY = "sk-ant-test-fake-key-000000"


@pytest.fixture(scope="module")
def small_store(sample_store, tmp_path_factory):
    """Twelve intents of the banking77 sample store (about 2,100 calls)."""
    return make_store(tmp_path_factory.mktemp("chain-small") / "store", sample_rows(sample_store))


@pytest.fixture(scope="module")
def tiers(small_store, tmp_path_factory):
    """a: a classifier held to 0.99 (so it declines about a tenth); b: a classifier built --after a."""
    where = tmp_path_factory.mktemp("tiers")
    a = build_student(small_store, where / "a.student", embeddings="off", min_agreement=0.99)
    b = build_student(small_store, where / "b.student", embeddings="off", after=where / "a.student")
    return a, b, where / "a.student", where / "b.student"


def split_of(path):
    student = load_student(path)
    return select([student.spec.built_from["stores"][0]], task=student.spec.task, holdout=student.spec.split["holdout"],
                  seed=0, salt=student.spec.split["salt"])


# ---- what the next tier learns from ------------------------------------------------------------------------------


def test_after_trains_only_on_the_training_calls_a_declines(tiers, small_store):
    a, b, a_path, b_path = tiers
    sel = split_of(a_path)
    first = load_student(a_path)
    answers, _ = classifier.out_of_fold(first, sel.train, sel.salt)
    declined = [e for e, answered in zip(sel.train, answers) if not answered]
    after = b.spec.built_from["after"]
    assert after["tiers"] == [{"id": a.spec.id, "kind": "classifier", "digest": a.spec.digest}]
    assert after["train_rows"] == len(sel.train) == a.spec.built_from["train"]
    assert after["declined"] == b.spec.built_from["train"] == b.spec.metrics["n_train"] == len(declined)
    assert after["answered"] == [len(sel.train) - len(declined)]
    assert MIN_TRAINING <= len(declined) < len(sel.train) / 4
    # Exactly those rows: b's id hashes the ids and outputs it was trained on.
    assert b.spec.id == student_id("classifier", sel.restricted(declined, after), classifier.settings_of(b.spec))
    # Asked directly, a is sure of rows it was fitted on: the out-of-fold decisions are what the chain will see.
    in_sample = sum(first.answer_text(e.input).declined for e in sel.train)
    assert in_sample < len(declined) / 4
    # The chain's held-out set is a's: the same salt and holdout, so no tier trains on another's held-out rows.
    assert (b.spec.split["salt"], b.spec.split["holdout"]) == (a.spec.split["salt"], a.spec.split["holdout"])
    chain = load_chain([a_path, b_path])
    ids = [e.id for e in sel.train[:200]]
    assert not any(chain.holds_out(i) for i in ids)


def test_earlier_tiers_are_reproduced_out_of_fold_along_a_longer_chain(tiers, small_store):
    a, b, a_path, b_path = tiers
    sel = split_of(a_path)
    residue, before, notes = residue_of([load_student(a_path), load_student(b_path)], sel)
    assert notes == []  # both tiers were refitted, none asked in-sample
    assert [t["answered"] for t in before.tiers] == b.spec.metrics["chain"]["answered"]
    assert before.rows == len(sel.train) and len(residue) == before.residue


def test_after_a_scripted_tier_learns_exactly_the_rows_it_declines(tmp_path):
    rows = make_rows(110, 330)
    store = write_store(tmp_path / "runs", rows)
    train = [r for r in rows if not r.held_out]
    declined = {r.text for i, r in enumerate(train) if i % 3 == 0}
    first = write_scripted(tmp_path / "a.student", {r.text: "decline" if r.text in declined else f"answer:{r.output}"
                                                    for r in train}, id="tier-a")
    result = build_student(store, tmp_path / "cache.student", kind="cache", after=first)
    assert result.spec.built_from["train"] == len(declined) == result.spec.built_from["after"]["declined"]
    table = pq.read_table(tmp_path / "cache.student")
    expected = {canonical.input_hash(request_for(t)) for t in declined}
    assert set(table["input_hash"].to_pylist()) == expected
    assert result.spec.split["salt"] == "5a1t5a1t"  # the scripted tier's split, not the seed's


def test_an_llm_tier_draws_its_demonstrations_from_what_a_declines(tiers, small_store, tmp_path, monkeypatch):
    a, b, a_path, _ = tiers
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    result = build_student(small_store, tmp_path / "llm.student", kind="few-shot", dev_calls=0, after=a_path)
    sel = split_of(a_path)
    answers, _ = classifier.out_of_fold(load_student(a_path), sel.train, sel.salt)
    declined = {e.input for e, answered in zip(sel.train, answers) if not answered}
    table = pq.read_table(tmp_path / "llm.student").to_pylist()
    demos = [r["input"] for r in table if r["part"] == "demo"]
    assert demos and set(demos) <= declined
    assert result.spec.built_from["after"]["tiers"][0]["id"] == a.spec.id


# ---- refusals ------------------------------------------------------------------------------------------------------


def test_after_refuses_a_student_of_another_task(tmp_path, tiers, small_store):
    _, _, a_path, _ = tiers
    out = tmp_path / "x.student"
    result = CliRunner().invoke(app, ["build-student", str(small_store), "-o", str(out), "--after", str(a_path),
                                      "--task", "billing"])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is for task 'support-intent', not 'billing'" in lines[0]
    assert not out.exists()
    # A store without a's task is refused the same way.
    rows = make_rows(10, 120)
    other = write_store(tmp_path / "other", rows, task=TASK)
    result = CliRunner().invoke(app, ["build-student", str(other), "-o", str(out), "--after", str(a_path)])
    assert result.exit_code == 3 and "support-intent" in result.output and not out.exists()


def test_after_refuses_to_write_over_the_earlier_tier(tmp_path, tiers, small_store):
    _, _, a_path, _ = tiers
    before = a_path.read_bytes()
    same = a_path.parent / "." / a_path.name
    result = CliRunner().invoke(app, ["build-student", str(small_store), "-o", str(same), "--after", str(a_path)])
    assert result.exit_code == 3 and "is the --after student" in result.output
    assert a_path.read_bytes() == before


def test_after_refuses_tiers_on_other_splits_and_llm_tiers(tmp_path, monkeypatch):
    rows = make_rows(110, 330)
    store = write_store(tmp_path / "runs", rows)
    a = write_scripted(tmp_path / "a.student", {}, id="tier-a")
    b = write_scripted(tmp_path / "b.student", {}, id="tier-b", split={"salt": "other", "holdout": 0.2, "rule": "x"})
    with pytest.raises(InputError, match="another salt or holdout"):
        build_student(store, tmp_path / "c.student", kind="cache", after=[a, b])
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    llm = build_student(store, tmp_path / "llm.student", kind="few-shot", dev_calls=0).path
    with pytest.raises(InputError, match="put LLM tiers last"):
        build_student(store, tmp_path / "c.student", kind="cache", after=[llm])


# ---- the threshold is the chain's --------------------------------------------------------------------------------


def test_the_threshold_is_chosen_for_the_chain_and_the_chain_passes_the_gate(tiers, small_store, tmp_path):
    a, b, a_path, b_path = tiers
    chain = b.spec.metrics["chain"]
    assert chain["tiers"] == [a.spec.id, b.spec.id]
    assert b.spec.params["dev_threshold"] == chain["dev_threshold"]
    # Alone on the rows a declines, b would have to be right 95% of the time there and would answer far fewer;
    # in the chain, a's near-perfect answers leave room for b's.
    assert chain["dev_threshold"] < chain["dev_threshold_alone"]
    assert chain["predicted_gate_lower_bound"] >= 0.95 and chain["coverage"] > a.spec.metrics["coverage"]
    result = CliRunner().invoke(app, ["gate", str(a_path), str(b_path), str(small_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"] and summary["tier_answered"][1] > 0


def test_choose_threshold_with_no_earlier_tiers_is_unchanged_and_shares_the_budget_with_them():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 400)
    agrees = rng.uniform(0, 1, 400) < confidence
    alone = classifier.choose_threshold(confidence, agrees, 0.95, 400)
    assert alone.value == classifier.choose_threshold(confidence, agrees, 0.95, 400, (0, 0)).value
    # Earlier tiers that agree on 3,000 of 3,000 rows: the chain can afford this tier's errors.
    generous = classifier.choose_threshold(confidence, agrees, 0.95, 400, (3000, 3000))
    assert generous.value < alone.value and generous.coverage > alone.coverage
    assert generous.agreement == pytest.approx((3000 + _k(confidence, agrees, generous.value)) / 3400)
    # Earlier tiers that already spend the whole budget: this tier declines everything.
    spent = classifier.choose_threshold(confidence, agrees, 0.95, 400, (2700, 3000))
    assert spent.value == classifier.NEVER and spent.coverage == 0 and spent.predicted_gate_bound < 0.95


def _k(confidence, agrees, threshold):
    answered = confidence >= threshold
    return int((answered & agrees).sum() + (~answered).sum())


def test_the_cli_builds_the_next_tier_on_a_split_not_its_seed(tiers, small_store, tmp_path):
    a, b, a_path, _ = tiers
    out = tmp_path / "b.student"
    result = CliRunner().invoke(app, ["build-student", str(small_store), "-o", str(out), "--after", str(a_path),
                                      "--seed", "7", "--embeddings", "off", "--format", "json"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["spec"]
    assert spec["split"] == a.spec.split and spec["id"] == b.spec.id  # the seed gave way to a's split
    assert "Note: --after: the split is" in result.output
    assert f"Chain {a.spec.id} > {b.spec.id}: learned from the {b.spec.built_from['train']} of" in result.output


def test_a_third_tier_learns_what_both_earlier_tiers_decline(tmp_path):
    rows = make_rows(110, 600)
    store = write_store(tmp_path / "runs", rows)
    train = [r for r in rows if not r.held_out]
    first_declines = {r.text for i, r in enumerate(train) if i % 3 != 0}  # 400
    second_declines = {t for i, t in enumerate(sorted(first_declines)) if i % 3 != 0}  # about 266
    a = write_scripted(tmp_path / "a.student", {r.text: "decline" if r.text in first_declines else f"answer:{r.output}"
                                                for r in train}, id="tier-a")
    b = write_scripted(tmp_path / "b.student", {r.text: "decline" if r.text in second_declines else f"answer:{r.output}"
                                                for r in train}, id="tier-b")
    result = build_student(store, tmp_path / "c.student", kind="cache", after=[a, b])
    after = result.spec.built_from["after"]
    assert [t["id"] for t in after["tiers"]] == ["tier-a", "tier-b"]
    assert after["answered"] == [200, 400 - len(second_declines)] and after["declined"] == len(second_declines)
    table = pq.read_table(tmp_path / "c.student")
    assert set(table["input_hash"].to_pylist()) == {canonical.input_hash(request_for(t)) for t in second_declines}


def test_too_few_calls_left_for_a_next_tier(tiers, small_store, tmp_path):
    _, _, a_path, b_path = tiers
    result = CliRunner().invoke(app, ["build-student", str(small_store), "-o", str(tmp_path / "c.student"),
                                      "--after", str(a_path), "--after", str(b_path), "--embeddings", "off"])
    assert result.exit_code == 5 and "collecting (" in result.output and not (tmp_path / "c.student").exists()
