"""The one GROUP BY pass over the calls, and the tables rolled up from it: totals, tasks, models, days.

Teacher-only cost is counted at (task, day) granularity: a shadow row measured
the teacher's cost of one student call exactly; every other student call is
priced at the task's mean answered, priced teacher call. What a chain's tiers
cost on the calls they passed to the teacher joins the groups as groups of no
calls (chains.py): spend, never teacher-only cost.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Hashable

from distill_cli.formatting import round_usd
from distill_cli.report.calls import EPOCH_DAY
from distill_cli.report.chains import attempt_rows, chain_calls_table
from distill_cli.report.rows import TEACHER_SIDE, Tally, TaskRow

_WINDOWS_PER_HOUR = 12  # 5-minute prompt-cache lifetimes


@dataclass
class Group:
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
    batched: bool = False  # made through a batch, at batch rates (calls.py `batched`)
    flex: bool = False  # OpenAI flex tier: batch rates already, without a batch

    @property
    def teacher_side(self) -> bool:
        return self.served_by in TEACHER_SIDE

    @property
    def batchable(self) -> bool:
        """Answers nobody waits on in the live path (non-streaming teacher calls, shadow checks), not already
        made through a batch or at batch rates (flex): a Batch API would save them nothing."""
        return (self.ok and not self.stream and not self.batched and not self.flex
                and self.served_by in ("teacher", "shadow"))

    @property
    def uncached(self) -> bool:
        """Anthropic teacher calls that neither read nor wrote the prompt cache."""
        return self.ok and self.nocache and self.teacher_side and self.provider == "anthropic"


class Aggregates:
    """One GROUP BY pass over the calls; every table is a roll-up of its groups."""

    def __init__(self, groups: list[Group]):
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
    def read(cls, con) -> Aggregates:
        """The one pass over the calls: groups per hour in DuckDB, handed to Python per day."""
        con.execute(
            """CREATE OR REPLACE TEMP TABLE hourly AS
               SELECT task, hour, model, served_by, provider, ok, stream, nocache, stakes, batched, flex,
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
                      sum(cache_read_tokens), sum(cache_write_tokens), min(first), max(last), batched, flex
               FROM hourly GROUP BY ALL"""
        ).fetchall()
        # What a chain's tiers cost on the calls they passed to the teacher is spend too (chains.py).
        chain_calls_table(con)
        groups = cls([Group(*r) for r in rows + attempt_rows(con)])
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

    def _rollup(self, key: Callable[[Group], Hashable]) -> dict:
        """Sum the groups by `key(group)` into finished Tallies, with teacher-only cost at (task, day) granularity."""
        out: dict = {}
        per_task_day: dict = defaultdict(lambda: {"student": 0, "shadow": 0})
        for g in self.groups:
            k = key(g)
            if k not in out:
                out[k] = Tally()
            out[k].add(g)
            if g.served_by in ("student", "shadow"):
                per_task_day[(k, g.task, g.day)][g.served_by] += g.calls
        # A shadow row measured the teacher's cost of one student call exactly; the other
        # student calls are priced at the task's mean teacher call.
        for (k, t, _), c in per_task_day.items():
            unshadowed = max(c["student"] - c["shadow"], 0)
            mean = self.teacher_mean.get(t)
            if mean is None:
                out[k].teacher_only_unknown_calls += unshadowed
            else:
                out[k].teacher_only_cost_usd += unshadowed * mean
        for tally in out.values():
            tally.finish()
        return out

    def tasks(self, days: float) -> list[TaskRow]:
        tallies = self._rollup(lambda g: g.task)
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
                e["uncached"] += g.calls
                e["uncached_input_tokens"] += g.input_tokens
                if g.model:
                    uncached_models[g.task][g.model] += g.calls
            if g.served_by in ("teacher", "fallback"):
                teacher_models[g.task][g.model] += g.calls
                e["answered"] += g.calls
                e["prompt_tokens"] += g.input_tokens + g.cache_read_tokens + g.cache_write_tokens
                e["output_tokens"] += g.output_tokens
        out = [
            self._task_row(t, tally, extra[t], days, _most_common(teacher_models[t]), _most_common(uncached_models[t]))
            for t, tally in tallies.items()
        ]
        return sorted(out, key=lambda t: (-t.tally.teacher_only_cost_usd, -t.tally.calls, t.task))

    def _task_row(self, task: str, tally: Tally, e: Counter, days: float, teacher_model, uncached_model) -> TaskRow:
        mean = self.teacher_mean.get(task)
        answered = e["answered"]
        return TaskRow(
            task=task,
            tally=tally,
            teacher_model=teacher_model,
            teacher_cost_per_call_usd=round(mean, 8) if mean is not None else None,
            calls_per_day=round(tally.calls / days, 2) if days else 0.0,
            cost_per_day_usd=round_usd(tally.cost_usd / days) if days else 0.0,
            teacher_only_per_day_usd=round_usd(tally.teacher_only_cost_usd / days) if days else 0.0,
            examples=e["examples"],
            high_stakes_calls=e["high_stakes_calls"],
            uncached=e["uncached"],
            uncached_avg_tokens=e["uncached_input_tokens"] / e["uncached"] if e["uncached"] else 0.0,
            uncached_model=uncached_model,
            cache_windows=self.cache_windows.get(task, 0.0),
            prompt_avg=e["prompt_tokens"] / answered if answered else 0.0,
            output_avg=e["output_tokens"] / answered if answered else 0.0,
        )

    def models(self) -> list[dict]:
        tallies = self._rollup(lambda g: g.model or "(none)")
        providers: dict[str, str] = {}
        for g in self.groups:
            providers.setdefault(g.model or "(none)", g.provider or "")
        out = [{"model": m, "provider": providers.get(m), **t.to_dict(teacher_only=False)} for m, t in tallies.items()]
        return sorted(out, key=lambda m: (-m["cost_usd"], -m["rows"], m["model"]))

    def days(self) -> list[dict]:
        tallies = self._rollup(lambda g: g.day)
        return [{"day": (EPOCH_DAY + timedelta(days=d)).isoformat(), **tallies[d].to_dict()} for d in sorted(tallies)]

    def totals(self) -> dict:
        tallies = self._rollup(lambda g: "all")
        return (tallies.get("all") or Tally().finish()).to_dict()


def _most_common(counter: Counter):
    return counter.most_common(1)[0][0] if counter else None
