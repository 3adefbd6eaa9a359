"""`distill record --import` as a writer of the store: it recovers killed recorders' journals first, as every mode does,
and never adds a row whose id is already there."""

from __future__ import annotations

import json

from test_import import FLAT_LINE, rows, write_jsonl
from test_store import BAD_SEGMENT, write_bad_segment
from typer.testing import CliRunner

from distill_cli import store
from distill_cli.cli import app

runner = CliRunner()


def killed_recorder(s, calls: int) -> None:
    """A recorder's journal as a killed one leaves it: rows journaled, never rolled, the lock released."""
    w = store.StoreWriter(s)
    for i in range(calls):
        w.append({"task": "live", "provider": "anthropic", "input": f"q{i}", "output": f"a{i}"})
    w._journal.close()
    w._journal = None


def test_import_recovers_a_killed_recorders_journal(tmp_path):
    s = tmp_path / "s"
    killed_recorder(s, 3)
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE])
    result = runner.invoke(app, ["record", "--store", str(s), "--import", str(f), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "Recovered 3 calls a previous recorder had journaled.\n" in result.stderr
    assert json.loads(result.stdout)["recovered"] == 3
    assert sorted(r["task"] for r in rows(s)) == ["intent", "live", "live", "live"]
    assert store.journaled_rows([s]) == 0


def test_a_parquet_import_recovers_too(tmp_path):
    a, s = tmp_path / "a", tmp_path / "s"
    runner.invoke(app, ["record", "--store", str(a), "--import", str(write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE]))])
    killed_recorder(s, 2)
    part = next(a.glob("date=*/*.parquet"))
    result = runner.invoke(app, ["record", "--store", str(s), "--import", str(part)])
    assert result.exit_code == 0, result.output
    assert "Recovered 2 calls" in result.stderr and len(rows(s)) == 3


def test_an_import_quarantines_a_segment_that_cannot_be_recovered_and_imports(tmp_path):
    s = tmp_path / "s"
    write_bad_segment(s)
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE])
    result = runner.invoke(app, ["record", "--store", str(s), "--import", str(f)])
    assert result.exit_code == 0, result.output
    assert (f"Warning: journal segment {BAD_SEGMENT} could not be turned into parts (ArrowInvalid: Failed to convert "
            f"JSON to int64, couldn't parse:{10**25}); moved to {s / '_quarantine' / BAD_SEGMENT}\n") in result.stderr
    assert "Imported 1 calls" in result.stderr and len(rows(s)) == 1


def test_importing_the_same_part_twice_is_refused(tmp_path):
    from test_import import snapshot

    a, s = tmp_path / "a", tmp_path / "s"
    runner.invoke(app, ["record", "--store", str(a), "--import", str(write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE] * 3))])
    part = next(a.glob("date=*/*.parquet"))
    assert runner.invoke(app, ["record", "--store", str(s), "--import", str(part)]).exit_code == 0
    before = snapshot(s)
    result = runner.invoke(app, ["record", "--store", str(s), "--import", str(part)])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {part}: 3 of its 3 ids are already in {s} (imported before?); nothing imported\n"
    assert snapshot(s) == before
    assert len(rows(s)) == 3


def test_a_part_that_repeats_an_id_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = tmp_path / "a"
    runner.invoke(app, ["record", "--store", str(a), "--import", str(write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE] * 2))])
    part = next(a.glob("date=*/*.parquet"))
    table = pq.read_table(part)
    doubled = tmp_path / "doubled.parquet"
    pq.write_table(pa.concat_tables([table, table]), doubled)
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(doubled)])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {doubled}: 2 rows repeat an id or have none; rows are unique by id\n"


def test_report_counts_a_copied_part_once(tmp_path):
    from distill_cli.report import build_report

    a, s = tmp_path / "a", tmp_path / "s"
    runner.invoke(app, ["record", "--store", str(a), "--import", str(write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE] * 3))])
    part = next(a.glob("date=*/*.parquet"))
    runner.invoke(app, ["record", "--store", str(s), "--import", str(part)])
    (s / part.parent.name / "part-copy.parquet").write_bytes(part.read_bytes())  # around the import's refusal
    assert build_report([s]).totals["calls"] == 3
    assert build_report([a, s]).totals["calls"] == 3


def test_the_same_log_imported_twice_is_refused(tmp_path):
    """JSONL lines get new ids on every import, so the file's own digest says it was imported before."""
    from distill_cli.store import parquet_files

    log = tmp_path / "calls.jsonl"
    log.write_text("".join(json.dumps({"input": f"q{i}", "output": "a", "model": "claude-haiku-4-5",
                                       "input_tokens": 3, "output_tokens": 1}) + "\n" for i in range(3)))
    s = tmp_path / "runs"
    first = CliRunner().invoke(app, ["record", "--store", str(s), "--import", str(log), "--task", "t"])
    assert first.exit_code == 0, first.output
    parts = sorted(map(str, parquet_files(s)))
    again = CliRunner().invoke(app, ["record", "--store", str(s), "--import", str(log), "--task", "t"])
    assert again.exit_code == 3
    assert again.output.startswith(f"Error: {log}: these same bytes were imported into {s} at ")
    assert again.output.endswith(" (3 calls); importing them again would count every call twice; nothing imported\n")
    assert sorted(map(str, parquet_files(s))) == parts
    # Another log (one more line) is another import.
    log.write_text(log.read_text() + json.dumps({"input": "q9", "output": "a", "model": "claude-haiku-4-5"}) + "\n")
    assert CliRunner().invoke(app, ["record", "--store", str(s), "--import", str(log), "--task", "t"]).exit_code == 0
