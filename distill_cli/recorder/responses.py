"""Provider responses the proxy writes itself: a student's answer, or a recorded answer replayed.

A job's SDK must not tell them from the provider's own: an Anthropic `message` or
an OpenAI `chat.completion` as JSON, or, when the job asked for a stream, the
event sequence the provider would send (message_start ... message_stop; chunks
... [DONE], with the usage chunk only when `stream_options.include_usage` asked
for it). A whole stream goes out as one body: the answer exists before the first
byte is written, so there is nothing to trickle.

A student's answer is the canonical output text (calls.py): assistant text, and
tool calls as one `{"tool": name, "input": {...}}` JSON line each. Lines naming a
tool the request offers become tool calls again; everything else is text.

Nothing here touches the network or a file.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from distill_cli.store import new_id
from distill_cli.students.base import Answer

SSE_HEADERS = {"Cache-Control": "no-cache"}


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---- the answer as text and tool calls ---------------------------------------------------------------------------


def _tool_names(request: dict) -> set[str]:
    names = set()
    for tool in request.get("tools") or []:
        if isinstance(tool, dict):
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if name:
                names.add(name)
    return names


def split_output(request: dict, output: str) -> tuple[str, list[tuple[str, dict]]]:
    """(text, [(tool name, input), ...]) of a canonical output: trailing lines that are calls of the request's tools."""
    names = _tool_names(request)
    if not names:
        return output, []
    lines = output.split("\n")
    calls: list[tuple[str, dict]] = []
    while lines:
        try:
            obj = json.loads(lines[-1])
        except ValueError:
            break
        if not (isinstance(obj, dict) and set(obj) == {"tool", "input"} and obj["tool"] in names and isinstance(obj["input"], dict)):
            break
        calls.insert(0, (obj["tool"], obj["input"]))
        lines.pop()
    return "\n".join(lines), calls


# ---- Anthropic Messages ------------------------------------------------------------------------------------------


def anthropic_message(request: dict, answer: Answer, model: str) -> dict:
    """The `message` a student's answer makes, with the student's own token counts (0 for a local student)."""
    text, calls = split_output(request, answer.output or "")
    content: list[dict] = [{"type": "text", "text": text}] if text or not calls else []
    content += [{"type": "tool_use", "id": f"toolu_{new_id()}", "name": name, "input": args} for name, args in calls]
    return {
        "id": f"msg_{new_id()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": answer.input_tokens,
            "cache_creation_input_tokens": answer.cache_write_5m_tokens,
            "cache_read_input_tokens": answer.cache_read_tokens,
            "output_tokens": answer.output_tokens,
        },
    }


def _anthropic_block_events(index: int, block: dict) -> list[dict]:
    kind = block.get("type")
    if kind == "text":
        start, deltas = {**block, "text": ""}, [{"type": "text_delta", "text": block.get("text", "")}]
        start.pop("citations", None)
        deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
    elif kind in ("tool_use", "server_tool_use"):
        start, deltas = {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": _json(block.get("input", {}))}]
    elif kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")},
                  {"type": "signature_delta", "signature": block.get("signature", "")}]
    else:  # redacted thinking, tool results of server tools: whole in their start event
        start, deltas = block, []
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def anthropic_events(message: dict) -> bytes:
    """The Messages API event stream of a whole message."""
    usage = dict(message.get("usage") or {})
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 0}}
    events = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message.get("content") or []):
        events += _anthropic_block_events(index, block)
    events.append({
        "type": "message_delta",
        "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
        "usage": usage,
    })
    events.append({"type": "message_stop"})
    return b"".join(f"event: {e['type']}\ndata: {_json(e)}\n\n".encode() for e in events)


# ---- OpenAI chat completions -------------------------------------------------------------------------------------


def openai_completion(request: dict, answer: Answer, model: str) -> dict:
    """The `chat.completion` a student's answer makes."""
    text, calls = split_output(request, answer.output or "")
    message: dict = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{new_id()}", "type": "function", "function": {"name": name, "arguments": _json(args)}}
            for name, args in calls
        ]
    prompt = answer.input_tokens + answer.cache_read_tokens + answer.cache_write_5m_tokens
    return {
        "id": f"chatcmpl-{new_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": answer.output_tokens,
            "total_tokens": prompt + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": answer.cache_read_tokens},
        },
    }


def _openai_choice_deltas(choice: dict) -> list[dict]:
    message = choice.get("message") or {}
    deltas = [{"role": message.get("role", "assistant"), "content": "", "refusal": None}]
    if message.get("content"):
        deltas.append({"content": message["content"]})
    if message.get("refusal"):
        deltas.append({"refusal": message["refusal"]})
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        deltas.append({"tool_calls": [{"index": i, "id": call.get("id"), "type": call.get("type", "function"),
                                       "function": {"name": fn.get("name"), "arguments": fn.get("arguments", "")}}]})
    return deltas


def openai_chunks(completion: dict, include_usage: bool) -> bytes:
    """The chat completion chunk stream of a whole completion; the usage chunk only if the job asked for it."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint", "service_tier") if k in completion}
    base["object"] = "chat.completion.chunk"

    def chunk(choices: list, **extra) -> str:
        data = {**base, "choices": choices, **extra}
        if include_usage and "usage" not in extra:
            data["usage"] = None
        return f"data: {_json(data)}\n\n"

    out = []
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        for delta in _openai_choice_deltas(choice):
            out.append(chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]))
        out.append(chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")}]))
    if include_usage:
        out.append(chunk([], usage=completion.get("usage")))
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


# ---- the HTTP response -------------------------------------------------------------------------------------------


def wants_usage_chunk(request: dict) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def response_for(provider: str, request: dict, body: dict) -> web.Response:
    """`body` (a message or completion) as the job asked for it: JSON, or the provider's event stream."""
    if not request.get("stream"):
        return web.Response(text=_json(body), content_type="application/json")
    events = anthropic_events(body) if provider == "anthropic" else openai_chunks(body, wants_usage_chunk(request))
    return web.Response(body=events, content_type="text/event-stream", charset="utf-8", headers=SSE_HEADERS)
