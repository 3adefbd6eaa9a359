"""`distill report`: render the library's Report as terminal tables and charts, JSON, CSV or Markdown.

Only parses options, calls `distill_cli.report.build_report`, and renders. The
table view is laid out for 100 columns (wider in a pipe when a table of numbers
needs it); NO_COLOR drops colour but keeps the bars.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from distill_cli.console.common import PricesOption, ReportFormat, print_json, stderr_console, stdout_console
from distill_cli.economics import format_reduction
from distill_cli.formatting import pct, usd
from distill_cli.report import Report, build_report, parse_budget, parse_since

WIDTH = 100  # columns when stdout is not a terminal and COLUMNS is unset, unless a table of numbers needs more
CHART_MAX_BARS = 62  # more days than this are charted by week
SPARK = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"


class By(str, Enum):
    task = "task"
    model = "model"
    day = "day"
    tier = "tier"


def report(
    paths: List[str] = typer.Argument(
        ...,
        help="Example stores (directories, files or s3:// URIs), verdicts files, drift logs and student files, in any order.",
        show_default=False,
    ),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help="Only calls since then: 7d, 24h, 2w, or a date (2026-11-01)."),
    task: str | None = typer.Option(None, "--task", metavar="TASK", help="Only this task."),
    by: By = typer.Option(
        By.task, "--by",
        help="The main table's rows: task, model, day, or tier (a chain's tiers) (the table --format csv prints).",
    ),
    budget: str | None = typer.Option(None, "--budget", metavar="USD/PERIOD", help="A spending limit to check against: 50/day or 1000/month (USD)."),
    output_format: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json, csv or markdown."),
    prices: Path | None = PricesOption,
) -> None:
    """What the recorded calls cost, what distillation saved, and what to do next.

    Reads any distill Parquet, each for what its distill.schema says it is: example
    stores (spend, tokens, savings per task / model / day, a recommendation per task),
    verdicts files (the latest gate result per task, the worst disagreements), drift
    logs (agreement and input shift over time) and student files (spec, dev metrics).
    --prices reprices every call from its token counts. An empty store prints "no
    calls recorded" and exits 0.

    Exit: 0 success, 3 a missing, unreadable or wrong-kind file, or an unknown --task.

    Example:

      distill report runs/ gate.parquet drift.parquet --since 7d

      distill report runs/ --budget 50/day --format markdown > cost.md
    """
    now = datetime.now(timezone.utc)
    try:
        since_at = parse_since(since, now) if since is not None else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--since") from None
    try:
        limit = parse_budget(budget) if budget is not None else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--budget") from None
    result = build_report(paths, since=since_at, task=task, by=by.value, budget=limit, prices=prices, now=now)
    err = stderr_console()
    for model, n in result.totals["unknown_cost_models"].items():
        err.print(f"Warning: no price known for model {model!r}; its {n:,} calls have cost null (not 0). Add it with --prices.", markup=False)
    if result.empty and result.inputs["stores"] and output_format in (ReportFormat.json, ReportFormat.csv):
        err.print(_no_calls(result), markup=False)  # the table and markdown views say it themselves
    if output_format == ReportFormat.json:
        print_json(result.to_dict())
    elif output_format == ReportFormat.csv:
        sys.stdout.write(render_csv(result))
    elif output_format == ReportFormat.markdown:
        sys.stdout.write(render_markdown(result))
    else:
        render_table(result, stdout_console(pipe_width=pipe_width(result)))


def _no_calls(r: Report) -> str:
    since = r.period.get("since")
    return "no calls recorded" + (f" since {since[:16].replace('T', ' ')}" if since else "")


# ---- numbers ------------------------------------------------------------------------------------


def count(n: int | float) -> str:
    """Compact counts: 950, 13.1k, 6.24M."""
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{unit}" if v < 100 else f"{v:,.0f}{unit}"
    return f"{n:,.0f}"


def unknown_suffix(row: dict) -> str:
    if not row.get("unknown_cost_calls"):
        return ""
    models = ", ".join(row["unknown_cost_models"])
    return f" + {row['unknown_cost_calls']:,} calls of unknown cost (model {models})"


def _gate_text(gate: dict | None) -> str:
    if not gate:
        return "-"
    verdict = "passed" if gate.get("passed") else "failed"
    agreement = gate.get("agreement")
    return f"{verdict} {agreement:.1%}" if isinstance(agreement, (int, float)) else verdict


def _drift_text(drift: dict | None) -> str:
    if not drift:
        return "-"
    return drift["status"]


def _reduction(x) -> str:
    if x is None:
        return "-"
    if x == "inf":
        return "inf"
    return format_reduction(x)


# ---- the tables every format shares ------------------------------------------------------------------


def task_rows(r: Report) -> tuple[list[str], list[list]]:
    head = ["task", "calls", "teacher_calls", "student_calls", "fallback_calls", "shadow_calls", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "batch_calls", "batch_cost_usd",
            "teacher_only_cost_usd", "savings_usd", "unknown_cost_calls", "gate", "drift", "recommendation"]
    rows = [
        [t["task"], *(t[k] for k in head[1:16]), _gate_text(t["gate"]), _drift_text(t["drift"]), t["recommendation"]]
        for t in r.tasks
    ]
    return head, rows


def model_rows(r: Report) -> tuple[list[str], list[list]]:
    head = ["model", "provider", "rows", "calls", "shadow_calls", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "cost_usd", "unknown_cost_calls"]
    return head, [[m[k] for k in head] for m in r.models]


def day_rows(r: Report) -> tuple[list[str], list[list]]:
    head = ["day", "calls", "shadow_calls", "input_tokens", "output_tokens", "cost_usd", "teacher_only_cost_usd",
            "savings_usd", "unknown_cost_calls"]
    return head, [[d[k] for k in head] for d in r.days]


def tier_rows(r: Report) -> tuple[list[str], list[list]]:
    """A line per tier of every chain, then the teacher's line: what the chain left to it."""
    head = ["task", "chain", "tier", "student", "asked", "answered", "share", "declined", "errors", "cost_usd",
            "teacher_cost_usd", "saved_usd", "unknown_cost_attempts"]
    rows = []
    for t in r.tasks:
        for c in t.get("chains", []):
            for tier in c["tiers"]:
                rows.append([t["task"], c["chain"], tier["tier"], tier["student"], *(tier[k] for k in head[4:])])
            rows.append([t["task"], c["chain"], "teacher", t["teacher_model"] or "", c["teacher_calls"], c["teacher_calls"],
                         c["teacher_share"], 0, 0, c["teacher_cost_usd"], c["teacher_cost_usd"], 0.0,
                         c["teacher_unknown_cost_calls"]])
    return head, rows


