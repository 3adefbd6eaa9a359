"""Property-based fuzz (hypothesis) of what reaches the store: usage values and answer bodies at row-making and
through the recording proxy, and random JSONL lines at `record --import`.

Whatever comes in: nothing raises but a named bad line, every call is one row, a count that is no token count
is null with the reason in `metadata` (and the call unpriced), and the store stays one the next writer opens.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_record_values import REQUEST, post, stored, upstream

from distill_cli import calls, store
from distill_cli.errors import InputError
from distill_cli.importer import import_jsonl
from distill_cli.prices import MAX_TOKENS, USAGE_FIELDS, load_prices
from distill_cli.recorder import record_to

# Modest and fixed: the whole suite must stay quick; no example database left in the working directory.
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PRICES = load_prices()

# ---- strategies ----------------------------------------------------------------------------------------------

counts = st.one_of(
    st.none(), st.integers(0, 5000), st.integers(-(2**80), 2**80), st.floats(), st.booleans(), st.text(max_size=4),
    st.sampled_from([2**53 - 1, 2**53, 2**63, 10**25, 1e300, -0.0, 3.0]), st.lists(st.integers(), max_size=2),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
ANTHROPIC_KEYS = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]
OPENAI_KEYS = ["prompt_tokens", "completion_tokens"]
anthropic_usage = st.one_of(
    st.dictionaries(st.sampled_from(ANTHROPIC_KEYS), counts, max_size=4),
    st.fixed_dictionaries({"input_tokens": counts, "cache_creation": st.dictionaries(
        st.sampled_from(["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"]), counts, max_size=2)}),
    json_values,
)
openai_usage = st.one_of(
    st.dictionaries(st.sampled_from(OPENAI_KEYS), counts, max_size=2).flatmap(
        lambda u: st.fixed_dictionaries({**{k: st.just(v) for k, v in u.items()},
                                         "prompt_tokens_details": st.dictionaries(st.just("cached_tokens"), counts)})),
    json_values,
)
blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=8), json_values)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "name": st.text(max_size=5), "input": json_values}),
    json_values,
)
messages = st.fixed_dictionaries(
    {"type": st.just("message"), "content": st.one_of(st.lists(blocks, max_size=3), json_values)},
    optional={"model": st.one_of(st.just("claude-haiku-4-5"), json_values), "stop_reason": json_values,
              "usage": anthropic_usage},
)
completions = st.fixed_dictionaries(
    {"choices": st.one_of(st.lists(st.fixed_dictionaries(
        {"message": st.one_of(st.fixed_dictionaries({"content": st.one_of(st.text(max_size=8), json_values)}),
                              json_values)},
        optional={"finish_reason": json_values}), max_size=2), json_values)},
    optional={"model": st.one_of(st.just("gpt-4o"), json_values), "usage": openai_usage},
)


def _is_count(value) -> bool:
    """The oracle: what a token count is, spelled independently of prices.py."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value == int(value) and 0 <= value <= MAX_TOKENS


def _check_row(row: dict) -> None:
    """A made row: typed columns, counts in range or null with the reason, and no cost with a null count."""
    row = store.complete_row(row)
    for name in USAGE_FIELDS:
        assert row[name] is None or (type(row[name]) is int and 0 <= row[name] <= MAX_TOKENS), (name, row[name])
    for name in ("model", "output", "stop_reason", "error", "input", "task", "metadata"):
        assert row[name] is None or isinstance(row[name], str), (name, row[name])
    if any(row[name] is None for name in USAGE_FIELDS):
        assert row["cost_usd"] is None
        assert "not a token count" in calls.usage_error(row) or "token counts" in calls.usage_error(row)
    # What journal recovery does with the row's line: the step a count beyond int64 used to break.
    table = store.journal_table((store._journal_line(row) + "\n").encode())
    assert table.num_rows == 1


# ---- row-making --------------------------------------------------------------------------------------------------


@FUZZ
@given(response=st.one_of(messages, st.dictionaries(st.text(max_size=5), json_values, max_size=4)),
       status=st.sampled_from([200, 200, 400, 529]))
def test_any_anthropic_answer_makes_one_good_row(response, status):
    row = calls.anthropic_row(REQUEST, response, prices=PRICES, status=status, metadata='{"team": "ops"}')
    _check_row(row)
    usage = response.get("usage")
    if response.get("type") == "message" and isinstance(usage, dict) and set(usage) <= set(ANTHROPIC_KEYS):
        for key, column in zip(ANTHROPIC_KEYS, ("input_tokens", "output_tokens", "cache_read_tokens")):
            value = usage.get(key)
            assert row[column] == (int(value or 0) if _is_count(value) else None)
    if status == 200 and row["error"] is None:
        assert isinstance(row["output"], str)  # an OK row without an error has an answer


