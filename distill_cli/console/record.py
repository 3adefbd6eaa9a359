"""`distill record`: import logs into a store, or record a job's calls through the proxy."""

from __future__ import annotations

import asyncio
import sys
from enum import Enum
from pathlib import Path
from typing import List

import typer
from rich import box
from rich.table import Table

from distill_cli.console.common import (
    AllowEndpointOption,
    Format,
    PricesOption,
    endpoint_line,
    finite,
    load_price_table,
    print_json,
    stderr_console,
    warn_unknown_models,
)
from distill_cli.errors import InputError
from distill_cli.formatting import usd

# The router's defaults (recorder/router.py), spelled out so that `distill --help` does not import the proxy.
DEFAULT_SHADOW_RATE = 0.05
DEFAULT_STUDENT_TIMEOUT_MS = 5000.0
DEFAULT_RECHECK_SECONDS = 30.0


class ReplayMiss(str, Enum):
    error = "error"
    live = "live"


def record(
    ctx: typer.Context,
    store: str = typer.Option(..., "--store", "-s", metavar="STORE", help="Example store directory to append to (created if missing)."),
    import_file: Path | None = typer.Option(
        None, "--import", help="Import a JSONL log (Messages API / chat completions pairs, or the flat form) instead of running a job."
    ),
    task: str | None = typer.Option(None, "--task", metavar="TASK", help="Task name for every call (default: per request header or fingerprint)."),
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
    students: List[Path] = typer.Option(
        [], "--student", metavar="FILE",
        help="A gated student answers its task's calls; the teacher answers what it declines (repeatable: several "
        "of one task are a chain, asked in the order given, that needs a gate of its own).",
    ),
    verdicts: List[Path] = typer.Option(
        [], "--verdicts", metavar="FILE",
        help="Gate verdicts files to find the students' gates in (besides STUDENT.verdicts.parquet) (repeatable).",
    ),
    allow_ungated: bool = typer.Option(False, "--allow-ungated", help="Let a student without a passing gate of its content serve (a warning, not an error)."),
    allow_endpoint: List[str] = AllowEndpointOption,
    shadow_rate: float = typer.Option(
        DEFAULT_SHADOW_RATE, "--shadow-rate", min=0.0, max=1.0, metavar="R", callback=finite,
        help="Share of student answers also asked of the teacher in the background (shadow rows, for drift).",
    ),
    shadow_seed: int | None = typer.Option(None, "--shadow-seed", help="Seed of the shadow sampler (repeatable runs)."),
    student_timeout: float = typer.Option(
        DEFAULT_STUDENT_TIMEOUT_MS, "--student-timeout", min=1.0, metavar="MS", callback=finite,
        help="A student slower than this falls back to the teacher (a chain's tier: to the next tier).",
    ),
    recheck: float = typer.Option(
        DEFAULT_RECHECK_SECONDS, "--recheck", min=0.0, metavar="SECONDS", callback=finite,
        help="How often a running proxy re-reads the students' demotion markers (distill drift --demote).",
    ),
    replay: str | None = typer.Option(
        None, "--replay", metavar="STORE",
        help="Answer the teacher's calls from this store's recorded answers (by input_hash), without the network.",
    ),
    replay_miss: ReplayMiss = typer.Option(
        ReplayMiss.error, "--replay-miss",
        help="A call the replay store never saw: error (a 404 the SDK raises) or live (ask upstream).",
    ),
    command: List[str] | None = typer.Argument(None, help="The job to run, after `--`.", show_default=False),
) -> None:
    """Record calls into an example store: wrap a job, serve a proxy, or import existing logs.

    A job runs with ANTHROPIC_BASE_URL and OPENAI_BASE_URL pointing at a proxy on
    127.0.0.1 that passes every call through and writes it to the store;
    `distill record` then exits with the job's own status.

    With --student, a student that passed its gate answers its task's calls, and
    the teacher answers what it declines (exit 3 for an ungated student, or one
    whose file changed since its gate). Several --student of one task are a
    chain, asked in the order given, each tier what the tier before declined; it
    serves only under a passing gate of that chain in that order (distill gate
    a.student b.student STORE). With --replay, the teacher's answers come from a
    store instead of the network.

    Exit: the job's own status (128+N if a signal N killed it, 127 or 126 if it
    could not start); 0 when --serve stops on SIGTERM or SIGINT; 0 after --import,
    3 when the file cannot be read (or, with --strict, has a bad line); 3 for a
    student that may not serve.

    Example:

      distill record --store runs/ -- python job.py

      distill record --store runs/ --student intent.student --verdicts gate.parquet -- python job.py

      distill record --store runs/ --student intent.student --student haiku.student -- python job.py   # a chain

      distill record --store ci-runs/ --replay runs/ -- python job.py      # offline: no network, no key

      distill record --store runs/ --task intent --redact '\\b\\d{16}\\b' -- python job.py

      distill record --store runs/ --serve --port 8787    # prints the export lines for a service

      distill record --store runs/ --import calls.jsonl --task intent
    """
    console = stderr_console()
    table = load_price_table(prices)
    if import_file is not None:
        if command:
            raise InputError("give either --import FILE or a command after --, not both")
        if students or replay is not None:
            ctx.fail("--student and --replay answer a job's calls (a command after --, or --serve), not --import")
        from distill_cli.importer import import_jsonl

        result = import_jsonl(store, import_file, prices=table, task=task, strict=strict)
        warn_unknown_models(console, table)
        if output_format == Format.json:
            print_json(result.to_dict())
        _print_recovery(console, result.recovered, result.quarantined)
        for line, problem in result.skipped[:20]:
            console.print(f"{import_file}: line {line}: {problem}", markup=False)
        tasks = ", ".join(f"{t} ({n})" for t, n in result.tasks.most_common())
        console.print(f"Imported {result.imported} calls into {store}" + (f": {tasks}" if tasks else ""), markup=False)
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

    router = None
    if students or replay is not None:
        router = _router(
            console, students, verdicts=verdicts, allow_ungated=allow_ungated, allow_endpoint=allow_endpoint,
            shadow_rate=shadow_rate,
            shadow_seed=shadow_seed, student_timeout_ms=student_timeout, recheck=recheck, replay=replay,
            replay_miss=replay_miss.value, task=task,
        )
    try:
        session = recorder.Recorder(
            store,
            prices=table,
            task=task,
            redact=redact,
            anthropic_upstream=anthropic_upstream,
            openai_upstream=openai_upstream,
            port=port,
            router=router,
        )
    except recorder.BadPattern as e:
        raise typer.BadParameter(str(e), param_hint="--redact") from None
    if serve:
        summary = asyncio.run(recorder.serve(session, on_ready=lambda r: _announce(console, r)))
        status = 0
    else:
        # With --format json our stdout carries only the summary: the job's own output goes to stderr.
        job_stdout = sys.stderr.fileno() if output_format == Format.json else None
        status = asyncio.run(recorder.run_job(session, command, stdout=job_stdout))
        summary = session.summary
    _print_summary(console, summary, recovery_told=serve)
    result = summary.to_dict()
    if router is not None:
        _print_routing(console, router)
        table.unknown -= router.student_ids  # a student's id is the model of its rows, priced by the student
        result["routing"] = router.to_dict()
    warn_unknown_models(console, table)
    if output_format == Format.json:
        print_json(result)
    raise typer.Exit(status)