def has_chains(r: Report) -> bool:
    return any(t.get("chains") for t in r.tasks)


MAIN_TABLES = {"task": task_rows, "model": model_rows, "day": day_rows, "tier": tier_rows}


# ---- csv -------------------------------------------------------------------------------------------------


def render_csv(r: Report) -> str:
    """The --by table, one row per task / model / day, with a header."""
    head, rows = MAIN_TABLES[r.by](r)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(rows)
    return out.getvalue()


# ---- markdown ---------------------------------------------------------------------------------------------


def _md_cell(v) -> str:
    if isinstance(v, float):
        v = f"{v:.6f}".rstrip("0").rstrip(".") if v else "0"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(r: Report) -> str:
    parts = ["# distill report\n", _period_line(r) + "\n"]
    if r.empty and r.inputs["stores"]:
        parts.append(f"\n{_no_calls(r)}\n")
    elif r.inputs["stores"]:
        t = r.totals
        parts.append(
            "\n"
            f"- calls: {t['calls']:,} (teacher {t['teacher_calls']:,}, student {t['student_calls']:,}, "
            f"fallback {t['fallback_calls']:,}) + {t['shadow_calls']:,} shadow\n"
            f"- tokens: in {t['input_tokens']:,}, out {t['output_tokens']:,}, cache read {t['cache_read_tokens']:,}, "
            f"cache write {t['cache_write_tokens']:,}\n"
            f"- spend: {usd(t['cost_usd'])}{unknown_suffix(t)}\n"
            f"{_batch_line(t, '- batch spend: ', chr(10))}"
            f"- teacher-only: {usd(t['teacher_only_cost_usd'])}; savings {usd(t['savings_usd'])} ({t['savings_pct']:.1f}%)\n"
        )
        order = [r.by] + [k for k in ("task", "tier", "model", "day") if k != r.by and (k != "tier" or has_chains(r))]
        titles = {"task": "Tasks", "tier": "Chains, tier by tier", "model": "Models", "day": "Spend per day"}
        for key in order:
            parts.append(f"\n## {titles[key]}\n\n" + _md_table(*MAIN_TABLES[key](r)))
        if r.levers:
            parts.append("\n## Cost levers besides distillation\n\n")
            parts += [f"- {lv['task']}: {lv['text']}\n" for lv in r.levers]
        if r.budget:
            b = r.budget
            parts.append(f"\n## Budget {usd(b['amount_usd'])}/{b['per']}\n\n{_budget_line(b)}\n\n")
            parts.append(_md_table(*_budget_rows(b)))
    for g in r.gates:
        parts.append(f"\n## Gate: {g['task']} ({Path(g['file']).name})\n\n{_gate_line(g)}\n")
        if g["worst_disagreements"]:
            parts.append("\n" + _md_table(*_worst_rows(g)))
    for d in r.drift:
        parts.append(f"\n## Drift: {d['task']}\n\n" + _md_table(*_drift_rows(d)))
    for s in r.students:
        parts.append(f"\n## Student {s['id']}\n\n{_student_line(s)}\n")
    if r.notes:
        parts.append("\n" + "".join(f"_{n}_\n\n" for n in r.notes))
    return "".join(parts)


