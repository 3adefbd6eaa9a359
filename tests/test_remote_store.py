"""Stores in object storage: a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill_cli import remote, store
from distill_cli.errors import InputError
from distill_cli.importer import import_jsonl
from distill_cli.prices import load_prices

ROOT = Path(__file__).resolve().parent.parent


def count(paths):
    con = store.connect()
    store.examples_view(con, paths, "test")
    return con.execute("SELECT count(*), count(DISTINCT id) FROM examples").fetchone()


def test_writer_and_reader_round_trip(s3_store):
    with store.StoreWriter(s3_store, roll_rows=3) as w:
        for i in range(7):
            w.append({"task": "t", "input": f"q{i}", "ts": f"2026-01-0{1 + i % 2}T00:00:00Z"})
    parts = store.parquet_files(s3_store)
    assert len(parts) == 5 and all("/date=2026-01-0" in p for p in parts)
    assert count([s3_store]) == (7, 7)
    assert not any(remote.journal_dir(s3_store).glob("*.jsonl"))  # the local journal was shipped


def test_empty_prefix_is_an_empty_store(s3_store):
    assert count([s3_store + "-nothing-here"]) == (0, 0)


def test_missing_bucket_is_named(s3_store):
    with pytest.raises(InputError, match=r"^s3://no-such-bucket-x/s: bucket 'no-such-bucket-x' does not exist$"):
        store.StoreWriter("s3://no-such-bucket-x/s")


def test_import_into_remote_store(s3_store, tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"input": "hi", "output": "x", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3}}) + "\n")
    result = import_jsonl(s3_store, f, prices=load_prices())
    assert result.imported == 1 and count([s3_store]) == (1, 1)


def test_remote_and_local_stores_read_together(s3_store, tmp_path):
    store.append_rows(s3_store, [store.complete_row({"task": "t", "input": "remote"})])
    store.append_rows(tmp_path / "local", [store.complete_row({"task": "t", "input": "local"})])
    assert count([s3_store, tmp_path / "local"]) == (2, 2)


WRITER = """
import sys
from distill_cli import store
with store.StoreWriter(sys.argv[1], roll_rows=500) as w:
    for i in range(int(sys.argv[2])):
        w.append({"task": "t", "input": f"{sys.argv[3]}-{i}"})
"""


def test_two_processes_write_one_remote_store(s3_store, tmp_path):
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, s3_store, "2000", name], cwd=ROOT, env=env)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert count([s3_store]) == (4000, 4000)


def test_killed_writer_of_remote_store_is_recovered_from_local_journal(s3_store):
    w = store.StoreWriter(s3_store)
    for i in range(10):
        w.append({"task": "t", "input": f"q{i}"})
    w._journal.close()  # the process dies: its lock goes, its journal stays on local disk
    w._journal = None
    assert count([s3_store]) == (0, 0)
    again = store.StoreWriter(s3_store)
    assert again.recovered == 10
    again.close()
    assert count([s3_store]) == (10, 10)


def test_no_credential_in_any_stored_byte(s3_store, tmp_path):
    store.append_rows(s3_store, [store.complete_row({"task": "t", "input": "x"})])
    fs, root = remote.filesystem(s3_store)
    for path in store.parquet_files(s3_store):
        with fs.open_input_stream(path) as f:
            assert b"testing-secret-never-printed" not in f.read()


def test_a_remote_stores_bad_journal_segment_is_quarantined_beside_its_journal(s3_store):
    from test_store import BAD_SEGMENT

    store.prepare_store(s3_store)
    good = store.complete_row({"task": "t", "input": "q"})
    (remote.journal_dir(s3_store) / BAD_SEGMENT).write_text(json.dumps({**good, "input_tokens": 10**25}) + "\n")
    with store.StoreWriter(s3_store) as w:
        w.append({"task": "t", "input": "after"})
    [q] = w.quarantined
    assert q.path == remote.journal_dir(s3_store).with_name(remote.journal_dir(s3_store).name + "_quarantine") / BAD_SEGMENT
    assert count([s3_store]) == (1, 1)
    assert str(q.path) in store.quarantine_hint([s3_store])


def test_remote_parts_that_repeat_ids_are_counted_once(s3_store):
    table = store.rows_to_table([store.complete_row({"task": "t", "input": f"q{i}"}) for i in range(3)])
    store.write_parts(s3_store, table, "first")
    store.write_parts(s3_store, table, "copy")
    assert count([s3_store]) == (3, 3)
