"""Cost levers besides distillation, as estimates from the recorded calls: prompt caching and the Batch API."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime

from distill_cli.formatting import round_usd
from distill_cli.prices import TOKEN_COLUMNS
from distill_cli.report.calls import OK
from distill_cli.report.inputs import sql_str
from distill_cli.report.rows import TaskRow

# Shortest cacheable prefix, in tokens (Anthropic prompt caching); Haiku needs more.
MIN_CACHEABLE_TOKENS = 1024
MIN_CACHEABLE_TOKENS_HAIKU = 2048
PREFIX_SAMPLE_ROWS = 200


def levers(con, task: TaskRow, prices, since: datetime | None) -> list[dict]:
    out = []
    cache = _prompt_cache_lever(con, task, prices, since)
    if cache:
        out.append(cache)
    batch = _batch_lever(task)
    if batch:
        out.append(batch)
    return out


def _min_cacheable(model: str) -> int:
    return MIN_CACHEABLE_TOKENS_HAIKU if "haiku" in model else MIN_CACHEABLE_TOKENS


def _prompt_cache_lever(con, task: TaskRow, prices, since: datetime | None) -> dict | None:
    """A repeated prompt prefix (tools + system) sent without cache_control: what caching it would save.

    Estimated from a sample of the task's uncached calls: the most common prefix,
    its share, and its tokens (each call's input tokens split by the prefix's
    share of the request's characters). One cache write per 5-minute window
    such calls fall in, counted as if each hour's calls were spread evenly (the
    most writes they could need), every other call a cache read.
    """
    uncached, model = task.uncached, task.uncached_model
    if uncached < 2 or not model or task.uncached_avg_tokens < _min_cacheable(model):
        return None
    price = prices.lookup(model)
    if price is None:
        return None
    # The same calls as `Group.uncached`, read from the examples for their request bodies.
    where = [
        f"task = {sql_str(task.task)}",
        f"model = {sql_str(model)}",
        "provider = 'anthropic'",
        "COALESCE(served_by, 'teacher') IN ('teacher', 'fallback', 'shadow')",
        OK,
        *(f"COALESCE({c}, 0) = 0" for c in TOKEN_COLUMNS if c.startswith("cache_")),
    ]
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {sql_str(since.isoformat())}")
    sample = con.execute(
        f"SELECT request_json, input_tokens FROM examples WHERE {' AND '.join(where)} LIMIT {PREFIX_SAMPLE_ROWS}"
    ).fetchall()
    prefixes: dict[str, list[float]] = defaultdict(list)
    for request_json, input_tokens in sample:
        prefix, total_chars = _request_prefix(request_json)
        if prefix and total_chars and input_tokens:
            prefixes[prefix].append(input_tokens * len(prefix) / total_chars)
    if not prefixes:
        return None
    prefix, estimates = max(prefixes.items(), key=lambda kv: len(kv[1]))
    share = len(estimates) / len(sample)
    estimates.sort()
    prefix_tokens = estimates[len(estimates) // 2]
    if prefix_tokens < _min_cacheable(model):
        return None
    calls = int(uncached * share)
    writes = min(math.ceil(task.cache_windows), calls)
    reads = calls - writes
    saving = prefix_tokens * (reads * (price.input - price.cache_read) - writes * (price.cache_write_5m - price.input)) / 1e6
    if reads < 1 or saving <= 0:
        return None
    return {
        "lever": "prompt_caching",
        "calls": calls,
        "prefix_tokens": int(prefix_tokens),
        "cache_writes": writes,
        "estimated_saving_usd": round_usd(saving),
        "estimate": True,
        "text": (
            f"prompt caching: a ~{int(prefix_tokens):,}-token prefix is sent uncached on ~{calls:,} calls; "
            f"cache_control on it saves ~${saving:,.2f} (estimate)"
        ),
    }


def _request_prefix(request_json: str | None) -> tuple[str, int]:
    """(the cacheable prefix of a Messages request: tools then system, as text; the request's size in chars)."""
    try:
        request = json.loads(request_json or "")
    except ValueError:
        return "", 0
    if not isinstance(request, dict):
        return "", 0
    parts = []
    if request.get("tools"):
        parts.append(json.dumps(request["tools"], sort_keys=True))
    system = request.get("system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    if isinstance(system, str):
        parts.append(system)
    prefix = "\n".join(parts)
    messages = request.get("messages") or []
    rest = sum(len(json.dumps(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return prefix, len(prefix) + rest


def _batch_lever(task: TaskRow) -> dict | None:
    """Calls that could have gone through a Batch API (50% off), if their answers can wait."""
    n, cost = task.tally.batchable, task.tally.batchable_cost
    if not n or cost <= 0:
        return None
    return {
        "lever": "batch",
        "calls": n,
        "cost_usd": round_usd(cost),
        "estimated_saving_usd": round_usd(cost / 2),
        "estimate": True,
        "text": f"batch API: up to 50% (~${cost / 2:,.2f}) on {n:,} non-streaming teacher/shadow calls, if they can wait",
    }