# ---- shared text ---------------------------------------------------------------------------------------------


def _period_line(r: Report) -> str:
    p = r.period
    if not p["start"]:
        span = "no calls"
    else:
        span = f"{p['start'][:16].replace('T', ' ')} to {p['end'][:16].replace('T', ' ')} UTC ({p['days']:.1f} days)"
    filters = []
    if p["since"]:
        filters.append(f"since {p['since'][:16].replace('T', ' ')}")
    prices = f"prices {r.prices['version']}" + (" (repriced)" if r.prices["repriced"] else "")
    return " · ".join([span, *filters, prices])


def _budget_line(b: dict) -> str:
    now = "fits" if b["fits"] else f"over by {usd(b['spend_usd'] - b['amount_usd'])}"
    after = "fits" if b["fits_after"] else f"still over by {usd(b['after_usd'] - b['amount_usd'])}"
    return (
        f"spend {usd(b['spend_usd'])}/{b['per']} (teacher-only {usd(b['teacher_only_usd'])}): {now}; "
        f"after the decisions below {usd(b['after_usd'])}/{b['per']}: {after}"
    )


def _budget_rows(b: dict) -> tuple[list[str], list[list]]:
    head = ["task", "spend", "target", "fits", "decision", "reason", "after", "if distilled"]
    rows = [
        [t["task"], usd(t["spend_usd"]), usd(t["target_usd"]), "yes" if t["fits"] else "no", t["decision"], t["reason"],
         usd(t["after_usd"]), usd(t["if_distilled_usd"]) if t["if_distilled_usd"] is not None else "-"]
        for t in b["tasks"]
    ]
    return head, rows


