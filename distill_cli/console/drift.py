"""`distill drift`: the cron check on a serving student; exit 0 ok, 1 drifted or demoted, 3 input, 4 provider/spend cap, 5 no recent calls."""

from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import List

import typer
from rich.table import Table

from distill_cli.console.common import (
    Format,
    PricesOption,
    ProgressBar,
    cut,
    escape_data,
    escape_property,
    finite,
    load_price_table,
    positive,
    print_json,
    progress_enabled,
    stderr_console,
    stdout_console,
    warn_unknown_models,
)
from distill_cli.console.judging import JudgeName
from distill_cli.drift import DriftResult, run_drift, window_start
from distill_cli.errors import ExitStatus, InputError
from distill_cli.formatting import pct, usd_exact

LABELS = {"agreement": "agreement", "input": "inputs", "decline": "declines", "output": "answers"}


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time") from None


def drift(
    student: Path = typer.Argument(..., help="The serving student file.", show_default=False),
    stores: List[str] = typer.Argument(..., help="Example store(s) the router records to.", show_default=False),
    since: str = typer.Option("24h", "--since", metavar="WHEN", help="Window: a duration before now (24h, 90m, 7d, 2w) or an ISO-8601 time."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="Judge at most N shadow pairs; with --live-teacher, re-ask N calls (default 50)."),
    live_teacher: bool = typer.Option(False, "--live-teacher", help="Re-ask the teacher about recent student-served calls (costs money; honours ANTHROPIC_BASE_URL)."),
    max_spend: float | None = typer.Option(None, "--max-spend", callback=positive, help="Stop (exit 4) before teacher and judge calls cost more than this many USD."),
    min_agreement: float = typer.Option(0.95, "--min-agreement", min=0.0, max=1.0, callback=finite, help="Drifted when end-to-end agreement is confidently below this."),
    log: Path | None = typer.Option(None, "--log", dir_okay=False, help="Drift log (drift/1 Parquet): one row appended per run; its history feeds the sequential check."),
    demote: bool = typer.Option(False, "--demote", help="On drift, write STUDENT.demoted: the router sends every call to the teacher until a new gate passes."),
    verdicts: List[Path] = typer.Option([], "--verdicts", dir_okay=False, metavar="FILE", help="Gate verdicts file(s); a passing gate of this student newer than its demotion lifts it."),
    judge: JudgeName = typer.Option(JudgeName.auto, "--judge", help="How answers are compared, as the gate compares them; auto picks from the teacher's outputs."),
    judge_model: str | None = typer.Option(None, "--judge-model", metavar="MODEL", help="Model of the llm judge (default: the teacher's)."),
    arl: float = typer.Option(1000, "--arl", min=2, callback=finite, help="False-alarm control: with no change, P(any false alarm within T runs) <= T/ARL."),
    now: str | None = typer.Option(None, "--now", metavar="TIME", help="Check as of this ISO-8601 time instead of now (backfills, replays)."),
    output_format: Format = typer.Option(Format.table, "--format", help="table, or json (the result on stdout)."),
    prices: Path | None = PricesOption,
) -> None:
    """Check a serving student for drift: agreement with the teacher, inputs, declines and answers.

    Compares the window's calls (--since) with what the student was built and gated
    on: shadow pairs (and with --live-teacher, fresh teacher answers) judged as the
    gate judges, decided by a sequential test over the drift log's runs so that a
    nightly job does not cry wolf; recent inputs against training inputs through a
    domain classifier; the decline rate against the dev split; the mix of answers.
    Appends one row to --log per run.

    Exit: 0 ok, 1 drifted (or demoted), 3 input error, 4 provider error or
    --max-spend reached, 5 no calls of the task in the window.

    Example:

      distill drift intent.student runs/ --log drift.parquet --demote --verdicts gate.parquet

      distill drift intent.student runs/ --since 7d --live-teacher --sample 20 --max-spend 0.50 --format json
    """
    console = stderr_console()
    moment = _moment(now)
    try:  # a bad --since is a usage error (exit 2), as in `report`
        window_start(since, (moment or datetime.now(timezone.utc)).astimezone(timezone.utc))
    except InputError as e:
        raise typer.BadParameter(str(e).removeprefix(f"--since {since!r}: ").removeprefix(f"--since {since}: "),
                                 param_hint="--since") from None
    table = load_price_table(prices)
    # moves only for live teacher calls and llm judging
    bar = ProgressBar(console, "drift: pairs") if progress_enabled() else None
    with bar or nullcontext():
        result = run_drift(
            student,
            stores,
            since=since,
            sample=sample,
            live_teacher=live_teacher,
            max_spend=max_spend,
            min_agreement=min_agreement,
            log=log,
            demote=demote,
            now=moment,
            prices=table,
            judge=judge.value,
            judge_model=judge_model,
            verdicts=verdicts,
            arl=arl,
            progress=bar.update if bar else None,
        )
    warn_unknown_models(console, table)
    if output_format == Format.json:
        print_json(result.to_dict())
    else:
        render_table(result)
    for line in _after(result):
        console.print(line, markup=False)
    _report_to_github(result)
    raise typer.Exit(int(exit_status(result)))


