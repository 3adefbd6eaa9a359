"""What every command shares: the error boundary, consoles, output formats, shared options, rendering pieces.

`record` imports this module: it must never import the analytics (gate, drift, judges, report).
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from enum import Enum
from pathlib import Path

import click
import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from distill_cli.errors import DistillError, ExitStatus

DEBUG_ENV = "DISTILL_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class DistillGroup(TyperGroup):
    """Turns a DistillError from any command into `Error: ...` on stderr and its exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DistillError as e:
            if debug_enabled():
                traceback.print_exc()
            click.echo(f"Error: {e}", err=True)
            raise typer.Exit(int(e.exit_status)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except OSError as e:
            # A full disk or an unwritable path: name it; never a traceback, never exit 1 (a failed check).
            if debug_enabled():
                traceback.print_exc()
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"Error: {where}{e.strerror or e}", err=True)
            raise typer.Exit(int(ExitStatus.INPUT)) from None
        except Exception as e:  # a bug: still one line, and an exit status no check uses
            if type(e).__module__.startswith(("typer", "click")):
                raise  # the framework's own exits and usage errors
            if debug_enabled():
                traceback.print_exc()
            click.echo(f"Error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback", err=True)
            raise typer.Exit(int(ExitStatus.INTERNAL)) from None


class DistillCommand(TyperCommand):
    """A command whose help gives a repeated argument no `<list[str]>` type: its name (`stores...`) says it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument" and param.nargs != 1:
                param.display_type_rich = _no_type  # typer's hook for the help's type column


def _no_type(ctx: click.Context) -> None:
    return None


# Columns of output that is not a terminal (a pipe, a file, a CI log) when COLUMNS is not set: rich's own
# default, 80, splits headers mid-sentence and table headers inside words, and a log viewer scrolls anyway.
PIPE_WIDTH = 160


def output_width(stream, pipe_width: int = PIPE_WIDTH) -> int | None:
    """The width to render for `stream`: None (rich's choice) on a terminal or with COLUMNS set, else `pipe_width`."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return None  # rich reads COLUMNS itself
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):  # a closed or unusual stream
        pass
    return pipe_width


def stderr_console() -> Console:
    """Messages and progress: stderr, colour off with NO_COLOR or when not a terminal."""
    return Console(stderr=True, no_color="NO_COLOR" in os.environ or None, highlight=False, soft_wrap=True,
                   width=output_width(sys.stderr))


def stdout_console(width: int | None = None, pipe_width: int = PIPE_WIDTH) -> Console:
    """Data: stdout, `width` columns if given, else the terminal's, COLUMNS, or `pipe_width` when not a terminal."""
    return Console(no_color="NO_COLOR" in os.environ or None, highlight=False,
                   width=width if width is not None else output_width(sys.stdout, pipe_width))


def progress_enabled() -> bool:
    return sys.stderr.isatty()


class ProgressBar:
    """A rich progress bar on stderr labelled `label`: done of total, dollars spent, time; gone when it ends.

    Its `update(done, total, spent)` is the `progress` callback of `run_gate` and `run_drift`.
    """

    def __init__(self, console: Console, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.label = label
        self.progress = Progress(
            TextColumn(label, markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[spent]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, done: int, total: int, spent: float) -> None:
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=total, spent="")
        self.progress.update(self.task, completed=done, spent=f"${spent:.4f}" if spent else "")


def print_json(obj) -> None:
    """A library result object on stdout as JSON."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


class Format(str, Enum):
    table = "table"
    json = "json"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class GateFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def finite(value: float | None) -> float | None:
    """Callback of every float option: NaN and infinity are usage errors (click's min/max let NaN through)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def positive(value: float | None) -> float | None:
    """Callback of a float option that must be a finite number above 0 (a spend cap)."""
    if finite(value) is not None and value <= 0:
        raise typer.BadParameter("must be more than 0")
    return value


PricesOption = typer.Option(
    None, "--prices", help="JSON price table that overrides or extends the packaged one.", dir_okay=False
)


def load_price_table(path: Path | None):
    """The price table, with any --prices override; warnings for unknown models are the caller's."""
    from distill_cli.prices import load_prices

    return load_prices(path)


def warn_unknown_models(console: Console, prices) -> None:
    for model in sorted(prices.unknown):
        console.print(f"Warning: no price known for model {model!r}; its calls have cost null (not 0). Add it with --prices.")


AllowEndpointOption = typer.Option(
    [], "--allow-endpoint", metavar="URL",
    help="Let an LLM student call this endpoint (repeatable). Without it a student file may only name a provider's "
    "API host, one in DISTILL_ALLOWED_ENDPOINTS, or a loopback address it sends no key to.",
)


def endpoint_line(student) -> str | None:
    """`Student X calls URL (key from VAR)` for a student that calls out; None for a local one."""
    if student.endpoint is None:
        return None
    key = getattr(student, "key_env", None)
    return f"Student {student.id} calls {student.endpoint}" + (f" (key from {key})" if key else "")


# ---- rendering pieces ------------------------------------------------------------------------------------------


def cut(text: str | None, limit: int) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters with an ellipsis."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"



# ---- GitHub Actions --------------------------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF escaped (GitHub's rules)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, plus : and ,."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def split_students(students: list, rest: list[str]) -> tuple[list, list[str]]:
    """Student files given before the stores (`gate a.student b.student STORE`): (students, stores)."""
    from distill_cli import schemas

    students, rest = list(students), list(rest)
    # The last argument is always a store: given a student file there, the store check names the mistake.
    while len(rest) > 1 and Path(rest[0]).is_file():
        try:
            kind = schemas.read_kind(Path(rest[0]))
        except DistillError:
            break
        if not (kind or "").startswith("student/"):
            break
        students.append(Path(rest.pop(0)))
    return students, rest