def _gate_line(g: dict) -> str:
    bits = [("PASSED" if g.get("passed") else "FAILED")]
    if isinstance(g.get("agreement"), (int, float)):
        bound = g.get("lower_bound")
        bits.append(f"agreement {g['agreement']:.1%}" + (f" (lower bound {bound:.1%})" if isinstance(bound, (int, float)) else ""))
    if isinstance(g.get("min_agreement"), (int, float)):
        bits.append(f"min {g['min_agreement']:.0%}")
    if isinstance(g.get("coverage"), (int, float)):
        bits.append(f"coverage {g['coverage']:.1%}")
    v = g["verdicts"]
    bits.append(f"n {v['n']:,}, {v['answered_disagreed']:,} answered wrong, {_plural(v['errors'], 'error')}")
    if g.get("cost_reduction") is not None:
        bits.append(f"cost reduction {_reduction(g['cost_reduction'])}")
    if g.get("decision"):
        bits.append(f"decision {g['decision']}")
    members, answered = g.get("chain"), g.get("tier_answered")
    if isinstance(members, list) and len(members) > 1 and isinstance(answered, list) and len(answered) == len(members):
        bits.append("tiers answered " + ", ".join(f"{m.get('id')} {n:,}" for m, n in zip(members, answered)))
    return " · ".join(bits)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _worst_rows(g: dict) -> tuple[list[str], list[list]]:
    head = ["confidence", "input", "teacher", "student"]
    rows = [
        [f"{w['confidence']:.2f}" if w["confidence"] is not None else "-", w["input"] or "", w["teacher_output"] or "",
         w["student_output"] if w["error"] is None else f"error: {w['error']}"]
        for w in g["worst_disagreements"]
    ]
    return head, rows


def _drift_rows(d: dict) -> tuple[list[str], list[list]]:
    head = ["when", "pairs", "agreement", "lower bound", "input shift", "status"]
    rows = [
        [(run["ts"] or "")[:16].replace("T", " "), run["pairs"], _num(run["agreement"]), _num(run["lower_bound"]),
         _num(run["input_shift"]), "demoted" if run["demoted"] else "drifted" if run["drifted"] else "ok"]
        for run in d["runs"]
    ]
    return head, rows


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _student_line(s: dict) -> str:
    bits = [f"kind {s['kind']}", f"task {s['task']}", f"teacher {s['teacher_model']}"]
    if s.get("student_model"):
        bits.append(f"model {s['student_model']}")
    if s.get("created"):
        bits.append(f"built {s['created'][:16].replace('T', ' ')}")
    if s.get("threshold") is not None:
        bits.append(f"threshold {_metric(s['threshold'])}")
    metrics = ", ".join(f"{k} {_metric(v)}" for k, v in (s.get("metrics") or {}).items() if not isinstance(v, (dict, list)))
    if metrics:
        bits.append(f"dev: {metrics}")
    return " · ".join(bits)


def _metric(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- terminal --------------------------------------------------------------------------------------------------


def render_table(r: Report, console: Console) -> None:
    console.print(Text.assemble(("distill report", "bold"), (" · " + _period_line(r), "dim")))
    if r.empty and r.inputs["stores"]:
        console.print(_no_calls(r))
    elif r.inputs["stores"]:
        _print_totals(r, console)
        if r.by == "task":
            _print_tasks(r, console)
            _print_chains(r, console)
            _print_recommendations(r, console)
            _print_models(r, console)
        elif r.by == "tier":
            _print_chains(r, console)
            _print_recommendations(r, console)
        elif r.by == "model":
            _print_models(r, console)
            _print_recommendations(r, console)
        else:
            _print_days(r, console)
            _print_recommendations(r, console)
        _print_chart(r, console)
        if r.budget:
            _print_budget(r.budget, console)
    for g in r.gates:
        _print_gate(g, console)
    for d in r.drift:
        _print_drift(d, console)
    for s in r.students:
        console.print()
        console.print(Text.assemble((f"Student {s['id']}", "bold"), ": " + _student_line(s)))
    for note in r.notes:
        console.print(Text(f"Note: {note}", style="dim"))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold", box=None, pad_edge=False,
                  padding=(0, 1))
    table.add_column(columns[0], justify="left", no_wrap=True, overflow="ellipsis", max_width=32)
    for c in columns[1:]:
        table.add_column(c, justify="right", overflow="fold")
    return table


