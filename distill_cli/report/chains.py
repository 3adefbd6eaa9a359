"""A chain's calls tier by tier: how they split across its tiers, what each tier cost and what it saved.

A chain's rows (recorder/router.py) carry metadata key "chain":
{"id": "a > b", "tier": <index that answered, or null>, "tiers": [{"tier", "student_id",
"answered", "cost_usd", "error"}, ...]}, every tier asked in order. A served row's
`cost_usd` is the whole chain's cost for the call (every tier asked); a fallback
row's is the teacher's, and what the tiers it asked first cost is only in the
metadata. So:

- spend: `attempt_rows` adds the tiers' costs of fallback rows (a declined LLM tier
  still spent tokens) as groups of no calls under each tier's id, so the totals,
  tasks, days and models (the tier's line) count them once; teacher-only cost does
  not change (those calls cost the teacher what their rows say). A served row's
  cost is already whole and is not read again.
- per tier (`read_chains`): the calls that asked it, it answered, it declined and it
  failed; what its attempts cost (declines included); what the calls it answered
  would have cost at the teacher (the task's mean teacher call); saved = that minus
  its cost. Per chain: its calls and those the teacher answered, and their cost.

Shadow rows copy their call's metadata, so only `student` and `fallback` rows are
read (a shadow's cost is the teacher's, counted as spend as every shadow's is). Only
rows whose metadata mentions "chain" are parsed; a "chain" key that is not a chain's
(a user's own tag) is passed over. A tier attempt of unknown cost is counted and
named in the notes, never summed as 0.
"""

from __future__ import annotations

from collections import defaultdict

from distill_cli.formatting import round_usd, share, usd
from distill_cli.students.chain import CHAIN_KEY

TABLE = "chain_calls"
_SHAPE = (
    '{"%s": {"id": "VARCHAR", "tier": "INTEGER", "tiers": [{"tier": "INTEGER", "student_id": "VARCHAR", '
    '"answered": "BOOLEAN", "cost_usd": "DOUBLE", "error": "VARCHAR"}]}}' % CHAIN_KEY
)


def chain_calls_table(con) -> None:
    """Temp table `chain_calls`: the calls a chain served or passed to the teacher, with their parsed `ch`."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {TABLE} AS
            SELECT task, day, ts, served_by, cost, ch FROM (
                SELECT task, day, ts, served_by, cost, TRY(json_transform(metadata, '{_SHAPE}')).{CHAIN_KEY} AS ch
                FROM calls WHERE served_by IN ('student', 'fallback') AND metadata LIKE '%"{CHAIN_KEY}"%')
            WHERE ch.id IS NOT NULL AND ch.tiers IS NOT NULL"""
    )


_TIERS = f"SELECT task, day, ts, served_by, ch.id AS chain, unnest(ch.tiers) AS t FROM {TABLE}"


def attempt_rows(con) -> list[tuple]:
    """What the tiers asked before the teacher answered cost, per (task, day, tier): rows of `aggregates.Group`
    (served_by 'student', no calls) that add the cost to the spend of the task, the day and the tier's model."""
    return con.execute(
        f"""SELECT task, day, t.student_id, 'student', 'student', true, false, true, false, 0, 0, sum(t.cost_usd),
                   0, 0, 0, 0, min(ts), max(ts)
            FROM ({_TIERS}) WHERE served_by = 'fallback' AND t.cost_usd IS NOT NULL AND t.cost_usd <> 0
            GROUP BY ALL"""
    ).fetchall()


def read_chains(con, teacher_mean: dict[str, float]) -> dict[str, list[dict]]:
    """Per task, its chains (most calls first): calls, the teacher's part, and every tier's line (see the module)."""
    chains: dict[tuple, dict] = {}
    for task, chain, calls, to_teacher, teacher_cost, teacher_unknown in con.execute(
        f"""SELECT task, ch.id, count(*), count(*) FILTER (WHERE served_by = 'fallback'),
                   COALESCE(sum(cost) FILTER (WHERE served_by = 'fallback'), 0),
                   count(*) FILTER (WHERE served_by = 'fallback' AND cost IS NULL)
            FROM {TABLE} GROUP BY ALL"""
    ).fetchall():
        chains[(task, chain)] = {
            "chain": chain, "calls": calls, "teacher_calls": to_teacher, "teacher_share": share(to_teacher, calls),
            "teacher_cost_usd": round_usd(teacher_cost), "teacher_unknown_cost_calls": teacher_unknown,
            "tiers_cost_on_teacher_calls_usd": 0.0, "tiers": [],
        }
    for task, chain, tier, student, asked, answered, declined, errors, unknown, cost, passed_on in con.execute(
        f"""SELECT task, chain, t.tier, t.student_id, count(*), count(*) FILTER (WHERE t.answered),
                   count(*) FILTER (WHERE NOT COALESCE(t.answered, false) AND t.error IS NULL),
                   count(*) FILTER (WHERE t.error IS NOT NULL), count(*) FILTER (WHERE t.cost_usd IS NULL),
                   COALESCE(sum(t.cost_usd), 0), COALESCE(sum(t.cost_usd) FILTER (WHERE served_by = 'fallback'), 0)
            FROM ({_TIERS}) GROUP BY ALL ORDER BY task, chain, t.tier NULLS LAST, t.student_id"""
    ).fetchall():
        c = chains[(task, chain)]
        c["tiers_cost_on_teacher_calls_usd"] = round_usd(c.get("tiers_cost_on_teacher_calls_usd", 0.0) + passed_on)
        mean = teacher_mean.get(task)
        instead = answered * mean if mean is not None else None
        c["tiers"].append({
            "tier": tier, "student": student, "asked": asked, "answered": answered, "declined": declined,
            "errors": errors, "share": share(answered, c["calls"]), "cost_usd": round_usd(cost),
            "unknown_cost_attempts": unknown,
            "teacher_cost_usd": round_usd(instead) if instead is not None else None,
            "saved_usd": round_usd(instead - cost) if instead is not None else None,
        })
    by_task: dict[str, list[dict]] = defaultdict(list)
    for (task, _), c in sorted(chains.items(), key=lambda kv: (kv[0][0], -kv[1]["calls"], kv[0][1])):
        by_task[task].append(c)
    return dict(by_task)


def notes(tasks) -> list[str]:
    """What the reader must know about the chains' figures: the tiers' spend on calls the teacher answered anyway,
    and tier attempts of unknown cost."""
    passed_on, unknown = 0.0, 0
    for t in tasks:
        for c in t.chains:
            passed_on += c["tiers_cost_on_teacher_calls_usd"]
            unknown += sum(tier["unknown_cost_attempts"] for tier in c["tiers"])
    out = []
    if passed_on:
        out.append(f"spend includes {usd(passed_on)} that chains' tiers cost on calls they passed to the teacher")
    if unknown:
        out.append(f"{unknown:,} attempts of a chain's tiers have no recorded cost and are not in the totals")
    return out
