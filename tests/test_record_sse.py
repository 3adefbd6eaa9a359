"""Stream assembly: events split anywhere, Anthropic messages and OpenAI completions rebuilt, odd input survived."""

from __future__ import annotations

import json

import pytest

from distill_cli.recorder.providers import anthropic_api, openai_api
from distill_cli.recorder.sse import AnthropicStream, EventSplitter, OpenAIStream, event_data


def ev(data: dict, named: bool = True) -> bytes:
    head = f"event: {data['type']}\n" if named else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


ANTHROPIC = [
    ev({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                             "content": [], "stop_reason": None,
                                             "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
    ev({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ev({"type": "ping"}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "let me "}}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see"}}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
    ev({"type": "content_block_stop", "index": 0}),
    ev({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Héllo "}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "world"}}),
    ev({"type": "content_block_stop", "index": 1}),
    ev({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
    ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a": '}}),
    ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '[1, 2]}'}}),
    ev({"type": "content_block_stop", "index": 2}),
    ev({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 42, "cache_read_input_tokens": 5}}),
    ev({"type": "message_stop"}),
]


def assemble_anthropic(stream: bytes, cut_into: int) -> AnthropicStream:
    splitter, assembler = EventSplitter(), AnthropicStream()
    for i in range(0, len(stream), cut_into):
        for raw in splitter.feed(stream[i : i + cut_into]):
            assembler.feed(raw)
    assert splitter.pending == b""
    return assembler


@pytest.mark.parametrize("cut_into", [1, 7, 64, 10_000])
def test_anthropic_message_from_events_cut_anywhere(cut_into):
    a = assemble_anthropic(b"".join(ANTHROPIC), cut_into)
    assert a.complete and a.error is None
    assert a.result() == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
        "stop_sequence": None,
        "content": [
            {"type": "thinking", "thinking": "let me see", "signature": "sig=="},
            {"type": "text", "text": "Héllo world"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
        ],
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 42},  # message_delta is cumulative
    }


def test_crlf_and_multiline_data_events():
    raw = b"event: message_start\r\ndata: {\"type\": \"message_start\",\r\ndata:  \"message\": {\"content\": []}}\r\n\r\n"
    splitter = EventSplitter()
    events = splitter.feed(raw[:20]) + splitter.feed(raw[20:])
    assert events == [raw]
    assert json.loads(event_data(events[0])) == {"type": "message_start", "message": {"content": []}}
    assert event_data(b": keep-alive comment\n\n") is None


def test_cut_stream_keeps_what_arrived():
    a = assemble_anthropic(b"".join(ANTHROPIC[:13]), 5)  # cut inside the tool input
    assert not a.complete
    message = a.result()
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][2]["input"] == '{"a": '  # the partial JSON, as text
    assert message["stop_reason"] is None and message["usage"]["output_tokens"] == 1


def test_error_event_and_garbage_are_survived():
    a = AnthropicStream()
    for raw in [b"data: not json\n\n", b"data: [1, 2]\n\n", ev({"type": "content_block_delta", "index": 3}), ANTHROPIC[0],
                ev({"type": "content_block_delta", "index": 9, "delta": {"type": "text_delta", "text": "x"}}),
                ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]:
        a.feed(raw)
    assert a.error == "overloaded_error: Overloaded" and not a.complete
    assert a.result()["content"] == []


def chunk(choices, usage=None, **extra) -> bytes:
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x", "choices": choices, **extra}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


def test_openai_completion_with_tool_calls_and_usage():
    o = OpenAIStream()
    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        chunk([{"index": 0, "delta": {"content": "Let me look."}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                      "function": {"name": "lookup", "arguments": ""}}]}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        chunk([], usage={"prompt_tokens": 9, "completion_tokens": 4}),
        b"data: [DONE]\n\n",
    ]
    parsed = [o.feed(e) for e in events]
    assert [OpenAIStream.is_usage_only(p) for p in parsed] == [False] * 6 + [True, False]
    assert o.complete and o.error is None
    assert o.result() == {
        "id": "chatcmpl-1", "created": 1, "model": "gpt-x", "system_fingerprint": None, "service_tier": None,
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }


def test_openai_error_chunk():
    o = OpenAIStream()
    o.feed(b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n')
    assert o.error == "server_error: boom" and o.result() is None


def test_added_usage_is_removed_exactly():
    api = openai_api()
    with_usage = chunk([{"index": 0, "delta": {"content": 'say "usage":null}'}}], usage=None, x=1).replace(
        b',"x":1}', b',"x":1,"usage":null}'
    )
    assert api.without_added_usage(with_usage) == chunk([{"index": 0, "delta": {"content": 'say "usage":null}'}}], x=1)
    spaced = b'data: {"choices": [], "usage": null }\n\n'
    assert api.without_added_usage(spaced) == b'data: {"choices": [] }\n\n'


def test_prepare_adds_include_usage_only_when_needed():
    api = openai_api()
    plain = {"model": "m", "messages": [], "stream": True}
    body, added = api.prepare(plain, b"orig")
    assert added and json.loads(body)["stream_options"] == {"include_usage": True}
    asked = {**plain, "stream_options": {"include_usage": True}}
    assert api.prepare(asked, b"orig") == (b"orig", False)
    off = {**plain, "stream_options": {"include_usage": False, "other": 1}}
    assert json.loads(api.prepare(off, b"orig")[0])["stream_options"] == {"include_usage": True, "other": 1}
    assert api.prepare({**plain, "stream": False}, b"orig") == (b"orig", False)
    assert anthropic_api().prepare(plain, b"orig") == (b"orig", False)


def test_upstream_urls_follow_the_sdk_base_url_conventions():
    assert anthropic_api().upstream_url("/v1/messages") == "https://api.anthropic.com/v1/messages"
    assert anthropic_api("https://gw.example/anthropic/").upstream_url("/v1/messages", "beta=true") == (
        "https://gw.example/anthropic/v1/messages?beta=true"
    )
    assert openai_api().upstream_url("/v1/chat/completions") == "https://api.openai.com/v1/chat/completions"
    assert openai_api("http://localhost:8000/v1").upstream_url("/v1/models") == "http://localhost:8000/v1/models"
