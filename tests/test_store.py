"""The example store: journaled writes, atomic parts, many writers, crash recovery, reading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill_cli import schemas, store
from distill_cli.errors import InputError, NotEnoughData

ROOT = Path(__file__).resolve().parent.parent


def count(paths, sql="SELECT count(*), count(DISTINCT id) FROM examples"):
    con = store.connect()
    store.examples_view(con, paths, "test")
    return con.execute(sql).fetchone()


def row(i: int, **extra) -> dict:
    return {"task": "t", "provider": "anthropic", "input": f"q{i}", "output": f"a{i}", **extra}


def test_ulids_are_unique_and_sortable_by_time():
    ids = [store.new_id(1_700_000_000 + i) for i in range(100)]
    assert ids == sorted(ids)
    made = [store.new_id() for _ in range(10_000)]  # many within one millisecond
    assert len(set(made)) == 10_000 and made == sorted(made)
    assert all(len(i) == 26 for i in ids)
    assert store.new_id(0).startswith("0000000000")


def test_rows_roll_into_parts_by_count_and_on_close(tmp_path):
    s = tmp_path / "s"
    with store.StoreWriter(s, roll_rows=3) as w:
        for i in range(7):
            w.append(row(i))
        # Two full segments roll on the writer's background thread; the open one stays a journal.
        # A part is renamed into place before its journal segment is removed: wait for both.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            len(list(s.glob("date=*/part-*.parquet"))) < 2 or len(list((s / "_journal").glob("*.jsonl"))) > 1
        ):
            time.sleep(0.01)
        assert len(list(s.glob("date=*/part-*.parquet"))) == 2
        assert len(list((s / "_journal").glob("*.jsonl"))) == 1
    assert len(list(s.glob("date=*/part-*.parquet"))) == 3
    assert list((s / "_journal").glob("*.jsonl")) == []
    assert count([s]) == (7, 7)
    part = next(s.glob("date=*/part-*.parquet"))
    assert schemas.read_kind(part) == schemas.EXAMPLES


def test_time_based_roll(tmp_path):
    now = [0.0]
    w = store.StoreWriter(tmp_path / "s", roll_seconds=10, clock=lambda: now[0])
    w.append(row(1))
    w.maybe_roll()
    assert count([tmp_path / "s"]) == (0, 0)
    now[0] = 11
    w.maybe_roll()
    w.wait()
    assert count([tmp_path / "s"]) == (1, 1)
    w.close()


def test_parts_are_split_by_day(tmp_path):
    s = tmp_path / "s"
    with store.StoreWriter(s) as w:
        w.append(row(1, ts="2026-01-01T23:59:59Z"))
        w.append(row(2, ts="2026-01-02T00:00:01+00:00"))
    assert sorted(p.parent.name for p in s.glob("date=*/*.parquet")) == ["date=2026-01-01", "date=2026-01-02"]


def test_empty_store_reads_as_no_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    assert count([tmp_path / "empty"]) == (0, 0)


def test_unknown_column_is_refused(tmp_path):
    with store.StoreWriter(tmp_path / "s") as w, pytest.raises(ValueError, match="not examples/1 columns: bogus"):
        w.append({"bogus": 1})


WRITER = """
import sys
from distill_cli import store
w = store.StoreWriter(sys.argv[1], roll_rows=int(sys.argv[3]))
for i in range(int(sys.argv[2])):
    r = w.append({"task": "t", "input": "x" * 200, "metadata": {"i": i}})
    if sys.argv[4] == "report":
        print(r["id"], flush=True)