def _print_totals(r: Report, console: Console) -> None:
    t = r.totals
    console.print()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "Calls",
        f"{t['calls']:,} (teacher {t['teacher_calls']:,} · student {t['student_calls']:,} · fallback "
        f"{t['fallback_calls']:,}) + {t['shadow_calls']:,} shadow checks" + (f" · {t['errors']:,} errors" if t["errors"] else ""),
    )
    grid.add_row(
        "Tokens",
        f"in {count(t['input_tokens'])} · out {count(t['output_tokens'])} · cache read {count(t['cache_read_tokens'])}"
        f" · cache write {count(t['cache_write_tokens'])}",
    )
    grid.add_row("Spend", Text(usd(t["cost_usd"]) + unknown_suffix(t)))
    if t.get("batch_calls"):
        grid.add_row("Batch", _batch_line(t))
    saved = Text(f"{usd(t['savings_usd'])} ({t['savings_pct']:.1f}%)", style="green" if t["savings_usd"] > 0 else "")
    grid.add_row("Teacher-only", Text.assemble(f"{usd(t['teacher_only_cost_usd'])} · saved ", saved))
    console.print(grid)


def pipe_width(r: Report) -> int:
    """Columns of the table view in a pipe or a CI log: WIDTH, or as many as the widest table of numbers needs.

    Squeezed below its natural width, rich folds every column, headers and numbers inside words (`teach`/`er-on`/`ly`);
    a log has room to spare. A terminal's width, or COLUMNS, is obeyed instead (stdout_console).
    """
    measure = Console(width=10_000)
    tables = [_tasks_table(r), _models_table(r), _days_table(r)] + ([_chains_table(r)] if has_chains(r) else [])
    return max([WIDTH] + [Measurement.get(measure, measure.options, t).maximum for t in tables])


def _print_tasks(r: Report, console: Console) -> None:
    console.print()
    console.print(_tasks_table(r))


def _batch_line(t: dict, prefix: str = "", end: str = "") -> str:
    """The part of the spend made through batches, at batch rates; empty when there was none."""
    if not t.get("batch_calls"):
        return ""
    return f"{prefix}{usd(t['batch_cost_usd'])} of it on {t['batch_calls']:,} batch calls{end}"


def _tasks_table(r: Report) -> Table:
    batches = any(t.get("batch_calls") for t in r.tasks)  # a column of its own only when some spend was batched
    table = _table("Tasks", "task", "calls", "student", "fallback", "teacher", "tokens in", "out", "spend",
                   *(["batch"] if batches else []), "teacher-only", "saved")
    for t in r.tasks:
        table.add_row(
            t["task"], f"{t['calls']:,}", pct(t["student_share"], None, none="-"), pct(t["fallback_share"], None, none="-"),
            pct(t["teacher_share"], None, none="-"),
            count(t["input_tokens"]), count(t["output_tokens"]), usd(t["cost_usd"]) + ("+?" if t["unknown_cost_calls"] else ""),
            *([usd(t["batch_cost_usd"]) if t["batch_calls"] else "-"] if batches else []),
            usd(t["teacher_only_cost_usd"]), usd(t["savings_usd"]),
        )
    return table


def _print_chains(r: Report, console: Console) -> None:
    if not has_chains(r):
        if r.by == "tier":
            console.print()
            console.print("no calls served by a chain of students")
        return
    console.print()
    console.print(_chains_table(r))


