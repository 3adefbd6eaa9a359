"""What the commands print when stdout is not a terminal (a pipe, a CI log): wide, headers whole, COLUMNS obeyed."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest
from drift_support import STUDENT_ID
from gate_support import TASK, make_rows, script_for, write_scripted
from gate_support import write_store as write_gate_store
from test_report import call
from test_report import write_store as write_report_store
from typer.testing import CliRunner

from distill_cli.cli import app
from distill_cli.console.common import PIPE_WIDTH

runner = CliRunner()
LONG_TASK = "support-ticket-triage-for-enterprise-accounts"
HEADERS = ("task", "calls", "student", "fallback", "teacher", "tokens in", "out", "spend", "teacher-only", "saved")


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def dear_store(tmp_path):
    """Two long-named tasks with large token counts and costs: the Tasks table is wider than 100 columns."""
    rows = []
    for i in range(40):
        rows.append(call(LONG_TASK, i=i, input_tokens=2_500_000, output_tokens=400_000, cost=13.5 + i))
        rows.append(call(LONG_TASK, served_by="student", i=100 + i))
        rows.append(call("invoice-field-extraction", i=200 + i, input_tokens=1_900_000, output_tokens=90_000, cost=7.25))
        rows.append(call("invoice-field-extraction", served_by="fallback", i=300 + i, input_tokens=1_900_000,
                         output_tokens=90_000, cost=7.25))
    return write_report_store(tmp_path / "dear", rows)


def tasks_header(output: str) -> str:
    lines = output.splitlines()
    return lines[lines.index(next(line for line in lines if line.startswith("Tasks"))) + 1]


def test_a_long_gate_header_stays_on_one_line(tmp_path):
    rows = make_rows(150, 100)
    runs = write_gate_store(tmp_path / "runs", rows)
    student_id = "scripted-" + "very-long-student-name-" * 8  # the header is longer than PIPE_WIDTH
    path = write_scripted(tmp_path / "s.student", script_for(rows), id=student_id)
    header = f"distill gate: {student_id} (scripted) on {TASK}: PASSED"
    assert len(header) > PIPE_WIDTH
    for env in ({}, {"COLUMNS": "60"}):
        result = runner.invoke(app, ["gate", str(path), str(runs), "--judge", "normalized"], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0] == header


def test_drift_header_stays_on_one_line_at_60_columns(site, queries):
    rng = random.Random(1)
    now = site.day(rng.sample(queries[0], 120), 0, rng)
    result = runner.invoke(app, ["drift", str(site.student), *map(str, site.stores), "--now", now.isoformat()],
                           env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"distill drift: {STUDENT_ID} (cache) on support-intent: OK"
    assert max(len(line) for line in lines[1:]) <= 60


def test_report_column_headers_are_whole_words_when_piped(dear_store):
    result = runner.invoke(app, ["report", str(dear_store)])
    assert result.exit_code == 0, result.output
    header = tasks_header(result.stdout)
    assert re.split(r"\s{2,}", header.strip()) == list(HEADERS)
    assert 100 < len(header.rstrip()) and max(len(line) for line in result.stdout.splitlines()) <= len(header)


def test_report_in_a_process_with_a_pipe_for_stdout(dear_store):
    """The real process, stdout a pipe: as wide as the Tasks table needs, not rich's 80 (nor the report's 100)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "distill_cli", "report", str(dear_store)], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert re.split(r"\s{2,}", tasks_header(out).strip()) == list(HEADERS)


def test_report_obeys_columns(dear_store):
    result = runner.invoke(app, ["report", str(dear_store)], env={"COLUMNS": "90"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 90
