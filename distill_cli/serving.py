"""Which gate speaks for a student file, and whether it certified the content the file holds now.

The router (record --student), drift and report all ask the same two questions, so
the answers live here once:

  * `gate_files`: the verdicts files that speak for a student file: those given and
    `<student file>.verdicts.parquet` when it exists;
  * `latest_gate`: of those naming the student's id, the newest (by modification
    time) decides, so a later failing gate overrides an earlier pass;
  * `content_problem`: a gate certifies the content digest it measured
    (students/base.py), not the id: a file whose content differs from the digest
    its gate recorded, or a gate made before digests existed, certifies nothing.

This module reads verdicts footers only; it never loads a student or prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pyarrow.parquet as pq

from distill_cli import schemas
from distill_cli.errors import InputError
from distill_cli.students.base import short_digest

VERDICTS_SUFFIX = ".verdicts.parquet"  # where the router looks for a student's gate without --verdicts


def read_summary(path: str | Path, needed_by: str = "this command") -> dict:
    """The gate summary stored in a verdicts file's footer."""
    schemas.check_kind(path, schemas.read_kind(path), "verdicts", needed_by)
    meta = pq.read_schema(str(path)).metadata or {}
    raw = meta.get(schemas.SUMMARY_KEY.encode())
    if raw is None:
        raise InputError(f"{path}: verdicts file has no gate summary")
    try:
        summary = json.loads(raw)
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        raise InputError(f"{path}: verdicts file has a damaged gate summary")
    return summary


def gate_files(student_path: str | Path, verdicts: Iterable[str | Path]) -> list[Path]:
    """The verdicts files that speak for a student: those given and `<student file>.verdicts.parquet` if it exists."""
    found = [Path(v) for v in verdicts]
    beside = Path(f"{student_path}{VERDICTS_SUFFIX}")
    if beside not in found and beside.exists():
        found.append(beside)
    return found


@dataclass
class GateRecord:
    """The gate that decides whether a student may serve."""

    verdicts: str
    passed: bool
    reason: str
    digest: str | None = None  # the student content it certified; None for a gate made before digests
    mtime: float = 0.0


def latest_gate(student_id: str, verdicts: Iterable[Path], needed_by: str = "record --verdicts") -> GateRecord | None:
    """The newest gate of `student_id` among `verdicts` (InputError for a file that is not a verdicts file)."""
    newest: GateRecord | None = None
    for path in verdicts:
        summary = read_summary(path, needed_by)
        if summary.get("student") != student_id:
            continue
        mtime = os.stat(path).st_mtime
        if newest is None or mtime >= newest.mtime:
            digest = summary.get("student_digest")
            newest = GateRecord(str(path), summary.get("passed") is True, str(summary.get("reason") or ""),
                                digest if isinstance(digest, str) else None, mtime)
    return newest


def content_problem(path: str | Path, student_id: str, digest: str | None, gate: GateRecord) -> str | None:
    """Why a passing `gate` does not certify the student file at `path` (content `digest`), or None when it does."""
    if gate.digest is None:
        return (
            f"{path}: student {student_id} passed a gate in {gate.verdicts} made before content digests, so it "
            "cannot say what content it certified; gate it again"
        )
    if gate.digest != digest:
        return (
            f"{path}: student {student_id} changed since it was gated in {gate.verdicts} (the gate certified content "
            f"{short_digest(gate.digest)}, the file now holds {short_digest(digest)}); gate it again"
        )
    return None