w.close()
"""


def test_four_processes_append_to_one_store(tmp_path):
    s = tmp_path / "s"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(s), "5000", "777", "quiet"], cwd=ROOT) for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert count([s]) == (20_000, 20_000)
    assert list((s / "_journal").glob("*.jsonl")) == []


def test_killed_writer_loses_nothing_it_acknowledged(tmp_path):
    s = tmp_path / "s"
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(s), "1000000", "1000000", "report"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acknowledged = []
    for line in p.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) == 3000:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert count([s]) == (0, 0)  # nothing rolled yet: all of it is in the dead writer's journal
    w = store.StoreWriter(s)  # the next writer recovers the journal
    assert w.recovered >= 3000
    w.close()
    con = store.connect()
    store.examples_view(con, [s], "test")
    ids = {r[0] for r in con.execute("SELECT id FROM examples").fetchall()}
    assert set(acknowledged) <= ids
    assert con.execute("SELECT count(*) = count(DISTINCT id) FROM examples").fetchone()[0]
    assert list((s / "_journal").glob("*.jsonl")) == []


def test_recovery_is_idempotent_and_skips_torn_line(tmp_path):
    s = tmp_path / "s"
    w = store.StoreWriter(s)
    rows = [w.append(row(i)) for i in range(5)]
    journal = next((s / "_journal").glob("*.jsonl"))
    # Simulate a crash after the parts were renamed in but before the journal was removed.
    store.write_parts(s, store.rows_to_table(rows), journal.stem)
    w._journal.write('{"id": "torn')
    w._journal.flush()
    w._journal.close()  # releases the lock as a dead process would
    w._journal = None
    store.StoreWriter(s).close()
    assert count([s]) == (5, 5)


def test_live_writer_journal_is_not_stolen(tmp_path):
    s = tmp_path / "s"
    live = store.StoreWriter(s)
    live.append(row(1))
    other = store.StoreWriter(s)
    assert other.recovered == 0
    assert count([s]) == (0, 0)
    live.close()
    other.close()
    assert count([s]) == (1, 1)


def test_no_partial_part_is_ever_visible(tmp_path, monkeypatch):
    s = tmp_path / "s"
    table = store.rows_to_table([store.complete_row(row(i, ts="2026-01-0%dT00:00:00Z" % (1 + i % 2))) for i in range(4)])
    calls = {"n": 0}
    real = pq.write_table

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(pq, "write_table", failing)
    with pytest.raises(OSError):
        store.write_parts(s, table, "X")
    assert [p for p in s.rglob("*") if p.is_file()] == []


# ---- reading errors -------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nope: no such file or directory"):
        count([tmp_path / "nope"])


def test_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"d: not an example store"):
        count([tmp_path / "d"])


def test_wrong_kind_is_named(tmp_path):
    f = tmp_path / "gate.parquet"
    pq.write_table(schemas.VERDICTS_SCHEMA.empty_table(), f)
    with pytest.raises(InputError, match=r"^gate.parquet is a verdicts file; test needs an example store$"):
        count([f])


def test_untagged_parquet(tmp_path):
    f = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), f)
    with pytest.raises(InputError, match=r"other.parquet: not a distill file"):
        count([f])


def test_newer_version(tmp_path):
    f = tmp_path / "new.parquet"
    pq.write_table(schemas.EXAMPLES_SCHEMA.empty_table().replace_schema_metadata({"distill.schema": "examples/9"}), f)
    with pytest.raises(InputError, match=r"new.parquet: examples/9 is newer than this distill understands"):
        count([f])


@pytest.mark.parametrize("content", [b"hello, not parquet", b"PAR1" + b"\0" * 10])
def test_not_parquet_or_truncated(tmp_path, content):
    f = tmp_path / "bad.parquet"
    f.write_bytes(content)
    with pytest.raises(InputError, match=r"bad.parquet: not a readable Parquet file"):
        count([f])


def test_truncated_real_part(tmp_path):
    s = tmp_path / "s"
    store.append_rows(s, [store.complete_row(row(i)) for i in range(10)])
    part = next(s.glob("date=*/*.parquet"))
    part.write_bytes(part.read_bytes()[:-20])
    with pytest.raises(InputError, match=rf"{part}: not a readable Parquet file"):
        count([s])


def test_writer_refuses_a_file_or_foreign_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        store.StoreWriter(tmp_path / "f")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not an example store"):
        store.StoreWriter(tmp_path / "d")


def test_metadata_is_json_text(tmp_path):
    s = tmp_path / "s"
    with store.StoreWriter(s) as w:
        w.append(row(1, metadata={"team": "ops"}))
    assert json.loads(count([s], "SELECT metadata FROM examples")[0]) == {"team": "ops"}


def _decode(ulid: str) -> int:
    return int(ulid.translate(str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")), 32)


def test_bulk_ids_match_the_scalar_encoding_and_are_monotonic():
    ids = store.new_id_array(1000, now=1_700_000_000.123).to_pylist()
    values = [_decode(i) for i in ids]
    assert all(v >> 80 == 1_700_000_000_123 for v in values)
    assert [b - a for a, b in zip(values, values[1:])] == [1] * 999
    assert [store.new_id_from_int(v) for v in values] == ids
    assert store.new_id_array(0).to_pylist() == []


def test_journal_parses_back_exactly_as_the_rows_were_written(tmp_path):
    rows = [
        store.complete_row(row(1, ts="2026-01-01T00:00:00.123456Z", cost_usd=0, confidence=0.5, status=200, stream=True,
                               input="üñí \\n \"q\" 😀", metadata={"k": [1, 2]}, latency_ms=3)),
        store.complete_row(row(2, cost_usd=None, output=None, input="x" * 3_000_000)),  # longer than one read block
    ]
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows).encode()
    assert store.journal_table(data + b'{"id": "torn').equals(store.rows_to_table(rows))
    assert store.journal_table(b"").num_rows == 0


def test_missing_column_is_named(tmp_path):
    s = tmp_path / "s"
    store.append_rows(s, [store.complete_row(row(1))])
    part = next(s.glob("date=*/*.parquet"))
    pq.write_table(pq.read_table(part).drop(["output"]), tmp_path / "nooutput.parquet")
    with pytest.raises(InputError, match=r"^.*nooutput.parquet: missing column 'output' \(examples/1\)$"):
        count([tmp_path / "nooutput.parquet"])


def test_a_failed_background_roll_is_raised_on_close_and_its_rows_are_recovered(tmp_path, monkeypatch):
    s = tmp_path / "s"
    real_write_parts = store.write_parts

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_parts", disk_full)
    w = store.StoreWriter(s, roll_rows=3)
    for i in range(7):
        w.append(row(i))
    with pytest.raises(OSError, match="No space left"):
        w.close()
    assert count([s]) == (0, 0)
    assert len(list((s / "_journal").glob("*.jsonl"))) == 3  # every row is still journaled
    monkeypatch.setattr(store, "write_parts", real_write_parts)
    with store.StoreWriter(s) as again:
        assert again.recovered == 7
    assert count([s]) == (7, 7)


def test_rows_still_in_a_journal_are_counted_and_named(tmp_path):
    """A store whose calls are all in a live (or killed) writer's journal is not 'empty' without a word."""
    s = tmp_path / "s"
    w = store.StoreWriter(s)
    for i in range(5):
        w.append(row(i))
    assert count([s]) == (0, 0)  # readers see parts only
    assert store.journaled_rows([s]) == 5
    assert "5 calls are still in the journal" in store.journal_hint([s])
    w.close()
    assert store.journaled_rows([s]) == 0 and store.journal_hint([s]) == ""