def _router(console, students, *, verdicts, allow_ungated, allow_endpoint, shadow_rate, shadow_seed, student_timeout_ms,
            recheck, replay, replay_miss, task):
    """The gated students and the replay store, announced on stderr."""
    import random

    from distill_cli.recorder.replay import Replay
    from distill_cli.recorder.router import Router, load_routes

    def warn(message: str) -> None:
        console.print(message, markup=False)

    routes = load_routes(students, verdicts=verdicts, allow_ungated=allow_ungated, allowed_endpoints=allow_endpoint,
                         warn=warn)
    replayed = Replay.load(replay, miss=replay_miss) if replay is not None else None
    router = Router(
        routes, replay=replayed, shadow_rate=shadow_rate, rng=random.Random(shadow_seed) if shadow_seed is not None else None,
        student_timeout=student_timeout_ms / 1000, recheck_seconds=recheck, warn=warn,
    )
    for route in routes:
        gate = f"gate passed in {route.gate.verdicts}" if route.gate else "ungated"
        tiers = getattr(route.student, "tiers", None)  # a chain (students/chain.py): its students, in order
        if tiers:
            kinds = " > ".join(tier.spec.kind for tier in tiers)
            console.print(f"Chain {route.student.id} ({kinds}, {gate}) answers task {route.task}, each tier what the "
                          f"one before declined; shadow rate {shadow_rate:g}.", markup=False)
        else:
            console.print(f"Student {route.student.id} ({route.student.spec.kind}, {gate}) answers task {route.task}; "
                          f"shadow rate {shadow_rate:g}.", markup=False)
        for line in map(endpoint_line, tiers or [route.student]):
            if line:
                console.print(line, markup=False)
        if task is not None and route.task != task:
            what = f"the chain {route.student.id} is" if tiers else f"{route.path} is a student"
            warn(f"Warning: {what} of task {route.task}, but every call of this run is task {task} "
                 "(--task): it will answer none of them.")
    if replayed is not None:
        console.print(f"Replaying {len(replayed):,} recorded answers from {replay} (a call it never saw: {replay_miss}).",
                      markup=False)
    return router