def _chains_table(r: Report) -> Table:
    """Per chain, a line per tier (what it answered, what its attempts cost, declines included, and what it saved
    against the teacher's price of the calls it answered), then the teacher's line."""
    table = _table("Chains, tier by tier", "task", "tier", "student", "asked", "answered", "declined", "errors", "cost",
                   "saved")
    table.columns[2].justify, table.columns[2].no_wrap = "left", True
    for t in r.tasks:
        for c in t.get("chains", []):
            table.add_row(Text(f"{t['task']}: {c['chain']}", style="bold"), "", "", f"{c['calls']:,} calls")
            for tier in c["tiers"]:
                table.add_row(
                    "", str(tier["tier"]), tier["student"] or "?", f"{tier['asked']:,}",
                    f"{tier['answered']:,} ({pct(tier['share'], None)})", f"{tier['declined']:,}", f"{tier['errors']:,}",
                    usd(tier["cost_usd"]) + ("+?" if tier["unknown_cost_attempts"] else ""), usd(tier["saved_usd"]),
                )
            table.add_row(
                "", "teacher", t["teacher_model"] or "", f"{c['teacher_calls']:,}",
                f"{c['teacher_calls']:,} ({pct(c['teacher_share'], None)})", "", "",
                usd(c["teacher_cost_usd"]) + ("+?" if c["teacher_unknown_cost_calls"] else ""), "",
            )
    return table


def _print_recommendations(r: Report, console: Console) -> None:
    table = _table("Recommendations", "task", "gate", "drift", "recommendation")
    table.columns[1].justify = table.columns[2].justify = table.columns[3].justify = "left"
    for t in r.tasks:
        lines = [t["recommendation"]] + [f"· {lv['text']}" for lv in t["levers"]]
        table.add_row(t["task"], _gate_text(t["gate"]), _drift_text(t["drift"]), "\n".join(lines))
    console.print()
    console.print(table)


def _print_models(r: Report, console: Console) -> None:
    console.print()
    console.print(_models_table(r))


def _models_table(r: Report) -> Table:
    table = _table("Models", "model", "provider", "calls", "shadow", "tokens in", "out", "cache read", "spend")
    table.columns[1].justify = "left"
    for m in r.models:
        table.add_row(
            m["model"], m["provider"] or "", f"{m['calls']:,}", f"{m['shadow_calls']:,}", count(m["input_tokens"]),
            count(m["output_tokens"]), count(m["cache_read_tokens"]),
            usd(m["cost_usd"]) + ("+?" if m["unknown_cost_calls"] else ""),
        )
    return table


def _print_days(r: Report, console: Console) -> None:
    console.print()
    console.print(_days_table(r))


def _days_table(r: Report) -> Table:
    table = _table("Days", "day", "calls", "shadow", "tokens in", "out", "spend", "teacher-only", "saved")
    for d in r.days:
        table.add_row(
            d["day"], f"{d['calls']:,}", f"{d['shadow_calls']:,}", count(d["input_tokens"]), count(d["output_tokens"]),
            usd(d["cost_usd"]) + ("+?" if d["unknown_cost_calls"] else ""), usd(d["teacher_only_cost_usd"]),
            usd(d["savings_usd"]),
        )
    return table


def chart_buckets(days: list[dict]) -> list[tuple[str, float, float]]:
    """(label, spend, teacher-only) per day, or per week (labelled by its first day) past CHART_MAX_BARS days."""
    if len(days) <= CHART_MAX_BARS:
        return [(d["day"], d["cost_usd"], d["teacher_only_cost_usd"]) for d in days]
    from datetime import date, timedelta

    weeks: dict[str, list[float]] = {}
    for d in days:
        day = date.fromisoformat(d["day"])
        label = (day - timedelta(days=day.weekday())).isoformat()
        w = weeks.setdefault(label, [0.0, 0.0])
        w[0] += d["cost_usd"]
        w[1] += d["teacher_only_cost_usd"]
    return [(f"{label} wk", s, t) for label, (s, t) in weeks.items()]


