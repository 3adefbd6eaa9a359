"""What a drift run reads from the example stores: the window's traffic, shadow pairs, calls to re-ask, samples.

The router's row contract:
  served_by='student', student_id=<id>   the student answered; `output` is its answer
  served_by='fallback', student_id=<id>  the student declined or failed; the teacher answered
  served_by='shadow', pair_id=<row id>   the teacher, asked in the background about that student row
  served_by='teacher'                    the teacher alone (no student, or the student demoted)

A chain's rows (students/chain.py) name the tier that answered (or, on a fallback,
the last tier asked) and carry every tier asked in metadata key "chain" = {"id",
"tier", "tiers": [{"tier", "student_id", "answered", "cost_usd", "error"}]}. So for
one tier: its served rows and their shadow pairs name it; a call it declined (or
failed on) and a later tier answered or passed on is found in the metadata: a
decline of this tier, as a single student's fallback is. Calls an earlier tier
answered never reached it: they are noted, not counted.

Every query runs on a DuckDB connection with the `examples` view; none writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa

from distill_cli import schemas
from distill_cli.drift.window import utc
from distill_cli.judges import normalize
from distill_cli.students.base import StudentSpec, in_holdout
from distill_cli.students.chain import CHAIN_KEY, SEPARATOR
from distill_cli.students.training import CLOSED_SET_MAX

INPUT_SAMPLE = 2000  # inputs per side the domain classifier sees at most
SERVING = ("teacher", "student", "fallback")  # one row per call the job made (shadow rows duplicate a call)


@dataclass
class Pair:
    """A student answer and the teacher's answer to the same call."""

    id: str
    fresh: bool  # after the previous run's window: new evidence for the detector
    input: str
    student_output: str
    teacher_output: str | None  # None until a live teacher call answers
    request_json: str | None = None
    confidence: float | None = None
    agree: bool = False
    error: str | None = None
    reason: str | None = None
    live: bool = False
    cost_usd: float = 0.0


@dataclass
class Traffic:
    calls: int = 0
    answered: int = 0
    declined: int = 0
    fresh_answered: int = 0
    fresh_declined: int = 0
    other_students: dict = field(default_factory=dict)
    earlier_tiers: dict = field(default_factory=dict)  # chain id -> calls an earlier tier of it answered



@dataclass
class Sample:
    """Inputs and answer counts of a sample of calls, and where they came from (for training samples)."""

    inputs: list[str]
    answers: Counter
    source: str = ""


# The chain metadata a drift run reads: which tiers were asked, and whether each answered.
_CHAIN_SHAPE = '{"%s": {"id": "VARCHAR", "tiers": [{"student_id": "VARCHAR", "answered": "BOOLEAN"}]}}' % CHAIN_KEY


def count_traffic(con, spec: StudentSpec, start: datetime, end: datetime, fresh_start: datetime) -> Traffic:
    """The window's calls, and those the student answered and declined (a chain's tier: see the module docstring)."""
    # Only a chain's row naming another tier is parsed (the LIKE keeps the JSON reader off every other row).
    chain = f"""CASE WHEN served_by IN ('student', 'fallback') AND student_id IS DISTINCT FROM $id
                      AND metadata LIKE '%"{CHAIN_KEY}"%'
                 THEN TRY(json_transform(metadata, '{_CHAIN_SHAPE}')).{CHAIN_KEY} END"""
    rows = con.execute(
        f"""SELECT served_by, student_id, fresh, chain_id, COALESCE(len(list_filter(tiers,
                       lambda t: t.student_id = $id AND NOT COALESCE(t.answered, false))), 0) > 0 AS declined_here,
                   count(*), count(*) FILTER (WHERE complete)
            FROM (SELECT served_by, student_id, ts > $fresh AS fresh, {schemas.complete_answer_sql()} AS complete,
                         ch.id AS chain_id, ch.tiers AS tiers
                  FROM (SELECT *, {chain} AS ch FROM examples WHERE task = $task AND ts > $start AND ts <= $end))
            GROUP BY ALL""",
        {"id": spec.id, "fresh": fresh_start, "task": spec.task, "start": start, "end": end},
    ).fetchall()
    t = Traffic()
    for served_by, student_id, fresh, chain_id, declined_here, count, with_output in rows:
        if served_by in SERVING:
            t.calls += count
        if declined_here:
            t.declined += count
            t.fresh_declined += count if fresh else 0
            continue
        if served_by in ("student", "fallback") and student_id != spec.id:
            if chain_id and spec.id in chain_id.split(SEPARATOR):
                t.earlier_tiers[chain_id] = t.earlier_tiers.get(chain_id, 0) + count
            else:
                t.other_students[student_id] = t.other_students.get(student_id, 0) + count
            continue
        if served_by == "student":
            t.answered += with_output
            t.fresh_answered += with_output if fresh else 0
        elif served_by == "fallback":
            t.declined += count
            t.fresh_declined += count if fresh else 0
    return t


_STUDENT_ROWS = (
    f"st.task = ? AND st.served_by = 'student' AND st.student_id = ? AND st.ts > ? AND st.ts <= ? AND {schemas.complete_answer_sql('st')}"
)


