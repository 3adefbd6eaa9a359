"""The example store: append-only Parquet parts plus a per-writer journal.

Layout: `STORE/date=YYYY-MM-DD/part-<segment>.parquet`, and `STORE/_journal/<segment>.jsonl`
for calls not yet in a part. A dead writer's segment that cannot be turned into parts (a value
no part can hold) is moved to `STORE/_quarantine/`, which no reader reads, so that one bad
value never blocks the store. A writer journals every row (flushed per row, so a
killed process loses nothing it had written), and rolls its journal segment into
parts every N rows / T seconds and on close. Parts are written to a hidden
temporary name and renamed into place: readers never see half a file, and any
number of writers can share a store because nobody ever rewrites a file.

A live writer holds an exclusive `flock` on its journal segment. A segment whose
lock can be taken belongs to a dead writer; the next writer of the store turns it
into parts named after the segment, so recovery is idempotent even if it is
itself interrupted.

This module never deletes or rewrites a part, and never deletes a journal segment it could
not turn into parts.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import remote, schemas
from distill_cli.errors import InputError, NotEnoughData

if TYPE_CHECKING:
    import duckdb

JOURNAL_DIR = "_journal"
QUARANTINE_DIR = "_quarantine"
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS = schemas.EXAMPLES_SCHEMA.names
_COLUMN_SET = frozenset(COLUMNS)
_READ_SCHEMA = schemas.EXAMPLES_SCHEMA.remove_metadata()
_journal_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_INT_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens")


_last_id = [0]
_id_lock = threading.Lock()


def new_id(now: float | None = None) -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, 26 Crockford base-32 chars, sortable by time.

    Without `now`, monotonic within a process, as the ULID spec's monotonic mode: an id made in the
    same millisecond as the last one (or while the clock stepped back) is the last one plus 1, so ids
    sort in the order they were made.
    """
    ms = int((time.time() if now is None else now) * 1000)
    fresh = (ms << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    if now is not None:  # an id for a given moment (tests, backfills): that moment's, as asked
        return new_id_from_int(fresh)
    with _id_lock:
        if fresh >> 80 <= _last_id[0] >> 80:
            fresh = _last_id[0] + 1
        _last_id[0] = fresh
    return new_id_from_int(fresh)


def new_id_array(count: int, now: float | None = None) -> pa.Array:
    """`count` ULIDs for one moment as an Arrow string array, monotonic as the ULID spec says (random start, +1).

    Vectorised: bulk imports need hundreds of thousands per second.
    """
    import numpy as np  # only bulk imports pay for it

    ms = int((time.time() if now is None else now) * 1000)
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    hi = np.full(count, (ms << 16) | (rand >> 64), dtype=np.uint64)
    # The low word starts below 2^63, so adding up to `count` never carries into the high word.
    lo = np.uint64(rand & (2**63 - 1)) + np.arange(count, dtype=np.uint64)
    digits = np.empty((count, 26), dtype=np.uint8)
    for j in range(26):  # digit j holds bits [125 - 5j, 130 - 5j) of the 130-bit number
        shift = 125 - 5 * j
        if shift >= 64:
            d = hi >> np.uint64(shift - 64)
        elif shift + 5 <= 64:
            d = lo >> np.uint64(shift)
        else:
            d = (hi << np.uint64(64 - shift)) | (lo >> np.uint64(shift))
        digits[:, j] = d & np.uint64(31)
    text = np.frombuffer(_CROCKFORD, dtype=np.uint8)[digits].view("S26").ravel()
    return pa.array(text, type=pa.binary(26)).cast(pa.string())


# Two Crockford digits for every 10-bit value: a ULID's 130 bits are 13 lookups.
_DIGIT_PAIRS = [chr(_CROCKFORD[k >> 5]) + chr(_CROCKFORD[k & 31]) for k in range(1024)]


def new_id_from_int(n: int) -> str:
    """The ULID spelling of a 128-bit integer (time in the top 48 bits)."""
    pairs = _DIGIT_PAIRS
    return "".join([pairs[(n >> shift) & 1023] for shift in range(120, -1, -10)])


def to_micros(ts) -> int:
    """Microseconds since the epoch (UTC) from a datetime, an ISO-8601 string or a number of seconds."""
    if isinstance(ts, int):
        return ts
    if isinstance(ts, float):
        return int(ts * 1_000_000)
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def complete_row(row: dict) -> dict:
    """`row` with every examples/1 column present: id and ts filled in, missing counts 0, the rest null."""
    out = {c: row.get(c) for c in COLUMNS}
    if not out["id"]:
        out["id"] = new_id()
    out["ts"] = to_micros(out["ts"] if out["ts"] is not None else time.time())
    for c in _INT_COLUMNS:
        # A count the row leaves out is 0; one it gives as null is unknown (calls.py: not a token count).
        out[c] = int(out[c]) if out[c] is not None else (None if c in row else 0)
    if out["metadata"] is None:
        out["metadata"] = "{}"
    elif not isinstance(out["metadata"], str):
        out["metadata"] = json.dumps(out["metadata"], sort_keys=True)
    unknown = row.keys() - _COLUMN_SET
    if unknown:
        raise ValueError(f"not examples/1 columns: {', '.join(sorted(unknown))}")
    return out


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Completed rows -> an Arrow table in the examples/1 schema."""
    return pa.Table.from_pylist(rows, schema=schemas.EXAMPLES_SCHEMA)


def write_parts(store: str | Path, table: pa.Table, name: str) -> list:
    """Write `table` as one part per day, named `part-<name>.parquet`; all or nothing.

    Every part is first written and fsynced under a hidden temporary name; only
    when all are on disk are they renamed into place. A part that already exists
    (an earlier, interrupted recovery of the same segment) is left as it is.
    """
    if table.num_rows == 0:
        return []
    by_day = _rows_by_day(table["ts"])
    if remote.is_remote(store):
        # No rename in object storage, but each PUT is atomic: every part appears whole or not at all.
        written = []
        for day, idx in sorted(by_day.items()):
            part = table.take(idx) if len(idx) != table.num_rows else table
            key = remote.write_part(store, f"date={day}/part-{name}.parquet", part)
            if key:
                written.append(key)
        return written
    store = Path(store)
    staged: list[tuple[Path, Path]] = []
    try:
        for day, idx in sorted(by_day.items()):
            final = store / f"date={day}" / f"part-{name}.parquet"
            if final.exists():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{final.name}.tmp-{secrets.token_hex(4)}"
            staged.append((tmp, final))
            part = table.take(idx) if len(idx) != table.num_rows else table
            with open(tmp, "wb") as f:
                pq.write_table(part, f, compression="zstd", row_group_size=100_000)
                f.flush()
                os.fsync(f.fileno())
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dirs({final.parent for _, final in staged})
    return [final for _, final in staged]


def _rows_by_day(ts: pa.ChunkedArray) -> dict[str, object]:
    """Row numbers (a numpy array) by UTC day (`YYYY-MM-DD`) of a timestamp column."""
    import numpy as np  # only writers need it

    days = np.floor_divide(ts.cast(pa.int64()).to_numpy(), 86_400_000_000)
    unique, which = np.unique(days, return_inverse=True)
    by_day = {}
    for k, day in enumerate(unique):
        d = _EPOCH + timedelta(days=int(day))
        by_day[f"{d.year:04d}-{d.month:02d}-{d.day:02d}"] = np.flatnonzero(which == k)
    return by_day


def _fsync_dirs(dirs: Iterable[Path]) -> None:
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_rows(store: str | Path, rows: list[dict]) -> list:
    """Bulk-append completed rows as new parts, without a journal (imports, tests)."""
    return write_parts(store, rows_to_table(rows), new_id())


class StoreWriter:
    """Appends rows to a store through a journal; thread-safe; use as a context manager.

    A full segment rolls into parts in the background, so an append never waits for
    Parquet: on the writer's roll thread (`roll_in="thread"`), or, for a process whose
    latency matters (the recording proxy), in a low-priority child process that the
    roll thread waits for (`roll_in="process"`, see roll.py). `flush` and `close` wait
    for every roll and raise the first that failed; a failed roll's journal stays on
    disk for the next writer to recover.
    """

    MAX_ROLLING = 4  # segments rolling at once before an append waits for the oldest

    def __init__(
        self,
        store: str | Path,
        *,
        roll_rows: int = 10_000,
        roll_seconds: float = 60.0,
        clock=time.monotonic,
        roll_in: str = "thread",
    ) -> None:
        if roll_in not in ("thread", "process"):
            raise ValueError(f"roll_in {roll_in!r}: expected 'thread' or 'process'")
        self._roll_in = roll_in
        self.store = store if remote.is_remote(store) else Path(store)
        self._journal_dir = journal_dir(self.store)
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._segment: str | None = None
        self._journal = None
        self._pending = 0  # rows journaled in the open segment
        self._opened_at = 0.0
        self._roller: ThreadPoolExecutor | None = None
        self._rolling: deque[Future] = deque()
        self._failed: list[BaseException] = []  # rolls that failed: every wait/flush/close raises the first
        self.rows_written = 0
        recovery = open_for_writing(self.store)
        self.recovered = recovery.rows
        self.quarantined = recovery.quarantined

    def append(self, row: dict) -> dict:
        """Journal one row (flushed before returning); returns the completed row."""
        row = complete_row(row)
        line = _journal_line(row) + "\n"
        with self._lock:
            if self._journal is None:
                self._open_segment()
            self._journal.write(line)
            self._journal.flush()
            self._pending += 1
            self.rows_written += 1
            if self._pending >= self.roll_rows or self._clock() - self._opened_at >= self.roll_seconds:
                self._roll_in_background()
        return row

    def maybe_roll(self) -> None:
        """Roll if the segment is older than roll_seconds (for idle long-running writers)."""
        with self._lock:
            if self._pending and self._clock() - self._opened_at >= self.roll_seconds:
                self._roll_in_background()

    def flush(self) -> None:
        """Turn everything journaled so far into parts; raises the first roll that failed."""
        with self._lock:
            self._roll_in_background()
        self.wait()

    def wait(self) -> None:
        """Wait for the rolls under way; raises the first roll that failed (again on every later call:
        a writer whose roll failed has journals it could not turn into parts, until a new writer recovers them)."""
        with self._lock:
            rolling = list(self._rolling)
        for future in rolling:
            future.exception()  # waits; never raises
        with self._lock:
            for future in rolling:
                if future in self._rolling:  # another waiter may have taken it meanwhile
                    self._rolling.remove(future)
                    if future.exception() is not None:
                        self._failed.append(future.exception())
            failed = list(self._failed)
        if failed:
            raise failed[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._roller is not None:
                self._roller.shutdown(wait=True)
                self._roller = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open_segment(self) -> None:
        self._segment = new_id()
        journal_dir = self._journal_dir
        # Lock under a name recovery does not scan, then rename: a recoverer must never
        # see an unlocked journal of a live writer.
        tmp = journal_dir / f".{self._segment}.opening"
        f = open(tmp, "a", encoding="utf-8")
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        os.replace(tmp, journal_dir / f"{self._segment}.jsonl")
        self._journal = f
        self._opened_at = self._clock()

    def _roll_in_background(self) -> None:
        """Hand the open segment (still locked) to the roller thread; the next append opens a new one."""
        if self._journal is None:
            return
        journal, segment, pending = self._journal, self._segment, self._pending
        self._journal, self._pending = None, 0
        journal.flush()
        while len(self._rolling) >= self.MAX_ROLLING:  # appends outrun rolls: wait rather than pile up
            error = self._rolling.popleft().exception()
            if error is not None:
                self._failed.append(error)
        if self._roller is None:
            self._roller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distill-roll")
        self._rolling.append(self._roller.submit(self._roll_segment, journal, segment, pending))

    def _roll_segment(self, journal, segment: str, pending: int) -> None:
        path = self._journal_dir / f"{segment}.jsonl"
        try:
            # A roll child that could not start or failed leaves the work here, where a real error is raised.
            if pending and not (self._roll_in == "process" and _roll_in_child(self.store, path, segment)):
                write_parts(self.store, journal_table(path.read_bytes()), segment)
            # The parts are durable before the journal goes; a crash in between leaves a
            # journal whose parts already exist, which recovery recognises by name.
            path.unlink(missing_ok=True)
        finally:
            journal.close()  # releases the lock: a failed roll's journal is the next writer's to recover


def _roll_in_child(store: str | Path, journal: Path, segment: str) -> bool:
    """Whether `python -m distill_cli.roll` turned the segment into parts."""
    import subprocess
    import sys

    if getattr(sys, "frozen", False) or not sys.executable:  # no Python to run `-m` with (a bundled app)
        return False
    try:
        # On stdin, not the command line: a store URI may carry credentials, and `ps` shows arguments to all.
        # NUL-separated file-system bytes: a path may hold any byte but NUL, and need not be UTF-8.
        task = b"\0".join(os.fsencode(str(x)) for x in (store, journal, segment))
        done = subprocess.run([sys.executable, "-m", "distill_cli.roll"], input=task,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, ValueError):
        return False
    return done.returncode == 0


def open_for_writing(store: str | Path) -> Recovery:
    """What every writer does first (a recorder, a service, an import): create the store if need be and
    turn the journals of dead writers into parts, quarantining those that cannot be."""
    prepare_store(store)
    return recover_journals(store)


def journal_dir(store: str | Path) -> Path:
    """Where a store's journal lives: `STORE/_journal`, or a local folder for a remote store."""
    return remote.journal_dir(store) if remote.is_remote(store) else Path(store) / JOURNAL_DIR


def prepare_store(store: str | Path) -> None:
    """Create a store directory (and its journal directory), refusing a path that is something else."""
    if remote.is_remote(store):
        remote.check_writable(store)
        journal_dir(store).mkdir(parents=True, exist_ok=True)
        return
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise InputError(f"{store}: is a file; a store to write to must be a directory")
    if store.is_dir() and not is_store_dir(store):
        raise InputError(f"{store}: not an example store (no date=*/ parts or {JOURNAL_DIR}/)")
    (store / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)


def is_store_dir(path: Path) -> bool:
    """A store is an empty directory, or one holding date=*/ partitions, a journal or a quarantine."""
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    return not entries or any(
        e.is_dir() and (e.name in (JOURNAL_DIR, QUARANTINE_DIR) or e.name.startswith("date=")) for e in entries
    )


def journaled_rows(paths: Iterable[str | Path]) -> int:
    """Rows written to the journals of these stores but not yet rolled into parts (readers see parts only)."""
    rows = 0
    for path in paths:
        if remote.is_remote(path) or not Path(path).is_dir():
            continue  # a remote store's journal lives on its writer's machine
        for journal in Path(path, JOURNAL_DIR).glob("*.jsonl"):
            try:
                rows += journal.read_bytes().count(b"\n")
            except OSError:
                continue  # rolled away meanwhile
    return rows


def journal_hint(paths: Iterable[str | Path]) -> str:
    """A sentence on rows still in journals, or "" when there are none."""
    rows = journaled_rows(paths)
    if not rows:
        return ""
    return (f"{rows:,} call{'s are' if rows != 1 else ' is'} still in the journal, not yet in parts (a recorder "
            "is writing them, or was killed: the next `distill record` on the store recovers them)")


STALE_TEMP_SECONDS = 86_400  # a temporary file this old belongs to a writer that was killed


def remove_stale_temporaries(store: Path, now: float | None = None) -> int:
    """Delete what killed writers left half-written: hidden part temporaries and unopened journals."""
    cutoff = (time.time() if now is None else now) - STALE_TEMP_SECONDS
    removed = 0
    for path in [*store.glob("date=*/.part-*.tmp-*"), *store.glob(f"{JOURNAL_DIR}/.*.opening")]:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


@dataclass
class Quarantined:
    """A journal segment that could not be turned into parts, and where it was moved."""

    segment: str  # the journal file's name, e.g. `01J....jsonl`
    path: Path  # where it is now
    reason: str

    def warning(self) -> str:
        return f"Warning: journal segment {self.segment} could not be turned into parts ({self.reason}); moved to {self.path}"

    def to_dict(self) -> dict:
        return {"segment": self.segment, "path": str(self.path), "reason": self.reason}


@dataclass
class Recovery:
    rows: int = 0  # rows of dead writers' journals now in parts
    quarantined: list[Quarantined] = field(default_factory=list)


def quarantine_dir(store: str | Path) -> Path:
    """Where segments that could not be recovered go: `STORE/_quarantine`, or beside a remote store's journal."""
    if remote.is_remote(store):
        journal = journal_dir(store)
        return journal.with_name(journal.name + QUARANTINE_DIR)
    return Path(store) / QUARANTINE_DIR


def quarantined_segments(paths: Iterable[str | Path]) -> list[Path]:
    """The quarantined journal segments of these stores (readers name them: their rows are in no part)."""
    found: list[Path] = []
    for path in paths:
        if not remote.is_remote(path) and not Path(path).is_dir():
            continue
        found += sorted(quarantine_dir(path).glob("*.jsonl"))
    return found


def quarantine_hint(paths: Iterable[str | Path]) -> str:
    """A sentence naming quarantined journal segments, or "" when there are none."""
    segments = quarantined_segments(paths)
    if not segments:
        return ""
    rows = 0
    for segment in segments:
        try:
            rows += segment.read_bytes().count(b"\n")
        except OSError:
            continue
    where = ", ".join(str(s) for s in segments[:5]) + (f" and {len(segments) - 5} more" if len(segments) > 5 else "")
    many = len(segments) != 1
    return (f"{len(segments)} journal segment{'s' if many else ''} ({rows:,} call{'s' if rows != 1 else ''}) could not be "
            f"turned into parts and {'are' if many else 'is'} quarantined, not counted here: {where}")


# A segment's content no part can hold: pyarrow's parse and cast errors (ArrowInvalid is a ValueError), a
# time too far out for a calendar day. Anything else (a full disk) leaves the segment where it is.
_UNRECOVERABLE = (ValueError, TypeError, OverflowError, pa.ArrowException)


def recover_journals(store: str | Path) -> Recovery:
    """Turn journals of dead writers into parts; move those that cannot be to the quarantine."""
    if not remote.is_remote(store):
        remove_stale_temporaries(Path(store))
    recovery = Recovery()
    for path in sorted(journal_dir(store).glob("*.jsonl")):
        try:
            f = open(path, "r+", encoding="utf-8")
        except FileNotFoundError:
            continue  # another writer recovered it meanwhile
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer owns it
            try:
                table = journal_table(f.buffer.read())
                if table.num_rows:
                    write_parts(store, table, path.stem)
            except _UNRECOVERABLE as e:
                recovery.quarantined.append(_quarantine(store, path, e))
                continue
            recovery.rows += table.num_rows
            path.unlink(missing_ok=True)
    return recovery


def _quarantine(store: str | Path, path: Path, error: BaseException) -> Quarantined:
    """Move a segment (still locked by the caller) into the quarantine, never over another file."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    target_dir = quarantine_dir(store)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    while target.exists():  # never replace: nothing quarantined is ever lost
        target = target_dir / f"{path.stem}-{secrets.token_hex(2)}{path.suffix}"
    os.replace(path, target)
    _fsync_dirs({path.parent, target_dir})
    return Quarantined(segment=path.name, path=target, reason=reason)


_JOURNAL_SCHEMA = schemas.EXAMPLES_SCHEMA.remove_metadata().set(
    schemas.EXAMPLES_SCHEMA.get_field_index("ts"), pa.field("ts", pa.int64())
)


def journal_table(data: bytes) -> pa.Table:
    """The rows of a journal segment's bytes as an examples/1 table.

    A final line without its newline is the torn write of a killed process, never
    acknowledged to anyone, and is left out.
    """
    import pyarrow.json as pajson

    end = data.rfind(b"\n") + 1
    if end == 0:
        return schemas.EXAMPLES_SCHEMA.empty_table()
    table = pajson.read_json(
        io.BytesIO(data[:end]),
        read_options=pajson.ReadOptions(block_size=max(end, 1 << 20)),  # a line may be a multi-MB image body
        parse_options=pajson.ParseOptions(explicit_schema=_JOURNAL_SCHEMA, unexpected_field_behavior="error"),
    )
    ts = schemas.EXAMPLES_SCHEMA.get_field_index("ts")
    table = table.set_column(ts, "ts", table["ts"].cast(pa.timestamp("us", tz="UTC")))
    return table.select(COLUMNS).cast(schemas.EXAMPLES_SCHEMA)


# ---- reading -------------------------------------------------------------------------


def parquet_files(path: str | Path) -> list:
    """The Parquet files a path stands for: a file itself, or every part under a store directory (or URI)."""
    if remote.is_remote(path):
        return remote.part_files(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or directory")
    if p.is_file():
        return [p]
    if not is_store_dir(p):
        raise InputError(f"{path}: not an example store (no date=*/ parts or {JOURNAL_DIR}/)")
    return sorted(f for f in p.glob("date=*/*.parquet") if not f.name.startswith("."))


def example_files(paths: Iterable[str | Path], needed_by: str) -> list:
    """Every part of the given stores, once each, checked to be examples/1 (remote parts as `scheme://key`).

    A store named twice (`report runs runs/`, or a store and one of its own parts) is read once: its rows
    would otherwise count twice, since the id dedupe only looks across different files.
    """
    files: list = []
    seen: set[str] = set()
    for path in paths:
        fs = remote.filesystem(path)[0] if remote.is_remote(path) else None
        scheme = path.split("://", 1)[0] + "://" if fs else ""
        for f in parquet_files(path):
            key = scheme + str(f) if fs else os.path.realpath(f)
            if key in seen:
                continue
            seen.add(key)
            schema = schemas.read_schema(f, filesystem=fs)
            schemas.check_kind(scheme + str(f), schemas.kind_of(schema), "examples", needed_by)
            schemas.check_columns(scheme + str(f), schema, schemas.EXAMPLES_SCHEMA)
            files.append(scheme + str(f) if fs else f)
    return files


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that never touches the user's home or the network."""
    import duckdb  # readers need it; writers (and a roll's child process) do not

    return duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})


