"""Prices and the one function that turns a usage record into dollars.

The packaged table (`data/prices.json`) holds USD per million tokens per model,
with effective dates; `--prices FILE` overrides or extends it. An unknown model
is priced None, never 0, and remembered in `PriceTable.unknown` so the caller
can name it in one warning. This module never prints and never exits.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from distill_cli.errors import InputError

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "batch_input", "batch_output")

# A dated snapshot id ends in -YYYYMMDD (Anthropic) or -YYYY-MM-DD (OpenAI).
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


# The largest token count distill keeps. Counts are int64 in the store and are summed and priced as doubles,
# which hold every whole number below 2**53 exactly; no call comes near it, so a count beyond it is garbage.
MAX_TOKENS = 2**53 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens")


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, in Anthropic's terms."""

    input_tokens: int = 0  # Anthropic semantics: EXCLUDES cache read/write tokens
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0  # for OpenAI: the 30-minute (default) cache write
    cache_write_1h_tokens: int = 0  # for OpenAI: the 12-hour cache write
    # What the usage record gave that is no token count (negative, fractional, too large, not a number), e.g.
    # "usage.input_tokens is 1e+25". The counts it made unknown are 0 above, null in a row, and the call has no cost.
    problems: tuple[str, ...] = ()
    unknown: frozenset[str] = frozenset()

    @property
    def prompt_tokens(self) -> int:
        """Every token of the prompt, cached or not: what long-context thresholds are measured on."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def problem(self) -> str | None:
        """Why some counts are unknown, in one line; None when every count is known."""
        if not self.problems:
            return None
        what = "a token count" if len(self.problems) == 1 else "token counts"
        return f"{', '.join(self.problems)}: not {what} (a whole number from 0 to 2**53-1)"

    def columns(self) -> dict[str, int | None]:
        """The row's count columns: null for an unknown count."""
        counts = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                  "cache_read_tokens": self.cache_read_tokens, "cache_write_5m_tokens": self.cache_write_5m_tokens,
                  "cache_write_1h_tokens": self.cache_write_1h_tokens}
        for name in self.unknown:
            counts[name] = None
        return counts


def _plain(usage: Any) -> Mapping:
    # SDK objects (pydantic) are accepted as well as the dicts a recorder parses.
    if usage is None:
        return {}
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    return usage if isinstance(usage, Mapping) else {}


def _shown(value: Any) -> str:
    """A count as the message names it: JSON spelling, short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit integer"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Counts:
    """Reads the counts of one usage record, noting each that is not a token count (which reads as None)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(self, mapping: Mapping, key: str, where: str = "usage") -> int | None:
        value = mapping.get(key)
        if value is None:  # a missing count is 0, as providers leave out what did not happen
            return 0
        if type(value) is int and 0 <= value <= MAX_TOKENS:  # nearly every count: first
            return value
        if isinstance(value, bool):
            pass
        elif isinstance(value, int) and 0 <= value <= MAX_TOKENS:
            return value
        elif isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_TOKENS:
            return int(value)
        self.problems.append(f"{where}.{key} is {_shown(value)}")
        return None

    def usage(self, **counts: int | None) -> Usage:
        if not self.problems:
            return Usage(**counts)
        return Usage(**{k: v or 0 for k, v in counts.items()}, problems=tuple(self.problems),
                     unknown=frozenset(k for k, v in counts.items() if v is None))


def _not_an_object(usage: Any) -> Usage | None:
    """The Usage of a usage record that is there but no object: every count unknown."""
    if usage is None or hasattr(usage, "model_dump") or isinstance(usage, Mapping):
        return None
    return Usage(problems=(f"usage is {_shown(usage)}",), unknown=frozenset(USAGE_FIELDS))


def usage_from_anthropic(usage: Mapping | None) -> Usage:
    """A Messages API `usage` object as a `Usage`; None or missing fields count as 0, bad ones are unknown."""
    bad = _not_an_object(usage)
    if bad is not None:
        return bad
    u, count = _plain(usage), _Counts()
    created = count.get(u, "cache_creation_input_tokens")
    breakdown = u.get("cache_creation")
    if isinstance(breakdown, Mapping) and (
        "ephemeral_5m_input_tokens" in breakdown or "ephemeral_1h_input_tokens" in breakdown
    ):
        write_5m = count.get(breakdown, "ephemeral_5m_input_tokens", "usage.cache_creation")
        write_1h = count.get(breakdown, "ephemeral_1h_input_tokens", "usage.cache_creation")
    else:
        # Before the TTL breakdown existed every cache write was a 5-minute one.
        write_5m, write_1h = created, 0
    return count.usage(
        input_tokens=count.get(u, "input_tokens"),
        output_tokens=count.get(u, "output_tokens"),
        cache_read_tokens=count.get(u, "cache_read_input_tokens"),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
    )


