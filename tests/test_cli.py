"""What every command shares: help with examples, --version, --debug, usage errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from distill_cli import __version__
from distill_cli.cli import app

runner = CliRunner()


def test_every_command_has_an_example_in_its_help():
    group = typer.main.get_command(app)
    assert "record" in group.commands
    for name, command in group.commands.items():
        assert "Example:" in (command.help or ""), f"{name} --help has no Example: block"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_has_an_example_an_exit_line_and_plain_metavars(name):
    """What `distill CMD --help` prints: rich markup must not eat `[embeddings]`, and no `<str>` or `<list[...]>`."""
    command = typer.main.get_command(app).commands[name]
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Example:" in out
    assert re.search(r"^\s*Exit: \S", out, re.M), f"{name} --help has no Exit: line"
    assert "<str>" not in out and "<list[" not in out, f"{name} --help shows a type where a metavar belongs"
    sources = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
    if any("[embeddings]" in text.replace("\\[", "[") for text in sources):
        assert "[embeddings]" in out, f"{name} --help lost [embeddings] to rich markup"


def test_build_student_help_names_the_embeddings_extra():
    out = runner.invoke(app, ["build-student", "--help"], env={"COLUMNS": "200"}).output
    assert "(the [embeddings] extra" in out


def test_gate_and_drift_offer_the_same_judges():
    choice = "<auto|exact|normalized|json|numeric|llm>"
    for name in ("gate", "drift"):
        assert choice in runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_bad_flag_is_a_usage_error():
    result = runner.invoke(app, ["record", "--no-such-flag"])
    assert result.exit_code == 2


def test_debug_shows_traceback_only_when_asked(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    args = [sys.executable, "-m", "distill_cli", "record", "--store", str(tmp_path / "s"), "--import", missing]
    plain = subprocess.run(args, capture_output=True, text=True)
    assert plain.returncode == 3 and plain.stderr == f"Error: {missing}: no such file\n"
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True)
    assert debug.returncode == 3 and "Traceback" in debug.stderr and debug.stderr.endswith(f"Error: {missing}: no such file\n")


def test_a_full_disk_is_one_line_and_exit_3(tmp_path, monkeypatch):
    import errno
    import os as _os

    from distill_cli import files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, _os.strerror(errno.ENOSPC), str(tmp_path / "s.student"))

    monkeypatch.setattr(files, "write_atomically", full)
    monkeypatch.setattr("distill_cli.students.base.write_atomically", full)
    from distill_cli import store

    store.append_rows(tmp_path / "st", [store.complete_row({"task": "t", "input": f"q{i}", "output": f"a{i % 3}",
                                                             "served_by": "teacher", "status": 200}) for i in range(300)])
    result = runner.invoke(app, ["build-student", str(tmp_path / "st"), "-o", str(tmp_path / "s.student"), "--kind", "cache"])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {tmp_path / 's.student'}: No space left on device\n"