def examples_view(con: duckdb.DuckDBPyConnection, paths: Iterable[str | Path], needed_by: str, name: str = "examples") -> int:
    """Create view `name` over the example stores at `paths`; returns the number of part files.

    An empty store gives an empty view with the examples/1 columns.
    """
    files = example_files(paths, needed_by)
    if not files:
        con.register(f"{name}_empty", schemas.EXAMPLES_SCHEMA.empty_table())
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_empty")
        return 0
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    local = [f for f in files if not remote.is_remote(f)]
    sources = []
    if local:
        # Rows are unique by id: a part copied into a second store, or imported twice, is counted once.
        suspects = _parts_sharing_ids(con, local)
        plain, partial = [f for f in local if str(f) not in suspects], []
        if suspects:
            # Of an id in several parts, the rows of the first part (by name) are kept. A part all of whose rows
            # are kept elsewhere (a copied part: the usual case) is simply left out; one that shares only some
            # of its ids is read through a join.
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name}_repeated AS SELECT id, min(filename) AS keep "
                        f"FROM read_parquet([{_sql_files(suspects)}], filename = true) WHERE id IS NOT NULL "
                        "GROUP BY id HAVING count(DISTINCT filename) > 1")
            for file, dropped, total in con.execute(
                f"SELECT filename, count(*) FILTER (WHERE d.keep <> r.filename), count(*) "
                f"FROM read_parquet([{_sql_files(suspects)}], filename = true) r LEFT JOIN {name}_repeated d "
                "ON d.id = r.id GROUP BY filename"
            ).fetchall():
                if not dropped:
                    plain.append(file)
                elif dropped < total:
                    partial.append(file)
        if plain:
            sources.append(f"SELECT {cols} FROM read_parquet([{_sql_files(plain)}], union_by_name = true)")
        if partial:
            sources.append(f"SELECT {', '.join('r.' + c for c in cols.split(', '))} FROM read_parquet("
                           f"[{_sql_files(partial)}], union_by_name = true, filename = true) r "
                           f"LEFT JOIN {name}_repeated d ON d.id = r.id WHERE d.id IS NULL OR d.keep = r.filename")
    by_scheme: dict[str, list[str]] = defaultdict(list)
    for f in files:
        if remote.is_remote(f):
            by_scheme[f.split("://", 1)[0] + "://" + f.split("://", 1)[1].split("/", 1)[0]].append(f.split("://", 1)[1])
    if by_scheme:
        import pyarrow.dataset as pads
    for i, (bucket_uri, keys) in enumerate(sorted(by_scheme.items())):
        # No DuckDB extension (machines may be offline): a pyarrow dataset that DuckDB scans,
        # pushing projections and filters down to row-group statistics.
        dataset = pads.dataset(keys, schema=_READ_SCHEMA, format="parquet", filesystem=remote.filesystem(bucket_uri)[0])
        con.register(f"{name}_remote{i}", dataset)
        sources.append(f"SELECT {cols} FROM {name}_remote{i}")
    union = " UNION ALL ".join(sources)
    if by_scheme and con.execute(f"SELECT EXISTS (SELECT id FROM ({union}) WHERE id IS NOT NULL "
                                 "GROUP BY id HAVING count(*) > 1)").fetchone()[0]:
        # Remote parts' footers are not at hand here: all their ids are compared, and repeats dropped the slow way.
        union = (f"SELECT {cols} FROM ({union}) "
                 "QUALIFY id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY ts, run_id, output) = 1")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS " + union)
    return len(files)


