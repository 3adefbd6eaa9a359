"""`distill record --import`: the three line forms, bad lines, strict mode, credentials, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill_cli import store
from distill_cli.cli import app
from distill_cli.errors import InputError
from distill_cli.importer import import_jsonl
from distill_cli.prices import load_prices

KEY = "sk-ant-api03-SECRETSECRETSECRET-abcdefgh"

ANTHROPIC_LINE = {
    "request": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "system": "Classify.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "where is my card"}]}],
        "x-api-key": KEY,
    },
    "response": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "card_arrival"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 2000},
    },
    "metadata": {"team": "ops"},
}
OPENAI_LINE = {
    "request": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]},
    "response": {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 400}},
    },
}
FLAT_LINE = {"input": "refund please", "output": "refund_request", "model": "claude-haiku-4-5", "task": "intent",
             "ts": "2026-03-01T10:00:00Z", "usage": {"input_tokens": 10, "output_tokens": 2}}


def write_jsonl(path: Path, lines) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def rows(s):
    con = store.connect()
    store.examples_view(con, [s], "test")
    cur = con.execute("SELECT * FROM examples ORDER BY provider, input")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


def test_three_forms_are_imported_and_priced(tmp_path):
    prices = load_prices()
    f = write_jsonl(tmp_path / "calls.jsonl", [ANTHROPIC_LINE, OPENAI_LINE, FLAT_LINE])
    result = import_jsonl(tmp_path / "s", f, prices=prices)
    assert result.imported == 3 and result.skipped == []
    by_provider = {(r["provider"], r["input"]): r for r in rows(tmp_path / "s")}
    a = by_provider[("anthropic", "where is my card")]
    assert a["output"] == "card_arrival" and a["source"] == "import" and a["status"] == 200
    assert a["input_tokens"] == 1000 and a["cache_read_tokens"] == 2000 and a["output_tokens"] == 100
    sonnet = prices.lookup("claude-sonnet-4-5")
    expected = (1000 * sonnet.input + 100 * sonnet.output + 2000 * sonnet.cache_read) / 1e6
    assert a["cost_usd"] == pytest.approx(expected)
    assert json.loads(a["metadata"]) == {"team": "ops"}
    o = by_provider[("openai", "hi")]
    assert o["output"] == "hello" and o["input_tokens"] == 600 and o["cache_read_tokens"] == 400
    flat = by_provider[("anthropic", "refund please")]
    assert flat["task"] == "intent" and flat["output"] == "refund_request"
    assert str(flat["ts"]).startswith("2026-03-01 10:00:00")
    assert a["price_version"] == prices.version


def test_credentials_never_reach_the_store(tmp_path):
    line = json.loads(json.dumps(ANTHROPIC_LINE))
    line["request"]["messages"][0]["content"][0]["text"] = f"my key is {KEY}"
    f = write_jsonl(tmp_path / "calls.jsonl", [line])
    import_jsonl(tmp_path / "s", f, prices=load_prices())
    for data in snapshot(tmp_path / "s").values():
        assert b"SECRETSECRET" not in data


def test_same_question_hashes_equal_across_forms_of_the_same_request(tmp_path):
    a = json.loads(json.dumps(ANTHROPIC_LINE))
    b = json.loads(json.dumps(ANTHROPIC_LINE))
    b["request"]["model"] = "claude-opus-4-5"
    b["request"]["stream"] = True
    f = write_jsonl(tmp_path / "calls.jsonl", [a, b])
    import_jsonl(tmp_path / "s", f, prices=load_prices())
    assert len({r["input_hash"] for r in rows(tmp_path / "s")}) == 1


def test_bad_lines_skipped_and_counted(tmp_path):
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE, "{not json", {"input": "x"}, [1, 2], "", OPENAI_LINE])
    result = import_jsonl(tmp_path / "s", f, prices=load_prices())
    assert result.imported == 2
    assert [n for n, _ in result.skipped] == [2, 3, 4]
    assert "flat form needs a string 'output'" in result.skipped[1][1]


def test_strict_leaves_the_store_exactly_as_it_was(tmp_path):
    s = tmp_path / "s"
    import_jsonl(s, write_jsonl(tmp_path / "ok.jsonl", [FLAT_LINE]), prices=load_prices())
    before = snapshot(s)
    bad = write_jsonl(tmp_path / "bad.jsonl", [OPENAI_LINE, FLAT_LINE, "{oops"])
    with pytest.raises(InputError, match=r"^.*bad.jsonl: line 3: not valid JSON"):
        import_jsonl(s, bad, prices=load_prices(), strict=True)
    assert snapshot(s) == before


def test_unknown_model_costs_null_and_is_named(tmp_path):
    prices = load_prices()
    line = dict(FLAT_LINE, model="mystery-model-9")
    result = import_jsonl(tmp_path / "s", write_jsonl(tmp_path / "c.jsonl", [line]), prices=prices)
    assert result.unknown_models == ["mystery-model-9"]
    assert rows(tmp_path / "s")[0]["cost_usd"] is None


def test_error_response_is_recorded_as_an_error(tmp_path):
    line = {"request": ANTHROPIC_LINE["request"], "status": 529,
            "response": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}
    import_jsonl(tmp_path / "s", write_jsonl(tmp_path / "c.jsonl", [line]), prices=load_prices())
    r = rows(tmp_path / "s")[0]
    assert r["status"] == 529 and r["error"] == "overloaded_error: Overloaded" and r["output"] is None and r["cost_usd"] is None


# ---- CLI ------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_import_and_summary(tmp_path):
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE, "oops"])
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(f), "--task", "t1"])
    assert result.exit_code == 0, result.output
    assert f"{f}: line 2: not valid JSON" in result.stderr
    assert "Imported 1 calls" in result.stderr and "Skipped 1 bad lines" in result.stderr


def test_cli_strict_exit_3_and_one_line(tmp_path):
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE, {"input": 1, "output": "x", "model": "m"}])
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(f), "--strict"])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {f}: line 2: flat form needs a string 'input'\n"
    assert not (tmp_path / "s").exists() or snapshot(tmp_path / "s") == {}


def test_cli_missing_file(tmp_path):
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 3
    assert result.stderr == f"Error: {tmp_path / 'nope.jsonl'}: no such file\n"


def test_cli_store_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE])
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "f"), "--import", str(f)])
    assert result.exit_code == 3
    assert "is a file" in result.stderr


def test_cli_json_output(tmp_path):
    f = write_jsonl(tmp_path / "calls.jsonl", [FLAT_LINE])
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(f), "--format", "json"])
    assert json.loads(result.stdout)["imported"] == 1


def test_parquet_files_import_as_parts_and_other_kinds_are_named(tmp_path):
    import pyarrow.parquet as pq

    from distill_cli import schemas

    import_jsonl(tmp_path / "a", write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE, OPENAI_LINE]), prices=load_prices())
    part = next((tmp_path / "a").glob("date=*/*.parquet"))
    result = import_jsonl(tmp_path / "b", part, prices=load_prices())
    assert result.imported == 1
    assert rows(tmp_path / "b")[0]["id"] in {r["id"] for r in rows(tmp_path / "a")}
    pq.write_table(schemas.VERDICTS_SCHEMA.empty_table(), tmp_path / "gate.parquet")
    with pytest.raises(InputError, match=r"^gate.parquet is a verdicts file; record --import needs an example store$"):
        import_jsonl(tmp_path / "b", tmp_path / "gate.parquet", prices=load_prices())