def merge_stream_usage(start: Mapping | None, delta: Mapping | None) -> dict:
    """A stream's final usage, in Messages API shape, from message_start's and message_delta's usage.

    message_delta counts are cumulative, so each one it carries replaces the
    message_start value rather than adding to it.
    """
    merged = copy.deepcopy(dict(_plain(start)))
    for key, value in _plain(delta).items():
        if value is None:
            continue
        if key == "cache_creation" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def usage_from_openai(usage: Mapping | None) -> Usage:
    """A Chat Completions (or Responses API) `usage` object as a `Usage`.

    OpenAI's prompt count includes cached and cache-written tokens; they are
    taken out of `input_tokens` so each token is priced once.
    """
    bad = _not_an_object(usage)
    if bad is not None:
        return bad
    u, count = _plain(usage), _Counts()
    if "prompt_tokens" in u or "completion_tokens" in u:  # Chat Completions
        prompt, output = count.get(u, "prompt_tokens"), count.get(u, "completion_tokens")
        where = "usage.prompt_tokens_details"
    else:  # Responses API
        prompt, output = count.get(u, "input_tokens"), count.get(u, "output_tokens")
        where = "usage.input_tokens_details"
    details = _plain(u.get(where[len("usage."):]))
    cached = count.get(details, "cached_tokens", where)
    written = count.get(details, "cache_write_tokens", where)
    ttl = _plain(details.get("cache_write_tokens_details"))
    if ttl:
        write_long = count.get(ttl, "ttl_12h_tokens", where + ".cache_write_tokens_details")
        write_short = count.get(ttl, "ttl_30m_tokens", where + ".cache_write_tokens_details")
        known = None not in (written, write_short, write_long)
        written = max(written, write_short + write_long) if known else None
    else:
        # Chat Completions gives only the total; the 30-minute write is the default retention.
        write_short, write_long = written, 0
    # The uncached input is what is left of the prompt: unknown if any count it is worked out from is.
    known = None not in (prompt, cached, written)
    return count.usage(
        input_tokens=max(prompt - cached - written, 0) if known else None,
        output_tokens=output,
        cache_read_tokens=cached,
        cache_write_5m_tokens=write_short,
        cache_write_1h_tokens=write_long,
    )


def usage_from_responses(usage: Mapping | None) -> Usage:
    """A Responses API `usage` object as a `Usage`.

    `input_tokens` includes `input_tokens_details.cached_tokens` (taken out, as for chat
    completions); `output_tokens` includes `output_tokens_details.reasoning_tokens`,
    which are billed as output: a record whose reasoning count exceeds its output
    count is read as output = reasoning, never fewer tokens than were reasoned.
    """
    bad = _not_an_object(usage)
    if bad is not None:
        return bad
    u, count = _plain(usage), _Counts()
    prompt, output = count.get(u, "input_tokens"), count.get(u, "output_tokens")
    cached = count.get(_plain(u.get("input_tokens_details")), "cached_tokens", "usage.input_tokens_details")
    reasoning = count.get(_plain(u.get("output_tokens_details")), "reasoning_tokens", "usage.output_tokens_details")
    return count.usage(
        input_tokens=max(prompt - cached, 0) if None not in (prompt, cached) else None,
        output_tokens=max(output, reasoning) if None not in (output, reasoning) else None,
        cache_read_tokens=cached,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )


# What a response says about how its call was served, where that changes the price (see `PriceTable.priced`).
STANDARD_TIERS = frozenset({None, "default", "standard", "auto"})