def test_temporaries_of_killed_writers_are_removed_once_stale(tmp_path):
    s = tmp_path / "s"
    with store.StoreWriter(s) as w:
        w.append(row(1))
    day = next(s.glob("date=*"))
    old_part = day / ".part-X.parquet.tmp-0a1b2c3d"
    fresh_part = day / ".part-Y.parquet.tmp-0a1b2c3d"  # a live writer's, mid-write
    old_journal = s / "_journal" / ".01ABC.opening"
    for p in (old_part, fresh_part, old_journal):
        p.write_bytes(b"half")
    hours_ago = time.time() - 2 * store.STALE_TEMP_SECONDS
    os.utime(old_part, (hours_ago, hours_ago))
    os.utime(old_journal, (hours_ago, hours_ago))
    store.StoreWriter(s).close()
    assert not old_part.exists() and not old_journal.exists()
    assert fresh_part.exists()
    assert count([s]) == (1, 1)


def test_a_process_roll_writes_the_parts_in_a_child(tmp_path, monkeypatch):
    """The recorder's writer rolls in `python -m distill_cli.roll`, off its own process's core and GIL."""
    s = tmp_path / "s"

    def not_here(*a, **k):
        raise AssertionError("the parent converted the segment itself")

    monkeypatch.setattr(store, "write_parts", not_here)  # the child has its own, untouched
    with store.StoreWriter(s, roll_rows=3, roll_in="process") as w:
        for i in range(7):
            w.append(row(i))
        w.wait()
        assert len(list(s.glob("date=*/part-*.parquet"))) == 2
    assert list((s / "_journal").glob("*.jsonl")) == []
    assert count([s]) == (7, 7)


