"""The `distill` command: registers one module per command from `distill_cli.console`."""

from __future__ import annotations

import os
import sys

import typer

from distill_cli import __version__
from distill_cli.console import build_student, gate, record
from distill_cli.console import drift as drift_command
from distill_cli.console import report as report_command
from distill_cli.console.common import DEBUG_ENV, DistillCommand, DistillGroup

app = typer.Typer(
    cls=DistillGroup,
    name="distill",
    help="Record an expensive model's calls, build a cheaper student, gate it in CI, route to it, watch it drift, "
    "and see what it saved.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (also DISTILL_DEBUG=1)."),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.command(name="record", context_settings={"help_option_names": ["-h", "--help"]}, cls=DistillCommand)(record.record)
app.command(name="gate", context_settings={"help_option_names": ["-h", "--help"]}, cls=DistillCommand)(gate.gate)
app.command(name="build-student", context_settings={"help_option_names": ["-h", "--help"]}, cls=DistillCommand)(build_student.build_student)
app.command(name="report", context_settings={"help_option_names": ["-h", "--help"]}, cls=DistillCommand)(report_command.report)
app.command(name="drift", context_settings={"help_option_names": ["-h", "--help"]}, cls=DistillCommand)(drift_command.drift)


def main() -> None:
    # --debug is accepted after the command name too (`distill gate ... --debug`).
    if "--debug" in sys.argv[2:]:
        sys.argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    app()