def _print_routing(console, router) -> None:
    """Per student (or chain, then per tier): how many calls it answered and where the rest went; the replay's."""
    for route in router.routes.values():
        s = route.stats
        who = "Chain" if s.tiers else "Student"
        if not s.calls:
            console.print(f"{who} {route.student.id}: no calls of task {route.task}.", markup=False)
            continue
        teacher = s.calls - s.served
        declined = "every tier declined" if s.tiers else "declined"
        console.print(
            f"{who} {route.student.id} answered {s.served:,} of {s.calls:,} calls ({s.served / s.calls:.1%}); "
            f"the teacher answered {teacher:,} ({declined} {s.declined:,}, errors {s.errors:,}, timeouts {s.timeouts:,}, "
            f"forced {s.forced_teacher:,}, demoted {s.while_demoted:,}); {s.shadows:,} shadow calls.",
            markup=False,
        )
        for number, t in enumerate(s.tiers, 1):
            console.print(
                f"  tier {number}, {t.student}: answered {t.answered:,} of the {t.asked:,} calls it was asked "
                f"(declined {t.declined:,}, errors {t.errors:,}, timeouts {t.timeouts:,}).",
                markup=False,
            )
        if s.last_error:
            console.print(f"  last student error: {s.last_error}", markup=False)
    if router.replay is not None:
        r = router.replay
        console.print(f"Replay: {r.hits:,} answers from {r.source}, {r.misses:,} misses.", markup=False)


def _announce(console, session) -> None:
    """--serve: the lines a shell evaluates to point SDKs at the proxy (stdout), and how to stop it."""
    for name, value in session.env().items():
        sys.stdout.write(f"export {name}={value}\n")
    sys.stdout.flush()
    _print_recovery(console, session.summary.recovered, session.summary.quarantined)
    console.print(f"Recording into {session.store} on {session.proxy.url} (stop with SIGTERM or Ctrl-C).", markup=False)


def _print_recovery(console, recovered: int, quarantined: list) -> None:
    """What opening the store did with earlier recorders' journals: rows recovered, segments quarantined."""
    for q in quarantined:
        console.print(q.warning(), markup=False, soft_wrap=True)  # one line, however long
    if recovered:
        console.print(f"Recovered {recovered} calls a previous recorder had journaled.")


def _money(tally) -> str:
    """Cost of the priced calls; `unknown` when none was priced (never a made-up 0)."""
    if tally.calls and tally.unpriced == tally.calls:
        return "unknown"
    return usd(tally.cost_usd, 4, small=6, trim=False)


def _print_summary(console, summary, recovery_told: bool = False) -> None:
    """Calls, errors, tokens and cost by task, on stderr."""
    if not recovery_told:
        _print_recovery(console, summary.recovered, summary.quarantined)
    total = summary.total
    if summary.unrecorded:
        console.print(
            f"Warning: {summary.unrecorded} calls were answered but not recorded: {summary.write_error}", markup=False
        )
    if total.unknown_counts:
        console.print(f"Warning: {total.unknown_counts} calls had usage counts that are no token counts; those counts "
                      "and the calls' cost are null (each row's metadata usage_error says which).", markup=False)
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