def test_a_process_roll_that_cannot_start_is_done_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    s = tmp_path / "s"
    with store.StoreWriter(s, roll_rows=3, roll_in="process") as w:
        for i in range(4):
            w.append(row(i))
    assert count([s]) == (4, 4) and list((s / "_journal").glob("*.jsonl")) == []


def test_concurrent_waits_each_return_only_once_the_rolls_are_done(tmp_path, monkeypatch):
    """flush/wait from two threads at once: neither returns before the parts are on disk."""
    import threading

    real_write_parts = store.write_parts

    def slow_write_parts(*a, **k):
        time.sleep(0.3)
        return real_write_parts(*a, **k)

    monkeypatch.setattr(store, "write_parts", slow_write_parts)
    s = tmp_path / "s"
    w = store.StoreWriter(s, roll_seconds=0)  # every append hands its segment to the roll thread
    for i in range(3):
        w.append(row(i))
    seen = []

    def waiter():
        w.wait()
        seen.append(len(list(s.glob("date=*/part-*.parquet"))))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == [3, 3]
    w.close()


def test_a_process_roll_takes_a_store_path_that_is_not_utf8(tmp_path):
    s = os.fsdecode(os.fsencode(str(tmp_path)) + b"/st\xff\xfe")
    with store.StoreWriter(s, roll_rows=1, roll_in="process") as w:
        w.append(row(1))
        w.append(row(2))
    parts = list(Path(s).glob("date=*/part-*.parquet"))
    assert len(parts) == 2 and list(Path(s, "_journal").glob("*.jsonl")) == []
    assert sum(pq.read_table(open(p, "rb")).num_rows for p in parts) == 2


BAD_SEGMENT = "01JBADSEGMENT0000000000000.jsonl"


def write_bad_segment(s: Path, good_rows: int = 2) -> Path:
    """A dead writer's journal segment whose second line no part can hold (a count beyond int64)."""
    store.prepare_store(s)
    lines = [store.complete_row(row(i)) for i in range(good_rows)]
    lines.insert(1, {**store.complete_row(row(99)), "input_tokens": 10**25})
    path = s / "_journal" / BAD_SEGMENT
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_segment_that_cannot_be_recovered_is_quarantined_and_the_store_stays_writable(tmp_path):
    s = tmp_path / "s"
    bad = write_bad_segment(s)
    content = bad.read_bytes()
    with store.StoreWriter(s) as w:  # the store was blocked here: ArrowInvalid from journal_table
        w.append(row(1))
    [q] = w.quarantined
    assert q.path == s / "_quarantine" / BAD_SEGMENT and q.path.read_bytes() == content  # moved, not changed
    assert not bad.exists()
    assert q.warning() == (
        f"Warning: journal segment {BAD_SEGMENT} could not be turned into parts (ArrowInvalid: Failed to convert "
        f"JSON to int64, couldn't parse:{10**25}); moved to {q.path}"
    )
    assert count([s]) == (1, 1)  # readers never read the quarantine
    assert store.quarantine_hint([s]) == (
        f"1 journal segment (3 calls) could not be turned into parts and is quarantined, not counted here: {q.path}"
    )
    with store.StoreWriter(s) as again:  # once is enough
        assert again.quarantined == [] and again.recovered == 0


def test_a_quarantined_segment_never_replaces_another(tmp_path):
    s = tmp_path / "s"
    write_bad_segment(s)
    store.StoreWriter(s).close()
    write_bad_segment(s, good_rows=5)  # the same name again (a copied journal)
    [q] = store.StoreWriter(s).quarantined
    assert q.path != s / "_quarantine" / BAD_SEGMENT
    assert len(store.quarantined_segments([s])) == 2
    assert "2 journal segments (9 calls)" in store.quarantine_hint([s])


def test_a_segment_that_fails_to_write_for_want_of_disk_stays_in_the_journal(tmp_path, monkeypatch):
    s = tmp_path / "s"
    w = store.StoreWriter(s)
    w.append(row(1))
    w._journal.close()  # a dead writer's journal
    w._journal = None

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_parts", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.StoreWriter(s)
    assert store.journaled_rows([s]) == 1 and store.quarantined_segments([s]) == []