@dataclass(frozen=True)
class Modifiers:
    """The price modifiers one response carries: Anthropic `usage.speed` and `usage.inference_geo`, the
    `service_tier` it was served at (OpenAI's top-level field; Anthropic's `usage.service_tier`)."""

    speed: str | None = None
    inference_geo: str | None = None
    service_tier: str | None = None

    def tags(self) -> dict[str, str]:
        """The non-default modifiers, for a row's metadata (the report reads `service_tier` there)."""
        out = {}
        if self.speed not in (None, "standard"):
            out["speed"] = self.speed
        if self.inference_geo not in (None, "global"):
            out["inference_geo"] = self.inference_geo
        if self.service_tier not in STANDARD_TIERS:
            out["service_tier"] = self.service_tier
        return out


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def modifiers_of(provider: str, answer: Mapping | None) -> Modifiers:
    """The price modifiers of a Messages API message or an OpenAI completion / response."""
    answer = _plain(answer)
    if provider == "anthropic":
        usage = _plain(answer.get("usage"))
        return Modifiers(speed=_text_or_none(usage.get("speed")), inference_geo=_text_or_none(usage.get("inference_geo")),
                         service_tier=_text_or_none(usage.get("service_tier")))
    return Modifiers(service_tier=_text_or_none(answer.get("service_tier")))


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices from one effective date, in USD per million tokens."""

    model: str
    provider: str
    effective: date
    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    batch_input: float
    batch_output: float
    # Rates that replace all of the above for a request whose whole prompt exceeds the threshold.
    long_context_threshold: int | None = None
    long_context: ModelPrice | None = None

    def rates_for(self, usage: Usage) -> ModelPrice:
        """The rates that apply to this usage: the long-context tier when its prompt is over the threshold."""
        if self.long_context is not None and self.long_context_threshold is not None:
            if usage.prompt_tokens > self.long_context_threshold:
                return self.long_context
        return self


def base_model(model: str) -> str:
    """The model id without a trailing date stamp (`claude-sonnet-4-5-20250929` -> `claude-sonnet-4-5`)."""
    return _DATE_SUFFIX.sub("", model)


def _as_date(at: date | datetime | str | int | float | None) -> date | None:
    """The UTC day of a call's timestamp: a date, a datetime, an ISO string, integer microseconds since the
    epoch (a row's `ts`) or float seconds (`time.time()`), as `store.to_micros` reads them."""
    if at is None or (isinstance(at, date) and not isinstance(at, datetime)):
        return at
    if isinstance(at, datetime):
        return (at.astimezone(timezone.utc) if at.tzinfo else at).date()
    if isinstance(at, bool):
        raise TypeError("a timestamp, not a bool")
    if isinstance(at, int):
        return (_EPOCH + timedelta(microseconds=at)).date()
    if isinstance(at, float):
        return (_EPOCH + timedelta(seconds=at)).date()
    return date.fromisoformat(at[:10])


def today() -> date:
    """Today in UTC: the day whose prices apply to a call with no timestamp."""
    return datetime.now(timezone.utc).date()


class PriceTable:
    """Model prices by id, with their history; prices usage and remembers the models it could not."""

    def __init__(self, version: str, models: Mapping[str, list[ModelPrice]], unpriced: Mapping[str, str] | None = None,
                 retired: Mapping[str, date] | None = None, modifiers: Mapping[str, Any] | None = None):
        self.version = version
        # The price modifiers' rules as prices.json gives them ("modifiers"): see `priced`.
        self.modifiers: dict[str, Any] = dict(modifiers or {})
        # Oldest first, so the last entry is the current price.
        self._models = {model: sorted(entries, key=lambda p: p.effective) for model, entries in models.items()}
        self.unpriced: dict[str, str] = dict(unpriced or {})  # model -> why the table has no price for it
        # model -> its end of life (past or announced); its price stays, for the calls made before it
        self.retired: dict[str, date] = dict(retired or {})
        self.unknown: set[str] = set()

    @property
    def model_ids(self) -> list[str]:
        return sorted(self._models)

    def retired_on(self, model: str) -> date | None:
        """The day `model` (exact id, then without its date suffix) reaches end of life, past or announced; else None."""
        return self.retired.get(model) or self.retired.get(base_model(model))

    def lookup(self, model: str, *, at: date | datetime | str | None = None) -> ModelPrice | None:
        """The price of `model` (exact id, then without its date suffix) in force on the day of `at` (a call's
        timestamp), or today without one: an entry dated in the future is not applied before its day."""
        if model in self.unpriced:  # the table says outright that it has no price for this id
            return None
        entries = self._models.get(model) or self._models.get(base_model(model))
        if not entries:
            return None
        day = _as_date(at) or today()
        in_force = [p for p in entries if p.effective <= day]
        # A call dated before the first known price is priced at the launch price, not left unpriced.
        return in_force[-1] if in_force else entries[0]

    def cost(self, model: str, usage: Usage, *, batch: bool = False, at: date | datetime | str | None = None,
             modifiers: Modifiers | None = None) -> float | None:
        """USD for one call, or None (never 0) when the model has no price (such models land in `.unknown`),
        the usage has an unknown count, or a price modifier's rate is not known (`priced` says why)."""
        return self.priced(model, usage, batch=batch, at=at, modifiers=modifiers)[0]

    def priced(self, model: str, usage: Usage, *, batch: bool = False, at: date | datetime | str | None = None,
               modifiers: Modifiers | None = None) -> tuple[float | None, str | None]:
        """(USD, None) for one call, or (None, why) when a price modifier the response carries has no verified
        rate; (None, None) when the model has no price or a count is unknown (those have their own messages).

        Modifiers, each with its rule and source in prices.json "modifiers": Anthropic fast mode
        (`usage.speed`), data-residency inference (`usage.inference_geo`), the service tier (OpenAI flex and
        batch at Batch API rates, priority at the published per-model priority rates; Anthropic batch).
        """
        if usage.unknown:
            return None, None
        price = self.lookup(model, at=at)
        if price is None:
            self.unknown.add(model)
            return None, None
        factor, why = 1.0, None
        if modifiers is not None:
            price, batch, factor, why = self._apply(model, price, usage, batch, modifiers)
            if why is not None:
                return None, why
        return self._cost(price, usage, batch) * factor, None

    def _apply(self, model: str, price: ModelPrice, usage: Usage, batch: bool,
               m: Modifiers) -> tuple[ModelPrice, bool, float, str | None]:
        """(price, batch, multiplier, None) with the modifiers applied, or (..., why) when one has no verified rate."""
        rules, factor = self.modifiers, 1.0
        base = price.model
        if m.speed not in (None, "standard"):
            fast = (rules.get("anthropic_speed") or {}).get(m.speed) or {}
            multiplier = (fast.get("multipliers") or {}).get(base)
            if multiplier is None:
                return price, batch, factor, f"usage.speed {m.speed!r}: no verified {m.speed}-mode price for {model}"
            limit = fast.get("max_prompt_tokens")
            if limit is not None and usage.prompt_tokens > limit:
                return price, batch, factor, (f"usage.speed {m.speed!r}: the {m.speed}-mode price of prompts over "
                                              f"{limit:,} tokens is not verified")
            factor *= multiplier
        if m.inference_geo not in (None, "global"):
            multiplier = ((rules.get("anthropic_inference_geo") or {}).get(m.inference_geo) or {}).get("multiplier")
            if multiplier is None:
                return price, batch, factor, f"usage.inference_geo {m.inference_geo!r}: no verified price multiplier"
            factor *= multiplier
        if m.service_tier not in STANDARD_TIERS:
            tiers = rules.get(f"{price.provider}_service_tier") or {}
            tier = tiers.get(m.service_tier)
            if isinstance(tier, Mapping) and "same_as" in tier:  # OpenAI's "fast" is "priority" renamed
                tier = tiers.get(tier["same_as"])
            if not isinstance(tier, Mapping) or m.service_tier.startswith("_"):
                return price, batch, factor, f"service_tier {m.service_tier!r}: no verified price for this tier"
            if tier.get("rates") == "batch":
                batch = True
            else:
                rates = (tier.get("models") or {}).get(base)
                if rates is None:
                    return price, batch, factor, f"service_tier {m.service_tier!r}: no verified {m.service_tier} price for {model}"
                if price.long_context is not None and price.long_context_threshold is not None \
                        and usage.prompt_tokens > price.long_context_threshold:
                    return price, batch, factor, (f"service_tier {m.service_tier!r}: no verified {m.service_tier} price "
                                                  f"for prompts over {price.long_context_threshold:,} tokens")
                if usage.cache_write_5m_tokens or usage.cache_write_1h_tokens:
                    return price, batch, factor, f"service_tier {m.service_tier!r}: no verified {m.service_tier} cache-write price"
                inp, out = float(rates["input"]), float(rates["output"])
                price = ModelPrice(price.model, price.provider, price.effective, inp, out, float(rates["cache_read"]),
                                   inp, inp, inp / 2, out / 2)
        return price, batch, factor, None

    @staticmethod
    def _cost(price: ModelPrice, usage: Usage, batch: bool) -> float:
        rates = price.rates_for(usage)
        # The Batch API halves every rate, cache reads and writes included.
        cache_factor = 0.5 if batch else 1.0
        total = (
            usage.input_tokens * (rates.batch_input if batch else rates.input)
            + usage.output_tokens * (rates.batch_output if batch else rates.output)
            + usage.cache_read_tokens * rates.cache_read * cache_factor
            + usage.cache_write_5m_tokens * rates.cache_write_5m * cache_factor
            + usage.cache_write_1h_tokens * rates.cache_write_1h * cache_factor
        )
        return total / 1_000_000


# --- the same price in SQL, for tables of calls ---------------------------------------------------------

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens")
RATE_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
# The columns of a rates table that `sql_cost` reads, after whatever key columns the caller gives it.
RATE_COLUMNS_SQL = ", ".join([f"{f} DOUBLE" for f in RATE_FIELDS] + [f"lc_{f} DOUBLE" for f in RATE_FIELDS] + ["lc_threshold BIGINT"])


def rate_values(price: ModelPrice | None) -> tuple:
    """The values of RATE_COLUMNS_SQL for one price (all null for none)."""
    if price is None:
        return (None,) * (2 * len(RATE_FIELDS) + 1)
    lc = price.long_context
    return (*(getattr(price, f) for f in RATE_FIELDS),
            *((getattr(lc, f) for f in RATE_FIELDS) if lc else (None,) * len(RATE_FIELDS)),
            price.long_context_threshold if lc else None)


def sql_cost(calls: str, rates: str) -> str:
    """SQL for `PriceTable.cost` (not batch) of the token columns of `calls` at the rates row `rates`.

    The same products added in the same order as `cost`, so the same float.
    """
    rate = " + ".join(f"{calls}.{c} * {{p}}{f}" for c, f in zip(TOKEN_COLUMNS, RATE_FIELDS))
    prompt = " + ".join(f"{calls}.{c}" for c in TOKEN_COLUMNS if c != "output_tokens")
    return (f"CASE WHEN {rates}.lc_threshold IS NOT NULL AND {prompt} > {rates}.lc_threshold "
            f"THEN ({rate.format(p=rates + '.lc_')}) / 1e6 ELSE ({rate.format(p=rates + '.')}) / 1e6 END")


# --- loading ---------------------------------------------------------------------------------------------------


def _number(where: str, entry: Mapping, key: str) -> float | None:
    if key not in entry or entry[key] is None:
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= sys.float_info.max:
        raise ValueError(f"{where}: {key!r} must be a non-negative number, not {value!r}")
    return float(value)


def _derive(provider: str, rates: dict[str, float | None]) -> dict[str, float]:
    """Fill missing cache and batch rates from input/output by the provider's published rule."""
    inp, out = rates["input"], rates["output"]
    if provider == "openai":
        # OpenAI's default: a cache write costs the input price, a cache hit is given explicitly.
        defaults = {"cache_read": inp, "cache_write_5m": inp, "cache_write_1h": inp}
    else:
        defaults = {"cache_read": inp * 0.1, "cache_write_5m": inp * 1.25, "cache_write_1h": inp * 2.0}
    defaults |= {"batch_input": inp * 0.5, "batch_output": out * 0.5}
    return {k: (rates[k] if rates.get(k) is not None else round(defaults[k], 9)) for k in PRICE_FIELDS}


def _parse_rates(where: str, entry: Mapping, provider: str, fallback: ModelPrice | None) -> dict[str, float]:
    rates = {key: _number(where, entry, key) for key in PRICE_FIELDS}
    for key in ("input", "output"):
        if rates[key] is None:
            if fallback is None:
                raise ValueError(f"{where}: {key!r} is required")
            rates[key] = getattr(fallback, key)
    return _derive(provider, rates)


def _parse_price(model: str, where: str, spec: Mapping, provider: str, fallback: ModelPrice | None) -> ModelPrice:
    raw_date = spec.get("effective")
    if raw_date is None:
        # An override without a date replaces the current price from the day it took effect.
        effective = fallback.effective if fallback else date.min
    else:
        try:
            effective = date.fromisoformat(str(raw_date))
        except ValueError:
            raise ValueError(f"{where}: 'effective' must be an ISO date, not {raw_date!r}")
    rates = _parse_rates(where, spec, provider, fallback)
    threshold, tier = None, None
    long = spec.get("long_context")
    if long is not None:
        if not isinstance(long, Mapping):
            raise ValueError(f"{where}: 'long_context' must be an object")
        threshold = long.get("threshold_tokens")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"{where}: long_context 'threshold_tokens' must be a non-negative integer")
        tier = ModelPrice(model, provider, effective, **_parse_rates(f"{where} long_context", long, provider, None))
    return ModelPrice(model, provider, effective, **rates, long_context_threshold=threshold, long_context=tier)


