"""The `cache` student: the teacher's own answers for inputs it has already seen, keyed by input_hash."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from distill_cli import canonical
from distill_cli.students.base import Answer, Student, StudentSpec
from distill_cli.students.training import BuildContext, base_spec

ROWS_SCHEMA = pa.schema([("input_hash", pa.string()), ("output", pa.string())])


class CacheStudent(Student):
    def __init__(self, spec: StudentSpec, answers: dict[str, str]) -> None:
        super().__init__(spec)
        self.answers = answers

    def answer(self, request: dict) -> Answer:
        output = self.answers.get(canonical.input_hash(request))
        if output is None:
            return Answer(None, reason="not seen before")
        return Answer(output, confidence=1.0)


def rows_for(answers: dict[str, str]) -> pa.Table:
    return pa.table({"input_hash": list(answers), "output": list(answers.values())}, schema=ROWS_SCHEMA)


def build(ctx: BuildContext):
    """The teacher's most frequent answer for each distinct training input: (spec, rows, spent, notes)."""
    answers: dict[str, Counter] = {}
    for e in ctx.selection.train:
        answers.setdefault(canonical.input_hash(e.request()), Counter())[e.output] += 1
    table = {h: c.most_common(1)[0][0] for h, c in answers.items()}
    spec = base_spec("cache", ctx.selection, {})
    repeats = 1 - len(answers) / len(ctx.selection.train)
    spec.threshold = None
    spec.metrics = {"entries": len(table), "n_train": len(ctx.selection.train), "repeat_rate": round(repeats, 4)}
    return spec, rows_for(table), 0.0, []


def load(spec: StudentSpec, table: pa.Table, path) -> CacheStudent:
    return CacheStudent(spec, dict(zip(table["input_hash"].to_pylist(), table["output"].to_pylist())))
