"""Per-task figures that do not add up across groups: the set of outputs and the share of repeated inputs.

They are measured only where they can change the recommendation (tasks with
MIN_EXAMPLES answers, not high-stakes), on bounded samples in large stores.
Whether outputs form a closed set is decided by `build-student`'s rule
(students/training.py), so `report` recommends the kind `--kind auto` builds.
"""

from __future__ import annotations

from datetime import datetime

from distill_cli import schemas
from distill_cli.report.inputs import sql_list, sql_str
from distill_cli.report.rows import TaskRow
from distill_cli.students.training import CLOSED_SET_MIN_COUNT, is_closed, normalise_sql

MIN_EXAMPLES = 100  # below this a task is "collecting (n/100)"
CLOSED_SET_MAX_OUTPUT_TOKENS = 32  # labels are short: tasks answering longer on average are not read for a set

# Repeated inputs are measured on a sample of about this many calls per task, outputs on about
# this many answers in all: exact for small stores, bounded time and memory at any size.
INPUT_SAMPLE_ROWS = 50_000
OUTPUT_SAMPLE_ROWS = 100_000
OUTPUT_SAMPLE_MIN = 2_000  # answers wanted of the rarest task that needs them ...
OUTPUT_SAMPLE_MAX_FRACTION = 0.25  # ... within this share of a large store's period
OUTPUT_SLICES = 8


def measure(con, tasks: list[TaskRow], period: dict) -> None:
    """Set the outputs' figures and the share of repeated inputs on the tasks where they can change the
    recommendation (MIN_EXAMPLES answers, not high-stakes); unmeasured values stay None."""
    candidates = [t for t in tasks if t.examples >= MIN_EXAMPLES and not t.high_stakes]
    short = [t for t in candidates if t.output_avg <= CLOSED_SET_MAX_OUTPUT_TOKENS]
    _output_sets(con, short, period, sum(t.examples for t in tasks))
    _repeated_inputs(con, [t for t in candidates if not t.closed_set])


def _output_sets(con, tasks: list[TaskRow], period: dict, examples: int) -> None:
    """Distinct normalised answers, the share those seen often enough to be classes cover, and whether
    they form a closed set: `build-student`'s rule (students/training.py), so `--kind auto` picks what this recommends.

    Read from evenly spaced time slices of the period (the Parquet reader skips
    the rest), for tasks whose answers are short enough to be labels.
    """
    if not tasks:
        return
    # Enough of the period for OUTPUT_SAMPLE_ROWS answers, or OUTPUT_SAMPLE_MIN of the rarest task,
    # but never more than OUTPUT_SAMPLE_MAX_FRACTION of a large store.
    fraction = max(OUTPUT_SAMPLE_ROWS / examples, max(OUTPUT_SAMPLE_MIN / t.examples for t in tasks))
    if examples > OUTPUT_SAMPLE_ROWS:
        fraction = min(fraction, OUTPUT_SAMPLE_MAX_FRACTION)
    answered = schemas.teacher_answer_sql()
    by_name = {t.task: t for t in tasks}
    names = sql_list(by_name)
    rows = con.execute(
        f"""WITH f AS (SELECT task, hash({normalise_sql("output")}) AS h, count(*) AS c FROM calls
                       WHERE {answered} AND task IN ({names}){_time_slices(period, fraction)} GROUP BY task, h)
            SELECT task, count(*), sum(c), count(*) FILTER (WHERE c >= {CLOSED_SET_MIN_COUNT}),
                   COALESCE(sum(c) FILTER (WHERE c >= {CLOSED_SET_MIN_COUNT}), 0)
            FROM f GROUP BY task"""
    ).fetchall()
    for name, distinct, n, frequent, covered in rows:
        t = by_name[name]
        t.distinct_outputs, t.output_sample = distinct, n
        t.top_outputs_coverage = round(covered / n, 4)
        t.closed_set = is_closed(frequent, covered / n)


def _repeated_inputs(con, open_ended: list[TaskRow]) -> None:
    """The share of calls whose input_hash was seen before in the task.

    Calls are sampled by the hash of their input, so every repeat of a sampled
    input is in the sample and the share is exact on it.
    """
    if not open_ended:
        return
    # Small tasks are read in full; large ones share one modulus that leaves the smallest of them
    # about INPUT_SAMPLE_ROWS calls. (A modulus per task, as a CASE, made the scan five times slower.)
    small = [t.task for t in open_ended if t.tally.calls < 2 * INPUT_SAMPLE_ROWS]
    large = [t for t in open_ended if t.tally.calls >= 2 * INPUT_SAMPLE_ROWS]
    where = []
    if small:
        where.append(f"task IN ({sql_list(small)})")
    if large:
        modulus = min(t.tally.calls for t in large) // INPUT_SAMPLE_ROWS
        where.append(f"(task IN ({sql_list(t.task for t in large)}) AND hash(input_hash) % {modulus} = 0)")
    rows = con.execute(
        f"""SELECT task, count(*), sum(c) FROM (
                SELECT task, hash(input_hash) AS ih, count(*) AS c FROM calls
                WHERE served_by <> 'shadow' AND input_hash IS NOT NULL AND ({" OR ".join(where)}) GROUP BY task, ih)
            GROUP BY task"""
    ).fetchall()
    by_name = {t.task: t for t in open_ended}
    for name, distinct, sampled in rows:
        by_name[name].repeat_share = round(1 - distinct / sampled, 4)


def _time_slices(period: dict, fraction: float) -> str:
    """A filter keeping `fraction` of the period in evenly spaced slices ("" for all of it)."""
    if fraction >= 1 or not period["start"] or period["start"] == period["end"]:
        return ""
    start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
    step = (end - start) / OUTPUT_SLICES
    width = step * fraction
    slices = [
        f"(ts >= TIMESTAMPTZ {sql_str((start + step * i).isoformat())} "
        f"AND ts < TIMESTAMPTZ {sql_str((start + step * i + width).isoformat())})"
        for i in range(OUTPUT_SLICES)
    ]
    return " AND (" + " OR ".join(slices) + ")"
