"""`distill report`: what the recorded calls cost, what distillation saved, and what to do next.

Reads any distill Parquet, each file used for what its `distill.schema` says it
is: example stores (the calls), verdicts files (gate results), drift logs and
student files. Every aggregation over calls runs in DuckDB as a few GROUP BY
passes over narrow columns; Python only rolls up the small grouped results.

The economics, per task (README, "How the money is counted"):

- spend = the recorded cost of every row, shadow rows included (they are extra
  spend caused by distillation); `calls` counts what the job asked for
  (teacher + student + fallback rows), never shadow rows;
- teacher-only cost = what those calls would have cost had the teacher answered
  all of them: the cost of teacher and fallback rows, the exact teacher cost a
  shadow row measured for the student call it checks, and for every other
  student-served call the task's mean cost per teacher call;
- savings = teacher-only cost - spend.

A row whose cost is null (a model without a price) is counted and named, never
summed as 0. This module never prints and never exits; it returns a `Report`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import duckdb

from distill_cli import remote, schemas, store
from distill_cli.economics import as_reduction, cheapest_haiku, json_reduction, reduction_at, reduction_text
from distill_cli.errors import InputError
from distill_cli.formatting import round_usd, share
from distill_cli.prices import RATE_COLUMNS_SQL, TOKEN_COLUMNS, rate_values, sql_cost
from distill_cli.students.base import short_digest
from distill_cli.students.training import CLOSED_SET_MIN_COUNT, is_closed, normalise_sql

if TYPE_CHECKING:
    from distill_cli.prices import PriceTable

SCHEMA = "report/1"
NEEDED_BY = "report"

MIN_EXAMPLES = 100  # below this a task is "collecting (n/100)"
CLOSED_SET_MAX_OUTPUT_TOKENS = 32  # labels are short: tasks answering longer on average are not read for a set
CACHE_MIN_REPEAT_SHARE = 0.2  # a cache student pays off when this share of inputs repeats
ASSUMED_COVERAGE = 0.9  # the share a not-yet-gated classifier / few-shot student is assumed to answer
MONTH_DAYS = 30
# Shortest cacheable prefix, in tokens (Anthropic prompt caching); Haiku needs more.
MIN_CACHEABLE_TOKENS = 1024
MIN_CACHEABLE_TOKENS_HAIKU = 2048
PREFIX_SAMPLE_ROWS = 200
WORST_DISAGREEMENTS = 5

TEACHER_SIDE = ("teacher", "fallback", "shadow")  # rows whose answer and cost are the teacher's


# ---- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A spending limit: `amount` USD per `per` ("day" or "month", a month being 30 days)."""

    amount: float
    per: str


_BUDGET = re.compile(r"\$?\s*(\d+(?:\.\d+)?)\s*(?:usd)?\s*/\s*(day|d|month|mo|m)", re.IGNORECASE)
_DURATION = re.compile(r"(\d+)\s*(h|d|w)", re.IGNORECASE)


def parse_budget(text: str | Budget) -> Budget:
    """`50/day`, `$1000/month` -> Budget; ValueError otherwise."""
    if isinstance(text, Budget):
        return text
    m = _BUDGET.fullmatch(text.strip())
    if not m or not 0 < float(m.group(1)) < math.inf:
        raise ValueError(f"budget {text!r}: expected USD per day or month, like 50/day or 1000/month")
    return Budget(float(m.group(1)), "day" if m.group(2).lower() in ("day", "d") else "month")


def parse_since(text: str | datetime | date, now: datetime) -> datetime:
    """`7d`, `24h`, `2w`, an ISO date or datetime -> an aware UTC datetime; ValueError otherwise."""
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day, tzinfo=timezone.utc)
    m = _DURATION.fullmatch(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        return now - timedelta(hours=n if unit == "h" else 0, days=n if unit == "d" else 7 * n if unit == "w" else 0)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since {text!r}: expected a duration like 7d or 24h, or a date like 2026-11-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---- the result ----------------------------------------------------------------------------


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


# ---- inputs ----------------------------------------------------------------------------------


@dataclass
class _Inputs:
    stores: list = field(default_factory=list)  # Paths, or URIs of remote stores
    verdicts: list[Path] = field(default_factory=list)
    drift: list[Path] = field(default_factory=list)
    students: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: [str(p) for p in v] for k, v in self.__dict__.items()}


_READS = "report reads example stores, verdicts files, drift logs and student files"


def classify_inputs(paths: Iterable[str | Path]) -> _Inputs:
    """Sort paths by their `distill.schema`: directories are stores, files by their footer tag."""
    found = _Inputs()
    for raw in paths:
        if remote.is_remote(raw):  # a store in object storage (s3://, gs://, abfs://)
            found.stores.append(raw)
            continue
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{raw}: no such file or directory")
        if path.is_dir():
            found.stores.append(path)
            continue
        tag = schemas.read_kind(path)
        if tag is None:
            raise InputError(f"{path.name}: not a distill file (no {schemas.SCHEMA_KEY} tag); {_READS}")
        kind = tag.partition("/")[0]
        if kind not in schemas.KIND_NAMES:
            raise InputError(f"{path.name}: unknown kind {tag!r}; {_READS}")
        schemas.check_kind(path, tag, kind, NEEDED_BY)
        by_kind = {"examples": found.stores, "verdicts": found.verdicts, "drift": found.drift, "student": found.students}
        by_kind[kind].append(path)
    return found


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join(_sql_str(v) for v in values)


