"""`distill gate`: the quality gate CI runs; exit 0 pass, 1 fail, 3 input, 4 provider/spend cap, 5 too few examples."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List

import typer
from rich.table import Table

from distill_cli.console.common import (
    AllowEndpointOption,
    GateFormat,
    PricesOption,
    ProgressBar,
    cut,
    endpoint_line,
    escape_data,
    escape_property,
    finite,
    load_price_table,
    positive,
    print_json,
    progress_enabled,
    split_students,
    stderr_console,
    stdout_console,
    warn_unknown_models,
)
from distill_cli.console.judging import JudgeName
from distill_cli.economics import format_reduction
from distill_cli.errors import DistillError, ExitStatus, InputError
from distill_cli.files import check_output
from distill_cli.formatting import pct, usd_exact
from distill_cli.gate import GateSummary, run_gate

# GitHub shows at most 10 error (and 10 warning) annotations per step.
MAX_ANNOTATIONS = 10

def gate(
    student: Path = typer.Argument(..., help="Student file to gate (more student files after it: a chain, in order).", show_default=False),
    stores: List[str] = typer.Argument(..., help="Example store(s) holding the teacher's recorded calls.", show_default=False),
    min_agreement: float = typer.Option(0.95, "--min-agreement", min=0.0, max=1.0, callback=finite, help="Pass when the lower confidence bound of end-to-end agreement reaches this."),
    min_examples: int = typer.Option(100, "--min-examples", min=1, help="Fewer held-out examples than this: exit 5 (collecting)."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.9999, callback=finite, help="Confidence of the one-sided Wilson bounds."),
    judge: JudgeName = typer.Option(JudgeName.auto, "--judge", help="How answers are compared; auto picks from the teacher's outputs and says which."),
    judge_model: str | None = typer.Option(None, "--judge-model", metavar="MODEL", help="Model of the llm judge (default: the teacher's)."),
    verdicts: Path | None = typer.Option(None, "--verdicts", dir_okay=False, help="Write one row per example here (verdicts/1 Parquet)."),
    junit: Path | None = typer.Option(None, "--junit", dir_okay=False, help="Write a JUnit XML report here (a testcase per example)."),
    output_format: GateFormat = typer.Option(GateFormat.table, "--format", help="table, json (the summary on stdout) or markdown (a PR comment)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Examples scored at once (LLM students and judges)."),
    max_spend: float | None = typer.Option(None, "--max-spend", callback=positive, help="Stop (exit 4) before student and judge calls cost more than this many USD."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Gate only the first N held-out examples (by id)."),
    prices: Path | None = PricesOption,
    allow_endpoint: List[str] = AllowEndpointOption,
) -> None:
    """Gate a student: run it on held-out calls, judge it against the teacher, exit 1 if it agrees too little.

    Scores only the rows the student's own train/holdout split holds out. Passes when
    the one-sided lower confidence bound of end-to-end agreement (a declined call
    counts as agreeing: the teacher answers it; an error counts as a disagreement)
    is at least --min-agreement over at least --min-examples examples. The verdicts
    record the digest of the student file's content: what the gate certifies.

    Several student files (of one task) gate a chain: each call goes to the first,
    then to the next when it declines or fails; the teacher answers what all leave.
    The chain is certified as a whole, in that order, on calls no tier trained on.

    Exit: 0 passed, 1 failed, 3 input error or training-row leak, 4 provider error
    or --max-spend reached, 5 too few held-out examples.

    Example:

      distill gate intent.student runs/ --verdicts gate.parquet --junit gate.xml

      distill gate intent.student runs/ --judge llm --max-spend 2 --format markdown > comment.md

      distill gate intent.student haiku.student runs/ --verdicts chain.verdicts.parquet    # a chain
    """
    from distill_cli.students.registry import load_chain

    console = stderr_console()
    table = load_price_table(prices)
    bar = ProgressBar(console, "gate") if progress_enabled() else None
    try:
        tiers, stores = split_students([student], stores)
        the_student = load_chain(tiers, "gate", allowed_endpoints=allow_endpoint)
        for tier in getattr(the_student, "tiers", [the_student]):
            line = endpoint_line(tier)
            if line:
                console.print(line, markup=False)
        if junit is not None:  # before the gate spends anything
            if verdicts is not None and junit.resolve() == verdicts.resolve():
                raise InputError(f"{junit}: named by both --verdicts and --junit; give each its own file")
            check_output(junit, "junit", "gate --junit")
        with bar or nullcontext():
            summary = run_gate(
                the_student,
                stores,
                min_agreement=min_agreement,
                min_examples=min_examples,
                confidence=confidence,
                judge=judge.value,
                judge_model=judge_model,
                verdicts=verdicts,
                concurrency=concurrency,
                max_spend=max_spend,
                limit=limit,
                prices=table,
                reprice=prices is not None,
                progress=bar.update if bar else None,
            )
    except DistillError as e:
        _report_error_to_github(e)
        raise
    warn_unknown_models(console, table)
    if junit is not None:
        from distill_cli.junit import write_junit

        write_junit(junit, summary)
    if output_format == GateFormat.json:
        print_json(summary.to_dict())
    elif output_format == GateFormat.markdown:
        out = stdout_console()
        out.print(summary_markdown(summary), markup=False, highlight=False, soft_wrap=True)
    else:
        render_table(summary)
    _report_to_github(summary)
    if verdicts is not None:
        console.print(f"Verdicts: {verdicts} ({summary.n} rows)", markup=False)
    if junit is not None:
        console.print(f"JUnit: {junit}", markup=False)
    raise typer.Exit(int(exit_status(summary)))


def exit_status(summary: GateSummary) -> ExitStatus:
    if summary.collecting:
        return ExitStatus.NOT_ENOUGH_DATA
    return ExitStatus.OK if summary.passed else ExitStatus.CHECK_FAILED


def verdict_word(summary: GateSummary) -> str:
    if summary.collecting:
        return "COLLECTING"
    return "PASSED" if summary.passed else "FAILED"


# ---- rendering -------------------------------------------------------------------------------------------------


def _lines(s: GateSummary) -> list[tuple[str, str]]:
    """The summary as (label, text) lines, shared by the table and the markdown."""
    teacher = usd_exact(s.teacher_cost_per_call)
    if s.teacher_cost_unknown and s.teacher_cost_per_call is not None:
        teacher += f" ({s.teacher_cost_unknown} calls without a recorded cost left out)"
    elif s.teacher_cost_per_call is None:
        teacher += " (no teacher call has a recorded cost)"
    errors = f"{s.errors}"
    if s.errors:
        errors += f" ({s.student_errors} student, {s.judge_errors} judge), counted as disagreements"
        text, count = s.common_errors[0]
        errors += f"; most common ({count}x): {cut(text, 160)}"
    judge = f"{s.judge} ({s.judge_reason})"
    if s.judge_calls or s.judge_cache_hits:
        judge += f"; {s.judge_calls} calls, {s.judge_cache_hits} cached, {usd_exact(s.judge_cost_usd)}"
    held = f"{s.n:,} held-out examples"
    if s.n < s.held_out:
        held += f" (first {s.n:,} of {s.held_out:,})"
    held += f"; {s.teacher_rows:,} teacher calls in the store"
    return [
        ("examples", held),
        ("answered", f"{s.answered:,} ({pct(s.coverage)} coverage), declined {s.declined:,}"),
        (
            "agreement",
            f"{pct(s.agreement)} end to end, bounds [{pct(s.lower_bound)}, {pct(s.upper_bound)}] "
            f"(one-sided {s.confidence:.0%}); answered {pct(s.agreement_answered)}",
        ),
        ("rule", f"lower bound >= {pct(s.min_agreement)} over >= {s.min_examples} examples"),
        ("errors", errors),
        ("judge", judge),
        (
            "cost/call",
            f"teacher {teacher}, student {usd_exact(s.student_cost_per_call)}, routed {usd_exact(s.routed_cost_per_call)} "
            f"({format_reduction(s.cost_reduction)})",
        ),
        ("spent", f"{usd_exact(s.spent_usd)} (student {usd_exact(s.student_cost_usd)}, judge {usd_exact(s.judge_cost_usd)})"),
        ("decision", f"{s.decision}: {s.reason}"),
    ]


def render_table(s: GateSummary, console=None) -> None:
    out = console or stdout_console()
    # One line however narrow the output: CI logs and `grep PASSED` read it whole.
    out.print(f"distill gate: {s.student} ({s.student_kind}) on {s.task}: {verdict_word(s)}", markup=False, soft_wrap=True)
    grid = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, text in _lines(s):
        grid.add_row(label, text)
    out.print(grid)
    worst = s.worst(5)
    if worst:
        t = Table(title=f"worst disagreements ({len(worst)} of {s.disagreements})", title_justify="left")
        for col in ("example", "teacher", "student", "confidence", "why"):
            t.add_column(col, overflow="fold")
        for v in worst:
            t.add_row(v.example_id, cut(v.teacher_output, 40), cut(v.student_output, 40),
                      "" if v.confidence is None else f"{v.confidence:.2f}", cut(v.reason, 60))
        out.print(t)


def _cell(text: str | None, limit: int = 80) -> str:
    return cut(text, limit).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def summary_markdown(s: GateSummary) -> str:
    """The summary as GitHub-flavoured markdown: a PR comment, or $GITHUB_STEP_SUMMARY."""
    mark = {"PASSED": "\u2705", "FAILED": "\u274c", "COLLECTING": "\u23f3"}[verdict_word(s)]
    lines = [
        f"### {mark} distill gate {verdict_word(s).lower()}: `{s.student}` on `{s.task}`",
        "",
        f"**{s.decision}**: {_cell(s.reason, 300)}",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {label} | {_cell(text, 300)} |" for label, text in _lines(s)]
    worst = s.worst(10)
    if worst:
        lines += [
            "",
            f"<details><summary>Worst disagreements ({len(worst)} of {s.disagreements})</summary>",
            "",
            "| example | teacher | student | confidence | why |",
            "|---|---|---|---|---|",
        ]
        for v in worst:
            conf = "" if v.confidence is None else f"{v.confidence:.2f}"
            lines.append(f"| {v.example_id} | {_cell(v.teacher_output)} | {_cell(v.student_output)} | {conf} | {_cell(v.reason)} |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


# ---- GitHub Actions --------------------------------------------------------------------------------------------


def annotations(s: GateSummary) -> list[str]:
    """Workflow commands for the worst disagreements, within GitHub's 10 per step and level.

    A failed gate gets `::error` lines (the first says why it failed); a passed one
    gets `::warning` lines, so a green check never carries error annotations.
    """
    level = "warning" if s.passed else "error"
    lines = []
    if not s.passed:
        title = escape_property(f"distill gate {verdict_word(s).lower()}: {s.student}")
        lines.append(f"::error title={title}::{escape_data(f'{s.decision}: {s.reason}')}")
    for v in s.worst(MAX_ANNOTATIONS - len(lines)):
        title = escape_property(f"distill gate: {s.task} example {v.example_id} disagrees")
        conf = "" if v.confidence is None else f" (confidence {v.confidence:.2f})"
        message = (
            f"student {cut(v.student_output, 200)!r}{conf}, teacher {cut(v.teacher_output, 200)!r}\n"
            f"input: {cut(v.input, 300)}\njudge {v.judge}: {cut(v.reason, 200)}"
        )
        lines.append(f"::{level} title={title}::{escape_data(message)}")
    return lines


def _report_to_github(s: GateSummary) -> None:
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(summary_markdown(s) + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        # stderr keeps stdout for the data (--format json/markdown); the runner reads commands from both.
        for line in annotations(s):
            _err(line)


def _report_error_to_github(e: DistillError) -> None:
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(f"### \u274c distill gate could not run (exit {int(e.exit_status)})\n\n{_cell(str(e), 2000)}\n\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        _err(f"::error title={escape_property('distill gate')}::{escape_data(str(e))}")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
