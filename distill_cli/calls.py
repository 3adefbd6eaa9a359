"""One provider call -> one examples/1 row, for every way a call reaches distill.

The importer and the recording proxy both build rows here, so a call recorded live
and the same call imported from a log give the same row (bar `source`, `ts`, ids).
"""

from __future__ import annotations

import dataclasses
import json

from distill_cli import canonical
from distill_cli.prices import (
    USAGE_FIELDS,
    PriceTable,
    Usage,
    modifiers_of,
    usage_from_anthropic,
    usage_from_openai,
    usage_from_responses,
)

# The metadata key that says why a row's token counts are null: the answer itself was fine, so `error` stays
# empty (the row still teaches and judges), but its counts were no token counts and it has no cost.
USAGE_ERROR_KEY = "usage_error"
# The metadata key that says why a row has no cost although its model and counts are known: the response carries a
# price modifier (fast mode, a data-residency geography, a service tier) whose rate distill has not verified.
PRICE_UNVERIFIED_KEY = "price_unverified"


def usage_error(row: dict) -> str | None:
    """Why a row made here has null counts (`USAGE_ERROR_KEY` in its metadata), or None."""
    if not any(row.get(c) is None for c in USAGE_FIELDS):
        return None
    try:
        return json.loads(row.get("metadata") or "{}").get(USAGE_ERROR_KEY)
    except (ValueError, AttributeError):
        return None


def _with_tags(metadata: str | None, added: dict) -> str:
    """The row's metadata JSON with `added` keys."""
    try:
        tags = json.loads(metadata) if metadata else {}
    except ValueError:
        tags = {}
    return metadata_json(tags if isinstance(tags, dict) else {}, added)


def _with_usage_error(metadata: str | None, problem: str) -> str:
    """The row's metadata JSON with the reason its counts are null added."""
    return _with_tags(metadata, {USAGE_ERROR_KEY: problem})


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


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _read_answer(read, answer: dict | None) -> tuple[str | None, str | None, str | None]:
    """(output, stop reason, None) of an answer, or (None, None, why) when its shape cannot be read."""
    if answer is None:
        return None, None, None
    try:
        output, stop_reason = read(answer)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError) as e:
        return None, None, canonical.mask_secrets(f"unreadable answer: {type(e).__name__}: {e}")[:300]
    return _text(output), _text(stop_reason), None


def _anthropic_answer(message: dict) -> tuple:
    return canonical.anthropic_output(message), message.get("stop_reason")


def _openai_answer(completion: dict) -> tuple:
    choices = completion.get("choices") or [{}]
    return canonical.openai_output(completion), choices[0].get("finish_reason")


def _responses_answer(response: dict) -> tuple:
    incomplete = response.get("incomplete_details")
    reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
    return canonical.responses_output(response), reason or response.get("status")


def _from_request(read, request: dict, default):
    """A column worked out from the job's request; `default` for a request of a shape upstream will refuse anyway."""
    try:
        return read(request)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError):
        return default


def _row(provider: str, request: dict, answer: dict | None, response: dict | None, usage: Usage, *, read,
         prices: PriceTable, priced: bool, status: int, error: str | None, task: str | None,
         endpoint: str, columns: dict, request_json: str, response_json: str | None,
         shape: str | None = None, service_tier: str | None = None) -> dict:
    """The columns every provider's row has, from what that provider's body gave.

    `shape` is the request's API when the provider has several (`responses`); the provider's own by default.
    `service_tier` is the tier the call was billed at when the answer does not say it (a batch request's result).
    """
    shape = shape or provider
    output, stop_reason, unreadable = _read_answer(read, answer)
    model = _text((answer or {}).get("model")) or _text(request.get("model"))
    if usage.problem is not None:
        columns = {**columns, "metadata": _with_usage_error(columns.get("metadata"), usage.problem)}
    # None when a count is unknown, the model has no price, or a price modifier's rate is not verified (then
    # the metadata says which); the price in force on the call's own day.
    cost = None
    if priced and model:
        modifiers = modifiers_of(provider, answer)
        if service_tier is not None:
            modifiers = dataclasses.replace(modifiers, service_tier=service_tier)
        cost, unverified = prices.priced(model, usage, at=columns.get("ts"), modifiers=modifiers)
        tags = modifiers.tags()
        if unverified is not None:
            tags[PRICE_UNVERIFIED_KEY] = unverified
        if tags:
            columns = {**columns, "metadata": _with_tags(columns.get("metadata"), tags)}
    error = error or _error_text(response) or unreadable
    if error is None and status == 200 and answer is None:  # an OK status is no answer by itself
        kind = {"openai": "chat completion", "responses": "response"}.get(shape, "message")
        error = f"unreadable answer: {'no body' if response is None else f'a JSON object that is no {kind}'}"
    read_input = {"openai": canonical.openai_input, "responses": canonical.responses_input}.get(
        shape, canonical.anthropic_input)
    return {
        "task": task or _from_request(lambda r: canonical.task_fingerprint(r, shape), request, "task"),
        "provider": provider,
        "endpoint": endpoint,
        "model": model,
        "served_by": "teacher",
        "input": _from_request(read_input, request, None),
        "output": output,
        "request_json": request_json,
        "response_json": response_json,
        "status": status,
        "error": error,
        "stream": bool(request.get("stream")),
        "stop_reason": stop_reason,
        **usage.columns(),
        "cost_usd": cost,
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
    service_tier: str | None = None,
    **columns,
) -> dict:
    """A row for a Messages API call; `response` is the final (or assembled) message, None if there was none.
    `service_tier`: the tier it was billed at (`batch` for a Message Batches result), over the message's own."""
    request, request_json = _clean(request)
    response, response_json = _clean(response)
    message = response if response and response.get("type") == "message" else None
    return _row(
        "anthropic", request, message, response, usage_from_anthropic((message or {}).get("usage")),
        read=_anthropic_answer, prices=prices, priced=message is not None, status=status, error=error, task=task,
        endpoint=endpoint, columns=columns, request_json=request_json, response_json=response_json,
        service_tier=service_tier,
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
    service_tier: str | None = None,
    **columns,
) -> dict:
    """A row for a chat completions call; `response` is the final (or assembled) completion."""
    request, request_json = _clean(request)
    response, response_json = _clean(response)
    completion = response if response and response.get("choices") is not None else None
    return _row(
        "openai", request, completion, response, usage_from_openai((completion or {}).get("usage")),
        read=_openai_answer, prices=prices, priced=bool(completion and completion.get("usage")), status=status,
        error=error, task=task, endpoint=endpoint, columns=columns, request_json=request_json,
        response_json=response_json, service_tier=service_tier,
    )


def responses_row(
    request: dict,
    response: dict | None,
    *,
    prices: PriceTable,
    status: int = 200,
    error: str | None = None,
    task: str | None = None,
    endpoint: str = "/v1/responses",
    service_tier: str | None = None,
    **columns,
) -> dict:
    """A row for a Responses API call; `response` is the final `response` object (of a stream: the one its
    `response.completed` event carries). Priced like a chat completion: cached input at the cache-read rate,
    reasoning tokens as output."""
    request, request_json = _clean(request)
    response, response_json = _clean(response)
    answer = response if response and response.get("object") == "response" else None
    return _row(
        "openai", request, answer, response, usage_from_responses((answer or {}).get("usage")),
        read=_responses_answer, prices=prices, priced=bool(answer and answer.get("usage")), status=status,
        error=error, task=task, endpoint=endpoint, columns=columns, request_json=request_json,
        response_json=response_json, shape="responses", service_tier=service_tier,
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
