"""Chains: several students of one task, asked in order, certified and served as a whole."""

from __future__ import annotations

import pytest
from gate_support import make_rows, write_scripted, write_store
from typer.testing import CliRunner

from distill_cli.cli import app
from distill_cli.errors import InputError
from distill_cli.gate import run_gate
from distill_cli.recorder.router import load_routes
from distill_cli.serving import read_summary
from distill_cli.students.registry import load_chain


@pytest.fixture
def rows():
    return make_rows(200, 120)


@pytest.fixture
def runs(tmp_path, rows):
    return write_store(tmp_path / "runs", rows)


def script(rows, action) -> dict:
    """A script over the held-out rows: `action(i, row)` says what the student does with the i-th."""
    held = [r for r in rows if r.held_out]
    out = {r.text: action(i, r) for i, r in enumerate(held)}
    out.update({r.text: "crash" for r in rows if not r.held_out})  # scoring a training row would show
    return out


def first_tier(tmp_path, rows, action, **spec):
    return write_scripted(tmp_path / "a.student", script(rows, action), id="tier-a", **spec)


def second_tier(tmp_path, rows, action, **spec):
    return write_scripted(tmp_path / "b.student", script(rows, action), id="tier-b", **spec)


def right(i, r):
    return f"answer:{r.output}"


def test_a_chain_passes_where_its_first_tier_alone_fails(tmp_path, rows, runs):
    """Tier a fails one call in five (errors count against a lone student); tier b answers those right."""
    a = first_tier(tmp_path, rows, lambda i, r: "error" if i % 5 == 0 else right(i, r))
    b = second_tier(tmp_path, rows, right, params={"cost": 0.0001})
    alone = run_gate(a, runs, judge="normalized")
    assert not alone.passed and alone.errors == 40
    chain = run_gate([a, b], runs, judge="normalized", verdicts=tmp_path / "chain.parquet")
    assert chain.passed and chain.errors == 0 and chain.n == 200
    assert chain.student == "tier-a > tier-b" and chain.tier_answered == [160, 40]
    # Every tier's spend counts: tier b was asked 40 times at $0.0001.
    assert chain.student_cost_per_call == pytest.approx(40 * 0.0001 / 200)
    summary = read_summary(tmp_path / "chain.parquet")
    assert [m["id"] for m in summary["chain"]] == ["tier-a", "tier-b"]
    assert all(m["digest"].startswith("sha256:") for m in summary["chain"])
    assert summary["student_digest"] == load_chain([a, b]).spec.digest


def test_a_chain_fails_where_its_first_tier_alone_passes(tmp_path, rows, runs):
    """Tier a declines what it is unsure of (the teacher answers: fine); tier b answers those wrong."""
    a = first_tier(tmp_path, rows, lambda i, r: "decline" if i % 4 == 0 else right(i, r))
    b = second_tier(tmp_path, rows, lambda i, r: f"answer:wrong_{i}")
    assert run_gate(a, runs, judge="normalized").passed
    chain = run_gate([a, b], runs, judge="normalized")
    assert not chain.passed and chain.disagreements == 50 and chain.tier_answered == [150, 50]


def test_a_chain_that_fails_still_pays_the_tiers_it_asked(tmp_path, rows, runs):
    """Tier a declines every call at a price; tier b fails one in five: those calls still cost tier a's price."""
    a = first_tier(tmp_path, rows, lambda i, r: "decline", params={"cost": 0.0001})
    b = second_tier(tmp_path, rows, lambda i, r: "error" if i % 5 == 0 else right(i, r))
    chain = run_gate([a, b], runs, judge="normalized")
    assert chain.student_errors == 40 and chain.tier_answered == [0, 160]
    assert chain.student_cost_per_call == pytest.approx(0.0001)
    assert chain.student_cost_usd == pytest.approx(200 * 0.0001)


def test_a_chain_is_scored_only_on_calls_no_tier_trained_on(tmp_path, rows, runs):
    a = first_tier(tmp_path, rows, right)
    b = second_tier(tmp_path, rows, right, split={"salt": "another-salt", "holdout": 0.5, "rule": "x"})
    chain = load_chain([a, b])
    summary = run_gate(chain, runs, judge="normalized", min_examples=10)
    assert 0 < summary.n < 200 and all(chain.holds_out(v.example_id) for v in summary.verdicts)


def test_only_the_gated_chain_in_its_order_serves(tmp_path, rows, runs):
    a = first_tier(tmp_path, rows, right)
    b = second_tier(tmp_path, rows, right)
    run_gate(a, runs, judge="normalized", verdicts=tmp_path / "a.verdicts.parquet")
    run_gate([a, b], runs, judge="normalized", verdicts=tmp_path / "chain.parquet")
    [route] = load_routes([a, b], verdicts=[tmp_path / "chain.parquet"])
    assert route.student.id == "tier-a > tier-b" and route.gate.verdicts == str(tmp_path / "chain.parquet")
    with pytest.raises(InputError, match=r"student tier-b > tier-a has no passing gate"):
        load_routes([b, a], verdicts=[tmp_path / "chain.parquet"])
    # A single student's gate does not license a chain, nor a chain's gate a single student.
    with pytest.raises(InputError, match=r"student tier-a > tier-b has no passing gate"):
        load_routes([a, b], verdicts=[tmp_path / "a.verdicts.parquet"])
    with pytest.raises(InputError, match=r"student tier-b has no passing gate"):
        load_routes([b], verdicts=[tmp_path / "chain.parquet"])


def test_a_chain_member_changed_since_the_gate_is_refused(tmp_path, rows, runs):
    a = first_tier(tmp_path, rows, right)
    b = second_tier(tmp_path, rows, right)
    run_gate([a, b], runs, judge="normalized", verdicts=tmp_path / "chain.parquet")
    second_tier(tmp_path, rows, lambda i, r: "answer:always this")  # same id, other content
    with pytest.raises(InputError, match="changed since it was gated"):
        load_routes([a, b], verdicts=[tmp_path / "chain.parquet"])


def test_the_cli_gates_a_chain(tmp_path, rows, runs):
    a = first_tier(tmp_path, rows, lambda i, r: "error" if i % 5 == 0 else right(i, r))
    b = second_tier(tmp_path, rows, right)
    result = CliRunner().invoke(app, ["gate", str(a), str(b), str(runs), "--judge", "normalized",
                                      "--verdicts", str(tmp_path / "chain.parquet"), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert read_summary(tmp_path / "chain.parquet")["student"] == "tier-a > tier-b"


def test_a_provider_error_in_any_tier_stops_the_chains_gate(tmp_path, rows, runs):
    """As for one student (exit 4): a refused key is no per-call disagreement to average away."""
    from distill_cli.errors import ProviderError

    a = first_tier(tmp_path, rows, lambda i, r: "decline" if i == 3 else right(i, r))
    b = second_tier(tmp_path, rows, lambda i, r: "provider")
    with pytest.raises(ProviderError, match="authentication refused"):
        run_gate([a, b], runs, judge="normalized")