@FUZZ
@given(response=st.one_of(completions, st.dictionaries(st.text(max_size=5), json_values, max_size=4)))
def test_any_openai_answer_makes_one_good_row(response):
    row = calls.openai_row({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, response, prices=PRICES)
    _check_row(row)
    usage = response.get("usage")
    # Counts are read from a chat completion only (a body with `choices`); any other body is an error row.
    if response.get("choices") is not None and isinstance(usage, dict) and "completion_tokens" in usage:
        value = usage["completion_tokens"]
        assert row["output_tokens"] == (int(value or 0) if _is_count(value) else None)


# ---- through the proxy -------------------------------------------------------------------------------------------


def test_any_body_through_the_proxy_is_one_row_and_the_job_gets_it_unchanged(tmp_path):
    bodies = st.one_of(
        messages.map(lambda m: json.dumps(m).encode()),
        st.builds(lambda u: json.dumps({"type": "message", "content": [{"type": "text", "text": "ok"}],
                                        "usage": u}).encode(), anthropic_usage),
        st.binary(max_size=40),
    )
    sent: list[bytes] = []
    with upstream(b"") as provider, record_to(tmp_path / "store", anthropic_upstream=provider.url, set_env=False) as rec:

        @settings(FUZZ, max_examples=40)
        @given(body=bodies)
        def call(body):
            provider.body = body
            status, answer = post(rec)
            assert (status, answer) == (200, body)
            sent.append(body)

        call()
    assert rec.summary.unrecorded == 0, rec.summary.write_error
    rows = stored(tmp_path / "store")
    assert len(rows) == len(sent) == rec.summary.total.calls
    for row in rows:
        _check_row(row)
    with store.StoreWriter(tmp_path / "store"):  # the next writer opens it
        pass


# ---- record --import -----------------------------------------------------------------------------------------

plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=8)


@st.composite
def import_lines(draw) -> tuple[str, bool | None]:
    """(a JSONL line, whether its counts are all token counts; None for a line of any other kind)."""
    kind = draw(st.sampled_from(["flat", "flat", "pair", "junk"]))
    value = draw(counts)
    if kind == "flat":
        usage = draw(st.one_of(st.none(), st.just({"input_tokens": value, "output_tokens": draw(counts)})))
        line = {"input": draw(plain_text), "output": draw(plain_text), "model": "claude-haiku-4-5"}
        if usage is not None:
            line["usage"] = usage
        return json.dumps(line), usage is None or all(_is_count(v) for v in usage.values())
    if kind == "pair":
        line = {"request": {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": draw(plain_text)}]},
                "response": {"type": "message", "model": "claude-haiku-4-5",
                             "content": [{"type": "text", "text": draw(plain_text)}], "usage": {"input_tokens": value}}}
        return json.dumps(line), _is_count(value)
    return draw(st.one_of(plain_text, json_values.map(json.dumps))), None


@FUZZ
@given(lines=st.lists(import_lines(), min_size=1, max_size=8), strict=st.booleans())
def test_any_jsonl_imports_or_names_its_bad_lines(lines, strict):
    with tempfile.TemporaryDirectory() as tmp:
        f, s = Path(tmp) / "calls.jsonl", Path(tmp) / "s"
        f.write_text("".join(text + "\n" for text, _ in lines), encoding="utf-8")
        numbered = [(n, text, ok) for n, (text, ok) in enumerate(lines, start=1) if text.encode().strip()]
        try:
            result = import_jsonl(s, f, prices=PRICES, strict=strict)
        except InputError as e:  # a strict import's bad line, or a file with no importable line: named
            assert f"{f}: " in str(e) and "line " in str(e), str(e)
            if strict:
                assert not list(s.rglob("*.parquet")) if s.exists() else True
            return
        skipped = dict(result.skipped)
        assert result.imported + len(skipped) == len(numbered)
        for n, _, ok in numbered:
            if ok is False:
                assert "not a token count" in skipped[n] or "not token counts" in skipped[n], skipped.get(n)
            elif ok is True:
                assert n not in skipped, skipped[n]
        assert len(stored(s)) == result.imported
        with store.StoreWriter(s):  # the next writer opens the store
            pass
