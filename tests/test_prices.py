"""The price table and usage pricing: every usage shape, overrides, and SDK model coverage.

Expected costs are worked out by hand in the comments: tokens x USD per million, summed, / 1e6.
"""

from __future__ import annotations

import hashlib
import json
import typing
from datetime import date, datetime, timezone
from importlib import resources

import pytest

from distill_cli.errors import InputError
from distill_cli.prices import (
    Modifiers,
    PriceTable,
    Usage,
    base_model,
    load_prices,
    merge_stream_usage,
    usage_from_anthropic,
    usage_from_openai,
)


@pytest.fixture
def table() -> PriceTable:
    return load_prices()


def write_override(tmp_path, data, name="prices.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


# --- Anthropic usage shapes -------------------------------------------------------------------------------------


def test_no_cache(table):
    usage = usage_from_anthropic({"input_tokens": 1000, "output_tokens": 500})
    assert usage == Usage(input_tokens=1000, output_tokens=500)
    # claude-sonnet-4-6 $3 in / $15 out: 1000*3 + 500*15 = 10_500
    assert table.cost("claude-sonnet-4-6", usage) == pytest.approx(0.0105)


def test_cache_read(table):
    usage = usage_from_anthropic(
        {"input_tokens": 200, "output_tokens": 100, "cache_read_input_tokens": 10_000, "cache_creation_input_tokens": 0}
    )
    assert usage == Usage(input_tokens=200, output_tokens=100, cache_read_tokens=10_000)
    # claude-opus-4-8 $5 / $25 / read $0.50: 200*5 + 100*25 + 10_000*0.5 = 1000 + 2500 + 5000
    assert table.cost("claude-opus-4-8", usage) == pytest.approx(0.0085)


def test_5m_write_without_breakdown_counts_as_5m(table):
    usage = usage_from_anthropic({"input_tokens": 50, "output_tokens": 20, "cache_creation_input_tokens": 4000})
    assert usage == Usage(input_tokens=50, output_tokens=20, cache_write_5m_tokens=4000)
    # claude-haiku-4-5 $1 / $5 / 5m write $1.25: 50 + 100 + 5000
    assert table.cost("claude-haiku-4-5", usage) == pytest.approx(0.00515)


def test_1h_write_from_breakdown(table):
    usage = usage_from_anthropic(
        {
            "input_tokens": 10,
            "output_tokens": 30,
            "cache_creation_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2000},
        }
    )
    assert usage == Usage(input_tokens=10, output_tokens=30, cache_write_1h_tokens=2000)
    # claude-sonnet-5-5 $2 / $10 / 1h write $4: 20 + 300 + 8_000
    assert table.cost("claude-sonnet-5-5", usage) == pytest.approx(0.00832)


def test_both_writes_and_a_read(table):
    usage = usage_from_anthropic(
        {
            "input_tokens": 100,
            "output_tokens": 200,
            "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 1500,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
        }
    )
    assert usage == Usage(100, 200, 300, 1000, 500)
    # claude-opus-4-5 $5 / $25 / read $0.50 / 5m $6.25 / 1h $10: 500 + 5000 + 150 + 6250 + 5000 = 16_900
    assert table.cost("claude-opus-4-5", usage) == pytest.approx(0.0169)


def test_batch_halves_every_rate(table):
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_5m_tokens=400,
                  cache_write_1h_tokens=100)
    # claude-sonnet-4-6: 1000*3 + 500*15 + 2000*0.30 + 400*3.75 + 100*6 = 3000 + 7500 + 600 + 1500 + 600 = 13_200
    assert table.cost("claude-sonnet-4-6", usage) == pytest.approx(0.0132)
    # batch: 1000*1.50 + 500*7.50 + 2000*0.15 + 400*1.875 + 100*3 = 1500 + 3750 + 300 + 750 + 300 = 6600
    assert table.cost("claude-sonnet-4-6", usage, batch=True) == pytest.approx(0.0066)


def test_missing_or_null_usage_is_zero(table):
    assert usage_from_anthropic(None) == Usage()
    assert usage_from_anthropic({"input_tokens": 7, "output_tokens": None, "cache_read_input_tokens": None}) == Usage(7, 0)
    # A known model with no tokens costs 0.0: zero is a price, not a missing one.
    assert table.cost("claude-haiku-4-5", Usage()) == 0.0


