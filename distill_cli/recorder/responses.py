"""Provider responses the proxy writes itself: a student's answer, or a recorded answer replayed.

A job's SDK must not tell them from the provider's own: an Anthropic `message`,
an OpenAI `chat.completion` or Responses API `response` as JSON, or, when the job
asked for a stream, the event sequence the provider would send (message_start ...
message_stop; chunks ... [DONE], with the usage chunk only when
`stream_options.include_usage` asked for it; response.created ...
response.completed). A whole stream goes out as one body: the answer exists before the first
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


# ---- OpenAI Responses API ----------------------------------------------------------------------------------------

# Request parameters a `response` object echoes back, with the value the API reports when the request left one out.
_ECHOED = {
    "instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
    "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
    "top_p": 1.0, "truncation": "disabled", "user": None,
}


def responses_object(request: dict, answer: Answer, model: str) -> dict:
    """The `response` object a student's answer makes: a message item with its text, a function_call item per
    tool call, the request's parameters echoed as the API echoes them."""
    text, calls = split_output(request, answer.output or "")
    output: list[dict] = []
    if text or not calls:
        output.append({"id": f"msg_{new_id()}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    output += [{"id": f"fc_{new_id()}", "type": "function_call", "status": "completed", "call_id": f"call_{new_id()}",
                "name": name, "arguments": _json(args)} for name, args in calls]
    prompt = answer.input_tokens + answer.cache_read_tokens + answer.cache_write_5m_tokens
    return {
        "id": f"resp_{new_id()}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        **{key: request.get(key, default) if request.get(key) is not None else default for key, default in _ECHOED.items()},
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": answer.cache_read_tokens},
            "output_tokens": answer.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + answer.output_tokens,
        },
    }


def _responses_item_events(index: int, item: dict) -> list[dict]:
    kind = item.get("type")
    where = {"item_id": item.get("id"), "output_index": index}
    if kind == "message":
        events = [{"type": "response.output_item.added", "output_index": index,
                   "item": {**item, "status": "in_progress", "content": []}}]
        for c, part in enumerate(item.get("content") or []):
            at = {**where, "content_index": c}
            if part.get("type") == "output_text":
                text = part.get("text", "")
                events += [
                    {"type": "response.content_part.added", **at, "part": {**part, "text": "", "annotations": []}},
                    {"type": "response.output_text.delta", **at, "delta": text, "logprobs": []},
                    {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
                ]
            else:  # a refusal: whole in its start event
                events.append({"type": "response.content_part.added", **at, "part": part})
            events.append({"type": "response.content_part.done", **at, "part": part})
    elif kind == "function_call":
        arguments = item.get("arguments", "")
        events = [
            {"type": "response.output_item.added", "output_index": index,
             "item": {**item, "status": "in_progress", "arguments": ""}},
            {"type": "response.function_call_arguments.delta", **where, "delta": arguments},
            {"type": "response.function_call_arguments.done", **where, "name": item.get("name"), "arguments": arguments},
        ]
    else:  # reasoning, built-in tool calls: whole in both events
        events = [{"type": "response.output_item.added", "output_index": index, "item": item}]
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


_TERMINAL = {"incomplete": "response.incomplete", "failed": "response.failed"}


def responses_events(response: dict) -> bytes:
    """The Responses API event stream of a whole `response`: created, in_progress, each output item's events,
    then the terminal event carrying the response (`response.completed` unless it says otherwise)."""
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    events = [{"type": "response.created", "response": start}, {"type": "response.in_progress", "response": start}]
    for index, item in enumerate(response.get("output") or []):
        events += _responses_item_events(index, item)
    events.append({"type": _TERMINAL.get(response.get("status"), "response.completed"), "response": response})
    return b"".join(
        f"event: {e['type']}\ndata: {_json({**e, 'sequence_number': n})}\n\n".encode() for n, e in enumerate(events)
    )


# ---- the HTTP response -------------------------------------------------------------------------------------------


def wants_usage_chunk(request: dict) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def response_for(shape: str, request: dict, body: dict) -> web.Response:
    """`body` (a message, completion or response) as the job asked for it: JSON, or the API's event stream.
    `shape` is the API's (`ProviderAPI.shape`): `anthropic`, `openai` (chat completions) or `responses`."""
    if not request.get("stream"):
        return web.Response(text=_json(body), content_type="application/json")
    if shape == "anthropic":
        events = anthropic_events(body)
    elif shape == "responses":
        events = responses_events(body)
    else:
        events = openai_chunks(body, wants_usage_chunk(request))
    return web.Response(body=events, content_type="text/event-stream", charset="utf-8", headers=SSE_HEADERS)
