"""The rows of the report: a `Tally` of calls (what every table sums) and a `TaskRow` per task.

A TaskRow carries, besides what `--format json` prints, the working values the
levers and the recommendation read (uncached calls, mean tokens, why the
teacher must keep answering); `to_dict()` leaves those out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from distill_cli.formatting import round_usd, share

SERVERS = ("teacher", "student", "fallback", "shadow")  # who answered a row (`served_by`)
TEACHER_SIDE = ("teacher", "fallback", "shadow")  # rows whose answer and cost are the teacher's


@dataclass
class Tally:
    """Calls summed: every number adds up across groups of calls. `finish()` rounds and derives the savings."""

    calls: int = 0  # what the job asked for: teacher + student + fallback rows, never shadow rows
    rows: int = 0
    served: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVERS, 0))  # rows by `served_by`
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    teacher_only_cost_usd: float = 0.0
    unknown_cost_models: dict[str, int] = field(default_factory=Counter)
    teacher_only_unknown_calls: int = 0
    batchable: int = 0  # answered non-streaming teacher and shadow calls (a Batch API could have taken them)
    batchable_cost: float = 0.0
    batch_calls: int = 0  # calls made through a batch, at batch rates (their cost is part of cost_usd)
    batch_cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    savings_usd: float = 0.0
    savings_pct: float = 0.0

    def add(self, g) -> None:
        """Add a group of calls (`aggregates.Group`), all but the student calls' teacher-only cost."""
        n = g.calls
        self.rows += n
        self.served[g.served_by] = self.served.get(g.served_by, 0) + n
        if g.served_by != "shadow":
            self.calls += n
        self.input_tokens += g.input_tokens
        self.output_tokens += g.output_tokens
        self.cache_read_tokens += g.cache_read_tokens
        self.cache_write_tokens += g.cache_write_tokens
        self.errors += 0 if g.ok else n
        self.cost_usd += g.cost
        if g.batchable:
            self.batchable += n
            self.batchable_cost += g.cost
        if g.batched:
            self.batch_calls += n
            self.batch_cost_usd += g.cost
        if n > g.priced:
            self.unknown_cost_models[g.model or "(none)"] += n - g.priced
        if g.teacher_side:
            self.teacher_only_cost_usd += g.cost
            if g.served_by != "shadow" and n > g.priced:
                self.teacher_only_unknown_calls += n - g.priced

    def finish(self) -> Tally:
        self.unknown_cost_models = dict(sorted(self.unknown_cost_models.items(), key=lambda kv: (-kv[1], kv[0])))
        self.unknown_cost_calls = sum(self.unknown_cost_models.values())
        self.cost_usd = round_usd(self.cost_usd)
        self.batch_cost_usd = round_usd(self.batch_cost_usd)
        self.teacher_only_cost_usd = round_usd(self.teacher_only_cost_usd)
        self.savings_usd = round_usd(self.teacher_only_cost_usd - self.cost_usd)
        self.savings_pct = (
            round(100 * self.savings_usd / self.teacher_only_cost_usd, 2) if self.teacher_only_cost_usd else 0.0
        )
        return self

    @property
    def teacher_calls(self) -> int:
        return self.served["teacher"]

    @property
    def student_calls(self) -> int:
        return self.served["student"]

    @property
    def shadow_calls(self) -> int:
        return self.served["shadow"]

    def to_dict(self, *, teacher_only: bool = True) -> dict:
        """As JSON prints it; without the teacher-only cost and savings (`teacher_only=False`) for the models table."""
        out = {"calls": self.calls, "rows": self.rows, **{f"{s}_calls": self.served[s] for s in SERVERS},
               "errors": self.errors, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
               "cache_read_tokens": self.cache_read_tokens, "cache_write_tokens": self.cache_write_tokens,
               "cost_usd": self.cost_usd, "batch_calls": self.batch_calls, "batch_cost_usd": self.batch_cost_usd}
        if teacher_only:
            out["teacher_only_cost_usd"] = self.teacher_only_cost_usd
        out["unknown_cost_models"] = self.unknown_cost_models
        if teacher_only:
            out["teacher_only_unknown_calls"] = self.teacher_only_unknown_calls
        out.update({f"{s}_calls": n for s, n in self.served.items() if s not in SERVERS})  # served_by values of elsewhere
        out["unknown_cost_calls"] = self.unknown_cost_calls
        if teacher_only:
            out["savings_usd"], out["savings_pct"] = self.savings_usd, self.savings_pct
        return out


@dataclass
class TaskRow:
    """One task: its calls, rates and shares, what was measured of it, its evidence and the advice."""

    task: str
    tally: Tally
    teacher_model: str | None
    teacher_cost_per_call_usd: float | None
    calls_per_day: float
    cost_per_day_usd: float
    teacher_only_per_day_usd: float
    examples: int  # answered teacher-side rows: what a student learns from
    high_stakes_calls: int
    # Working values, not printed: Anthropic teacher calls sent without prompt caching, and mean tokens.
    uncached: int = 0
    uncached_avg_tokens: float = 0.0
    uncached_model: str | None = None
    cache_windows: float = 0.0  # 5-minute windows those calls fall in (see aggregates.Aggregates.read)
    prompt_avg: float = 0.0  # prompt tokens of an answered teacher call
    output_avg: float = 0.0
    # Measured only where they can change the recommendation (task_stats.py).
    distinct_outputs: int | None = None
    output_sample: int = 0
    top_outputs_coverage: float | None = None
    closed_set: bool = False
    repeat_share: float | None = None
    # Evidence and advice.
    gate: dict | None = None
    drift: dict | None = None
    levers: list[dict] = field(default_factory=list)
    recommendation: str = ""
    advice: dict = field(default_factory=dict)
    keep: str | None = None  # why the teacher must keep answering, if it must
    budget: dict | None = None
    chains: list[dict] = field(default_factory=list)  # the task's chains, tier by tier (chains.py)

    @property
    def high_stakes(self) -> bool:
        return self.high_stakes_calls > 0

    def share(self, server: str) -> float:
        return share(self.tally.served[server], self.tally.calls)

    def to_dict(self) -> dict:
        out = {
            "task": self.task,
            **self.tally.to_dict(),
            "teacher_share": self.share("teacher"),
            "student_share": self.share("student"),
            "fallback_share": self.share("fallback"),
            "teacher_model": self.teacher_model,
            "teacher_cost_per_call_usd": self.teacher_cost_per_call_usd,
            "calls_per_day": self.calls_per_day,
            "cost_per_day_usd": self.cost_per_day_usd,
            "teacher_only_per_day_usd": self.teacher_only_per_day_usd,
            "examples": self.examples,
            "high_stakes": self.high_stakes,
            "high_stakes_calls": self.high_stakes_calls,
            "distinct_outputs": self.distinct_outputs,
            "output_sample": self.output_sample,
            "top_outputs_coverage": self.top_outputs_coverage,
            "closed_set": self.closed_set,
            "repeat_share": self.repeat_share,
            "gate": self.gate,
            "drift": self.drift,
            "levers": self.levers,
            "recommendation": self.recommendation,
            "advice": self.advice,
        }
        if self.chains:
            out["chains"] = self.chains
        if self.budget is not None:
            out["budget"] = self.budget
        return out