def shadow_pairs(con, spec: StudentSpec, start: datetime, end: datetime, fresh_start: datetime) -> tuple[list[Pair], int]:
    """The window's student answers the teacher also answered (shadow rows), and how many shadow calls failed."""
    rows = con.execute(
        f"""SELECT st.id, any_value(st.ts > ?), any_value(st.input), any_value(st.output), any_value(st.confidence),
                   first(sh.output ORDER BY sh.ts) FILTER (WHERE {schemas.teacher_answer_sql('sh')})
            FROM examples st JOIN examples sh ON sh.pair_id = st.id AND sh.served_by = 'shadow' AND sh.task = st.task
            WHERE {_STUDENT_ROWS} GROUP BY st.id ORDER BY st.id""",
        [fresh_start, spec.task, spec.id, start, end],
    ).fetchall()
    pairs = [Pair(i, bool(f), text or "", out, teacher, confidence=c) for i, f, text, out, c, teacher in rows if teacher is not None]
    return pairs, len(rows) - len(pairs)


def live_candidates(con, spec: StudentSpec, fresh_start: datetime, end: datetime, n: int, seed: str) -> list[Pair]:
    """Up to n fresh student answers without a shadow pair, a pseudo-random choice fixed by `seed`."""
    rows = con.execute(
        f"""SELECT st.id, st.input, st.output, st.request_json, st.confidence FROM examples st
            WHERE {_STUDENT_ROWS} AND st.request_json IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM examples sh WHERE sh.pair_id = st.id AND sh.served_by = 'shadow')
            ORDER BY hash(st.id || ?), st.id LIMIT ?""",
        [spec.task, spec.id, fresh_start, end, seed, n],
    ).fetchall()
    return [Pair(i, True, text or "", out, None, request_json=req, confidence=c, live=True) for i, text, out, req, c in rows]


def recent_sample(con, task: str, start: datetime, end: datetime, spelling: dict, seed: str) -> Sample:
    """A sample of the inputs of the calls the job served in the window, and the counts of its answers."""
    serving = ", ".join(f"'{s}'" for s in SERVING)
    where = f"task = ? AND ts > ? AND ts <= ? AND served_by IN ({serving})"
    inputs = [r[0] for r in con.execute(
        f"SELECT input FROM examples WHERE {where} AND input IS NOT NULL ORDER BY hash(id || ?), id LIMIT {INPUT_SAMPLE}",
        [task, start, end, seed],
    ).fetchall()]
    # Sized for closed sets; a free-text task is recognised from the reference and skipped.
    answers = con.execute(
        f"""SELECT output, count(*) FROM examples WHERE {where} AND {schemas.complete_answer_sql()}
            GROUP BY output ORDER BY 2 DESC LIMIT {4 * CLOSED_SET_MAX}""",
        [task, start, end],
    ).fetchall()
    return Sample(inputs, _answer_counts(answers, spelling))


def _answer_counts(rows, spelling: dict[str, str]) -> Counter:
    """Counts of (output, count) rows merged as the judge would (`normalize`), each under one spelling.

    `spelling` (normalised -> first spelling seen) is shared between the samples compared.
    """
    raw: Counter = Counter()
    for output, count in rows:
        raw[output] += count
    counts: Counter = Counter()
    for output, count in raw.most_common():
        counts[spelling.setdefault(normalize(output), output)] += count
    return counts


def training_sample(con, spec: StudentSpec, before: datetime, spelling: dict, seed: str) -> Sample:
    """Inputs and answer counts of a sample of the student's training rows recorded before `before`, and their source.

    Training rows: the task's teacher answers not held out by the student's split
    and no newer than the newest row it was built from. The sample changes with
    `seed` (each run's own): a sample fixed across runs would carry its quirks into
    every run, and the runs' false alarms would no longer be independent.
    """
    newest = _built_until(spec)
    if newest is not None:
        before = min(before, newest + timedelta(microseconds=1))
    rows = con.execute(
        f"""SELECT id, input, output FROM examples
            WHERE task = ? AND {schemas.teacher_answer_sql()} AND ts < ?
            ORDER BY hash(id || ?), id LIMIT {4 * INPUT_SAMPLE}""",
        [spec.task, before, seed],
    ).fetchall()
    split = spec.split or {}
    salt, fraction = split.get("salt"), split.get("holdout")
    if salt and isinstance(fraction, (int, float)) and 0 < fraction < 1:
        rows = [r for r in rows if not in_holdout(salt, r[0], fraction)]
        source = "the student's training split"
    else:
        source = "the teacher's answers before the window (the student records no split)"
    inputs = [r[1] for r in rows[:INPUT_SAMPLE] if r[1] is not None]
    return Sample(inputs, _answer_counts(((r[2], 1) for r in rows), spelling), source)


def _built_until(spec: StudentSpec) -> datetime | None:
    newest = (spec.built_from or {}).get("newest")
    if not newest:
        return None
    try:
        return utc(datetime.fromisoformat(str(newest).replace("Z", "+00:00")))
    except ValueError:
        return None


def student_inputs(table: pa.Table) -> list[str]:
    """Inputs a student file stores itself (demonstrations), when it has an `input` column."""
    if "input" not in table.column_names:
        return []
    return [t for t in table["input"].to_pylist()[:INPUT_SAMPLE] if t]