def _parse_entry(model: str, entry: Any, base: list[ModelPrice] | None) -> list[ModelPrice]:
    """One model's prices, oldest first; `base` is the packaged history an override entry builds on."""
    where = f"model {model!r}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object")
    current = base[-1] if base else None
    provider = entry.get("provider") or (current.provider if current else "anthropic")
    if provider not in ("anthropic", "openai"):
        raise ValueError(f"{where}: provider must be 'anthropic' or 'openai', not {provider!r}")
    prices = [_parse_price(model, where, entry, provider, current)]
    history = entry.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise ValueError(f"{where}: 'history' must be a list")
        for i, old in enumerate(history):
            if not isinstance(old, Mapping) or "effective" not in old:
                raise ValueError(f"{where}: history[{i}] must be an object with an 'effective' date")
            prices.append(_parse_price(model, f"{where} history[{i}]", old, provider, None))
    elif base:
        # Without its own history, an override keeps the packaged prices that came before it,
        # so a price change dated today does not reprice last month's calls.
        first = min(p.effective for p in prices)
        prices += [p for p in base if p.effective < first]
    return sorted(prices, key=lambda p: p.effective)


def _retired(where: str, models: Mapping) -> dict[str, date | None]:
    """model -> its "retired" date, from the entries that name one (null: not retired, to undo a packaged date)."""
    out: dict[str, date | None] = {}
    for model, entry in models.items():
        if not isinstance(entry, Mapping) or "retired" not in entry:
            continue
        raw = entry["retired"]
        try:
            out[model] = None if raw is None else date.fromisoformat(str(raw))
        except ValueError:
            raise InputError(f"{where}: model {model!r}: 'retired' must be an ISO date or null, not {raw!r}")
    return out