@dataclass(frozen=True)
class StoreTask:
    """A task the `examples` view holds: its calls and, when asked for, how many of them are teacher answers."""

    task: str | None
    calls: int
    teacher_answers: int | None = None


def store_tasks(
    con: duckdb.DuckDBPyConnection, stores: Sequence[str], *, when_empty: str, teacher_answers: bool = False
) -> list[StoreTask]:
    """The tasks of the `examples` view over `stores`, most calls first; NotEnoughData when it holds no call.

    `when_empty` ends that message with what the command cannot do yet ("nothing to gate").
    Counting teacher answers reads more columns, so only a command that lists them asks.
    """
    counted = f", count(*) FILTER (WHERE {schemas.teacher_answer_sql()})" if teacher_answers else ""
    rows = con.execute(f"SELECT task, count(*){counted} FROM examples GROUP BY task ORDER BY 2 DESC, 1").fetchall()
    if not rows:
        hint = journal_hint(stores)
        raise NotEnoughData(f"{', '.join(stores)}: no calls recorded yet; {when_empty}" + (f"; {hint}" if hint else ""))
    return [StoreTask(*row) for row in rows]


def task_listing(tasks: Sequence[StoreTask], *, teacher_answers: bool = False, limit: int = 10) -> str:
    """The first `limit` tasks as an error names them: `a (120), b (30)`, or `a (120 teacher answers), ...`."""
    if teacher_answers:
        return ", ".join(f"{t.task} ({t.teacher_answers} teacher answers)" for t in tasks[:limit])
    return ", ".join(f"{t.task} ({t.calls})" for t in tasks[:limit])


