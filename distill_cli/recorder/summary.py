"""What a recording session did, by task: calls, errors, tokens, cost.

Cost is summed only over priced calls; calls of a model without a price are
counted and named, never added as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distill_cli.prices import USAGE_FIELDS


@dataclass
class TaskTally:
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0  # every prompt token: uncached, cache reads and cache writes
    output_tokens: int = 0
    cost_usd: float = 0.0  # over priced calls only
    unpriced: int = 0  # answered calls whose model has no price
    unpriced_models: set[str] = field(default_factory=set)
    unknown_counts: int = 0  # calls whose usage held a count that is no token count (null in the row, unpriced)

    def add(self, row: dict) -> None:
        self.calls += 1
        if row.get("error") or (row.get("status") or 0) >= 400 or row.get("status") is None:
            self.errors += 1
        # A null count is unknown (the provider's was no token count): it adds nothing, and the call has no cost.
        count = {c: row[c] or 0 for c in USAGE_FIELDS}
        self.input_tokens += (
            count["input_tokens"] + count["cache_read_tokens"] + count["cache_write_5m_tokens"]
            + count["cache_write_1h_tokens"]
        )
        self.output_tokens += count["output_tokens"]
        if row.get("cost_usd") is not None:
            self.cost_usd += row["cost_usd"]
        elif any(row[c] is None for c in USAGE_FIELDS):
            self.unpriced += 1  # its model may well have a price: the counts were what could not be priced
            self.unknown_counts += 1
        elif row.get("status") == 200 and (row["input_tokens"] or row["output_tokens"]):
            self.unpriced += 1
            self.unpriced_models.add(row.get("model") or "?")

    def to_dict(self) -> dict:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd if self.calls > self.unpriced else None,
            "unpriced_calls": self.unpriced,
            "unpriced_models": sorted(self.unpriced_models),
            "unknown_count_calls": self.unknown_counts,
        }


@dataclass
class RecordSummary:
    store: str
    run_id: str
    tasks: dict[str, TaskTally] = field(default_factory=dict)
    recovered: int = 0  # rows of an earlier, killed recorder turned into parts at start
    quarantined: list = field(default_factory=list)  # store.Quarantined: earlier journal segments moved aside at start
    unrecorded: int = 0  # calls answered but not written (the store failed)
    write_error: str | None = None
    exit_status: int | None = None  # the wrapped job's, when there was one

    def add(self, row: dict) -> None:
        self.tasks.setdefault(row["task"], TaskTally()).add(row)

    @property
    def total(self) -> TaskTally:
        total = TaskTally()
        for t in self.tasks.values():
            total.calls += t.calls
            total.errors += t.errors
            total.input_tokens += t.input_tokens
            total.output_tokens += t.output_tokens
            total.cost_usd += t.cost_usd
            total.unpriced += t.unpriced
            total.unpriced_models |= t.unpriced_models
            total.unknown_counts += t.unknown_counts
        return total

    def to_dict(self) -> dict:
        return {
            "store": self.store,
            "run_id": self.run_id,
            **self.total.to_dict(),
            "tasks": {name: t.to_dict() for name, t in sorted(self.tasks.items())},
            "recovered": self.recovered,
            "quarantined": [q.to_dict() for q in self.quarantined],
            "unrecorded": self.unrecorded,
            "write_error": self.write_error,
            "exit_status": self.exit_status,
        }
