"""`distill gate` from the command line: exit statuses, error text, --format, JUnit, GitHub Actions."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from gate_support import TASK, make_rows, request_for, script_for, spec, write_scripted, write_store
from typer.testing import CliRunner

from distill_cli import canonical
from distill_cli.cli import app
from distill_cli.console.gate import MAX_ANNOTATIONS, escape_data, escape_property
from distill_cli.serving import read_summary
from distill_cli.students import cache
from distill_cli.students.base import write_student_file

runner = CliRunner()


@pytest.fixture
def rows():
    return make_rows(150, 100)


@pytest.fixture
def runs(tmp_path, rows):
    return write_store(tmp_path / "runs", rows)


def student(tmp_path, rows, **script):
    return str(write_scripted(tmp_path / "s.student", script_for(rows, **script)))


def gate(*args, env=None):
    return runner.invoke(app, ["gate", *map(str, args)], env=env)


def test_pass_exits_0_and_json_is_the_summary(tmp_path, rows, runs):
    result = gate(student(tmp_path, rows), runs, "--format", "json", "--judge", "normalized")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"] is True and summary["n"] == 150 and summary["decision"] == "distilled"
    assert summary["schema"] == "gate-summary/1"


def test_fail_exits_1_with_the_table(tmp_path, rows, runs):
    result = gate(student(tmp_path, rows, disagree=20), runs)
    assert result.exit_code == 1
    assert f"distill gate: scripted-student (scripted) on {TASK}: FAILED" in result.stdout
    assert "fallback_teacher: agreement 86.7%" in result.stdout
    assert "worst disagreements (5 of 20)" in result.stdout


def test_too_few_examples_exits_5(tmp_path, rows, runs):
    result = gate(student(tmp_path, rows), runs, "--min-examples", "500", "--format", "json")
    assert result.exit_code == 5
    assert json.loads(result.stdout)["reason"] == "collecting (150/500)"


def test_no_held_out_rows_exits_5(tmp_path):
    rows = make_rows(0, 3)
    runs = write_store(tmp_path / "runs", rows)
    result = gate(student(tmp_path, rows), runs)
    assert result.exit_code == 5
    assert result.stderr.startswith(f"Error: {runs}: none of the 3 teacher calls of task '{TASK}' is in the held-out 20%")


def test_a_leak_exits_3_naming_it(tmp_path):
    rows = make_rows(0, 60)
    runs = write_store(tmp_path / "runs", rows)
    result = gate(student(tmp_path, rows), runs)
    assert result.exit_code == 3
    assert result.stderr == (
        f"Error: {runs}: all 60 teacher calls of task '{TASK}' are training rows of student scripted-student "
        "(its split holds out 20%, so this is no accident); gate never scores a student on its training rows: "
        "give it a store with calls it was not built from\n"
    )


def test_input_errors_exit_3(tmp_path, rows, runs):
    result = gate(tmp_path / "nope.student", runs)
    assert result.exit_code == 3 and result.stderr == f"Error: {tmp_path / 'nope.student'}: no such file\n"
    s = student(tmp_path, rows)
    result = gate(s, s)
    assert result.exit_code == 3 and result.stderr == "Error: s.student is a student file; gate needs an example store\n"


def test_bad_flags_are_usage_errors(tmp_path, rows, runs):
    s = student(tmp_path, rows)
    assert gate(s, runs, "--max-spend", "0").exit_code == 2
    assert gate(s, runs, "--concurrency", "0").exit_code == 2
    assert gate(s, runs, "--min-agreement", "2").exit_code == 2
    assert gate(s, runs, "--judge", "vibes").exit_code == 2


def test_junit_has_a_testcase_per_example(tmp_path, rows, runs):
    script = script_for(rows, disagree=7, decline=3)
    held = [r for r in rows if r.held_out]
    script[held[-1].text] = "error"
    script[held[-2].text] = "crash"
    s = write_scripted(tmp_path / "s.student", script)
    junit = tmp_path / "reports" / "gate.xml"
    result = gate(s, runs, "--junit", junit, "--verdicts", tmp_path / "gate.parquet", "--min-agreement", "0.85")
    assert result.exit_code == 0, result.output  # 141/150 agree end to end
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    examples = suites[f"distill gate: {TASK}"]
    cases = examples.findall("testcase")
    assert len(cases) == 150 == int(examples.get("tests"))
    failures = [c for c in cases if c.find("failure") is not None]
    errors = [c for c in cases if c.find("error") is not None]
    assert len(failures) == 7 == int(examples.get("failures"))
    assert len(errors) == 2 == int(examples.get("errors"))
    assert {c.find("error").get("type") for c in errors} == {"student_error"}
    assert failures[0].find("failure").get("type") == "disagreement" and "teacher: label_" in failures[0].find("failure").text
    assert {c.get("name") for c in cases} == {r.id for r in held}
    summary_case = suites["distill gate summary"].find("testcase")
    assert summary_case.find("failure") is None
    assert read_summary(tmp_path / "gate.parquet")["n"] == 150


def test_junit_marks_a_failed_gate(tmp_path, rows, runs):
    junit = tmp_path / "gate.xml"
    assert gate(student(tmp_path, rows, disagree=30), runs, "--junit", junit).exit_code == 1
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "31"
    summary = [s for s in root.iter("testsuite") if s.get("name") == "distill gate summary"][0]
    assert summary.find("testcase/failure").get("type") == "fallback_teacher"


def test_junit_survives_characters_xml_cannot_carry(tmp_path):
    rows = make_rows(100, 0, label=lambda i: "bell\x07and\x1bescape <&> \"q\"")
    runs = write_store(tmp_path / "runs", rows)
    s = write_scripted(tmp_path / "s.student", {r.text: "answer:other\x00" for r in rows})
    junit = tmp_path / "gate.xml"
    assert gate(s, runs, "--junit", junit, "--judge", "exact").exit_code == 1
    failure = ET.parse(junit).getroot().find(".//failure")
    assert "bell\ufffdand\ufffdescape <&> \"q\"" in failure.text


def test_markdown_for_a_pr_comment(tmp_path, rows, runs):
    result = gate(student(tmp_path, rows, disagree=20), runs, "--format", "markdown")
    assert result.exit_code == 1
    md = result.stdout
    assert md.startswith(f"### \u274c distill gate failed: `scripted-student` on `{TASK}`\n")
    assert "| agreement | 86.7% end to end" in md and "<details><summary>Worst disagreements (10 of 20)</summary>" in md
    assert md.count("| label_") == 10


def test_github_step_summary_and_annotations(tmp_path, rows, runs):
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary)}
    result = gate(student(tmp_path, rows, disagree=20), runs, "--format", "json", env=env)
    assert result.exit_code == 1
    json.loads(result.stdout)  # annotations never mix into the data on stdout
    text = step_summary.read_text()
    assert text.startswith("earlier step\n### \u274c distill gate failed")
    commands = [line for line in result.stderr.splitlines() if line.startswith("::")]
    assert len(commands) == MAX_ANNOTATIONS and all(c.startswith("::error title=") for c in commands)
    assert commands[0].startswith("::error title=distill gate failed%3A scripted-student::fallback_teacher: agreement")
    assert all("\n" not in c and "%0A" in c for c in commands[1:])


def test_a_passing_gate_warns_instead_of_erroring(tmp_path, rows, runs):
    env = {"GITHUB_ACTIONS": "true"}
    result = gate(student(tmp_path, rows, disagree=1), runs, env=env)
    assert result.exit_code == 0
    commands = [line for line in result.stderr.splitlines() if line.startswith("::")]
    assert len(commands) == 1 and commands[0].startswith("::warning title=")


def test_an_error_reaches_github_too(tmp_path, rows):
    step_summary = tmp_path / "step_summary.md"
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary)}
    result = gate(student(tmp_path, rows), empty, env=env)
    assert result.exit_code == 5
    assert f"::error title=distill gate::{empty}: no calls recorded yet; nothing to gate" in result.stderr
    assert "distill gate could not run (exit 5)" in step_summary.read_text()


def test_workflow_command_escaping():
    assert escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert escape_property("a: b, c%") == "a%3A b%2C c%25"


def test_the_installed_command_runs_it(tmp_path, rows, runs):
    # A cache of the training rows: it has seen no held-out input, declines them all, and so changes nothing.
    answers = {canonical.input_hash(request_for(r.text)): r.output for r in rows if not r.held_out}
    s = write_student_file(tmp_path / "c.student", spec("cache"), cache.rows_for(answers))
    done = subprocess.run([sys.executable, "-m", "distill_cli", "gate", str(s), str(runs), "--format", "json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["passed"] is True and summary["coverage"] == 0.0 and summary["decision"] == "no_change"
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


def test_prices_reprice_the_teacher_calls_from_their_usage(tmp_path, rows):
    # Recorded from a model the packaged table does not know: cost null. --prices names its price.
    runs = write_store(tmp_path / "runs", rows, cost=None, model="acme-teacher-1", input_tokens=1000, output_tokens=10)
    s = student(tmp_path, rows, decline=15)
    unknown = json.loads(gate(s, runs, "--format", "json").stdout)
    assert unknown["teacher_cost_per_call"] is None and unknown["cost_reduction"] is None
    assert unknown["teacher_cost_unknown"] == 150 and "cost reduction unknown" in unknown["reason"]
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({"models": {"acme-teacher-1": {"provider": "anthropic", "effective": "2025-01-01",
                                                                     "input": 2.0, "output": 10.0}}}))
    result = gate(s, runs, "--prices", price_file, "--format", "json")
    repriced = json.loads(result.stdout)
    assert repriced["teacher_cost_per_call"] == pytest.approx((1000 * 2.0 + 10 * 10.0) / 1e6)
    assert repriced["teacher_cost_unknown"] == 0
    assert repriced["cost_reduction"] == pytest.approx(10.0)  # 90% coverage, a free student
    assert repriced["reason"] == "10.0x cheaper at 90% coverage"
