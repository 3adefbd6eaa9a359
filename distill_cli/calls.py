"""One provider call -> one examples/1 row, for every way a call reaches distill.

The importer and the recording proxy both build rows here, so a call recorded live
and the same call imported from a log give the same row (bar `source`, `ts`, ids).
"""

from __future__ import annotations

import json

from distill_cli import canonical
from distill_cli.prices import PriceTable, Usage, usage_from_anthropic, usage_from_openai


def _usage_columns(usage: Usage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_5m_tokens": usage.cache_write_5m_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
    }


def _error_text(body: dict | None) -> str | None:
    """`type: message` of a provider error body (Anthropic or OpenAI shape)."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if body.get("type") == "error" or isinstance(err, dict):
        err = err if isinstance(err, dict) else {}
        return canonical.mask_secrets(f"{err.get('type') or err.get('code') or 'error'}: {err.get('message', '')}")
    return None


def _clean(body: dict | None) -> tuple[dict | None, str | None]:
    """(the body with credentials stripped, its canonical JSON); no copy when there is nothing to strip."""
    if body is None:
        return None, None
    text = canonical.dumps(body)
    if canonical.has_credentials(text):
        body = canonical.strip_credentials(body)
        text = canonical.dumps(body)
    return body, text


def _row(provider: str, request: dict, answer: dict | None, response: dict | None, usage: Usage, *, output,
         stop_reason, prices: PriceTable, priced: bool, status: int, error: str | None, task: str | None,
         endpoint: str, columns: dict, request_json: str, response_json: str | None) -> dict:
    """The columns every provider's row has, from what that provider's body gave."""
    model = (answer or {}).get("model") or request.get("model")
    return {
        "task": task or canonical.task_fingerprint(request, provider),
        "provider": provider,
        "endpoint": endpoint,
        "model": model,
        "served_by": "teacher",
        "input": canonical.openai_input(request) if provider == "openai" else canonical.anthropic_input(request),
        "output": output,
        "request_json": request_json,
        "response_json": response_json,
        "status": status,
        "error": error or _error_text(response),
        "stream": bool(request.get("stream")),
        "stop_reason": stop_reason,
        **_usage_columns(usage),
        "cost_usd": prices.cost(model, usage) if priced else None,
        "price_version": prices.version,
        "input_hash": canonical.input_hash(request),
        **columns,
    }


def anthropic_row(
    request: dict,
    response: dict | None,
    *,
    prices: PriceTable,
    status: int = 200,
    error: str | None = None,
    task: str | None = None,
    endpoint: str = "/v1/messages",
    **columns,
) -> dict:
    """A row for a Messages API call; `response` is the final (or assembled) message, None if there was none."""
    request, request_json = _clean(request)
    response, response_json = _clean(response)
    message = response if response and response.get("type") == "message" else None
    return _row(
        "anthropic", request, message, response, usage_from_anthropic((message or {}).get("usage")),
        output=canonical.anthropic_output(message), stop_reason=(message or {}).get("stop_reason"),
        prices=prices, priced=message is not None, status=status, error=error, task=task, endpoint=endpoint,
        columns=columns, request_json=request_json, response_json=response_json,
    )


def openai_row(
    request: dict,
    response: dict | None,
    *,
    prices: PriceTable,
    status: int = 200,
    error: str | None = None,
    task: str | None = None,
    endpoint: str = "/v1/chat/completions",
    **columns,
) -> dict:
    """A row for a chat completions call; `response` is the final (or assembled) completion."""
    request, request_json = _clean(request)
    response, response_json = _clean(response)
    completion = response if response and response.get("choices") is not None else None
    choices = (completion or {}).get("choices") or [{}]
    return _row(
        "openai", request, completion, response, usage_from_openai((completion or {}).get("usage")),
        output=canonical.openai_output(completion), stop_reason=choices[0].get("finish_reason"),
        prices=prices, priced=bool(completion and completion.get("usage")), status=status, error=error, task=task,
        endpoint=endpoint, columns=columns, request_json=request_json, response_json=response_json,
    )


def provider_of_model(model: str, prices: PriceTable) -> str:
    """`anthropic` or `openai` for a bare model name (flat imports carry no API shape)."""
    known = prices.lookup(model)
    if known is not None:
        return known.provider
    return "anthropic" if model.startswith("claude") else "openai"


def metadata_json(*parts: dict | None) -> str:
    merged: dict = {}
    for p in parts:
        if p:
            merged.update(p)
    text = json.dumps(merged, sort_keys=True)
    # ASCII-escaped JSON spells credential keys, "sk-", "Bearer", "@" and "://" as they are; any \u escape
    # (a key like "api_\u212aey", whose KELVIN SIGN lower-cases to "k") takes the full strip.
    if "\\u" in text or canonical.has_credentials(text):
        text = json.dumps(canonical.strip_credentials(merged), sort_keys=True)
    return text