def exit_status(result: DriftResult) -> ExitStatus:
    return ExitStatus.OK if result.status == "ok" else ExitStatus.CHECK_FAILED


def _after(r: DriftResult) -> list[str]:
    """Messages for stderr: what was written and what the demotion means."""
    lines = []
    if r.newly_demoted:
        lines.append(f"Demoted: wrote {r.demotion.marker}; the router sends every call to the teacher until a new gate "
                     "passes (then run drift with --verdicts GATE.parquet, or rebuild the student).")
    elif r.demoted and r.demotion is not None:
        lines.append(f"Demoted: {r.demotion.message}.")
    elif r.drifted:
        lines.append("Not demoted: the student still serves (add --demote to hand its traffic back to the teacher).")
    if r.log:
        lines.append(f"Log: {r.log} ({r.log_rows} row{'s' if r.log_rows != 1 else ''})")
    else:
        lines.append("No --log: the sequential agreement check saw this run alone.")
    return lines


# ---- rendering -------------------------------------------------------------------------------------------------


def _window(r: DriftResult) -> str:
    asked = f"the student was asked {r.served:,}, declined {pct(r.decline_rate)}" if r.served else "the student was asked none"
    return (f"{r.window_start:%Y-%m-%d %H:%M} to {r.window_end:%Y-%m-%d %H:%M} UTC (--since {r.since}): "
            f"{r.calls:,} calls; {asked}")


def _spent(r: DriftResult) -> str:
    text = usd_exact(r.spent_usd)
    if r.live_calls:
        text += f" (teacher {usd_exact(r.teacher_spent_usd)} over {r.live_calls} live calls, judge {usd_exact(r.judge_spent_usd)})"
    elif r.judge_spent_usd:
        text += f" (judge {usd_exact(r.judge_spent_usd)})"
    return text


def render_table(r: DriftResult, console=None) -> None:
    out = console or stdout_console()
    # One line however narrow the output, as the gate's.
    out.print(f"distill drift: {r.student} ({r.student_kind}) on {r.task}: {r.status.upper()}", markup=False, soft_wrap=True)
    grid = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_column(overflow="fold")
    grid.add_row("window", "", _window(r))
    for c in r.checks:
        grid.add_row(LABELS[c.name], c.status.upper() if c.drifted else c.status, c.message)
    if r.judge:
        grid.add_row("judge", "", f"{r.judge} ({r.judge_reason})")
    grid.add_row("spent", "", _spent(r))
    for note in r.notes:
        grid.add_row("note", "", note)
    out.print(grid)
    if r.disagreements and r.check("agreement").drifted:
        t = Table(title=f"disagreements ({len(r.disagreements)} shown of {r.pairs - r.agreeing})", title_justify="left")
        for col in ("call", "input", "teacher", "student", "why"):
            t.add_column(col, overflow="fold")
        for d in r.disagreements[:5]:
            t.add_row(d["id"], cut(d["input"], 40), cut(d["teacher"], 30), cut(d["student"], 30), cut(d["why"], 50))
        out.print(t)


def summary_markdown(r: DriftResult) -> str:
    mark = {"ok": "\u2705", "drifted": "\u274c", "demoted": "\u26d4"}[r.status]
    lines = [f"### {mark} distill drift {r.status}: `{r.student}` on `{r.task}`", "", "| check | status | what it saw |", "|---|---|---|"]
    for c in r.checks:
        lines.append(f"| {LABELS[c.name]} | {c.status} | {cut(c.message, 400).replace('|', '/')} |")
    lines += ["", f"Window: {_window(r)}. Spent: {_spent(r)}."]
    return "\n".join(lines) + "\n"


def _report_to_github(r: DriftResult) -> None:
    """A scheduled workflow: the result in the step summary, and an error annotation per drifted check."""
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(summary_markdown(r) + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        title = escape_property(f"distill drift: {r.student}")
        for c in r.checks:
            if c.drifted:
                typer.echo(f"::error title={title}::{escape_data(f'{LABELS[c.name]}: {c.message}')}", err=True)
        if r.demoted and not r.drifted and r.demotion is not None:
            typer.echo(f"::error title={title}::{escape_data(r.demotion.message)}", err=True)
