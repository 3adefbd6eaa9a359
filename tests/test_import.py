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
# claude-sonnet-4-5 (end of life 2026-11-30) is kept here on purpose: logs one imports hold calls of models since
# retired, which must still import and be priced; its long-context tier is what the "long context" lines exercise.

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


# ---- the fast path (DuckDB reads clean flat-form files) against the line-by-line path ----------------------

LONG_PROMPT = 250_000  # over claude-sonnet-4-5's long-context threshold
EDGE_LINES = [
    {"input": "plain", "output": "a", "model": "claude-sonnet-4-5"},
    {"input": "with usage", "output": "a", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 420, "output_tokens": 4}},
    {"input": "usage reordered", "output": "a", "model": "claude-sonnet-4-5", "usage": {"output_tokens": 4, "input_tokens": 9}},
    {"input": "empty usage", "output": "a", "model": "claude-sonnet-4-5", "usage": {}},
    {"input": "only output", "output": "a", "model": "claude-sonnet-4-5", "usage": {"output_tokens": 7}},
    {"input": "long context", "output": "a", "model": "claude-sonnet-4-5", "usage": {"input_tokens": LONG_PROMPT, "output_tokens": 5}},
    {"input": "cache usage", "output": "a", "model": "claude-sonnet-4-5",
     "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50}},
    {"input": "openai usage", "output": "a", "model": "gpt-4o-mini",
     "usage": {"prompt_tokens": 100, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 40}}},
    {"input": "float usage", "output": "a", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10.0, "output_tokens": 1}},
    {"input": "null count", "output": "a", "model": "claude-sonnet-4-5", "usage": {"input_tokens": None, "output_tokens": 1}},
    {"input": "unknown model priced", "output": "a", "model": "acme-9000", "usage": {"input_tokens": 1, "output_tokens": 1}},
    {"input": "unknown model unpriced", "output": "a", "model": "acme-9001"},
    {"input": "task", "output": "a", "model": "claude-haiku-4-5", "task": "intent"},
    {"input": "empty task", "output": "a", "model": "claude-haiku-4-5", "task": ""},
    {"input": "ts Z", "output": "a", "model": "claude-haiku-4-5", "ts": "2026-03-01T10:00:00Z"},
    {"input": "ts offset", "output": "a", "model": "claude-haiku-4-5", "ts": "2026-03-01T23:30:00.123456-05:30"},
    {"input": "ts naive", "output": "a", "model": "claude-haiku-4-5", "ts": "2026-03-01T10:00:00"},
    {"input": "ts space millis", "output": "a", "model": "claude-haiku-4-5", "ts": "2026-03-01 10:00:00.123"},
    {"input": "ts date only", "output": "a", "model": "claude-haiku-4-5", "ts": "2026-03-02"},
    {"input": "metadata", "output": "a", "model": "claude-haiku-4-5", "metadata": {"b": 1, "a": [0.1, "é"], "api_key": KEY}},
    {"input": "empty metadata", "output": "a", "model": "claude-haiku-4-5", "metadata": {}},
    {"input": "metadata numbers", "output": "a", "model": "claude-haiku-4-5",
     "metadata": {"f": 0.1, "e": 1e-7, "big": 1.7976931348623157e308, "tiny": 5e-324, "neg": -0.0, "i": -12,
                  "u64": 18446744073709551615, "huge": 123456789012345678901234567890}},
    {"input": "metadata nested", "output": "a", "model": "claude-haiku-4-5",
     "metadata": {"z": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz", "ok": [None, True, "é\u2028"]}, "a": 1}},
    {"input": "metadata ticket", "output": "a", "model": "claude-haiku-4-5", "metadata": {"ticket": 7, "queue": "cards"}},
    {"input": f"a key {KEY} inside", "output": f"Bearer {KEY}", "model": "claude-haiku-4-5"},
    {"input": "a url https://user:pw@example.com/x", "output": "a", "model": "claude-haiku-4-5"},
    {"input": "controls \x00 \x0b \x1f \x7f \t \n \" \\ /", "output": "a", "model": "claude-haiku-4-5"},
    {"input": "unicode é ü 中文 \u2028 😀", "output": "ünïcode", "model": "claude-haiku-4-5"},
    {"input": "request null", "output": "a", "model": "claude-haiku-4-5", "request": None},
    {"input": "extra key", "output": "a", "model": "claude-haiku-4-5", "status": 200},
]
RAW_EDGE_LINES = [
    '{"input": "spaced out" ,  "output":"a","model":"claude-sonnet-4-5","usage":{ "input_tokens" : 3 , "output_tokens":1 }}',
    '{"input":"escaped key","output":"a","model":"claude-sonnet-4-5","usage":{"input\\u005ftokens":3}}',
    '{"input":"negative zero","output":"a","model":"claude-sonnet-4-5","usage":{"input_tokens":-0,"output_tokens":1}}',
    '{"input":"exponent","output":"a","model":"claude-sonnet-4-5","usage":{"input_tokens":1e2,"output_tokens":1}}',
    '{"input":"duplicate count","output":"a","model":"claude-sonnet-4-5","usage":{"input_tokens":1,"input_tokens":2}}',
    '{"input":"duplicate tag","output":"a","model":"claude-sonnet-4-5","metadata":{"k":1,"k":2}}',
    '{"input":"first","output":"a","model":"claude-sonnet-4-5","input":"repeated key: the last counts"}',
    '{"input":"nan tag","output":"a","model":"claude-sonnet-4-5","metadata":{"k":NaN,"j":-Infinity}}',
    '{"input":"exponent tag","output":"a","model":"claude-sonnet-4-5","metadata":{"k":1E5,"j":2.50}}',
    '{"input":"crlf","output":"a","model":"claude-sonnet-4-5"}\r',
    "",
    "   ",
]


def _table_rows(s):
    return [{k: v for k, v in r.items() if k not in ("id", "run_id")} for r in rows(s)]


def test_fast_path_gives_the_same_rows_as_the_line_by_line_path(tmp_path, monkeypatch):
    import distill_cli.importer as importer

    f = write_jsonl(tmp_path / "edge.jsonl", [*EDGE_LINES, *RAW_EDGE_LINES] * 3)
    added, real_add = [], importer._Lines.add
    monkeypatch.setattr(importer._Lines, "add", lambda self, obj: (added.append(obj), real_add(self, obj))[1])
    fixed_now = 1_780_000_000.0
    monkeypatch.setattr(importer.time, "time", lambda: fixed_now)  # lines without ts get "now" in both runs

    fast_prices = load_prices()
    fast = import_jsonl(tmp_path / "fast", f, prices=fast_prices)
    lines_read_by_python = len(added)
    monkeypatch.setattr(importer, "_import_fast", lambda *a: None)
    slow_prices = load_prices()
    slow = import_jsonl(tmp_path / "slow", f, prices=slow_prices)

    assert fast.imported == slow.imported == 3 * (len(EDGE_LINES) + len(RAW_EDGE_LINES) - 2)
    # DuckDB read the plain lines; only the ones that need Python (metadata, secrets, odd usage, ...) went there.
    assert 0 < lines_read_by_python < fast.imported / 2
    assert fast.tasks == slow.tasks
    assert fast_prices.unknown == slow_prices.unknown == {"acme-9000"}
    fast_rows, slow_rows = _table_rows(tmp_path / "fast"), _table_rows(tmp_path / "slow")
    assert len(fast_rows) == len(slow_rows)
    for a, b in zip(fast_rows, slow_rows):
        assert a == b
    assert KEY not in json.dumps(fast_rows, default=str)


@pytest.mark.parametrize("bad", [
    '{"input":"trailing comma","output":"a","model":"claude-haiku-4-5",}',
    '{"input":"nested trailing comma","output":"a","model":"claude-haiku-4-5","usage":{"input_tokens":1,}}',
    '\x0b{"input":"vertical tab","output":"a","model":"claude-haiku-4-5"}',
    '{"input":"inf","output":"a","model":"claude-haiku-4-5","usage":{"input_tokens":inf}}',
    '{"input":"not a string","output":5,"model":"claude-haiku-4-5"}',
    '{"output":"no input","model":"claude-haiku-4-5"}',
    '{"input":"no output","model":"claude-haiku-4-5"}',
    '{"input":"no model","output":"a"}',
    '{"input":null,"output":"null input","model":"claude-haiku-4-5"}',
    '{"input":"null model","output":"a","model":null}',
    '{"input":"number task","output":"a","model":"claude-haiku-4-5","task":7}',
    '{"input":"bad ts","output":"a","model":"claude-haiku-4-5","ts":"2026-02-30T00:00:00Z"}',
    '{"input":"ts number","output":"a","model":"claude-haiku-4-5","ts":1700000000}',
    '{"input":"usage list","output":"a","model":"claude-haiku-4-5","usage":[1]}',
    '[1, 2]',
    '{"input":"repeated model","output":"a","model":"gpt-4o","model":5}',
    '{"input":"lone surrogate \\ud83d","output":"a","model":"claude-haiku-4-5"}',
])
def test_fast_path_refuses_what_python_refuses(tmp_path, bad):
    """DuckDB's reader is laxer than Python's (trailing commas, inf): such a line is still named and refused."""
    good = json.dumps({"input": "fine", "output": "a", "model": "claude-haiku-4-5"})
    f = write_jsonl(tmp_path / "c.jsonl", [good, good, bad, good])
    with pytest.raises(InputError, match=r"c\.jsonl: line 3: "):
        import_jsonl(tmp_path / "s", f, prices=load_prices(), strict=True)
    assert not (tmp_path / "s").exists()
    result = import_jsonl(tmp_path / "s", f, prices=load_prices())
    assert result.imported == 3 and [n for n, _ in result.skipped] == [3]


def test_a_file_name_duckdb_would_glob_is_read_as_it_is(tmp_path):
    f = write_jsonl(tmp_path / "calls[1]*.jsonl", [FLAT_LINE, FLAT_LINE])
    write_jsonl(tmp_path / "calls1x.jsonl", [FLAT_LINE] * 5)  # what the glob would also match
    assert import_jsonl(tmp_path / "s", f, prices=load_prices()).imported == 2


def test_a_pipe_is_imported(tmp_path):
    """`zcat calls.jsonl.gz | distill record --import /dev/stdin`: a stream that cannot seek is read once."""
    import subprocess
    import sys

    lines = [FLAT_LINE, {**FLAT_LINE, "input": "second"}, ANTHROPIC_LINE]
    done = subprocess.run(  # `input=` reaches the child through a pipe
        [sys.executable, "-m", "distill_cli", "record", "--store", str(tmp_path / "s"), "--import", "/dev/stdin"],
        input="".join(json.dumps(x) + "\n" for x in lines).encode(), capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(r["input"] for r in rows(tmp_path / "s")) == ["refund please", "second", "where is my card"]


def test_a_leading_tilde_is_a_directory_name_not_home(tmp_path, monkeypatch):
    """Python opens `~/calls.jsonl` relative to the working directory; DuckDB must read that same file."""
    home = tmp_path / "home"
    home.mkdir()
    write_jsonl(home / "calls.jsonl", [{**FLAT_LINE, "input": "from HOME"}])
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    write_jsonl(tmp_path / "~" / "calls.jsonl", [{**FLAT_LINE, "input": "from ./~"}])
    import_jsonl(tmp_path / "s", "~/calls.jsonl", prices=load_prices())
    assert [r["input"] for r in rows(tmp_path / "s")] == ["from ./~"]


def test_an_examples_file_with_rows_without_a_time_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distill_cli import schemas

    table = pa.Table.from_pylist([{"id": "01J00000000000000000000000", "task": "t", "ts": None}], schema=schemas.EXAMPLES_SCHEMA)
    pq.write_table(table, tmp_path / "part.parquet")
    with pytest.raises(InputError, match=r"part\.parquet: 1 rows have no ts"):
        import_jsonl(tmp_path / "s", tmp_path / "part.parquet", prices=load_prices())


def test_a_line_nested_too_deeply_is_a_bad_line_not_a_crash(tmp_path):
    deep = {"input": "deep", "output": "a", "model": "claude-haiku-4-5"}
    line = json.dumps(deep)[:-1] + ', "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    f = write_jsonl(tmp_path / "c.jsonl", [FLAT_LINE, line, FLAT_LINE])
    result = import_jsonl(tmp_path / "s", f, prices=load_prices())
    assert result.imported == 2 and [n for n, _ in result.skipped] == [2]
    assert "nested too deeply" in result.skipped[0][1]


@pytest.mark.parametrize("fast", [True, False])
def test_imported_calls_are_priced_on_their_own_day(tmp_path, monkeypatch, fast):
    """o3 cost $10/$40 until 2025-06-10 and $2/$8 since: each line pays the price of its own ts, on both paths."""
    import distill_cli.importer as importer

    if not fast:
        monkeypatch.setattr(importer, "_import_fast", lambda *a: None)
    usage = {"input_tokens": 1000, "output_tokens": 100}
    pair = {"request": {"model": "o3", "messages": [{"role": "user", "content": "pair"}]},
            "response": {"id": "c", "object": "chat.completion", "model": "o3-2025-04-16",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1000, "completion_tokens": 100}},
            "ts": "2025-05-01T12:00:00Z"}
    f = write_jsonl(tmp_path / "o3.jsonl", [
        {"input": "may", "output": "x", "model": "o3", "ts": "2025-05-01T12:00:00Z", "usage": usage},
        {"input": "july", "output": "x", "model": "o3", "ts": "2025-07-01T12:00:00Z", "usage": usage},
        {"input": "no ts", "output": "x", "model": "o3", "usage": usage},
        pair,
    ])
    assert import_jsonl(tmp_path / "s", f, prices=load_prices()).imported == 4
    cost = {r["input"]: r["cost_usd"] for r in rows(tmp_path / "s")}
    assert cost["may"] == pytest.approx(0.014)  # 1000*10 + 100*40 = 14_000 / 1e6
    assert cost["pair"] == pytest.approx(0.014)
    assert cost["july"] == pytest.approx(0.0028)  # 1000*2 + 100*8 = 2_800 / 1e6
    assert cost["no ts"] == pytest.approx(0.0028)  # no ts: the import's day