def test_readers_count_an_id_once_when_parts_are_copied_between_stores(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with store.StoreWriter(a) as w:
        for i in range(4):
            w.append(row(i))
    with store.StoreWriter(b) as w:
        w.append(row(9))
    part = next(a.glob("date=*/*.parquet"))
    copy = b / part.parent.name / "part-copied-from-a.parquet"
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(part.read_bytes())
    assert count([a, b]) == (5, 5)  # the part under two names: its rows once
    assert count([b]) == (5, 5)
    assert count([b], "SELECT count(*) FROM examples WHERE input = 'q9'") == (1,)


def test_a_store_named_twice_is_read_once(tmp_path):
    """`distill report runs runs/`, or a store and one of its own parts: each part is read once."""
    s = tmp_path / "s"
    with store.StoreWriter(s) as w:
        for i in range(4):
            w.append(row(i))
    part = next(s.glob("date=*/*.parquet"))
    assert count([s, f"{s}/"]) == (4, 4)
    assert count([s, part]) == (4, 4)
    assert count([s, tmp_path / "." / "s"]) == (4, 4)


def test_parts_whose_id_ranges_overlap_lose_no_row(tmp_path):
    """Concurrent writers' parts cover the same id ranges; none of their rows is a repeat."""
    s = tmp_path / "s"
    one, two = store.StoreWriter(s, roll_rows=2), store.StoreWriter(s, roll_rows=2)
    for i in range(10):
        (one if i % 2 else two).append(row(i))
    one.close()
    two.close()
    assert len(list(s.glob("date=*/*.parquet"))) == 6
    assert count([s]) == (10, 10)
    first = sorted(s.glob("date=*/*.parquet"))[0]
    (first.parent / "part-zz-copy.parquet").write_bytes(first.read_bytes())  # one repeat among overlapping parts
    assert count([s]) == (10, 10)


def test_a_part_that_shares_only_some_ids_keeps_its_other_rows(tmp_path):
    s = tmp_path / "s"
    with store.StoreWriter(s) as w:
        rows = [w.append(row(i)) for i in range(4)]
    store.write_parts(s, store.rows_to_table([{**rows[1], "output": "changed"}, rows[2], store.complete_row(row(7))]),
                      "zz-partial")
    assert count([s]) == (5, 5)
    # the first part (by name) holds the repeated ids' rows that count
    assert count([s], "SELECT count(*) FROM examples WHERE output = 'changed'") == (0,)


@pytest.mark.parametrize(
    "tag, message",
    [
        ("examples/0", "runs.parquet: examples/0 has no upgrade path to examples/1"),
        ("examples/2", "runs.parquet: examples/2 is newer than this distill understands (examples/1); upgrade distill-cli"),
        ("verdicts/1", "runs.parquet is a verdicts file; gate needs an example store"),
    ],
)
def test_a_file_of_another_version_or_kind_is_refused_by_name(tag, message):
    with pytest.raises(InputError) as e:
        schemas.check_kind("runs.parquet", tag, "examples", "gate")
    assert str(e.value) == message


def test_the_tasks_of_a_store_and_the_one_error_for_a_task_it_never_saw(tmp_path):
    """build-student, gate and drift list a store's tasks, and refuse an unknown one, through one function."""
    s = tmp_path / "s"
    store.prepare_store(s)
    con = store.connect()
    store.examples_view(con, [s], "test")
    with pytest.raises(NotEnoughData, match=rf"^{s}: no calls recorded yet; nothing to gate$"):
        store.store_tasks(con, [str(s)], when_empty="nothing to gate")
    teacher = {"served_by": "teacher", "status": 200}
    store.append_rows(s, [store.complete_row(row(i, **teacher)) for i in range(3)]
                      + [store.complete_row(row(9, task="u", served_by="student", status=200)) for _ in range(4)])
    store.examples_view(con, [s], "test")
    tasks = store.store_tasks(con, [str(s)], when_empty="nothing to gate", teacher_answers=True)
    assert [(t.task, t.calls, t.teacher_answers) for t in tasks] == [("u", 4, 0), ("t", 3, 3)]
    store.check_task("t", tasks, [str(s)])
    with pytest.raises(InputError) as e:
        store.check_task("nope", tasks, [str(s)], of=", the task of the student")
    assert str(e.value) == f"{s}: no calls of task 'nope', the task of the student; tasks there: u (4), t (3)"
    with pytest.raises(InputError, match=r"tasks there: u \(0 teacher answers\)$"):
        store.check_task("nope", tasks, [str(s)], teacher_answers=True, limit=1)