# ---- building ----------------------------------------------------------------------------------


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
    if by not in ("task", "model", "day"):
        raise ValueError(f"by {by!r}: expected task, model or day")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    since_at = parse_since(since, now) if since is not None else None
    budget = parse_budget(budget) if budget is not None else None
    inputs = classify_inputs(paths)

    from distill_cli.prices import PriceTable, load_prices

    repriced = prices is not None
    table = prices if isinstance(prices, PriceTable) else load_prices(prices)

    con = store.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Every query below reads the same parts: parse each footer once.
    con.execute("SET parquet_metadata_cache = true")
    store.examples_view(con, inputs.stores, NEEDED_BY)
    _calls_view(con, since_at, task, table if repriced else None)

    agg = _Aggregates.read(con)
    if task is not None and inputs.stores and not agg.groups:
        recorded = [r[0] for r in con.execute("SELECT DISTINCT task FROM examples ORDER BY 1 LIMIT 20").fetchall()]
        if recorded:
            raise InputError(f"no calls of task {task!r} in {', '.join(map(str, inputs.stores))}; tasks recorded: {', '.join(recorded)}")

    gates = [g for g in (_read_gate(con, p) for p in inputs.verdicts) if task is None or g["task"] == task]
    drift = _read_drift(con, inputs.drift, since_at, task)
    students = [s for s in (_read_student(p) for p in inputs.students) if task is None or s["task"] == task]
    uncovered = _uncovered_students(gates, students)

    period = agg.period(since_at)
    tasks = agg.tasks(period["days"])
    stats = _task_stats(con, tasks, period)
    latest_gate = _latest_by_task(gates)
    drift_by_task = {d["task"]: d for d in drift}
    levers: list[dict] = []
    for t in tasks:
        t.update(stats.get(t["task"], {}))
        t["gate"] = _gate_brief(latest_gate.get(t["task"]))
        t["drift"] = _drift_brief(drift_by_task.get(t["task"]))
        t["levers"] = _levers(con, t, table, since_at)
        levers += [{"task": t["task"], **lv} for lv in t["levers"]]
        _recommend(t, latest_gate.get(t["task"]), drift_by_task.get(t["task"]), table)

    report = Report(
        period=period,
        totals=agg.totals(),
        tasks=tasks,
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
        report.budget = _budget(budget, report)
    report.notes = _notes(report) + uncovered
    for hint in (store.journal_hint(inputs.stores), store.quarantine_hint(inputs.stores)):
        if hint:
            report.notes.append(hint)
    report.tasks = [_public(t) for t in tasks]
    return report


# ---- calls: the one view every query reads ----------------------------------------------------

_EPOCH_DAY = date(1970, 1, 1)
_HOUR_US = 3_600_000_000

# A call is `ok` when it was answered: no error status, no error recorded.
_OK = "COALESCE(status, 200) < 400 AND error IS NULL"
# A call is high-stakes when its metadata has "high_stakes": true or "stakes": "high"; metadata that is not
# JSON is not. The LIKE keeps the JSON parser off the rows that cannot match.
_HIGH_STAKES = (
    "CASE WHEN {m} LIKE '%stakes%' THEN "
    "COALESCE(TRY(json_extract_string({m}, '$.high_stakes')) = 'true', false) "
    "OR COALESCE(lower(TRY(json_extract_string({m}, '$.stakes'))) = 'high', false) ELSE false END"
)


def _calls_view(con, since: datetime | None, task: str | None, reprice) -> None:
    """View `calls`: the filtered examples with `hour` and `day` (since 1970-01-01, UTC), `cost` and flags.

    `cost` is the recorded cost, or with `reprice` (a PriceTable) the cost of the
    row's tokens at the price in force on its day. Flags: `ok` (answered),
    `nocache` (no cache read or write), `stakes` (tagged high-stakes).
    """
    where = []
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {_sql_str(since.isoformat())}")
    if task is not None:
        where.append(f"task = {_sql_str(task)}")
    where_sql = ("WHERE " + " AND ".join(where)) if where else ""
    # Counts may be missing in files from elsewhere (union_by_name): they count as 0.
    tokens = ", ".join(f"COALESCE({c}, 0) AS {c}" for c in TOKEN_COLUMNS)
    base = f"""SELECT * REPLACE ({tokens}, COALESCE(served_by, 'teacher') AS served_by, COALESCE(stream, false) AS stream),
                      epoch_us(ts) // {_HOUR_US} AS hour, epoch_us(ts) // {24 * _HOUR_US} AS day, {_OK} AS ok
               FROM examples {where_sql}"""
    # A failed call the provider did not bill (an error and no tokens) costs nothing; it is not "unknown".
    unbilled = f"(NOT e.ok AND {' + '.join('e.' + c for c in TOKEN_COLUMNS)} = 0)"
    if reprice is None:
        cost, join = f"CASE WHEN e.cost_usd IS NULL AND {unbilled} THEN 0.0 ELSE e.cost_usd END", ""
    else:
        _rates_table(con, reprice, base)
        cost = f"""CASE
                 WHEN r.model IS NULL THEN
                   -- a local student's cost is its own (0 for a classifier), not the price table's
                   CASE WHEN e.served_by = 'student' THEN e.cost_usd WHEN {unbilled} THEN 0.0 END
                 ELSE {sql_cost("e", "r")}
               END"""
        join = "LEFT JOIN rates r ON r.model = e.model AND r.day = e.day"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW calls AS
        SELECT e.task, e.model, e.provider, e.served_by, e.stream, e.ok, e.ts, e.hour, e.day,
               {", ".join("e." + c for c in TOKEN_COLUMNS)},
               {cost} AS cost,
               e.cache_read_tokens + e.cache_write_5m_tokens + e.cache_write_1h_tokens = 0 AS nocache,
               {_HIGH_STAKES.format(m="e.metadata")} AS stakes,
               e.output, e.input_hash, e.status, e.error
        FROM ({base}) e {join}"""
    )


def _rates_table(con, prices, base: str) -> None:
    """Table `rates`: the price in force for each (model, day) in the data; unknown models are left out."""
    pairs = con.execute(f"SELECT DISTINCT model, day FROM ({base}) WHERE model IS NOT NULL").fetchall()
    con.execute(f"CREATE OR REPLACE TEMP TABLE rates (model VARCHAR, day BIGINT, {RATE_COLUMNS_SQL})")
    rows = []
    for model, day in pairs:
        price = prices.lookup(model, at=_EPOCH_DAY + timedelta(days=day))
        if price is None:
            prices.unknown.add(model)
            continue
        rows.append((model, day, *rate_values(price)))
    if rows:
        con.executemany(f"INSERT INTO rates VALUES ({', '.join(['?'] * len(rows[0]))})", rows)


# ---- the main aggregate -----------------------------------------------------------------------------


@dataclass
class _Group:
    """Calls alike in every key below; every number in it adds up across groups."""

    task: str
    day: int  # days since 1970-01-01, UTC
    model: str | None
    served_by: str
    provider: str | None
    ok: bool
    stream: bool
    nocache: bool
    stakes: bool
    calls: int
    priced: int
    cost: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    first: datetime
    last: datetime

    @property
    def teacher_side(self) -> bool:
        return self.served_by in TEACHER_SIDE

    @property
    def batchable(self) -> bool:
        """Answers nobody waits on in the live path (non-streaming teacher calls, shadow checks)."""
        return self.ok and not self.stream and self.served_by in ("teacher", "shadow")

    @property
    def uncached(self) -> bool:
        """Anthropic teacher calls that neither read nor wrote the prompt cache."""
        return self.ok and self.nocache and self.teacher_side and self.provider == "anthropic"


class _Aggregates:
    """One GROUP BY pass over the calls; every table is a roll-up of its groups."""

    def __init__(self, groups: list[_Group]):
        self.groups = groups
        # Mean cost of an answered, priced teacher call per task: the teacher-only price of a student-served call.
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for g in groups:
            if g.teacher_side and g.ok and g.priced:
                sums[g.task][0] += g.cost
                sums[g.task][1] += g.priced
        self.teacher_mean = {t: s / n for t, (s, n) in sums.items() if n}
        self.cache_windows: dict[str, float] = {}

    @classmethod
    def read(cls, con) -> _Aggregates:
        """The one pass over the calls: groups per hour in DuckDB, handed to Python per day."""
        con.execute(
            """CREATE OR REPLACE TEMP TABLE hourly AS
               SELECT task, hour, model, served_by, provider, ok, stream, nocache, stakes,
                      count(*) AS calls, count(cost) AS priced, COALESCE(sum(cost), 0) AS cost,
                      sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                      sum(cache_read_tokens) AS cache_read_tokens,
                      sum(cache_write_5m_tokens + cache_write_1h_tokens) AS cache_write_tokens,
                      min(ts) AS first, max(ts) AS last
               FROM calls GROUP BY ALL"""
        )
        rows = con.execute(
            """SELECT task, hour // 24, model, served_by, provider, ok, stream, nocache, stakes,
                      sum(calls), sum(priced), sum(cost), sum(input_tokens), sum(output_tokens),
                      sum(cache_read_tokens), sum(cache_write_tokens), min(first), max(last)
               FROM hourly GROUP BY ALL"""
        ).fetchall()
        groups = cls([_Group(*r) for r in rows])
        # Prompt-cache writes an uncached prefix would need: 5-minute windows holding such calls, expected per
        # hour as if its calls were spread evenly (the most writes they could need; bunched calls need fewer).
        groups.cache_windows = dict(
            con.execute(
                f"""SELECT task, sum({_WINDOWS_PER_HOUR} * (1 - exp(-n / {_WINDOWS_PER_HOUR}.0))) FROM (
                        SELECT task, hour, sum(calls) AS n FROM hourly
                        WHERE ok AND nocache AND provider = 'anthropic' AND served_by IN ('teacher', 'fallback', 'shadow')
                        GROUP BY task, hour)
                    GROUP BY task"""
            ).fetchall()
        )
        return groups

    def period(self, since: datetime | None) -> dict:
        if not self.groups:
            return {"start": None, "end": None, "since": since.isoformat() if since else None, "days": 0.0}
        first = min(g.first for g in self.groups)
        last = max(g.last for g in self.groups)
        # Rates per day divide by the days the calls span, at least one: a one-hour run is not a day's rate x 24.
        days = max((last - first).total_seconds() / 86_400, 1.0)
        return {
            "start": first.isoformat(),
            "end": last.isoformat(),
            "since": since.isoformat() if since else None,
            "days": round(days, 4),
        }

    def _rollup(self, key) -> dict:
        """Sum the groups by `key(group)`, with teacher-only cost at (task, day) granularity."""
        out: dict = {}
        per_task_day: dict = defaultdict(lambda: {"student": 0, "shadow": 0})
        for g in self.groups:
            k = key(g)
            r = out.get(k)
            if r is None:
                r = out[k] = _empty_row()
            n = g.calls
            r["rows"] += n
            r[f"{g.served_by}_calls"] = r.get(f"{g.served_by}_calls", 0) + n
            if g.served_by != "shadow":
                r["calls"] += n
            r["input_tokens"] += g.input_tokens
            r["output_tokens"] += g.output_tokens
            r["cache_read_tokens"] += g.cache_read_tokens
            r["cache_write_tokens"] += g.cache_write_tokens
            r["errors"] += 0 if g.ok else n
            r["cost_usd"] += g.cost
            if g.batchable:
                r["_batchable"] += n
                r["_batchable_cost"] += g.cost
            if n > g.priced:
                r["unknown_cost_models"][g.model or "(none)"] += n - g.priced
            if g.teacher_side:
                r["teacher_only_cost_usd"] += g.cost
                if g.served_by != "shadow" and n > g.priced:
                    r["teacher_only_unknown_calls"] += n - g.priced
            if g.served_by in ("student", "shadow"):
                per_task_day[(k, g.task, g.day)][g.served_by] += n
        # A shadow row measured the teacher's cost of one student call exactly; the other
        # student calls are priced at the task's mean teacher call.
        for (k, t, _), c in per_task_day.items():
            unshadowed = max(c["student"] - c["shadow"], 0)
            mean = self.teacher_mean.get(t)
            if mean is None:
                out[k]["teacher_only_unknown_calls"] += unshadowed
            else:
                out[k]["teacher_only_cost_usd"] += unshadowed * mean
        for r in out.values():
            _finish_row(r)
        return out

    def tasks(self, days: float) -> list[dict]:
        rows = self._rollup(lambda g: g.task)
        teacher_models: dict[str, Counter] = defaultdict(Counter)
        uncached_models: dict[str, Counter] = defaultdict(Counter)
        extra: dict[str, Counter] = defaultdict(Counter)
        for g in self.groups:
            e = extra[g.task]
            if g.teacher_side and g.ok:
                e["examples"] += g.calls
            if g.stakes:
                e["high_stakes_calls"] += g.calls
            if g.uncached:
                e["_uncached"] += g.calls
                e["_uncached_input_tokens"] += g.input_tokens
                if g.model:
                    uncached_models[g.task][g.model] += g.calls
            if g.served_by in ("teacher", "fallback"):
                teacher_models[g.task][g.model] += g.calls
                e["_answered"] += g.calls
                e["_prompt_tokens"] += g.input_tokens + g.cache_read_tokens + g.cache_write_tokens
                e["_output_tokens"] += g.output_tokens
        out = []
        for t, r in rows.items():
            e = extra[t]
            mean = self.teacher_mean.get(t)
            answered = e["_answered"]
            out.append(
                {
                    "task": t,
                    **r,
                    "teacher_share": share(r["teacher_calls"], r["calls"]),
                    "student_share": share(r["student_calls"], r["calls"]),
                    "fallback_share": share(r["fallback_calls"], r["calls"]),
                    "teacher_model": _most_common(teacher_models[t]),
                    "teacher_cost_per_call_usd": round(mean, 8) if mean is not None else None,
                    "calls_per_day": round(r["calls"] / days, 2) if days else 0.0,
                    "cost_per_day_usd": round_usd(r["cost_usd"] / days) if days else 0.0,
                    "teacher_only_per_day_usd": round_usd(r["teacher_only_cost_usd"] / days) if days else 0.0,
                    "examples": e["examples"],
                    "high_stakes": e["high_stakes_calls"] > 0,
                    "high_stakes_calls": e["high_stakes_calls"],
                    "_uncached": e["_uncached"],
                    "_uncached_avg_tokens": e["_uncached_input_tokens"] / e["_uncached"] if e["_uncached"] else 0.0,
                    "_uncached_model": _most_common(uncached_models[t]),
                    "_windows": self.cache_windows.get(t, 0.0),
                    "_prompt_avg": e["_prompt_tokens"] / answered if answered else 0.0,
                    "_output_avg": e["_output_tokens"] / answered if answered else 0.0,
                }
            )
        return sorted(out, key=lambda t: (-t["teacher_only_cost_usd"], -t["calls"], t["task"]))

    def models(self) -> list[dict]:
        rows = self._rollup(lambda g: g.model or "(none)")
        providers: dict[str, str] = {}
        for g in self.groups:
            providers.setdefault(g.model or "(none)", g.provider or "")
        out = []
        for m, r in rows.items():
            r = {k: v for k, v in _public(r).items() if not k.startswith(("teacher_only", "savings"))}
            out.append({"model": m, "provider": providers.get(m), **r})
        return sorted(out, key=lambda m: (-m["cost_usd"], -m["rows"], m["model"]))

    def days(self) -> list[dict]:
        rows = self._rollup(lambda g: g.day)
        return [{"day": (_EPOCH_DAY + timedelta(days=d)).isoformat(), **_public(rows[d])} for d in sorted(rows)]

    def totals(self) -> dict:
        rows = self._rollup(lambda g: "all")
        return _public(rows.get("all") or _finish_row(_empty_row()))


_WINDOWS_PER_HOUR = 12  # 5-minute prompt-cache lifetimes


def _most_common(counter: Counter):
    return counter.most_common(1)[0][0] if counter else None


def _empty_row() -> dict:
    return {
        "calls": 0,
        "rows": 0,
        "teacher_calls": 0,
        "student_calls": 0,
        "fallback_calls": 0,
        "shadow_calls": 0,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": 0.0,
        "teacher_only_cost_usd": 0.0,
        "unknown_cost_models": Counter(),
        "teacher_only_unknown_calls": 0,
        "_batchable": 0,
        "_batchable_cost": 0.0,
    }


def _finish_row(r: dict) -> dict:
    r["unknown_cost_models"] = dict(sorted(r["unknown_cost_models"].items(), key=lambda kv: (-kv[1], kv[0])))
    r["unknown_cost_calls"] = sum(r["unknown_cost_models"].values())
    r["cost_usd"] = round_usd(r["cost_usd"])
    r["teacher_only_cost_usd"] = round_usd(r["teacher_only_cost_usd"])
    r["savings_usd"] = round_usd(r["teacher_only_cost_usd"] - r["cost_usd"])
    r["savings_pct"] = round(100 * r["savings_usd"] / r["teacher_only_cost_usd"], 2) if r["teacher_only_cost_usd"] else 0.0
    return r


def _public(row: dict) -> dict:
    """A row without the working values (keys starting with `_`) that only the recommendation reads."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


# ---- per-task statistics that do not add up across groups ----------------------------------------------

# Repeated inputs are measured on a sample of about this many calls per task, outputs on about
# this many answers in all: exact for small stores, bounded time and memory at any size.
INPUT_SAMPLE_ROWS = 50_000
OUTPUT_SAMPLE_ROWS = 100_000
OUTPUT_SAMPLE_MIN = 2_000  # answers wanted of the rarest task that needs them ...
OUTPUT_SAMPLE_MAX_FRACTION = 0.25  # ... within this share of a large store's period
OUTPUT_SLICES = 8


def _task_stats(con, tasks: list[dict], period: dict) -> dict[str, dict]:
    """The set of outputs and the share of repeated inputs, measured only where they can change the
    recommendation (tasks with MIN_EXAMPLES answers, not high-stakes); unmeasured values stay None."""
    stats: dict[str, dict] = {
        t["task"]: {"distinct_outputs": None, "output_sample": 0, "top_outputs_coverage": None, "closed_set": False,
                    "repeat_share": None}
        for t in tasks
    }
    candidates = [t for t in tasks if t["examples"] >= MIN_EXAMPLES and not t["high_stakes"]]
    short = [t for t in candidates if t["_output_avg"] <= CLOSED_SET_MAX_OUTPUT_TOKENS]
    _output_sets(con, short, period, stats, sum(t["examples"] for t in tasks))
    _repeated_inputs(con, [t for t in candidates if not stats[t["task"]]["closed_set"]], stats)
    return stats


def _output_sets(con, tasks: list[dict], period: dict, stats: dict, examples: int) -> None:
    """Distinct normalised answers, the share those seen often enough to be classes cover, and whether
    they form a closed set: `build-student`'s rule (students/training.py), so `--kind auto` picks what this recommends.

    Read from evenly spaced time slices of the period (the Parquet reader skips
    the rest), for tasks whose answers are short enough to be labels.
    """
    if not tasks:
        return
    # Enough of the period for OUTPUT_SAMPLE_ROWS answers, or OUTPUT_SAMPLE_MIN of the rarest task,
    # but never more than OUTPUT_SAMPLE_MAX_FRACTION of a large store.
    fraction = max(OUTPUT_SAMPLE_ROWS / examples, max(OUTPUT_SAMPLE_MIN / t["examples"] for t in tasks))
    if examples > OUTPUT_SAMPLE_ROWS:
        fraction = min(fraction, OUTPUT_SAMPLE_MAX_FRACTION)
    answered = schemas.teacher_answer_sql()
    names = _sql_list(t["task"] for t in tasks)
    rows = con.execute(
        f"""WITH f AS (SELECT task, hash({normalise_sql("output")}) AS h, count(*) AS c FROM calls
                       WHERE {answered} AND task IN ({names}){_time_slices(period, fraction)} GROUP BY task, h)
            SELECT task, count(*), sum(c), count(*) FILTER (WHERE c >= {CLOSED_SET_MIN_COUNT}),
                   COALESCE(sum(c) FILTER (WHERE c >= {CLOSED_SET_MIN_COUNT}), 0)
            FROM f GROUP BY task"""
    ).fetchall()
    for t, distinct, n, frequent, covered in rows:
        s = stats[t]
        s["distinct_outputs"], s["output_sample"] = distinct, n
        s["top_outputs_coverage"] = round(covered / n, 4)
        s["closed_set"] = is_closed(frequent, covered / n)


def _repeated_inputs(con, open_ended: list[dict], stats: dict) -> None:
    """The share of calls whose input_hash was seen before in the task.

    Calls are sampled by the hash of their input, so every repeat of a sampled
    input is in the sample and the share is exact on it.
    """
    if not open_ended:
        return
    # Small tasks are read in full; large ones share one modulus that leaves the smallest of them
    # about INPUT_SAMPLE_ROWS calls. (A modulus per task, as a CASE, made the scan five times slower.)
    small = [t["task"] for t in open_ended if t["calls"] < 2 * INPUT_SAMPLE_ROWS]
    large = [t for t in open_ended if t["calls"] >= 2 * INPUT_SAMPLE_ROWS]
    where = []
    if small:
        where.append(f"task IN ({_sql_list(small)})")
    if large:
        modulus = min(t["calls"] for t in large) // INPUT_SAMPLE_ROWS
        where.append(f"(task IN ({_sql_list(t['task'] for t in large)}) AND hash(input_hash) % {modulus} = 0)")
    rows = con.execute(
        f"""SELECT task, count(*), sum(c) FROM (
                SELECT task, hash(input_hash) AS ih, count(*) AS c FROM calls
                WHERE served_by <> 'shadow' AND input_hash IS NOT NULL AND ({" OR ".join(where)}) GROUP BY task, ih)
            GROUP BY task"""
    ).fetchall()
    for t, distinct, sampled in rows:
        stats[t]["repeat_share"] = round(1 - distinct / sampled, 4)


def _time_slices(period: dict, fraction: float) -> str:
    """A filter keeping `fraction` of the period in evenly spaced slices ("" for all of it)."""
    if fraction >= 1 or not period["start"] or period["start"] == period["end"]:
        return ""
    start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
    step = (end - start) / OUTPUT_SLICES
    width = step * fraction
    slices = [
        f"(ts >= TIMESTAMPTZ {_sql_str((start + step * i).isoformat())} "
        f"AND ts < TIMESTAMPTZ {_sql_str((start + step * i + width).isoformat())})"
        for i in range(OUTPUT_SLICES)
    ]
    return " AND (" + " OR ".join(slices) + ")"


# ---- cost levers besides distillation ----------------------------------------------------------------


def _levers(con, task: dict, prices, since: datetime | None) -> list[dict]:
    out = []
    cache = _prompt_cache_lever(con, task, prices, since)
    if cache:
        out.append(cache)
    batch = _batch_lever(task)
    if batch:
        out.append(batch)
    return out


def _min_cacheable(model: str) -> int:
    return MIN_CACHEABLE_TOKENS_HAIKU if "haiku" in model else MIN_CACHEABLE_TOKENS


def _prompt_cache_lever(con, task: dict, prices, since: datetime | None) -> dict | None:
    """A repeated prompt prefix (tools + system) sent without cache_control: what caching it would save.

    Estimated from a sample of the task's uncached calls: the most common prefix,
    its share, and its tokens (each call's input tokens split by the prefix's
    share of the request's characters). One cache write per 5-minute window
    such calls fall in, counted as if each hour's calls were spread evenly (the
    most writes they could need), every other call a cache read.
    """
    uncached, model = task["_uncached"], task["_uncached_model"]
    if uncached < 2 or not model or task["_uncached_avg_tokens"] < _min_cacheable(model):
        return None
    price = prices.lookup(model)
    if price is None:
        return None
    # The same calls as `_Group.uncached`, read from the examples for their request bodies.
    where = [
        f"task = {_sql_str(task['task'])}",
        f"model = {_sql_str(model)}",
        "provider = 'anthropic'",
        "COALESCE(served_by, 'teacher') IN ('teacher', 'fallback', 'shadow')",
        _OK,
        *(f"COALESCE({c}, 0) = 0" for c in TOKEN_COLUMNS if c.startswith("cache_")),
    ]
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {_sql_str(since.isoformat())}")
    sample = con.execute(
        f"SELECT request_json, input_tokens FROM examples WHERE {' AND '.join(where)} LIMIT {PREFIX_SAMPLE_ROWS}"
    ).fetchall()
    prefixes: dict[str, list[float]] = defaultdict(list)
    for request_json, input_tokens in sample:
        prefix, total_chars = _request_prefix(request_json)
        if prefix and total_chars and input_tokens:
            prefixes[prefix].append(input_tokens * len(prefix) / total_chars)
    if not prefixes:
        return None
    prefix, estimates = max(prefixes.items(), key=lambda kv: len(kv[1]))
    share = len(estimates) / len(sample)
    estimates.sort()
    prefix_tokens = estimates[len(estimates) // 2]
    if prefix_tokens < _min_cacheable(model):
        return None
    calls = int(uncached * share)
    writes = min(math.ceil(task["_windows"]), calls)
    reads = calls - writes
    saving = prefix_tokens * (reads * (price.input - price.cache_read) - writes * (price.cache_write_5m - price.input)) / 1e6
    if reads < 1 or saving <= 0:
        return None
    return {
        "lever": "prompt_caching",
        "calls": calls,
        "prefix_tokens": int(prefix_tokens),
        "cache_writes": writes,
        "estimated_saving_usd": round_usd(saving),
        "estimate": True,
        "text": (
            f"prompt caching: a ~{int(prefix_tokens):,}-token prefix is sent uncached on ~{calls:,} calls; "
            f"cache_control on it saves ~${saving:,.2f} (estimate)"
        ),
    }


def _request_prefix(request_json: str | None) -> tuple[str, int]:
    """(the cacheable prefix of a Messages request: tools then system, as text; the request's size in chars)."""
    try:
        request = json.loads(request_json or "")
    except ValueError:
        return "", 0
    if not isinstance(request, dict):
        return "", 0
    parts = []
    if request.get("tools"):
        parts.append(json.dumps(request["tools"], sort_keys=True))
    system = request.get("system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    if isinstance(system, str):
        parts.append(system)
    prefix = "\n".join(parts)
    messages = request.get("messages") or []
    rest = sum(len(json.dumps(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return prefix, len(prefix) + rest


def _batch_lever(task: dict) -> dict | None:
    """Calls that could have gone through a Batch API (50% off), if their answers can wait."""
    n, cost = task.get("_batchable", 0), task.get("_batchable_cost", 0.0)
    if not n or cost <= 0:
        return None
    return {
        "lever": "batch",
        "calls": n,
        "cost_usd": round_usd(cost),
        "estimated_saving_usd": round_usd(cost / 2),
        "estimate": True,
        "text": f"batch API: up to 50% (~${cost / 2:,.2f}) on {n:,} non-streaming teacher/shadow calls, if they can wait",
    }


# ---- gate results, drift, students -----------------------------------------------------------------------


def _read_gate(con, path: Path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.read_schema(str(path)).metadata or {}
    raw = meta.get(schemas.SUMMARY_KEY.encode())
    try:
        summary = json.loads(raw) if raw else {}
    except ValueError:
        raise InputError(f"{path.name}: verdicts file has a damaged gate summary") from None
    if not isinstance(summary, dict):
        raise InputError(f"{path.name}: verdicts file has a damaged gate summary")
    file_sql = _sql_str(str(path))
    try:
        counts = con.execute(
            f"""SELECT any_value(task), count(*), count(*) FILTER (WHERE answered),
                       count(*) FILTER (WHERE answered AND NOT agree), count(*) FILTER (WHERE error IS NOT NULL)
                FROM read_parquet({file_sql})"""
        ).fetchone()
        worst = con.execute(
            f"""SELECT example_id, input, teacher_output, student_output, confidence, error
                FROM read_parquet({file_sql})
                WHERE (answered AND NOT agree) OR error IS NOT NULL
                ORDER BY error IS NULL, score NULLS LAST, confidence DESC NULLS LAST, example_id
                LIMIT {WORST_DISAGREEMENTS}"""
        ).fetchall()
    except duckdb.Error as e:
        raise InputError(f"{path.name}: not a readable verdicts file ({str(e).splitlines()[0]})") from None
    task, n, answered, disagreed, errors = counts
    return {
        "file": str(path),
        "task": summary.get("task") or task,
        "created": summary.get("created") or summary.get("ts") or _mtime(path),
        **{k: v for k, v in summary.items() if k not in ("task", "created", "ts")},
        "verdicts": {"n": n, "answered": answered, "answered_disagreed": disagreed, "errors": errors},
        "worst_disagreements": [
            {"example_id": w[0], "input": _clip(w[1]), "teacher_output": _clip(w[2]), "student_output": _clip(w[3]),
             "confidence": w[4], "error": _clip(w[5])}
            for w in worst
        ],
    }


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()


def _clip(text: str | None, n: int = 160) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _latest_by_task(gates: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for g in sorted(gates, key=lambda g: str(g["created"])):
        latest[g["task"]] = g
    return latest


def _uncovered_students(gates: list[dict], students: list[dict]) -> list[str]:
    """Mark each passing gate whose student file (given to report) holds other content than it certified; the notes."""
    by_id = {s["id"]: s for s in students}
    notes = []
    for gate in gates:
        student = by_id.get(gate.get("student"))
        if student is None or gate.get("passed") is not True:
            continue
        certified = gate.get("student_digest")
        if certified != student["digest"]:
            gate["changed_since"] = True
            why = (f"changed since (gate: {short_digest(certified)}, file: {short_digest(student['digest'])})"
                   if certified else "was gated before content digests")
            notes.append(f"student {student['id']} ({student['file']}) {why}: its gate in {Path(gate['file']).name} "
                         "does not cover it; gate it again")
    return notes


def _gate_brief(gate: dict | None) -> dict | None:
    if gate is None:
        return None
    keys = ("passed", "agreement", "lower_bound", "upper_bound", "coverage", "n", "cost_reduction", "decision",
            "student", "teacher_cost_per_call", "routed_cost_per_call", "file", "created", "student_digest",
            "changed_since")
    return {k: gate.get(k) for k in keys}


def _read_drift(con, paths: list[Path], since: datetime | None, task: str | None) -> list[dict]:
    if not paths:
        return []
    where = []
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {_sql_str(since.isoformat())}")
    if task is not None:
        where.append(f"task = {_sql_str(task)}")
    by_task: dict[str, list] = defaultdict(list)
    for path in paths:
        try:
            rows = con.execute(
                f"""SELECT task, student_id, ts, pairs, agreement, lower_bound, upper_bound, decline_rate,
                           input_shift, input_shift_threshold, drifted, demoted, reasons
                    FROM read_parquet({_sql_str(str(path))})
                    {"WHERE " + " AND ".join(where) if where else ""}"""
            ).fetchall()
        except duckdb.Error as e:
            raise InputError(f"{path.name}: not a readable drift log ({str(e).splitlines()[0]})") from None
        for r in rows:
            by_task[r[0]].append(r)
    for runs in by_task.values():
        runs.sort(key=lambda r: (r[2] is None, r[2]))
    out = []
    for t, runs in by_task.items():
        last = runs[-1]
        out.append(
            {
                "task": t,
                "student_id": last[1],
                "status": "demoted" if last[11] else "drifted" if last[10] else "ok",
                "runs": [
                    {"ts": r[2].isoformat() if r[2] else None, "pairs": r[3], "agreement": r[4], "lower_bound": r[5],
                     "upper_bound": r[6], "decline_rate": r[7], "input_shift": r[8],
                     "input_shift_threshold": r[9], "drifted": r[10], "demoted": r[11], "reasons": _json_or_text(r[12])}
                    for r in runs
                ],
            }
        )
    return out


def _json_or_text(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _drift_brief(drift: dict | None) -> dict | None:
    if drift is None:
        return None
    last = drift["runs"][-1]
    return {"status": drift["status"], "ts": last["ts"], "agreement": last["agreement"],
            "lower_bound": last["lower_bound"], "input_shift": last["input_shift"], "runs": len(drift["runs"])}


def _read_student(path: Path) -> dict:
    from distill_cli.students import read_student_file

    # Read without refusing an edited file: the report names what the file holds and whether a gate covers it.
    spec, rows = read_student_file(path, NEEDED_BY, verify=False)
    return {
        "file": str(path),
        "id": spec.id,
        "digest": spec.digest,
        "kind": spec.kind,
        "task": spec.task,
        "teacher_model": spec.teacher_model,
        "student_model": spec.student_model,
        "created": spec.created,
        "built_from": spec.built_from,
        "split": spec.split,
        "threshold": spec.threshold,
        "metrics": spec.metrics,
        "rows": rows.num_rows,
    }


# ---- recommendation -----------------------------------------------------------------------------------------


def _student_estimate(task: dict, kind: str, prices) -> tuple[float | None, str]:
    """(expected cost reduction, how it was estimated) for a not-yet-gated student of `kind`."""
    teacher = task.get("teacher_cost_per_call_usd")
    if not teacher:
        return None, "no priced teacher call to compare with"
    if kind == "cache":
        r = task["repeat_share"]
        return (reduction_at(r) if r < 1 else None), f"a cache answers the {r:.0%} of calls whose input repeats, at no cost"
    if kind == "classifier":
        return reduction_at(ASSUMED_COVERAGE), f"assumes a local classifier (cost ~0) answers {ASSUMED_COVERAGE:.0%}"
    try:
        haiku = prices.lookup(cheapest_haiku(prices))  # the model a few-shot build asks by default
    except InputError:
        haiku = None
    if haiku is None:
        return None, "no Haiku price to estimate a few-shot student"
    student = (task["_prompt_avg"] * haiku.input + task["_output_avg"] * haiku.output) / 1e6
    return reduction_at(ASSUMED_COVERAGE, student, teacher), f"assumes {haiku.model} on the same tokens answers {ASSUMED_COVERAGE:.0%}"


def _recommend(task: dict, gate: dict | None, drift: dict | None, prices) -> None:
    """When to distill, with the evidence: sets recommendation, advice and decision inputs."""
    n = task["examples"]
    advice: dict = {"kind": None, "expected_cost_reduction": None, "source": None, "reason": ""}
    task["_keep"] = None  # why the teacher must keep answering, if it must
    if task["high_stakes"]:
        rec, task["_keep"] = "keep teacher (high-stakes)", "high-stakes"
        advice["reason"] = f"{task['high_stakes_calls']:,} calls are tagged high-stakes in metadata"
    elif drift is not None and drift["status"] in ("drifted", "demoted"):
        rec = f"keep teacher: student {drift['status']}"
        task["_keep"] = f"student {drift['status']}"
        advice["reason"] = "the latest drift check failed; rebuild and gate the student"
    elif gate is not None:
        reduction = as_reduction(gate.get("cost_reduction"))
        advice.update(kind=_gate_kind(gate), expected_cost_reduction=reduction, source="gate", reason=_gate_reason(gate))
        if gate.get("passed") and gate.get("changed_since"):
            rec = "keep teacher: the gate does not cover the student file"
            task["_keep"] = "student file changed since its gate"
            advice["reason"] += "; the student file given changed since this gate: gate it again"
        elif gate.get("passed"):
            rec = "distilled" if task["student_calls"] else "distill"
            if advice["kind"]:
                rec += f": {advice['kind']}"
            if reduction:
                rec += f", {reduction_text(reduction)}"
            rec += " (gate passed)"
        else:
            agreement = gate.get("agreement")
            rate = f"{agreement:.1%}" if isinstance(agreement, (int, float)) else "unknown"
            rec = f"keep teacher: gate failed (agreement {rate})"
            task["_keep"] = f"student quality too low ({rate})"
    elif n < MIN_EXAMPLES:
        rec = f"collecting ({n}/{MIN_EXAMPLES})"
        advice["reason"] = f"{MIN_EXAMPLES} teacher answers are needed to build and gate a student"
    else:
        if task["closed_set"]:
            kind = "classifier"
            why = f"{task['distinct_outputs']} distinct outputs cover {task['top_outputs_coverage']:.0%} of answers"
        elif (task["repeat_share"] or 0) >= CACHE_MIN_REPEAT_SHARE:
            kind = "cache"
            why = f"{task['repeat_share']:.0%} of inputs repeat"
        else:
            kind = "few-shot"
            why = "open-ended outputs: a cheaper model prompted with examples"
        reduction, how = _student_estimate(task, kind, prices)
        advice.update(kind=kind, expected_cost_reduction=reduction, source="estimate", reason=f"{why}; {how}")
        rec = f"distill: {kind}" + (f", est. {reduction_text(reduction)}" if reduction else f" ({how})")
        monthly = task["teacher_only_per_day_usd"] * MONTH_DAYS * (1 - 1 / reduction) if reduction else 0.0
        if reduction:
            rec += f" (~${monthly:,.2f}/month)"
            advice["estimated_monthly_saving_usd"] = round_usd(monthly)
    advice["expected_cost_reduction"] = json_reduction(advice["expected_cost_reduction"])
    task["recommendation"] = rec
    task["advice"] = advice


def _gate_reason(gate: dict) -> str:
    bits = []
    for key, label in (("agreement", "agreement"), ("lower_bound", "lower bound"), ("coverage", "coverage")):
        if isinstance(gate.get(key), (int, float)):
            bits.append(f"{label} {gate[key]:.1%}")
    return f"gate ({Path(gate['file']).name}): " + (", ".join(bits) or "no figures")


def _gate_kind(gate: dict) -> str | None:
    kind = gate.get("kind") or gate.get("student_kind")
    return kind if isinstance(kind, str) else None


# ---- budget: a decision per task within its share of the budget --------------------------------------------------


def _budget(budget: Budget, report: Report) -> dict:
    """Whether the spend rate fits `budget`, per task and in total, and a decision per task.

    Each task's target is its share of the budget in proportion to its teacher-only
    cost, so the targets add up to the budget. Decision: `no_change` when the
    teacher-only cost is within the target, `collecting` below 100 examples,
    `fallback_teacher` when the task must stay on the teacher (no passing gate,
    high-stakes, drifted), `distilled` when a gate passed, with its cost reduction.
    """
    scale = budget.amount
    factor = 1.0 if budget.per == "day" else MONTH_DAYS  # per-day rates -> the budget's period
    total_teacher = sum(t["teacher_only_per_day_usd"] for t in report.tasks) * factor
    rows = []
    after_total = 0.0
    for t in report.tasks:
        spend = t["cost_per_day_usd"] * factor
        teacher = t["teacher_only_per_day_usd"] * factor
        target = scale * (teacher / total_teacher) if total_teacher else scale
        reduction = as_reduction(t["advice"].get("expected_cost_reduction"))
        gate = t.get("gate")
        if teacher <= target:
            decision, reason = "no_change", "already within budget"
        elif t["examples"] < MIN_EXAMPLES:
            decision, reason = "collecting", f"need more examples ({t['examples']}/{MIN_EXAMPLES})"
        elif t["_keep"]:
            decision, reason = "fallback_teacher", t["_keep"]
        elif gate is None:
            decision, reason = "fallback_teacher", "not gated yet (build-student, then gate)"
        else:
            decision, reason = "distilled", f"cost reduction {reduction_text(reduction)}" if reduction else "gate passed"
        after = teacher / reduction if decision == "distilled" and reduction else spend
        if_distilled = teacher / reduction if reduction else None
        after_total += after
        rows.append(
            {
                "task": t["task"],
                "spend_usd": round_usd(spend),
                "teacher_only_usd": round_usd(teacher),
                "target_usd": round_usd(target),
                "fits": spend <= target,
                "decision": decision,
                "reason": reason,
                "cost_reduction": json_reduction(reduction),
                "reduction_source": t["advice"].get("source"),
                "after_usd": round_usd(after),
                "if_distilled_usd": round_usd(if_distilled) if if_distilled is not None else None,
            }
        )
        t["budget"] = rows[-1]
    spend_total = sum(r["spend_usd"] for r in rows)
    return {
        "amount_usd": budget.amount,
        "per": budget.per,
        "spend_usd": round_usd(spend_total),
        "teacher_only_usd": round_usd(total_teacher),
        "fits": spend_total <= scale,
        "after_usd": round_usd(after_total),
        "fits_after": after_total <= scale,
        "tasks": rows,
    }


def _notes(report: Report) -> list[str]:
    t = report.totals
    notes = []
    if t["unknown_cost_calls"]:
        named = ", ".join(f"{m} ({n:,})" for m, n in t["unknown_cost_models"].items())
        notes.append(f"{t['unknown_cost_calls']:,} calls of unknown cost are not in the totals: {named}")
    if t["teacher_only_unknown_calls"]:
        notes.append(
            f"teacher-only cost leaves out {t['teacher_only_unknown_calls']:,} calls with no priced teacher call to compare"
        )
    if report.levers:
        notes.append("lever savings are estimates from the recorded calls; prompt caching from a sample of requests")
    return notes
