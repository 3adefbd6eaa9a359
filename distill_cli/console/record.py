"""`distill record`: import logs into a store, or record a job's calls through the proxy."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import List

import typer
from rich import box
from rich.table import Table

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
    ctx: typer.Context,
    store: str = typer.Option(..., "--store", "-s", help="Example store directory to append to (created if missing)."),
    import_file: Path | None = typer.Option(
        None, "--import", help="Import a JSONL log (Messages API / chat completions pairs, or the flat form) instead of running a job."
    ),
    task: str | None = typer.Option(None, "--task", help="Task name for every call (default: per request header or fingerprint)."),
    strict: bool = typer.Option(False, "--strict", help="With --import: any bad line fails the import (exit 3) and writes nothing."),
    prices: Path | None = PricesOption,
    output_format: Format = typer.Option(Format.table, "--format", help="table: a summary on stderr; json: the result on stdout."),
    anthropic_upstream: str | None = typer.Option(
        None, "--anthropic-upstream", metavar="URL",
        help="Where Anthropic calls go, as the SDK's base_url (default: $ANTHROPIC_BASE_URL, else https://api.anthropic.com).",
    ),
    openai_upstream: str | None = typer.Option(
        None, "--openai-upstream", metavar="URL",
        help="Where OpenAI calls go, as the SDK's base_url (default: $OPENAI_BASE_URL, else https://api.openai.com/v1).",
    ),
    redact: List[str] = typer.Option(
        [], "--redact", metavar="REGEX", help="Mask matches with [REDACTED] in every stored text column (repeatable)."
    ),
    serve: bool = typer.Option(False, "--serve", help="Run the proxy until SIGTERM/SIGINT instead of wrapping a job."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 for the proxy (0: a free one)."),
    command: List[str] | None = typer.Argument(None, help="The job to run, after `--`.", show_default=False),
) -> None:
    """Record calls into an example store: wrap a job, serve a proxy, or import existing logs.

    A job runs with ANTHROPIC_BASE_URL and OPENAI_BASE_URL pointing at a proxy on
    127.0.0.1 that passes every call through and writes it to the store;
    `distill record` then exits with the job's own status.

    Example:

      distill record --store runs/ -- python job.py

      distill record --store runs/ --task intent --redact '\\b\\d{16}\\b' -- python job.py

      distill record --store runs/ --serve --port 8787    # prints the export lines for a service

      distill record --store runs/ --import calls.jsonl --task intent
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
    if serve and command:
        ctx.fail("give either --serve or a command after --, not both")
    if not serve and not command:
        ctx.fail("nothing to record: give a command after -- (distill record --store runs/ -- python job.py), --serve, or --import FILE")
    for name, url in (("--anthropic-upstream", anthropic_upstream), ("--openai-upstream", openai_upstream)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint=name)
    from distill_cli import recorder

    try:
        session = recorder.Recorder(
            store,
            prices=table,
            task=task,
            redact=redact,
            anthropic_upstream=anthropic_upstream,
            openai_upstream=openai_upstream,
            port=port,
        )
    except recorder.BadPattern as e:
        raise typer.BadParameter(str(e), param_hint="--redact") from None
    if serve:
        summary = asyncio.run(recorder.serve(session, on_ready=lambda r: _announce(console, r)))
        status = 0
    else:
        status = asyncio.run(recorder.run_job(session, command))
        summary = session.summary
    _print_summary(console, summary, recovery_told=serve)
    warn_unknown_models(console, table)
    if output_format == Format.json:
        print_json(summary.to_dict())
    raise typer.Exit(status)


def _announce(console, session) -> None:
    """--serve: the lines a shell evaluates to point SDKs at the proxy (stdout), and how to stop it."""
    for name, value in session.env().items():
        sys.stdout.write(f"export {name}={value}\n")
    sys.stdout.flush()
    if session.summary.recovered:
        console.print(f"Recovered {session.summary.recovered} calls a previous recorder had journaled.")
    console.print(f"Recording into {session.store} on {session.proxy.url} (stop with SIGTERM or Ctrl-C).", markup=False)


def _money(tally) -> str:
    """Cost of the priced calls; `unknown` when none was priced (never a made-up 0)."""
    if tally.calls and tally.unpriced == tally.calls:
        return "unknown"
    return f"${tally.cost_usd:,.4f}" if tally.cost_usd >= 0.01 or not tally.cost_usd else f"${tally.cost_usd:.6f}"


def _print_summary(console, summary, recovery_told: bool = False) -> None:
    """Calls, errors, tokens and cost by task, on stderr."""
    if summary.recovered and not recovery_told:
        console.print(f"Recovered {summary.recovered} calls a previous recorder had journaled.")
    total = summary.total
    if summary.unrecorded:
        console.print(
            f"Warning: {summary.unrecorded} calls were answered but not recorded: {summary.write_error}", markup=False
        )
    if not total.calls:
        console.print(f"No calls recorded into {summary.store}.", markup=False)
        return
    columns = ["task", "calls", "errors", "tokens in", "tokens out", "cost"] + (["unpriced"] if total.unpriced else [])
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    longest = max(len(name) for name in summary.tasks)
    table.add_column("task", overflow="fold", min_width=min(longest, 40))  # task names are ids: never cut
    for name in columns[1:]:
        table.add_column(name, justify="right", no_wrap=True)

    def cells(name, t):
        row = [name, f"{t.calls:,}", f"{t.errors:,}", f"{t.input_tokens:,}", f"{t.output_tokens:,}", _money(t)]
        return row + ([f"{t.unpriced:,}"] if total.unpriced else [])

    for name, t in sorted(summary.tasks.items()):
        table.add_row(*cells(name, t))
    if len(summary.tasks) > 1:
        table.add_row(*cells("all", total), style="bold")
    console.print(f"Recorded {total.calls:,} calls into {summary.store} ({total.errors:,} errors):", markup=False)
    console.print(table)
