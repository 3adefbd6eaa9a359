"""`record --import` of lines whose token counts are no token counts: a named bad line in the fast path and the
line-by-line path alike (skipped with a warning, or exit 3 with --strict), never exit 70."""

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

RANGE = "(a whole number from 0 to 2**53-1)"
GOOD = '{"input": "refund please", "output": "refund_request", "model": "claude-haiku-4-5", "usage": {"input_tokens": 10, "output_tokens": 2}}'
# A first line with metadata sends the whole file down the line-by-line path (importer._starts_flat).
GOOD_SLOW = '{"input": "card lost", "output": "lost_card", "model": "claude-haiku-4-5", "metadata": {"team": "ops"}}'
BAD_COUNTS = [
    ("1180591620717411303424", "1180591620717411303424"),  # 2**70
    ("1e300", "1e+300"), ("NaN", "NaN"), ("-1", "-1"), ("1.5", "1.5"), ("true", "true"), ('"12"', '"12"'),
    ("9007199254740992", "9007199254740992"),  # 2**53
    ("100000000000000000", "100000000000000000"),  # 18 digits: a BIGINT, but no token count
]


def flat(count: str) -> str:
    return '{"input": "bad", "output": "x", "model": "claude-haiku-4-5", "usage": {"input_tokens": %s, "output_tokens": 2}}' % count


def pair(count: str) -> str:
    return ('{"request": {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "bad"}]}, '
            '"response": {"type": "message", "model": "claude-haiku-4-5", "content": [{"type": "text", "text": "x"}], '
            '"usage": {"input_tokens": %s, "output_tokens": 2}}}' % count)


def imported_inputs(s: Path) -> list[str]:
    con = store.connect()
    store.examples_view(con, [s], "test")
    return [r[0] for r in con.execute("SELECT input FROM examples ORDER BY input").fetchall()]


@pytest.mark.parametrize("first", [GOOD, GOOD_SLOW], ids=["fast path", "line-by-line path"])
@pytest.mark.parametrize("count, shown", BAD_COUNTS)
def test_a_bad_count_is_a_named_bad_line(tmp_path, first, count, shown):
    f = tmp_path / "calls.jsonl"
    f.write_text("\n".join([first, flat(count), pair(count), GOOD]) + "\n")
    result = import_jsonl(tmp_path / "s", f, prices=load_prices())
    problem = f"usage.input_tokens is {shown}: not a token count {RANGE}"
    assert result.skipped == [(2, problem), (3, problem)]
    assert result.imported == 2 and "bad" not in imported_inputs(tmp_path / "s")
    with pytest.raises(InputError) as raised:
        import_jsonl(tmp_path / "strict", f, prices=load_prices(), strict=True)
    assert str(raised.value) == f"{f}: line 2: {problem}"
    assert not (tmp_path / "strict").exists() or not list((tmp_path / "strict").rglob("*.parquet"))


def test_openai_usage_and_status_out_of_range_are_bad_lines(tmp_path):
    openai_line = {"input": "hi", "output": "x", "model": "gpt-4o",
                   "usage": {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": -3}}}
    status_line = json.loads(pair("1")) | {"status": 10**25}
    f = tmp_path / "calls.jsonl"
    f.write_text("\n".join([GOOD, json.dumps(openai_line), json.dumps(status_line)]) + "\n")
    result = import_jsonl(tmp_path / "s", f, prices=load_prices())
    assert result.imported == 1 and result.skipped == [
        (2, f"usage.prompt_tokens_details.cached_tokens is -3: not a token count {RANGE}"),
        (3, "status must be an HTTP status code (an integer from 100 to 599)"),
    ]


runner = CliRunner()


def test_cli_names_the_file_and_line_or_exits_3_with_strict(tmp_path):
    f = tmp_path / "calls.jsonl"
    f.write_text("\n".join([GOOD, flat("1180591620717411303424"), GOOD]) + "\n")
    problem = f"usage.input_tokens is 1180591620717411303424: not a token count {RANGE}"
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s"), "--import", str(f)])
    assert result.exit_code == 0, result.output
    assert f"{f}: line 2: {problem}\n" in result.stderr and "Skipped 1 bad lines" in result.stderr
    result = runner.invoke(app, ["record", "--store", str(tmp_path / "s2"), "--import", str(f), "--strict"])
    assert result.exit_code == 3 and result.stderr == f"Error: {f}: line 2: {problem}\n"
