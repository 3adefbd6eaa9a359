"""`build_report`: read every input, compute the report, and the `Report` it returns.

The work is split by concern: inputs.py (what was given), calls.py (the view
every query reads), aggregates.py (the one GROUP BY pass and its roll-ups),
chains.py (a chain's calls tier by tier),
task_stats.py (outputs and repeated inputs), levers.py (prompt caching, batch),
evidence.py (gates, drift, students), advice.py (recommendation and budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from distill_cli import store
from distill_cli.errors import InputError
from distill_cli.report import advice, chains, evidence
from distill_cli.report.aggregates import Aggregates
from distill_cli.report.calls import calls_view
from distill_cli.report.inputs import NEEDED_BY, Budget, Inputs, classify_inputs, parse_budget, parse_since
from distill_cli.report.levers import levers as task_levers
from distill_cli.report.rows import TaskRow
from distill_cli.report.task_stats import measure

if TYPE_CHECKING:
    from distill_cli.prices import PriceTable

SCHEMA = "report/1"


@dataclass
class Report:
    """The report as plain data; `to_dict()` is what `--format json` prints."""

    period: dict
    totals: dict
    tasks: list[dict]
    models: list[dict]
    days: list[dict]
    by: str = "task"
    inputs: dict = field(default_factory=dict)
    prices: dict = field(default_factory=dict)
    gates: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    students: list[dict] = field(default_factory=list)
    budget: dict | None = None
    levers: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    generated_at: str = ""

    @property
    def empty(self) -> bool:
        """No calls in the stores given (after filters)."""
        return self.totals["calls"] == 0 and self.totals["shadow_calls"] == 0

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "generated_at": self.generated_at,
            "inputs": self.inputs,
            "period": self.period,
            "by": self.by,
            "prices": self.prices,
            "totals": self.totals,
            "tasks": self.tasks,
            "models": self.models,
            "days": self.days,
            "levers": self.levers,
            "budget": self.budget,
            "gates": self.gates,
            "drift": self.drift,
            "students": self.students,
            "notes": self.notes,
        }


def build_report(
    paths: Iterable[str | Path],
    *,
    since: str | datetime | date | None = None,
    task: str | None = None,
    by: str = "task",
    budget: str | Budget | None = None,
    prices: PriceTable | str | Path | None = None,
    now: datetime | None = None,
) -> Report:
    """Read every path given and compute the report.

    `prices`: None keeps each row's recorded cost; a PriceTable, or the path of a
    price file (applied over the packaged table), reprices every row from its
    token counts. `since`: "7d", "24h", a date, or a datetime. `budget`: "50/day",
    "1000/month" or a Budget. Raises InputError (exit 3) for unreadable,
    wrong-kind or missing inputs and an unknown --task; ValueError for a bad
    `since`/`budget`/`by`.
    """
    if by not in ("task", "model", "day", "tier"):
        raise ValueError(f"by {by!r}: expected task, model, day or tier")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    since_at = parse_since(since, now) if since is not None else None
    budget = parse_budget(budget) if budget is not None else None
    inputs = classify_inputs(paths)

    from distill_cli.prices import PriceTable, load_prices

    repriced = prices is not None
    table = prices if isinstance(prices, PriceTable) else load_prices(prices)

    con = _connect(inputs, since_at, task, table if repriced else None)
    agg = Aggregates.read(con)
    if task is not None and inputs.stores and not agg.groups:
        recorded = [r[0] for r in con.execute("SELECT DISTINCT task FROM examples ORDER BY 1 LIMIT 20").fetchall()]
        if recorded:
            raise InputError(f"no calls of task {task!r} in {', '.join(map(str, inputs.stores))}; tasks recorded: {', '.join(recorded)}")

    gates = [g for g in (evidence.read_gate(con, p) for p in inputs.verdicts) if task is None or g["task"] == task]
    drift = evidence.read_drift(con, inputs.drift, since_at, task)
    students = [s for s in (evidence.read_student(p) for p in inputs.students) if task is None or s["task"] == task]
    uncovered = evidence.uncovered_students(gates, students)

    period = agg.period(since_at)
    tasks = agg.tasks(period["days"])
    tiers = chains.read_chains(con, agg.teacher_mean)
    for t in tasks:
        t.chains = tiers.get(t.task, [])
    measure(con, tasks, period)
    levers = _advise(con, tasks, gates, drift, table, since_at)

    report = Report(
        period=period,
        totals=agg.totals(),
        tasks=[],
        models=agg.models(),
        days=agg.days(),
        by=by,
        inputs=inputs.to_dict(),
        prices={"version": table.version, "repriced": repriced},
        gates=gates,
        drift=drift,
        students=students,
        levers=levers,
        generated_at=now.isoformat(),
    )
    if budget is not None and not report.empty:
        report.budget = advice.budget_decisions(budget, tasks)
    report.notes = advice.notes(report.totals, report.levers) + chains.notes(tasks) + uncovered
    for hint in (store.journal_hint(inputs.stores), store.quarantine_hint(inputs.stores)):
        if hint:
            report.notes.append(hint)
    report.tasks = [t.to_dict() for t in tasks]
    return report


def _connect(inputs: Inputs, since: datetime | None, task: str | None, reprice):
    """A DuckDB connection with the views every query reads: `examples` (the stores) and `calls`."""
    con = store.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Every query reads the same parts: parse each footer once.
    con.execute("SET parquet_metadata_cache = true")
    store.examples_view(con, inputs.stores, NEEDED_BY)
    calls_view(con, since, task, reprice)
    return con


def _advise(con, tasks: list[TaskRow], gates: list[dict], drift: list[dict], prices, since: datetime | None) -> list[dict]:
    """Give each task its evidence, levers and recommendation; the levers of all tasks."""
    latest_gate = evidence.latest_by_task(gates)
    drift_by_task = {d["task"]: d for d in drift}
    for d in drift:
        evidence.chain_drift(d, latest_gate.get(d["task"]))
        d.pop("_by_student", None)
    levers: list[dict] = []
    for t in tasks:
        t.gate = evidence.gate_brief(latest_gate.get(t.task))
        t.drift = evidence.drift_brief(drift_by_task.get(t.task))
        t.levers = task_levers(con, t, prices, since)
        levers += [{"task": t.task, **lv} for lv in t.levers]
        advice.recommend(t, latest_gate.get(t.task), drift_by_task.get(t.task), prices)
    return levers
