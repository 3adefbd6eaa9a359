"""The drift log (drift/1 Parquet): one row per run, read for the detector's history and appended to.

Appending rewrites the old rows and the new one to a temporary file and renames it,
under a lock file beside the log; nothing else here writes.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import schemas
from distill_cli.errors import InputError
from distill_cli.files import write_atomically
from distill_cli.students.base import StudentSpec


@dataclass
class LogRow:
    """One run in the drift log; the fields are the drift/1 columns, in order."""

    ts: datetime
    student_id: str
    task: str
    window_start: datetime
    window_end: datetime
    pairs: int
    agreeing: int
    agreement: float | None
    lower_bound: float | None
    upper_bound: float | None
    served: int
    decline_rate: float | None
    input_shift: float | None
    input_shift_threshold: float | None
    output_shift: float | None
    drifted: bool
    demoted: bool
    reasons: str | None  # JSON: the drifted checks, their messages, every check's details, the spend, the notes

    @classmethod
    def from_record(cls, record: dict) -> LogRow:
        """A row as read from a log; a column the file lacks reads as None."""
        return cls(**{f.name: record.get(f.name) for f in fields(cls)})

    def to_record(self) -> dict:
        return asdict(self)

    def increment(self) -> tuple[int, int] | None:
        """The (n, k) this run folded into the agreement detector, from its reasons (None when it records none)."""
        try:
            agreement = json.loads(self.reasons or "{}")["checks"]["agreement"]
            return int(agreement["new_n"]), int(agreement["new_k"])
        except (ValueError, KeyError, TypeError):
            return None


def read_log(path: str | Path) -> pa.Table | None:
    """The drift log's rows (None when the file does not exist yet); InputError for anything but a drift log."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise InputError(f"{path}: is a directory; --log needs a file name")
    schemas.check_kind(path, schemas.read_kind(path), "drift", "drift --log")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: drift log is damaged ({str(e).splitlines()[0]})") from None



def history(log: pa.Table | None, spec: StudentSpec, now: datetime) -> tuple[list[tuple[int, int]], datetime | None]:
    """This student's earlier runs as detector increments (n, k) since its last demotion, and the last window end."""
    if log is None:
        return [], None
    rows = [LogRow.from_record(r) for r in log.to_pylist()]
    rows = [r for r in rows if r.student_id == spec.id and r.task == spec.task and r.ts and r.ts < now]
    rows.sort(key=lambda r: r.ts)
    last_end = max((r.window_end for r in rows if r.window_end), default=None)
    demoted_at = [i for i, r in enumerate(rows) if r.demoted]
    if demoted_at:
        rows = rows[demoted_at[-1] + 1 :]  # a demotion restarts the detector: the next serving is a new start
    # A row without detector increments (written by hand or elsewhere) adds nothing.
    increments = [r.increment() for r in rows]
    return [i for i in increments if i is not None], last_end


def append_log(path: str | Path, row: LogRow) -> int:
    """Append one row to the drift log: rewrite old rows + the new one to a temporary file, then rename.

    A lock file beside the log keeps two runs from losing each other's row. Returns the row count.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = schemas.tagged(schemas.DRIFT_SCHEMA, schemas.DRIFT)
    lock_path = path.parent / f".{path.name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        old = read_log(path)
        rows = (old.select(schema.names).to_pylist() if old is not None else []) + [row.to_record()]
        table = pa.Table.from_pylist(rows, schema=schema)
        write_atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))
    return len(rows)
