"""Server-sent events of the provider APIs: split a byte stream into events, and
assemble the final message (Anthropic), completion (OpenAI chat) or response (OpenAI
Responses API) from them.

The recorder feeds these a *copy* of what it forwards; nothing here decides what
the job receives, except `OpenAIStream.is_usage_only`, which names the one chunk
the proxy holds back when it asked for usage the job did not (see proxy.py).
Assemblers never raise on odd input: a stream they cannot follow is recorded
as incomplete, never lost.
"""

from __future__ import annotations

import json
import re

from distill_cli.prices import merge_stream_usage

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_json = json.JSONDecoder().decode


class EventSplitter:
    """Bytes cut anywhere -> complete raw events, each with its terminating blank line."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" not in buffer:  # what providers send: LF only
            parts = buffer.split(b"\n\n")
            self._buffer = parts.pop()
            return [p + b"\n\n" for p in parts]
        events = []
        start = 0
        for end in _EVENT_END.finditer(buffer):
            events.append(buffer[start : end.end()])
            start = end.end()
        self._buffer = buffer[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (a cut stream leaves them here)."""
        return self._buffer


def event_data(raw: bytes) -> str | None:
    """The data of one raw event (its data lines joined), None if it has none; the event name is not
    needed: both APIs repeat it inside the data."""
    start = raw.find(b"data:")
    if start < 0:
        return None
    end = raw.find(b"\n", start)
    if end < 0:
        end = len(raw)
    if start == 0 or raw[start - 1] == 10:  # 10 is "\n": the usual single data line
        if raw.find(b"data:", end) < 0 and b"\r" not in raw:
            return raw[start + 5 : end].decode("utf-8", errors="replace")
    data = []
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(data).decode("utf-8", errors="replace") if data else None


def _error_text(error) -> str:
    if isinstance(error, dict):
        return f"{error.get('type') or error.get('code') or 'error'}: {error.get('message', '')}"
    return f"error: {error}"