def bar(spend: float, teacher_only: float, scale: float, width: int) -> Text:
    """Spend as solid blocks (eighths for the tail), then what was saved up to teacher-only as light shade."""
    cells = spend / scale * width if scale else 0.0
    full, eighths = int(cells), int(round((cells - int(cells)) * 8))
    if eighths == 8:
        full, eighths = full + 1, 0
    solid = "█" * full + (EIGHTHS[eighths] if eighths else "")
    saved_cells = max(int(round(teacher_only / scale * width)) - len(solid), 0) if scale else 0
    return Text.assemble((solid, "cyan"), ("░" * saved_cells, "green"))


def _print_chart(r: Report, console: Console) -> None:
    buckets = chart_buckets(r.days)
    if not buckets:
        return
    label_w = max(len(b[0]) for b in buckets)
    values = [f"{usd(s)}" + (f" / {usd(t)}" if t > s else "") for _, s, t in buckets]
    value_w = max(len(v) for v in values)
    width = max(console.width - label_w - value_w - 4, 10)
    scale = max(max(s, t) for _, s, t in buckets) or 1.0
    console.print()
    title = "Spend per " + ("week" if len(buckets) < len(r.days) else "day")
    console.print(Text.assemble((title, "bold"), ("  █ spend  ░ saved (up to teacher-only)", "dim")))
    for (label, s, t), value in zip(buckets, values):
        line = Text(label.ljust(label_w) + "  ")
        line.append_text(bar(s, t, scale, width))
        line.append("  " + value)
        console.print(line, no_wrap=True, overflow="crop")


def _print_budget(b: dict, console: Console) -> None:
    console.print()
    fits = b["fits"]
    console.print(
        Text.assemble((f"Budget {usd(b['amount_usd'])}/{b['per']}: ", "bold"), (_budget_line(b), "" if fits else "yellow"))
    )
    table = _table("", *_budget_rows(b)[0])
    for col in table.columns[3:6]:
        col.justify = "left"
    for row in _budget_rows(b)[1]:
        table.add_row(*row)
    console.print(table)


def _print_gate(g: dict, console: Console) -> None:
    console.print()
    console.print(
        Text.assemble((f"Gate {g['task']}", "bold"), f" ({Path(g['file']).name}): ", (_gate_line(g), "" if g.get("passed") else "red"))
    )
    if g["worst_disagreements"]:
        console.print(Text("Worst disagreements (errors, then least similar, then most confident first)", style="dim"))
        table = _table("", *_worst_rows(g)[0])
        for col in table.columns[1:]:
            col.justify = "left"
        for row in _worst_rows(g)[1]:
            table.add_row(*row)
        console.print(table)


def sparkline(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo
    return "".join(
        " " if v is None else SPARK[int((v - lo) / span * (len(SPARK) - 1)) if span else len(SPARK) - 1] for v in values
    )


def _print_drift(d: dict, console: Console) -> None:
    runs = d["runs"][-(console.width - 40):]
    console.print()
    status_style = {"ok": "green", "drifted": "yellow", "demoted": "red"}[d["status"]]
    console.print(
        Text.assemble((f"Drift {d['task']}", "bold"), f" (student {d['student_id']}, {len(d['runs'])} runs): ",
                      (d["status"], status_style))
    )
    last = runs[-1]
    for name, key, extra in (
        ("agreement", "agreement", f" [{_num(last['lower_bound'])}, {_num(last['upper_bound'])}]"),
        ("input shift", "input_shift",
         f" (threshold {_num(last['input_shift_threshold'])})" if last.get("input_shift_threshold") is not None else ""),
    ):
        values = [run[key] for run in runs]
        known = [v for v in values if v is not None]
        if not known:
            continue
        console.print(
            Text(f"  {name:<12}"), Text(sparkline(values), style="cyan"),
            Text(f"  {min(known):.3f}–{max(known):.3f}, latest {_num(last[key])}{extra}"),
        )
