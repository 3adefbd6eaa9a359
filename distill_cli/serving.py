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

Demotion markers live here too: `distill drift --demote` writes `<student file>.demoted`
and the router asks `is_demoted` before a student answers. A marker stops counting
when the file now holds another student, or when the newest gate of that student
passed after the demotion (and, given the content digest, certified that content).
An unreadable marker counts: when in doubt the teacher answers.

This module reads verdicts footers and markers, and writes only markers; it never
loads a student, imports nothing analytic (the recording proxy depends on it), and
never prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import schemas
from distill_cli.errors import InputError
from distill_cli.files import write_atomically
from distill_cli.students.base import StudentSpec, short_digest

VERDICTS_SUFFIX = ".verdicts.parquet"  # where the router looks for a student's gate without --verdicts
MARKER_SCHEMA = "demotion/1"
MARKER_SUFFIX = ".demoted"


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
    mtime: float = 0.0  # when the gate ran (its summary's `gated_at`), else, for an older file, its modification time
    gated_at: float | None = None  # when the gate ran, as the summary says; None for a gate made before that was kept


def latest_gate(
    student_id: str, verdicts: Iterable[str | Path], needed_by: str = "record --verdicts", *, skip_unreadable: bool = False
) -> GateRecord | None:
    """The newest gate of `student_id` among `verdicts` (by `gated_at`; the later of a tie).

    When a gate ran is read from its summary, never from the file's modification time,
    which a copy, a checkout or a touch changes (an older summary without `gated_at`
    falls back to it for the order, and lifts no demotion).

    A file that is not a readable verdicts file is an InputError, or with
    `skip_unreadable` is passed over (it can only keep a demotion standing).
    """
    newest: GateRecord | None = None
    for path, summary, when, gated_at in _gates(verdicts, needed_by, skip_unreadable):
        if summary.get("student") == student_id and (newest is None or when >= newest.mtime):
            digest = summary.get("student_digest")
            newest = GateRecord(str(path), summary.get("passed") is True, str(summary.get("reason") or ""),
                                digest if isinstance(digest, str) else None, when, gated_at)
    return newest


def latest_member_gate(
    student_id: str, verdicts: Iterable[str | Path], needed_by: str = "drift --verdicts"
) -> GateRecord | None:
    """The newest gate of a chain that certified `student_id` as one of its members (ordered as `latest_gate`).

    Its `digest` is the content it certified of that member; its `reason` names the chain.
    Unreadable files are passed over: a chain's gate can only add a check.
    """
    newest: GateRecord | None = None
    for path, summary, when, gated_at in _gates(verdicts, needed_by, skip_unreadable=True):
        members = summary.get("chain")
        if not isinstance(members, list) or len(members) < 2:
            continue
        member = next((m for m in members if isinstance(m, dict) and m.get("id") == student_id), None)
        if member is None or (newest is not None and when < newest.mtime):
            continue
        digest = member.get("digest")
        newest = GateRecord(str(path), summary.get("passed") is True, f"a gate of chain {summary.get('student')}",
                            digest if isinstance(digest, str) else None, when, gated_at)
    return newest


def _gates(verdicts: Iterable[str | Path], needed_by: str, skip_unreadable: bool):
    """(path, summary, when it ran, gated_at) of each verdicts file; `when` falls back to the mtime of an older one."""
    for path in verdicts:
        try:
            summary = read_summary(path, needed_by)
            mtime = os.stat(path).st_mtime
        except (InputError, OSError, ValueError):
            if skip_unreadable:
                continue
            raise
        gated_at = gated_at_of(summary)
        yield path, summary, gated_at if gated_at is not None else mtime, gated_at


def gated_at_of(summary: dict) -> float | None:
    """When the gate ran (POSIX seconds), from its summary's `gated_at`; None when it says nothing readable."""
    try:
        moment = datetime.fromisoformat(str(summary["gated_at"]))
    except (KeyError, ValueError, TypeError):
        return None
    return (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).timestamp()


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


@dataclass
class DemotionInfo:
    """A demotion marker: the student it names, when and why it was demoted."""

    marker: str
    student_id: str | None
    task: str | None
    demoted_at: str | None  # ISO-8601, UTC
    reasons: list[str]
    drift: dict = field(default_factory=dict)  # the drift log row that demoted it
    damaged: bool = False

    @property
    def message(self) -> str:
        if self.damaged:
            return f"{self.marker}: demotion marker unreadable; the teacher answers until it is removed or a new gate passes"
        why = "; ".join(self.reasons) or "drift detected"
        return f"student {self.student_id} demoted at {self.demoted_at} ({why}); the teacher answers until a new gate passes"

    def to_dict(self) -> dict:
        return asdict(self)


# ---- demotion markers ------------------------------------------------------------------------------------------------------


def marker_path(student_path: str | Path) -> Path:
    """Where a student file's demotion marker lives: `<student file>.demoted`."""
    return Path(f"{student_path}{MARKER_SUFFIX}")