class AnthropicStream:
    """Messages API stream events -> the message they describe."""

    def __init__(self) -> None:
        self.message: dict | None = None
        self.complete = False  # message_stop seen
        self.error: str | None = None  # an `error` event in the stream
        self._partial_json: dict[int, list[str]] = {}

    def feed(self, raw: bytes) -> None:
        data = event_data(raw)
        if data is None:
            return
        try:
            event = _json(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self.event(event)

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "content_block_delta":  # most events: first
            index = event.get("index", 0)
            content = self.message["content"] if self.message is not None else ()
            if index < len(content) and content[index] is not None:
                self._delta(index, content[index], event.get("delta") or {})
            return
        # Events are freshly parsed JSON owned by this assembler: kept, not copied.
        if kind == "message_start":
            self.message = event.get("message") or {}
            self.message["content"] = []
            return
        if kind == "message_stop":
            self.complete = True
            return
        if kind == "error":
            self.error = _error_text(event.get("error"))
            return
        message = self.message
        if message is None:
            return
        content = message["content"]
        index = event.get("index", 0)
        if kind == "content_block_start":
            while len(content) <= index:
                content.append(None)
            content[index] = event.get("content_block") or {}
        elif kind == "content_block_stop" and index in self._partial_json:
            text = "".join(self._partial_json.pop(index))
            try:
                content[index]["input"] = json.loads(text) if text else {}
            except ValueError:
                content[index]["input"] = text  # kept as sent; the row still shows it
        elif kind == "message_delta":
            for key, value in (event.get("delta") or {}).items():
                message[key] = value
            if event.get("usage"):
                message["usage"] = merge_stream_usage(message.get("usage"), event["usage"])

    def _delta(self, index: int, block: dict, delta: dict) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._partial_json.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def result(self) -> dict | None:
        """The assembled message (with whatever arrived, if the stream was cut)."""
        if self.message is None:
            return None
        content = []
        for index, block in enumerate(self.message["content"]):
            if block is None:
                continue
            if index in self._partial_json:  # tool input cut mid-way: kept as the text that arrived
                block = {**block, "input": "".join(self._partial_json[index])}
            content.append(block)
        return {**self.message, "content": content}


class OpenAIStream:
    """Chat completion chunks -> the chat.completion they describe."""

    def __init__(self) -> None:
        self.base: dict | None = None
        self.choices: dict[int, dict] = {}
        self.usage: dict | None = None
        self.complete = False  # [DONE] seen
        self.error: str | None = None

    def feed(self, raw: bytes) -> dict | None:
        """Take one raw event; returns the parsed chunk (None for [DONE] or a non-JSON event)."""
        data = event_data(raw)
        if data is None:
            return None
        if data.strip() == "[DONE]":
            self.complete = True
            return None
        try:
            chunk = _json(data)
        except ValueError:
            return None
        if isinstance(chunk, dict):
            self.chunk(chunk)
            return chunk
        return None

    @staticmethod
    def is_usage_only(chunk: dict | None) -> bool:
        """The final chunk `stream_options.include_usage` adds: no choices, only usage."""
        return bool(chunk) and not chunk.get("choices") and chunk.get("usage") is not None

    def chunk(self, chunk: dict) -> None:
        if "error" in chunk and "choices" not in chunk:
            self.error = _error_text(chunk["error"])
            return
        if self.base is None:
            self.base = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint", "service_tier")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for delta_choice in chunk.get("choices") or []:
            index = delta_choice.get("index", 0)
            choice = self.choices.setdefault(
                index, {"index": index, "message": {"role": "assistant", "content": None}, "finish_reason": None}
            )
            if delta_choice.get("finish_reason") is not None:
                choice["finish_reason"] = delta_choice["finish_reason"]
            self._delta(choice["message"], delta_choice.get("delta") or {})

    @staticmethod
    def _delta(message: dict, delta: dict) -> None:
        if delta.get("role"):
            message["role"] = delta["role"]
        for key in ("content", "refusal"):
            if delta.get(key) is not None:
                message[key] = (message.get(key) or "") + delta[key]
        for call_delta in delta.get("tool_calls") or []:
            calls = message.setdefault("tool_calls", [])
            index = call_delta.get("index", len(calls))
            while len(calls) <= index:
                calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            call = calls[index]
            if call_delta.get("id"):
                call["id"] = call_delta["id"]
            if call_delta.get("type"):
                call["type"] = call_delta["type"]
            fn = call_delta.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""

    def result(self) -> dict | None:
        if self.base is None:
            return None
        return {
            **self.base,
            "object": "chat.completion",
            "choices": [self.choices[i] for i in sorted(self.choices)],
            "usage": self.usage,
        }


class ResponsesStream:
    """Responses API stream events -> the `response` object they describe.

    The terminal event (`response.completed`, or `response.incomplete` / `response.failed`)
    carries the whole response, usage included: that is the result. A stream cut before
    it gives the last `response` snapshot seen (`response.created` / `in_progress`) with
    the output items that were done by then, and the text of those still under way.
    """

    TERMINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self) -> None:
        self.response: dict | None = None
        self.items: dict[int, dict] = {}  # output_index -> item (done, or as far as it got)
        self.complete = False  # a terminal event seen
        self.error: str | None = None  # an `error` event in the stream

    def feed(self, raw: bytes) -> dict | None:
        data = event_data(raw)
        if data is None:
            return None
        try:
            event = _json(data)
        except ValueError:
            return None
        if isinstance(event, dict):
            self.event(event)
            return event
        return None

    @staticmethod
    def is_usage_only(event: dict | None) -> bool:
        return False  # a Responses stream always reports usage: the proxy adds nothing to hide

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta":  # most events: first
            item = self.items.get(event.get("output_index"))
            content = item.get("content") if isinstance(item, dict) else None
            index = event.get("content_index", 0)
            if isinstance(content, list) and isinstance(index, int) and 0 <= index < len(content):
                part = content[index]
                if isinstance(part, dict):
                    part["text"] = part.get("text", "") + (event.get("delta") or "")
            return
        if kind in ("response.created", "response.in_progress", "response.queued") or kind in self.TERMINAL:
            if isinstance(event.get("response"), dict):
                self.response = event["response"]
            if kind in self.TERMINAL:
                self.complete = True
            return
        if kind == "error":
            error = event.get("error")  # the Responses API puts code and message on the event itself
            self.error = _error_text(error if isinstance(error, dict) else {"code": event.get("code"),
                                                                            "message": event.get("message", "")})
            return
        index = event.get("output_index")
        if not isinstance(index, int):
            return
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(event.get("item"), dict):
            self.items[index] = event["item"]
        elif kind == "response.content_part.added" and isinstance(event.get("part"), dict):
            item = self.items.get(index)
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                item["content"].append(event["part"])
        elif kind == "response.function_call_arguments.delta":
            item = self.items.get(index)
            if isinstance(item, dict):
                item["arguments"] = (item.get("arguments") or "") + (event.get("delta") or "")

    def result(self) -> dict | None:
        if self.response is None:
            return None
        if self.complete or self.response.get("output") or not self.items:
            return self.response
        return {**self.response, "output": [self.items[i] for i in sorted(self.items)]}