# --- streams --------------------------------------------------------------------------------------------------


def test_stream_usage_delta_is_cumulative(table):
    start = {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 1200,
        "cache_read_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
    }
    delta = {"output_tokens": 503}
    merged = merge_stream_usage(start, delta)
    assert merged == {**start, "output_tokens": 503}  # 503, not 1 + 503
    assert start["output_tokens"] == 1  # the inputs are not mutated
    usage = usage_from_anthropic(merged)
    assert usage == Usage(2095, 503, 300, 1200, 0)
    # claude-sonnet-5-5 $2 / $10 / read $0.10 / 5m $2.50: 4190 + 5030 + 30 + 3000 = 12_250
    assert table.cost("claude-sonnet-5-5", usage) == pytest.approx(0.01225)


def test_stream_delta_input_counts_win_where_present():
    start = {"input_tokens": 10, "cache_read_input_tokens": 0, "output_tokens": 1,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}
    delta = {"input_tokens": 12, "cache_read_input_tokens": 4096, "output_tokens": 80, "server_tool_use": None,
             "cache_creation": {"ephemeral_1h_input_tokens": 64}}
    merged = merge_stream_usage(start, delta)
    assert merged["input_tokens"] == 12
    assert merged["cache_read_input_tokens"] == 4096
    assert merged["output_tokens"] == 80
    assert merged["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 64}
    assert "server_tool_use" not in merged  # a null in the delta does not erase or add anything
    assert merge_stream_usage(None, None) == {}
    assert merge_stream_usage(None, {"output_tokens": 5}) == {"output_tokens": 5}


# --- OpenAI usage shapes --------------------------------------------------------------------------------------


def test_openai_cached_tokens_come_out_of_prompt(table):
    usage = usage_from_openai(
        {"prompt_tokens": 3000, "completion_tokens": 200, "total_tokens": 3200,
         "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0}}
    )
    assert usage == Usage(input_tokens=1976, output_tokens=200, cache_read_tokens=1024)
    # gpt-4.1 $2 / $8 / cached $0.50: 1976*2 + 200*8 + 1024*0.5 = 3952 + 1600 + 512 = 6064
    assert table.cost("gpt-4.1", usage) == pytest.approx(0.006064)


def test_openai_cache_writes(table):
    chat = usage_from_openai(
        {"prompt_tokens": 5000, "completion_tokens": 100,
         "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000}}
    )
    assert chat == Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=1000, cache_write_5m_tokens=3000)
    # gpt-6.2-sol $2 / $10 / cached $0.10 / 30-min write $2.50: 2000 + 1000 + 100 + 7500 = 10_600
    assert table.cost("gpt-6.2-sol", chat) == pytest.approx(0.0106)

    responses = usage_from_openai(
        {"input_tokens": 5000, "output_tokens": 100, "total_tokens": 5100,
         "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000,
                                  "cache_write_tokens_details": {"ttl_30m_tokens": 2000, "ttl_12h_tokens": 1000}}}
    )
    assert responses == Usage(1000, 100, 1000, 2000, 1000)
    # ... plus 12-hour write $5: 2000 + 1000 + 100 + 2000*2.5 + 1000*5 = 13_100
    assert table.cost("gpt-6.2-sol", responses) == pytest.approx(0.0131)


def test_openai_usage_none_is_zero():
    assert usage_from_openai(None) == Usage()
    assert usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}) == Usage(10, 2)


# --- model ids ------------------------------------------------------------------------------------------------