def _parse_table(where: str, text: str, base: PriceTable | None) -> tuple[dict, dict, dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise InputError(f'{where}: expected a JSON object with a "models" object of model id -> prices')
    unpriced_raw = data.get("unpriced") or {}
    if not isinstance(unpriced_raw, dict):
        raise InputError(f'{where}: "unpriced" must be an object of model id -> reason')
    models: dict[str, list[ModelPrice]] = {}
    for model, entry in data["models"].items():
        try:
            models[model] = _parse_entry(model, entry, base._models.get(model) if base else None)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}")
    unpriced = {
        model: (info.get("reason", "") if isinstance(info, Mapping) else str(info)) for model, info in unpriced_raw.items()
    }
    return data, models, unpriced


def load_prices(override: str | Path | None = None) -> PriceTable:
    """The packaged price table, with `override` (a JSON file of the same shape) applied on top.

    Override entries replace or add models by id; an entry may give only
    `input`/`output`, and its cache and batch rates then follow its provider's
    rule. A missing or malformed override raises `InputError` naming the file.
    """
    packaged = resources.files("distill_cli").joinpath("data/prices.json")
    data, models, unpriced = _parse_table(str(packaged), packaged.read_text(encoding="utf-8"), None)
    retired = {m: day for m, day in _retired(str(packaged), data["models"]).items() if day is not None}
    modifiers = {k: v for k, v in (data.get("modifiers") or {}).items() if not k.startswith("_")}
    table = PriceTable(str(data.get("version", "unknown")), models, unpriced, retired, modifiers)
    if override is None:
        return table
    path = Path(override)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a price file")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file")
    extra_data, extra, extra_unpriced = _parse_table(str(path), text, table)
    merged = dict(table._models)
    merged.update(extra)
    unpriced = {m: why for m, why in {**unpriced, **extra_unpriced}.items() if m not in merged}
    # An override entry keeps the packaged end of life unless it names its own ("retired": null undoes it).
    retired = {m: day for m, day in {**retired, **_retired(str(path), extra_data["models"])}.items() if day is not None}
    version = f"{table.version}+custom:{hashlib.sha256(raw).hexdigest()[:8]}"
    return PriceTable(version, merged, unpriced, retired, table.modifiers)


__all__ = [
    "ModelPrice",
    "Modifiers",
    "PriceTable",
    "Usage",
    "base_model",
    "load_prices",
    "merge_stream_usage",
    "modifiers_of",
    "usage_from_anthropic",
    "usage_from_openai",
]