def read_marker(student_path: str | Path) -> DemotionInfo | None:
    """The demotion marker beside a student file as written (None when there is none); damaged -> damaged=True."""
    path = marker_path(student_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return DemotionInfo(str(path), None, None, None, [], damaged=True)
    try:
        data = json.loads(text)
        if data.get(schemas.SCHEMA_KEY) != MARKER_SCHEMA or not data.get("student_id"):
            raise ValueError("not a demotion marker")
        return DemotionInfo(str(path), data["student_id"], data.get("task"), data.get("demoted_at"),
                            list(data.get("reasons") or []), dict(data.get("drift") or {}))
    except (ValueError, TypeError, AttributeError):
        return DemotionInfo(str(path), None, None, None, [], damaged=True)


def _file_student_id(student_path: str | Path) -> str | None:
    """The id in a student file's footer, reading nothing else; None when unreadable."""
    try:
        meta = pq.read_schema(str(student_path)).metadata or {}
        return json.loads(meta[schemas.STUDENT_SPEC_KEY.encode()])["id"]
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowInvalid):
        return None


def lifted_by(
    info: DemotionInfo, verdicts: Iterable[str | Path], digest: str | None = None, *, gate_id: str | None = None
) -> str | None:
    """The verdicts file that lifts a demotion: the newest gate of the demoted student, if it passed after the demotion.

    The newest gate decides (`latest_gate`), so a later failing gate keeps it demoted;
    an unreadable verdicts file lifts nothing. With `digest`, only a gate that
    certified that content lifts it. `gate_id`: whose gate lifts it instead of the
    demoted student's (a chain's id, for a demoted tier serving in that chain).
    """
    if info.damaged or not info.demoted_at:
        return None
    try:
        demoted = datetime.fromisoformat(info.demoted_at)
        demoted = (demoted.replace(tzinfo=timezone.utc) if demoted.tzinfo is None else demoted).timestamp()
    except ValueError:
        return None
    gate = latest_gate(gate_id or info.student_id, verdicts, "is_demoted", skip_unreadable=True)
    # Only a gate that says it ran after the demotion lifts it: a copied or touched old file does not.
    if gate is None or not gate.passed or gate.gated_at is None or gate.gated_at <= demoted:
        return None
    if digest is not None and gate.digest != digest:
        return None
    return gate.verdicts


def is_demoted(
    student_path: str | Path, *, student_id: str | None = None, verdicts: Iterable[str | Path] = (),
    digest: str | None = None, gate_id: str | None = None,
) -> DemotionInfo | None:
    """The demotion the router must honour for this student file, or None when the student may serve.

    `student_id`: the loaded student's id (saves reading the file's footer). `verdicts`:
    gate verdicts files (plus `<student file>.verdicts.parquet` when it exists); when
    the newest of those naming the student's id passed and is newer than the demotion,
    the demotion is lifted. A marker naming another student id (the file was rebuilt)
    does not count. An unreadable marker counts: the teacher answers.

    A tier of a chain (`gate_id` = the chain's id, `digest` = the chain's): only a
    passing gate of that chain, newer than the demotion and certifying the chain's
    content, lifts the tier's demotion for the chain; the tier's own gate does not,
    as a single student's gate never licenses a chain.
    """
    info = read_marker(student_path)
    if info is None or info.damaged:
        return info
    current = student_id or _file_student_id(student_path)
    if current is not None and current != info.student_id:
        return None
    if lifted_by(info, gate_files(student_path, verdicts), digest, gate_id=gate_id):
        return None
    return info


def clear_demotion(
    student_path: str | Path, *, student_id: str | None = None, verdicts: Iterable[str | Path] = (),
    digest: str | None = None,
) -> DemotionInfo | None:
    """Remove the marker when it no longer counts (rebuilt student, or lifted by a passing gate); returns what was removed."""
    info = read_marker(student_path)
    if info is None or info.damaged:
        return None
    if is_demoted(student_path, student_id=student_id, verdicts=verdicts, digest=digest) is not None:
        return None
    marker_path(student_path).unlink(missing_ok=True)
    return info


def write_demotion(student_path: str | Path, spec: StudentSpec, when: datetime, reasons: list[str], row: dict) -> DemotionInfo:
    """Write the demotion marker beside the student file, atomically."""
    path = marker_path(student_path)
    drift_row = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    data = {schemas.SCHEMA_KEY: MARKER_SCHEMA, "student_id": spec.id, "task": spec.task, "student_file": Path(student_path).name,
            "demoted_at": when.isoformat(), "reasons": reasons, "drift": drift_row}
    try:
        write_atomically(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True).encode()))
    except OSError as e:
        raise InputError(f"{path}: cannot write the demotion marker ({e.strerror or e})") from None
    return DemotionInfo(str(path), spec.id, spec.task, data["demoted_at"], reasons, drift_row)