def test_dated_snapshot_resolves_to_base_model(table):
    # claude-sonnet-4-5-20250929 on purpose: a real dated id, of a model retired since, whose old calls keep a price.
    assert base_model("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert base_model("gpt-4o-2024-08-06") == "gpt-4o"
    assert base_model("gpt-3.5-turbo-0613") == "gpt-3.5-turbo-0613"  # MMDD is not a date stamp
    price = table.lookup("claude-sonnet-4-5-20250929")
    assert price is not None and price.model == "claude-sonnet-4-5" and price.input == 3.0
    usage = Usage(input_tokens=1000, output_tokens=500)
    assert table.cost("claude-haiku-4-5-20251001", usage) == table.cost("claude-haiku-4-5", usage)
    assert table.lookup("gpt-4o-2024-11-20").model == "gpt-4o"
    # An exact entry wins over the stripped one: the first gpt-4o snapshot kept its own price.
    assert table.lookup("gpt-4o-2024-05-13").input == 5.0
    assert table.lookup("gpt-4o").input == 2.5


def test_unknown_model_is_none_and_named(table):
    usage = Usage(input_tokens=1000, output_tokens=10)
    assert table.cost("claude-imaginary-9", usage) is None
    assert table.cost("claude-imaginary-9-20270101", Usage()) is None  # None even with no tokens, never 0
    assert table.unknown == {"claude-imaginary-9", "claude-imaginary-9-20270101"}
    # A model the table lists as unpriced is unknown too, with the reason available for the warning.
    assert table.cost("claude-mythos-preview", usage) is None
    assert "claude-mythos-preview" in table.unknown
    assert "Glasswing" in table.unpriced["claude-mythos-preview"]


def test_long_context_tier_prices_the_whole_request(table):
    # claude-haiku-5-5: prompts over 100,000 tokens (input + cache) pay $0.50 / $2.50 / read $0.05 on every token.
    at_threshold = Usage(input_tokens=90_000, output_tokens=1000, cache_read_tokens=10_000)
    # 90_000*0.10 + 1000*0.50 + 10_000*0.01 = 9000 + 500 + 100
    assert table.cost("claude-haiku-5-5", at_threshold) == pytest.approx(0.0096)
    over = Usage(input_tokens=90_000, output_tokens=1000, cache_read_tokens=10_001)
    # 90_000*0.50 + 1000*2.50 + 10_001*0.05 = 45_000 + 2500 + 500.05 = 48_000.05
    assert table.cost("claude-haiku-5-5", over) == pytest.approx(0.04800005)
    # gpt-5.4 over 272K input tokens: 2x input ($5), 1.5x output ($22.50): 300_000*5 + 1000*22.5
    assert table.cost("gpt-5.4", Usage(input_tokens=300_000, output_tokens=1000)) == pytest.approx(1.5225)


def test_price_history_by_date(table):
    reads = Usage(cache_read_tokens=1_000_000)
    # Sonnet 5.5 cache reads fell from $0.20 to $0.10 on 2026-10-07.
    assert table.cost("claude-sonnet-5-5", reads, at=date(2026, 10, 6)) == pytest.approx(0.20)
    assert table.cost("claude-sonnet-5-5", reads, at="2026-10-07") == pytest.approx(0.10)
    assert table.cost("claude-sonnet-5-5", reads) == pytest.approx(0.10)
    # o3 launched at $10/$40 and was cut to $2/$8 on 2025-06-10; a timestamp works as well as a date.
    assert table.lookup("o3", at=datetime(2025, 5, 1, tzinfo=timezone.utc)).input == 10.0
    assert table.lookup("o3-2025-04-16").input == 2.0
    # Before the first known price, the launch price applies rather than none.
    assert table.lookup("claude-sonnet-5-5", at="2020-01-01").cache_read == 0.20


# --- overrides ------------------------------------------------------------------------------------------------


def test_override_changes_a_price(tmp_path, table):
    path = write_override(tmp_path, {"models": {"claude-sonnet-4-6": {"input": 4, "output": 20}}})
    custom = load_prices(path)
    price = custom.lookup("claude-sonnet-4-6")
    assert (price.input, price.output, price.provider) == (4.0, 20.0, "anthropic")
    # Cache and batch rates follow the Anthropic rule from the new input/output.
    assert (price.cache_read, price.cache_write_5m, price.cache_write_1h) == pytest.approx((0.4, 5.0, 8.0))
    assert (price.batch_input, price.batch_output) == pytest.approx((2.0, 10.0))
    # 1000*4 + 100*20 = 6000
    assert custom.cost("claude-sonnet-4-6", Usage(1000, 100)) == pytest.approx(0.006)
    assert table.lookup("claude-sonnet-4-6").input == 3.0  # the packaged table is untouched
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert custom.version == f"2026-11-26+custom:{digest}"
    assert table.version == "2026-11-26"


def test_override_adds_models(tmp_path):
    path = write_override(
        tmp_path,
        {"models": {
            "my-finetune": {"provider": "openai", "input": 1.0, "output": 4.0, "cache_read": 0.25},
            "local-judge": {"input": 2, "output": 6},
            "claude-mythos-preview": {"effective": "2026-04-07", "input": 25, "output": 125},
        }},
    )
    custom = load_prices(path)
    ft = custom.lookup("my-finetune")
    # OpenAI rule: writes cost the input price, batch is half.
    assert (ft.provider, ft.cache_read, ft.cache_write_5m, ft.cache_write_1h) == ("openai", 0.25, 1.0, 1.0)
    assert (ft.batch_input, ft.batch_output) == (0.5, 2.0)
    usage = usage_from_openai({"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 400}})
    # 600*1.0 + 100*4.0 + 400*0.25 = 600 + 400 + 100
    assert custom.cost("my-finetune", usage) == pytest.approx(0.0011)
    judge = custom.lookup("local-judge")  # no provider: the Anthropic rule
    assert (judge.provider, judge.cache_read, judge.cache_write_5m) == ("anthropic", pytest.approx(0.2), 2.5)
    # Pricing a model the packaged table left unpriced takes it off the unpriced list.
    assert custom.lookup("claude-mythos-preview").output == 125.0
    assert "claude-mythos-preview" not in custom.unpriced
    assert custom.lookup("claude-opus-4-8").input == 5.0  # everything else is kept


def test_dated_override_keeps_earlier_prices(tmp_path):
    path = write_override(tmp_path, {"models": {"claude-opus-4-8": {"effective": "2026-12-01", "input": 4, "output": 20}}})
    custom = load_prices(path)
    assert custom.lookup("claude-opus-4-8").input == 4.0
    assert custom.lookup("claude-opus-4-8", at="2026-11-01").input == 5.0


def test_a_retired_model_keeps_its_price_for_the_calls_made_before(tmp_path, table):
    # claude-sonnet-4-5 is here as a retired model on purpose: its end of life (2026-11-30) is the point.
    assert table.retired_on("claude-sonnet-4-5") == date(2026, 11, 30)
    assert table.retired_on("claude-sonnet-4-5-20250929") == date(2026, 11, 30)  # a snapshot of it too
    assert table.retired_on("claude-sonnet-5-5") is None and table.retired_on("claude-haiku-5-5") is None
    # 1000*3 + 100*15 = 4500: a call of 2026-11-20 is still priced at the price of its day.
    assert table.cost("claude-sonnet-4-5", Usage(1000, 100), at="2026-11-20") == pytest.approx(0.0045)
    # An override keeps the packaged end of life unless it names its own; null undoes it.
    path = write_override(tmp_path, {"models": {
        "claude-sonnet-4-5": {"input": 3, "output": 15},
        "claude-haiku-5-5": {"input": 0.1, "output": 0.5, "retired": "2027-06-01"},
    }})
    custom = load_prices(path)
    assert custom.retired_on("claude-sonnet-4-5") == date(2026, 11, 30)
    assert custom.retired_on("claude-haiku-5-5") == date(2027, 6, 1)
    undone = load_prices(write_override(tmp_path, {"models": {"claude-sonnet-4-5": {"retired": None, "input": 3, "output": 15}}}, "undo.json"))
    assert undone.retired_on("claude-sonnet-4-5") is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", 'expected a JSON object with a "models" object'),
        ({"models": {"m": {"input": "cheap", "output": 1}}}, "'input' must be a non-negative number"),
        ({"models": {"m": {"input": -1, "output": 1}}}, "'input' must be a non-negative number"),
        ({"models": {"m": {"input": 1}}}, "'output' is required"),
        ({"models": {"m": {"input": 1, "output": 2, "effective": "soon"}}}, "'effective' must be an ISO date"),
        ({"models": {"m": {"input": 1, "output": 2, "provider": "acme"}}}, "provider must be"),
        ({"models": {"m": {"input": 1, "output": 2, "retired": "someday"}}}, "'retired' must be an ISO date or null"),
    ],
)
def test_malformed_override_names_the_file(tmp_path, content, problem):
    path = write_override(tmp_path, content)
    with pytest.raises(InputError) as caught:
        load_prices(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_override_names_the_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(InputError, match="nope.json: no such file"):
        load_prices(path)
    with pytest.raises(InputError, match="is a directory"):
        load_prices(tmp_path)


# --- the packaged table ---------------------------------------------------------------------------------------


def _sdk_anthropic_models() -> set[str]:
    import anthropic.types
    from anthropic import _data

    literal = next(arg for arg in typing.get_args(anthropic.types.Model) if typing.get_origin(arg) is typing.Literal)
    models = set(typing.get_args(literal))
    models |= set(_data.DEPRECATED_MODELS)
    models |= set(getattr(_data, "MODELS_TO_WARN_WITH_THINKING_ENABLED", ()))
    return models


def _covered(table: PriceTable, model: str) -> bool:
    return table.lookup(model) is not None or model in table.unpriced or base_model(model) in table.unpriced


def test_every_anthropic_sdk_model_is_priced_or_listed_unpriced(table):
    models = _sdk_anthropic_models()
    # The SDK lists are really being read (which ids they hold changes with every SDK release: anthropic 2.17
    # dropped claude-sonnet-4-5-20250929, the id this line used to name).
    assert len(models) >= 10 and all(m.startswith("claude-") for m in models), sorted(models)
    missing = sorted(m for m in models if not _covered(table, m))
    assert missing == [], f"add these to distill_cli/data/prices.json (models or unpriced): {missing}"
    for model in models:
        price = table.lookup(model)
        assert price is None or price.provider == "anthropic", model


def test_every_openai_sdk_chat_model_is_priced_or_listed_unpriced(table):
    import openai.types as openai_types
    models = set(typing.get_args(openai_types.ChatModel))
    assert "gpt-4o" in models
    missing = sorted(m for m in models if not _covered(table, m))
    assert missing == [], f"add these to distill_cli/data/prices.json (models or unpriced): {missing}"
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini",
                  "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"):
        assert table.lookup(model).provider == "openai", model


PUBLISHED_CACHE_WRITES = {"claude-3-haiku": (0.3, 0.5)}


def test_packaged_table_follows_the_provider_rules(table):
    data = json.loads(resources.files("distill_cli").joinpath("data/prices.json").read_text(encoding="utf-8"))
    assert data["version"] == "2026-11-26" and data["sources"]
    assert all(url.startswith("https://") for url in data["sources"])
    for model in table.model_ids:
        price = table.lookup(model)
        tiers = [price] + ([price.long_context] if price.long_context else [])
        for tier in tiers:
            assert tier.batch_input == pytest.approx(tier.input / 2), model
            assert tier.batch_output == pytest.approx(tier.output / 2), model
            assert tier.cache_read <= tier.input, model
            if price.provider == "anthropic" and model not in PUBLISHED_CACHE_WRITES:
                assert tier.cache_write_5m == pytest.approx(tier.input * 1.25), model
                assert tier.cache_write_1h == pytest.approx(tier.input * 2), model
    # The one model whose published cache writes are not the 1.25x / 2x rule: Claude Haiku 3 ($0.30 / $0.50).
    for model, (write_5m, write_1h) in PUBLISHED_CACHE_WRITES.items():
        price = table.lookup(model)
        assert (price.cache_write_5m, price.cache_write_1h) == (write_5m, write_1h), model
        assert price.effective <= date(2026, 11, 26), model


# --- the price on the call's own day --------------------------------------------------------------------------


def test_a_price_dated_in_the_future_is_not_applied_before_its_day(tmp_path):
    # A cut announced for 2099-01-01: today's calls (and a lookup with no date) keep the price in force now.
    path = write_override(tmp_path, {"models": {"claude-haiku-4-5": {"effective": "2099-01-01", "input": 0.5, "output": 2.5}}})
    custom = load_prices(path)
    usage = Usage(input_tokens=1000, output_tokens=100)
    # today: $1 / $5: 1000*1 + 100*5 = 1500
    assert custom.lookup("claude-haiku-4-5").input == 1.0
    assert custom.cost("claude-haiku-4-5", usage) == pytest.approx(0.0015)
    # from its day: $0.50 / $2.50: 1000*0.5 + 100*2.5 = 750
    assert custom.cost("claude-haiku-4-5", usage, at="2099-01-01") == pytest.approx(0.00075)


def test_cost_reads_a_rows_timestamp(table):
    usage = Usage(input_tokens=1000, output_tokens=100)
    # o3 launched at $10/$40 (2025-04-16), cut to $2/$8 on 2025-06-10.
    may_micros = 1_746_057_600_000_000  # 2025-05-01T00:00:00Z as a row's ts (microseconds)
    may_seconds = 1_746_057_600.0  # the same instant as time.time() gives it
    # 1000*10 + 100*40 = 14_000
    assert table.cost("o3", usage, at=may_micros) == pytest.approx(0.014)
    assert table.cost("o3", usage, at=may_seconds) == pytest.approx(0.014)
    # 1000*2 + 100*8 = 2_800
    assert table.cost("o3", usage, at=datetime(2025, 7, 1, tzinfo=timezone.utc)) == pytest.approx(0.0028)


def test_a_recorded_row_is_priced_on_its_own_day(table):
    from distill_cli import calls

    request = {"model": "o3", "messages": [{"role": "user", "content": "hi"}]}
    response = {"id": "c1", "object": "chat.completion", "model": "o3-2025-04-16",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    # the proxy passes ts as time.time(): 2025-05-01 -> launch price, 1000*10 + 100*40 = 14_000
    row = calls.openai_row(request, response, prices=table, ts=1_746_057_600.0)
    assert row["cost_usd"] == pytest.approx(0.014)
    # 2025-07-01 -> after the cut, 1000*2 + 100*8 = 2_800
    row = calls.openai_row(request, response, prices=table, ts=1_751_328_000.0)
    assert row["cost_usd"] == pytest.approx(0.0028)


# --- ids responses carry, and models still on the pricing pages -----------------------------------------------------


@pytest.mark.parametrize(("model", "dollars"), [
    # 1000 input, 100 output tokens at the published prices: input*1000 + output*100, / 1e6
    ("gpt-3.5-turbo-0125", 0.00065),  # $0.50 / $1.50: 500 + 150
    ("gpt-3.5-turbo-1106", 0.0012),  # $1 / $2: 1000 + 200
    ("gpt-3.5-turbo-0613", 0.0017),  # $1.50 / $2: 1500 + 200
    ("gpt-3.5-turbo-16k-0613", 0.0034),  # $3 / $4: 3000 + 400
    ("gpt-4-0613", 0.036),  # $30 / $60: 30_000 + 6000
    ("gpt-4-32k-0314", 0.072),  # $60 / $120: 60_000 + 12_000
    ("gpt-4-1106-preview", 0.013),  # $10 / $30: 10_000 + 3000
    ("gpt-4-0125-preview", 0.013),
    ("chatgpt-4o-latest", 0.0065),  # $5 / $15: 5000 + 1500
    ("gpt-5-pro", 0.027),  # $15 / $120: 15_000 + 12_000
    ("o3-pro", 0.028),  # $20 / $80: 20_000 + 8000
    ("gpt-5.5-pro", 0.048),  # $30 / $180: 30_000 + 18_000
    ("gpt-5-codex", 0.00225),  # $1.25 / $10: 1250 + 1000
    ("gpt-5.1-codex-mini", 0.00045),  # $0.25 / $2: 250 + 200
    ("claude-3-5-haiku-20241022", 0.0012),  # $0.80 / $4: 800 + 400
    ("claude-3-7-sonnet-20250219", 0.0045),  # $3 / $15: 3000 + 1500
    ("claude-3-opus-20240229", 0.0225),  # $15 / $75: 15_000 + 7500
    ("claude-3-haiku-20240307", 0.000375),  # $0.25 / $1.25: 250 + 125
])
def test_snapshot_ids_and_listed_models_are_priced(table, model, dollars):
    assert table.cost(model, Usage(input_tokens=1000, output_tokens=100)) == pytest.approx(dollars)
    assert model not in table.unknown


def test_the_claude_3_models_are_retired_and_never_a_default(table):
    from distill_cli.economics import cheapest_haiku

    # Their end of life per Anthropic's model deprecations page: priced for the calls made before, never picked.
    assert table.retired_on("claude-3-haiku-20240307") == date(2026, 4, 20)
    assert table.retired_on("claude-3-5-haiku-20241022") == date(2026, 2, 19)
    assert table.retired_on("claude-3-7-sonnet-20250219") == date(2026, 2, 19)
    assert table.retired_on("claude-3-opus-20240229") == date(2026, 1, 5)
    assert cheapest_haiku(table) == "claude-haiku-5-5"


def test_claude_haiku_3_cache_writes_are_its_published_ones(table):
    # 1000 5-minute writes at $0.30 + 1000 1-hour writes at $0.50 + 1000 hits at $0.03 = 300 + 500 + 30
    usage = Usage(cache_write_5m_tokens=1000, cache_write_1h_tokens=1000, cache_read_tokens=1000)
    assert table.cost("claude-3-haiku-20240307", usage) == pytest.approx(0.00083)


def test_gpt_5_6_sol_cut_is_dated_as_the_changelog_dates_it(table):
    usage = Usage(input_tokens=1000, output_tokens=100)
    # 2026-08-20: launch price $5 / $30: 5000 + 3000 = 8000; from 2026-08-21: $4 / $20: 4000 + 2000 = 6000
    assert table.cost("gpt-5.6-sol", usage, at="2026-08-20") == pytest.approx(0.008)
    assert table.cost("gpt-5.6-sol", usage, at="2026-08-21") == pytest.approx(0.006)


def test_an_unpriced_id_stays_null_never_zero(table):
    assert table.cost("gpt-4o-audio-preview", Usage(1000, 100)) is None
    assert table.cost("gpt-3.5-turbo-0999", Usage(1000, 100)) is None  # MMDD is no date stamp: no base model


# --- price modifiers carried in the response --------------------------------------------------------------------

# 1000 uncached input, 100 output, 1000 cache reads: the usage every modifier row below prices.
MOD_USAGE = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=1000)


@pytest.mark.parametrize(("model", "modifiers", "dollars"), [
    # claude-opus-4-6 standard: 1000*5 + 100*25 + 1000*0.5 = 8000; fast mode is 6x: 48_000
    ("claude-opus-4-6", Modifiers(speed="fast"), 0.048),
    ("claude-opus-4-6", Modifiers(speed="standard"), 0.008),
    # US-only inference 1.1x: 8000 * 1.1 = 8800; global is standard
    ("claude-opus-4-6", Modifiers(inference_geo="us"), 0.0088),
    ("claude-opus-4-6", Modifiers(inference_geo="global"), 0.008),
    # the two stack: 8000 * 6 * 1.1 = 52_800
    ("claude-opus-4-6-20260205", Modifiers(speed="fast", inference_geo="us"), 0.0528),
    # Anthropic batch results (usage.service_tier "batch"): claude-haiku-4-5 $0.50 / $2.50, reads 0.1*0.5:
    # 1000*0.5 + 100*2.5 + 1000*0.05 = 500 + 250 + 50 = 800
    ("claude-haiku-4-5", Modifiers(service_tier="batch"), 0.0008),
    ("claude-haiku-4-5", Modifiers(service_tier="standard"), 0.0016),  # 1000*1 + 100*5 + 1000*0.1
])
def test_anthropic_modifiers(table, model, modifiers, dollars):
    cost, why = table.priced(model, MOD_USAGE, modifiers=modifiers)
    assert why is None and cost == pytest.approx(dollars)


@pytest.mark.parametrize(("model", "tier", "dollars"), [
    # flex is billed at Batch API rates: gpt-5.6-terra batch $1 / $6, cached 0.2*0.5: 1000 + 600 + 100 = 1700
    ("gpt-5.6-terra", "flex", 0.0017),
    # batch: gpt-4.1 $1 / $4, cached 0.5*0.5: 1000 + 400 + 250 = 1650
    ("gpt-4.1", "batch", 0.00165),
    # priority (= fast): gpt-5.4 $5 / cached $0.50 / $30: 5000 + 3000 + 500 = 8500
    ("gpt-5.4", "priority", 0.0085),
    ("gpt-5.4-2026-03-05", "fast", 0.0085),
    # gpt-4.1 priority $3.50 / cached $0.875 / $14: 3500 + 1400 + 875 = 5775
    ("gpt-4.1", "priority", 0.005775),
    # default is the standard price: gpt-4.1 $2 / $8 / cached $0.50: 2000 + 800 + 500 = 3300
    ("gpt-4.1", "default", 0.0033),
])
def test_openai_service_tiers(table, model, tier, dollars):
    cost, why = table.priced(model, MOD_USAGE, modifiers=Modifiers(service_tier=tier))
    assert why is None and cost == pytest.approx(dollars)


@pytest.mark.parametrize(("model", "modifiers", "usage", "reason"), [
    # fast mode on a model whose fast price Anthropic's pages do not give
    ("claude-opus-5-5", Modifiers(speed="fast"), MOD_USAGE, "no verified fast-mode price"),
    # fast mode over 200K prompt tokens: the page's 12x and its $60/$225 table disagree
    ("claude-opus-4-6", Modifiers(speed="fast"), Usage(input_tokens=200_001), "over 200,000 tokens"),
    ("claude-opus-4-6", Modifiers(inference_geo="eu"), MOD_USAGE, "no verified price multiplier"),
    ("claude-sonnet-4-6", Modifiers(service_tier="priority"), MOD_USAGE, "no verified price for this tier"),
    ("gpt-5.6-sol", Modifiers(service_tier="priority"), MOD_USAGE, "no verified priority price for gpt-5.6-sol"),
    ("gpt-5.4", Modifiers(service_tier="priority"), Usage(input_tokens=300_000), "over 272,000 tokens"),
    ("gpt-5.4", Modifiers(service_tier="priority"), Usage(input_tokens=10, cache_write_5m_tokens=10), "cache-write"),
    ("gpt-4.1", Modifiers(service_tier="scale"), MOD_USAGE, "no verified price for this tier"),
])
def test_an_unverified_modifier_leaves_the_cost_null_with_a_reason(table, model, modifiers, usage, reason):
    cost, why = table.priced(model, usage, modifiers=modifiers)
    assert cost is None and reason in why
    assert table.cost(model, usage, modifiers=modifiers) is None
    assert model not in table.unknown  # the model has a price; only the modifier's is unknown


def test_the_packaged_modifiers_cite_their_sources():
    data = json.loads(resources.files("distill_cli").joinpath("data/prices.json").read_text(encoding="utf-8"))
    mods = data["modifiers"]
    for group in ("anthropic_speed", "anthropic_inference_geo", "anthropic_service_tier", "openai_service_tier"):
        for name, rule in mods[group].items():
            if name.startswith("_") or "same_as" in rule:
                continue
            assert rule["source"].startswith("https://") and rule["source"] in data["sources"], (group, name)


def test_rows_carry_their_modifiers_and_the_reason_a_cost_is_null(table):
    from distill_cli import calls

    request = {"model": "claude-opus-4-6", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

    def message(model, **usage):
        return {"id": "m", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 1000, **usage}}

    us = calls.anthropic_row(request, message("claude-opus-4-6", inference_geo="us", service_tier="standard"), prices=table)
    assert us["cost_usd"] == pytest.approx(0.0088)  # 8000 * 1.1, as above
    assert json.loads(us["metadata"]) == {"inference_geo": "us"}
    fast = calls.anthropic_row(request, message("claude-opus-5-5", speed="fast"), prices=table)
    assert fast["cost_usd"] is None and fast["error"] is None
    assert "fast-mode price" in json.loads(fast["metadata"])[calls.PRICE_UNVERIFIED_KEY]

    chat = {"model": "gpt-5.6-terra", "messages": [{"role": "user", "content": "hi"}], "service_tier": "flex"}
    completion = {"id": "c", "object": "chat.completion", "model": "gpt-5.6-terra", "service_tier": "flex",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 2000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 1000}}}
    flex = calls.openai_row(chat, completion, prices=table, metadata=calls.metadata_json({"team": "ops"}))
    assert flex["cost_usd"] == pytest.approx(0.0017)  # as above
    assert json.loads(flex["metadata"]) == {"team": "ops", "service_tier": "flex"}
