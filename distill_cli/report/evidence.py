"""The evidence `report` is given besides the calls: gate results, drift logs and student files, read as plain dicts.

A gate is the newest verdicts file of its task; a passing gate whose student file
(also given) holds other content than it certified is marked `changed_since`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from distill_cli import schemas
from distill_cli.errors import InputError
from distill_cli.report.inputs import NEEDED_BY, sql_str
from distill_cli.students.base import short_digest

WORST_DISAGREEMENTS = 5


def read_gate(con, path: Path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.read_schema(str(path)).metadata or {}
    raw = meta.get(schemas.SUMMARY_KEY.encode())
    try:
        summary = json.loads(raw) if raw else {}
    except ValueError:
        raise InputError(f"{path.name}: verdicts file has a damaged gate summary") from None
    if not isinstance(summary, dict):
        raise InputError(f"{path.name}: verdicts file has a damaged gate summary")
    file_sql = sql_str(str(path))
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


def latest_by_task(gates: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for g in sorted(gates, key=lambda g: str(g["created"])):
        latest[g["task"]] = g
    return latest


def chain_members(gate: dict) -> list[dict]:
    """The students a chain's gate certified, in order ({"id", "kind", "digest"}); [] for a single student's gate."""
    members = gate.get("chain")
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, dict) for m in members):
        return []
    return members


def uncovered_students(gates: list[dict], students: list[dict]) -> list[str]:
    """Mark each passing gate whose student file (given to report) holds other content than it certified; the notes.

    A chain's gate certified each member's content: a member file given that changed
    since leaves the chain uncovered.
    """
    by_id = {s["id"]: s for s in students}
    notes = []
    for gate in gates:
        if gate.get("passed") is not True:
            continue
        members = chain_members(gate)
        certified_by_id = ({m.get("id"): m.get("digest") for m in members} if members
                           else {gate.get("student"): gate.get("student_digest")})
        for student_id, certified in certified_by_id.items():
            student = by_id.get(student_id)
            if student is None or certified == student["digest"]:
                continue
            gate["changed_since"] = True
            why = (f"changed since (gate: {short_digest(certified)}, file: {short_digest(student['digest'])})"
                   if certified else "was gated before content digests")
            of = f" (in chain {gate.get('student')})" if members else ""
            notes.append(f"student {student['id']} ({student['file']}) {why}: its gate{of} in {Path(gate['file']).name} "
                         "does not cover it; gate it again")
    return notes


def gate_brief(gate: dict | None) -> dict | None:
    if gate is None:
        return None
    keys = ("passed", "agreement", "lower_bound", "upper_bound", "coverage", "n", "cost_reduction", "decision",
            "student", "teacher_cost_per_call", "routed_cost_per_call", "file", "created", "student_digest",
            "changed_since")
    brief = {k: gate.get(k) for k in keys}
    if chain_members(gate):
        brief["chain"] = [m.get("id") for m in chain_members(gate)]
    return brief


def read_drift(con, paths: list[Path], since: datetime | None, task: str | None) -> list[dict]:
    if not paths:
        return []
    where = []
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {sql_str(since.isoformat())}")
    if task is not None:
        where.append(f"task = {sql_str(task)}")
    by_task: dict[str, list] = defaultdict(list)
    for path in paths:
        try:
            rows = con.execute(
                f"""SELECT task, student_id, ts, pairs, agreement, lower_bound, upper_bound, decline_rate,
                           input_shift, input_shift_threshold, drifted, demoted, reasons
                    FROM read_parquet({sql_str(str(path))})
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
                "status": _status(last),
                # Private (build.py removes it): each student's latest run, for a chain's tiers (chain_drift).
                "_by_student": {r[1]: {"student_id": r[1], "status": _status(r), "ts": r[2].isoformat() if r[2] else None}
                                for r in runs},
                "runs": [
                    {"ts": r[2].isoformat() if r[2] else None, "pairs": r[3], "agreement": r[4], "lower_bound": r[5],
                     "upper_bound": r[6], "decline_rate": r[7], "input_shift": r[8],
                     "input_shift_threshold": r[9], "drifted": r[10], "demoted": r[11], "reasons": _json_or_text(r[12])}
                    for r in runs
                ],
            }
        )
    return out


def _status(run) -> str:
    return "demoted" if run[11] else "drifted" if run[10] else "ok"


_SEVERITY = {"ok": 0, "drifted": 1, "demoted": 2}


def chain_drift(drift: dict, gate: dict | None) -> None:
    """A task served by a chain (its newest gate is a chain's): its drift status is the worst of its tiers' latest
    runs, each tier checked on its own file; `tiers` lists them. The latest run alone could be a healthy tier's
    while another tier stands demoted (and the router sends the whole chain to the teacher)."""
    members = chain_members(gate) if gate else []
    latest = drift.get("_by_student") or {}
    tiers = [latest[m.get("id")] for m in members if m.get("id") in latest]
    if not tiers:
        return
    drift["tiers"] = tiers
    worst = max(tiers, key=lambda x: _SEVERITY[x["status"]])
    if _SEVERITY[worst["status"]] > _SEVERITY[drift["status"]]:
        drift["status"], drift["student_id"] = worst["status"], worst["student_id"]


def _json_or_text(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def drift_brief(drift: dict | None) -> dict | None:
    if drift is None:
        return None
    last = drift["runs"][-1]
    brief = {"status": drift["status"], "ts": last["ts"], "agreement": last["agreement"],
             "lower_bound": last["lower_bound"], "input_shift": last["input_shift"], "runs": len(drift["runs"])}
    if drift.get("tiers"):
        brief["tiers"] = drift["tiers"]
    return brief


def read_student(path: Path) -> dict:
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