def check_task(task: str, tasks: Sequence[StoreTask], stores: Sequence[str], *, of: str = "",
               teacher_answers: bool = False, limit: int = 10) -> None:
    """InputError when the stores never saw `task`; `of` says whose task it is (", the task of student X")."""
    if task not in {t.task for t in tasks}:
        listed = task_listing(tasks, teacher_answers=teacher_answers, limit=limit)
        raise InputError(f"{', '.join(stores)}: no calls of task {task!r}{of}; tasks there: {listed}")


def _sql_files(files: Iterable) -> str:
    return ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)


def _parts_sharing_ids(con: duckdb.DuckDBPyConnection, files: list) -> set[str]:
    """The parts among `files` that may share an id with another, when some id is in two of them; else none.

    Reading every id would cost ~15% of a report, so parts are first sorted by their footers' id ranges:
    ids are time-ordered ULIDs, and only parts whose ranges overlap (concurrent writers, a copied part)
    can share one; only their ids are compared. Within a part ids are unique: writers make them so, and
    an import refuses a file that repeats one.
    """
    if len(files) < 2:
        return set()
    ranges = con.execute(
        "SELECT file_name, min(stats_min), max(stats_max), bool_or(stats_min IS NULL OR stats_max IS NULL) "
        f"FROM parquet_metadata([{_sql_files(files)}]) WHERE path_in_schema = 'id' GROUP BY file_name ORDER BY 2"
    ).fetchall()
    suspects = [file for file, _, _, unknown in ranges if unknown]  # no statistics: it may share any id
    cluster: list[str] = []
    top = None
    for file, low, high, unknown in ranges:
        if unknown:
            continue
        if top is not None and low > top:  # a gap: no part after this shares an id with one before
            suspects += cluster if len(cluster) > 1 else []
            cluster, top = [], None
        cluster.append(file)
        top = high if top is None or high > top else top
    suspects += cluster if len(cluster) > 1 else []
    if len(suspects) < 2 or not con.execute(
        f"SELECT EXISTS (SELECT id FROM read_parquet([{_sql_files(suspects)}]) WHERE id IS NOT NULL "
        "GROUP BY id HAVING count(*) > 1)"
    ).fetchone()[0]:
        return set()
    return set(suspects)
