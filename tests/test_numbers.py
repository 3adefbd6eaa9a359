"""Numbers are honest: options and library settings refuse NaN and infinity, and a reduction never reads as 1.0x."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
import typer
from gate_support import make_rows, script_for, write_scripted, write_store
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from distill_cli.cli import app
from distill_cli.economics import format_reduction, reduction_text
from distill_cli.errors import InputError
from distill_cli.gate import decide, run_gate
from distill_cli.prices import load_prices
from distill_cli.report import parse_budget

runner = CliRunner()


def float_options() -> list[tuple[str, str]]:
    """(command, option) for every float option of every command."""
    group = typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):
        for param in command.params:
            if param.param_type_name == "option" and param.type_descriptor.annotation is float:
                found.append((name, param.opts[0]))
    return found


def test_every_command_has_float_options_to_check():
    options = float_options()
    assert {c for c, _ in options} >= {"build-student", "gate", "drift", "record"}
    assert ("gate", "--max-spend") in options and ("drift", "--arl") in options


@pytest.mark.parametrize("command, option", float_options())
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
def test_every_float_option_refuses_nan_and_infinity(command, option, value):
    result = runner.invoke(app, [command, option, value, "a.student", "runs"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr  # a range's message, or the finite check's


def test_gate_max_spend_nan_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["gate", "a.student", "runs", "--max-spend", "nan"])
    assert result.exit_code == 2
    assert "Invalid value for '--max-spend': must be a finite number, not nan" in result.stderr


# ---- the library refuses them too --------------------------------------------------------------------------------------


@pytest.fixture
def gate_inputs(tmp_path):
    rows = make_rows(30, 10)
    return write_scripted(tmp_path / "s.student", script_for(rows)), write_store(tmp_path / "runs", rows)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_gate_refuses_a_spend_cap_that_is_not_finite(gate_inputs, value):
    student, runs = gate_inputs
    with pytest.raises(InputError) as e:
        run_gate(student, runs, max_spend=value)
    assert str(e.value) == f"max_spend must be a finite amount more than 0, not {value}"
    with pytest.raises(InputError, match="min_agreement must be in"):
        run_gate(student, runs, min_agreement=value)
    with pytest.raises(InputError, match="confidence must be in"):
        run_gate(student, runs, confidence=value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_drift_refuses_settings_that_are_not_finite(tmp_path, value):
    from distill_cli.drift import run_drift

    with pytest.raises(InputError) as e:
        run_drift(tmp_path / "s.student", tmp_path / "runs", arl=value)
    assert str(e.value) == f"arl must be a finite number of runs, at least 2, not {value}"
    with pytest.raises(InputError) as e:
        run_drift(tmp_path / "s.student", tmp_path / "runs", max_spend=value)
    assert str(e.value) == f"max_spend must be a finite amount more than 0, not {value}"


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_build_student_refuses_settings_that_are_not_finite(tmp_path, value):
    from distill_cli.students.build import build_student

    with pytest.raises(InputError) as e:
        build_student(tmp_path / "runs", tmp_path / "x.student", max_spend=value)
    assert str(e.value) == f"--max-spend must be a finite non-negative amount in USD, not {value}"
    with pytest.raises(InputError, match="--min-agreement must be between 0 and 1"):
        build_student(tmp_path / "runs", tmp_path / "x.student", min_agreement=value)
    with pytest.raises(InputError, match="--holdout must be between 0 and 1"):
        build_student(tmp_path / "runs", tmp_path / "x.student", holdout=value)
    assert not (tmp_path / "x.student").exists()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_the_router_refuses_timings_that_are_not_finite(value):
    from distill_cli.recorder.router import Router

    with pytest.raises(InputError, match="the student timeout must be a finite number of seconds above 0"):
        Router(student_timeout=value)
    with pytest.raises(InputError, match="the recheck interval must be a finite number of seconds"):
        Router(recheck_seconds=value)
    with pytest.raises(InputError, match="the shadow rate must be between 0 and 1"):
        Router(shadow_rate=value)


def test_a_budget_too_large_to_be_a_number_is_refused():
    with pytest.raises(ValueError, match="expected USD per day or month"):
        parse_budget("9" * 400 + "/day")
    assert parse_budget("50/day").amount == 50.0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400])
def test_a_price_file_with_a_price_that_is_not_finite_is_refused(tmp_path, value):
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"m": {"input": %s, "output": 1}}}' % value, encoding="utf-8")
    with pytest.raises(InputError, match="'input' must be a non-negative number"):
        load_prices(path)


# ---- a reduction reads honestly ----------------------------------------------------------------------------------------


def test_a_reduction_just_above_1_never_reads_1x():
    assert format_reduction(1.015) == "1.02x"
    assert format_reduction(0.96) == "0.96x"
    assert format_reduction(1.0) == "1.0x"
    assert format_reduction(1.0004) == "1.0004x"
    assert format_reduction(14.234) == "14.2x" and format_reduction(math.inf) == "inf" and format_reduction(None) == "unknown"
    _, reason = decide(n=500, min_examples=100, passed=True, agreement=0.99, lower_bound=0.97, min_agreement=0.95,
                       coverage=1.0, cost_reduction=1.015)
    assert reason == "1.02x cheaper at 100% coverage"
    assert reduction_text(1.015) == "1.02x"


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_a_printed_reduction_is_on_the_same_side_of_1_as_the_reduction(value):
    text = format_reduction(value)
    assert text.endswith("x")
    shown = Decimal(text[:-1])
    assert (shown > 1) == (value > 1) and (shown < 1) == (value < 1)
    if abs(value - 1) >= 0.05:
        assert text == f"{value:.1f}x"  # far from 1, one decimal as always


def test_a_gate_passing_at_1_015x_says_1_02x(tmp_path):
    rows = make_rows(120, 10)
    runs = write_store(tmp_path / "runs", rows, cost=0.002)
    # Every held-out call answered, each costing the teacher's 0.002 / 1.015.
    student = write_scripted(tmp_path / "s.student", script_for(rows), params={"cost": 0.002 / 1.015})
    s = run_gate(student, runs, judge="normalized")
    assert s.passed and s.cost_reduction == pytest.approx(1.015)
    assert s.reason == "1.02x cheaper at 100% coverage"
    result = runner.invoke(app, ["gate", str(student), str(runs), "--judge", "normalized"])
    assert result.exit_code == 0, result.output
    assert "1.0x" not in result.output and "1.02x" in result.output
