"""Outputs never destroy inputs: every command that writes refuses a file of another kind and any path inside a store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gate_support import make_rows, script_for, write_scripted, write_store
from typer.testing import CliRunner

from distill_cli import files
from distill_cli.cli import app
from distill_cli.errors import InputError
from distill_cli.files import check_output, write_atomically
from distill_cli.gate import run_gate

runner = CliRunner()


@pytest.fixture
def rows():
    return make_rows(30, 120)


@pytest.fixture
def runs(tmp_path, rows):
    return write_store(tmp_path / "runs", rows)


def part_of(store: Path) -> Path:
    return next(store.glob("date=*/part-*.parquet"))


def snapshot(path: Path) -> bytes:
    return path.read_bytes()


def run(*args):
    return runner.invoke(app, [*map(str, args)])


# ---- the shared check ------------------------------------------------------------------------------------------------


def test_a_store_part_is_never_an_output(runs):
    part = part_of(runs)
    with pytest.raises(InputError) as e:
        check_output(part, "student", "build-student")
    assert str(e.value) == f"{part}: is inside the example store {runs}; build-student never writes into a store"
    with pytest.raises(InputError, match="is inside the example store"):
        check_output(runs / "intent.student", "student", "build-student")  # a new file there too
    with pytest.raises(InputError, match="is inside the example store"):
        check_output(runs / "_journal" / "x.parquet", "verdicts", "gate")


def test_a_store_with_no_journal_is_recognised_by_its_partitions(tmp_path, runs):
    (runs / "_journal").rmdir()
    with pytest.raises(InputError, match="is inside the example store"):
        check_output(part_of(runs).parent / "gate.parquet", "verdicts", "gate")


def test_a_symlink_into_a_store_is_followed(tmp_path, runs):
    link = tmp_path / "innocent.student"
    link.symlink_to(part_of(runs))
    with pytest.raises(InputError, match=f"is inside the example store {runs}"):
        check_output(link, "student", "build-student")


def test_files_of_another_kind_are_refused_and_named(tmp_path, runs, rows):
    con_rows = pq.read_table(part_of(runs))
    single = tmp_path / "calls.parquet"  # a single-file store
    pq.write_table(con_rows, single)
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    verdicts = tmp_path / "gate.parquet"
    run_gate(student, runs, verdicts=verdicts, judge="normalized", min_examples=10)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    plain = tmp_path / "plain.parquet"
    pq.write_table(con_rows.replace_schema_metadata(None), plain)
    cases = [
        (single, "student", "build-student", "exists and is an example store, not a student file; build-student will not overwrite it"),
        (verdicts, "student", "build-student", "exists and is a verdicts file, not a student file; build-student will not overwrite it"),
        (student, "verdicts", "gate", "exists and is a student file, not a verdicts file; gate will not overwrite it"),
        (student, "drift", "drift --log", "exists and is a student file, not a drift log; drift --log will not overwrite it"),
        (verdicts, "junit", "gate --junit", "exists and is a verdicts file, not a JUnit XML report; gate --junit will not overwrite it"),
        (notes, "student", "build-student", "exists and is not a student file; build-student will not overwrite it"),
        (notes, "export", "build-student --export", "exists and is not a fine-tuning data file (JSONL); build-student --export will not overwrite it"),
        (plain, "verdicts", "gate", "exists and is a Parquet file distill did not write, not a verdicts file; gate will not overwrite it"),
    ]
    for path, kind, who, message in cases:
        before = snapshot(path)
        with pytest.raises(InputError) as e:
            check_output(path, kind, who)
        assert str(e.value) == f"{path}: {message}"
        assert snapshot(path) == before


def test_its_own_kind_an_empty_file_or_a_new_name_may_be_written(tmp_path, rows, runs):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    assert check_output(student, "student", "build-student") == student
    verdicts = tmp_path / "gate.parquet"
    run_gate(student, runs, verdicts=verdicts, judge="normalized", min_examples=10)
    check_output(verdicts, "verdicts", "gate")
    export = tmp_path / "train.jsonl"
    export.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}], "completion": []}) + "\n")
    check_output(export, "export", "build-student --export")
    export.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    check_output(export, "export", "build-student --export")
    junit = tmp_path / "gate.xml"
    junit.write_text('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="distill gate"></testsuites>\n')
    check_output(junit, "junit", "gate --junit")
    empty = tmp_path / "empty.student"
    empty.touch()
    check_output(empty, "student", "build-student")
    check_output(tmp_path / "new" / "dir" / "x.student", "student", "build-student")


def test_directories_and_devices_are_refused(tmp_path):
    with pytest.raises(InputError) as e:
        check_output(tmp_path, "verdicts", "gate")
    assert str(e.value) == f"{tmp_path}: is a directory; gate needs a file name for a verdicts file"
    with pytest.raises(InputError) as e:
        check_output("/dev/null", "export", "build-student --export")
    assert str(e.value) == "/dev/null: exists and is not a regular file; build-student --export will not overwrite it"


def test_a_recorded_calls_jsonl_is_not_an_export(tmp_path):
    calls = tmp_path / "calls.jsonl"
    calls.write_text(json.dumps({"request": {"model": "m", "messages": []}, "response": {"content": []}}) + "\n")
    with pytest.raises(InputError, match="exists and is not a fine-tuning data file"):
        check_output(calls, "export", "build-student --export")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.student"
    path.write_bytes(b"old")

    def half(f):
        f.write(b"new but ")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(path, half)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.student"]


# ---- every command that writes ---------------------------------------------------------------------------------------


def test_build_student_never_replaces_a_store_part(runs):
    part = part_of(runs)
    before, n = snapshot(part), pq.read_metadata(part).num_rows
    result = run("build-student", runs, "-o", part, "--kind", "cache")
    assert result.exit_code == 3
    assert result.stderr == f"Error: {part}: is inside the example store {runs}; build-student never writes into a store\n"
    assert snapshot(part) == before and n == 150


def test_build_student_never_replaces_a_verdicts_or_text_file(tmp_path, runs, rows):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    verdicts = tmp_path / "gate.parquet"
    run_gate(student, runs, verdicts=verdicts, judge="normalized", min_examples=10)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for path, what in [(verdicts, "is a verdicts file, not a student file"), (notes, "is not a student file")]:
        before = snapshot(path)
        result = run("build-student", runs, "-o", path, "--kind", "cache")
        assert result.exit_code == 3
        assert result.stderr == f"Error: {path}: exists and {what}; build-student will not overwrite it\n"
        assert snapshot(path) == before
    out = tmp_path / "c.student"
    assert run("build-student", runs, "-o", out, "--kind", "cache").exit_code == 0
    assert run("build-student", runs, "-o", out, "--kind", "cache").exit_code == 0  # its own kind is replaced


def test_export_never_replaces_another_file(tmp_path, runs, rows):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for path, what in [(student, "is a student file, not a fine-tuning data file (JSONL)"),
                       (notes, "is not a fine-tuning data file (JSONL)")]:
        before = snapshot(path)
        result = run("build-student", runs, "--export", "openai", "-o", path)
        assert result.exit_code == 3
        assert result.stderr == f"Error: {path}: exists and {what}; build-student --export will not overwrite it\n"
        assert snapshot(path) == before
    result = run("build-student", runs, "--export", "openai", "-o", runs / "train.jsonl")
    assert result.exit_code == 3 and "is inside the example store" in result.stderr
    out = tmp_path / "train.jsonl"
    assert run("build-student", runs, "--export", "openai", "-o", out).exit_code == 0
    assert run("build-student", runs, "--export", "hf", "-o", out).exit_code == 0


def test_gate_checks_verdicts_and_junit_before_it_runs(tmp_path, runs, rows, monkeypatch):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    before = snapshot(student)
    asked = []
    monkeypatch.setattr("distill_cli.console.gate.run_gate", lambda *a, **k: asked.append(a))
    result = run("gate", student, runs, "--junit", student)
    assert result.exit_code == 3 and not asked
    assert result.stderr == (f"Error: {student}: exists and is a student file, not a JUnit XML report; "
                             "gate --junit will not overwrite it\n")
    result = run("gate", student, runs, "--junit", runs / "gate.xml")
    assert result.exit_code == 3 and not asked and "is inside the example store" in result.stderr
    same = tmp_path / "gate.out"
    result = run("gate", student, runs, "--junit", same, "--verdicts", same)
    assert result.exit_code == 3 and not asked
    assert result.stderr == f"Error: {same}: named by both --verdicts and --junit; give each its own file\n"
    assert snapshot(student) == before


def test_gate_never_writes_verdicts_into_a_store(tmp_path, runs, rows):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    result = run("gate", student, runs, "--verdicts", runs / "gate.parquet", "--min-examples", "10", "--judge", "normalized")
    assert result.exit_code == 3
    assert result.stderr == f"Error: {runs / 'gate.parquet'}: is inside the example store {runs}; gate never writes into a store\n"
    assert not (runs / "gate.parquet").exists()


def test_drift_never_writes_its_log_into_a_store(site):
    log = Path(site.traffic) / "drift.parquet"
    with pytest.raises(InputError) as e:
        from distill_cli.drift import run_drift

        run_drift(site.student, site.stores, log=log)
    assert str(e.value) == f"{log}: is inside the example store {site.traffic}; drift --log never writes into a store"
    assert not log.exists()


def test_a_first_line_too_long_to_read_is_not_an_export(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (files._FIRST_LINE + 10))
    with pytest.raises(InputError, match="exists and is not a fine-tuning data file"):
        check_output(big, "export", "build-student --export")


def test_gate_replaces_its_own_verdicts_and_junit_files(tmp_path, runs, rows):
    student = write_scripted(tmp_path / "s.student", script_for(rows))
    args = ("gate", student, runs, "--min-examples", "10", "--judge", "normalized",
            "--verdicts", tmp_path / "gate.parquet", "--junit", tmp_path / "gate.xml")
    first = run(*args)
    assert first.exit_code == 1, first.output  # too few examples to pass; both files are written
    second = run(*args)
    assert second.exit_code == 1, second.output
    assert files.file_kind(tmp_path / "gate.xml") == "junit" and files.file_kind(tmp_path / "gate.parquet") == "verdicts"
