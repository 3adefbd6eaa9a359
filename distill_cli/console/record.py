"""`distill record`: import logs into a store, or record a job's calls through the proxy."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from distill_cli.console.common import (
    Format,
    PricesOption,
    load_price_table,
    print_json,
    stderr_console,
    warn_unknown_models,
)
from distill_cli.errors import InputError


def record(
    store: str = typer.Option(..., "--store", "-s", help="Example store directory to append to (created if missing)."),
    import_file: Path | None = typer.Option(
        None, "--import", help="Import a JSONL log (Messages API / chat completions pairs, or the flat form) instead of running a job."
    ),
    task: str | None = typer.Option(None, "--task", help="Task name for every call (default: per request header or fingerprint)."),
    strict: bool = typer.Option(False, "--strict", help="With --import: any bad line fails the import (exit 3) and writes nothing."),
    prices: Path | None = PricesOption,
    output_format: Format = typer.Option(Format.table, "--format", help="table: a summary on stderr; json: the result on stdout."),
    command: List[str] | None = typer.Argument(None, help="The job to run, after `--`.", show_default=False),
) -> None:
    """Record calls into an example store: import existing logs, or wrap a job.

    Example:

      distill record --store runs/ --import calls.jsonl --task intent

      distill record --store runs/ -- python job.py
    """
    console = stderr_console()
    table = load_price_table(prices)
    if import_file is not None:
        if command:
            raise InputError("give either --import FILE or a command after --, not both")
        from distill_cli.importer import import_jsonl

        result = import_jsonl(store, import_file, prices=table, task=task, strict=strict)
        warn_unknown_models(console, table)
        if output_format == Format.json:
            print_json(result.to_dict())
        for line, problem in result.skipped[:20]:
            console.print(f"{import_file}: line {line}: {problem}", markup=False)
        tasks = ", ".join(f"{t} ({n})" for t, n in result.tasks.most_common())
        console.print(f"Imported {result.imported} calls into {store}: {tasks}", markup=False)
        if result.skipped:
            console.print(f"Skipped {len(result.skipped)} bad lines (use --strict to fail instead).")
        return
    raise InputError("recording a job needs the proxy, which this build does not have yet; use --import FILE")
