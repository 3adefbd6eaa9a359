"""The fake provider, driven directly by the real anthropic and openai SDKs."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request

import anthropic
import httpx2
import openai
import pytest
from fake_provider import FakeProvider, count_words

MODEL = "claude-haiku-4-5"
USER = [{"role": "user", "content": "what is the capital of France"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def fake():
    with FakeProvider() as f:
        yield f


def ant(fake: FakeProvider, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake.url, api_key="sk-ant-test-fake", max_retries=kw.pop("max_retries", 0), **kw
    )


def oai(fake: FakeProvider, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test-fake", max_retries=kw.pop("max_retries", 0), **kw)


def raw(fake: FakeProvider, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    """(status, headers, body bytes) of a plain urllib request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# ---------------------------------------------------------------------- Anthropic


def test_anthropic_json_message(fake):
    msg = ant(fake).messages.create(model=MODEL, max_tokens=100, system="be brief", messages=USER)
    assert msg.id.startswith("msg_")
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: what is the capital of France"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens == 2 + 6  # words of system + messages
    assert msg.usage.output_tokens == 7
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert msg._request_id and msg._request_id.startswith("req_")

    (rec,) = fake.requests
    assert rec.method == "POST" and rec.path == "/v1/messages" and rec.provider == "anthropic"
    # anthropic 2.x sends the api key as a bearer token (1.x used x-api-key); the fake accepts both
    assert "sk-ant-test-fake" in (rec.header("x-api-key") or rec.header("authorization") or "")
    assert rec.header("Anthropic-Version")
    assert rec.json["messages"] == USER and rec.json["system"] == "be brief"


def test_anthropic_deterministic_and_responder(fake):
    first = ant(fake).messages.create(model=MODEL, max_tokens=100, messages=USER)
    second = ant(fake).messages.create(model=MODEL, max_tokens=100, messages=USER)
    assert first.content == second.content and first.usage == second.usage
    assert first.id != second.id

    seen = []

    def responder(req, provider):
        seen.append(provider)
        return "Paris."

    fake.responder = responder
    msg = ant(fake).messages.create(model=MODEL, max_tokens=100, messages=USER)
    assert msg.content[0].text == "Paris." and seen == ["anthropic"]


def test_anthropic_stream_helper_matches_json(fake):
    client = ant(fake)
    plain = client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == plain.content[0].text
    assert final.content[0].text == plain.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_anthropic_raw_stream_events(fake):
    events = list(ant(fake).messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 7
    start = events[0].message
    assert start.usage.output_tokens == 1 and start.usage.input_tokens == 6 and start.content == []
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 7
    # ping is on the wire (the SDK drops it)
    body = fake.requests[-1]
    assert body.json["stream"] is True


def test_anthropic_tool_use_json_and_stream(fake):
    fake.responder = lambda req, provider: {"tool": "get_weather", "input": {"city": "Paris", "days": 3}}
    client = ant(fake)
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=USER, tools=[WEATHER_TOOL])
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.name == "get_weather"
    assert block.input == {"city": "Paris", "days": 3}

    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER, tools=[WEATHER_TOOL]) as stream:
        partial = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert len(partial) > 2
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Paris", "days": 3}
    assert final.usage.output_tokens == msg.usage.output_tokens


def test_anthropic_forced_tool_choice(fake):
    msg = ant(fake).messages.create(
        model=MODEL,
        max_tokens=100,
        messages=USER,
        tools=[{"name": "noop", "input_schema": {"type": "object"}}, WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert set(block.input) == {"city", "days"} and block.input["days"] == 1
    assert msg.stop_reason == "tool_use"


def test_anthropic_thinking_json_and_stream(fake):
    client = ant(fake)
    kw = dict(model=MODEL, max_tokens=2000, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024})
    msg = client.messages.create(**kw)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking and msg.content[0].signature

    with client.messages.stream(**kw) as stream:
        kinds = {e.type for e in stream}
        final = stream.get_final_message()
    assert {"thinking", "signature", "text"} <= kinds
    assert final.content[0].thinking == msg.content[0].thinking
    assert final.content[0].signature == msg.content[0].signature
    assert final.content[1].text == msg.content[1].text
    assert final.usage.output_tokens == msg.usage.output_tokens

    adaptive = client.messages.create(model=MODEL, max_tokens=2000, messages=USER, thinking={"type": "adaptive"})
    assert adaptive.content[0].type == "thinking"


def test_anthropic_async_json_and_stream(fake):
    async def main():
        client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test-fake", max_retries=0)
        msgs = await asyncio.gather(
            *[client.messages.create(model=MODEL, max_tokens=50, messages=USER) for _ in range(5)]
        )
        async with client.messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        await client.close()
        return msgs, text, final

    msgs, text, final = asyncio.run(main())
    assert {m.content[0].text for m in msgs} == {text} == {final.content[0].text}
    assert len({m.id for m in msgs}) == 5
    assert len(fake.requests) == 6


def test_anthropic_prompt_cache_usage(fake):
    system = [{"type": "text", "text": "you are a careful assistant " * 10, "cache_control": {"type": "ephemeral"}}]
    client = ant(fake)
    first = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=USER)
    assert first.usage.cache_creation_input_tokens == 50
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 50
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == 6

    with client.messages.stream(model=MODEL, max_tokens=50, system=system, messages=USER) as stream:
        second = stream.get_final_message()
    assert second.usage.cache_read_input_tokens == 50
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == 6

    # a longer prefix with a 1h breakpoint: reads the cached system, creates the rest
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one two three", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "four five"},
    ]
    third = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
    assert third.usage.cache_read_input_tokens == 50
    assert third.usage.cache_creation_input_tokens == 3
    assert third.usage.cache_creation.ephemeral_1h_input_tokens == 3
    assert third.usage.input_tokens == 3
    # no cache_control anywhere: nothing cached
    plain = client.messages.create(model=MODEL, max_tokens=50, system="x " * 50, messages=USER)
    assert plain.usage.cache_read_input_tokens == 0 and plain.usage.input_tokens == 56


def test_anthropic_max_tokens_truncates(fake):
    msg = ant(fake).messages.create(model=MODEL, max_tokens=3, messages=USER)
    assert msg.content[0].text == "echo: what is" and msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 3


def test_anthropic_count_tokens_and_models(fake):
    client = ant(fake)
    assert client.messages.count_tokens(model=MODEL, messages=USER, system="be brief").input_tokens == 8
    models = list(client.models.list())
    assert MODEL in [m.id for m in models] and all(m.type == "model" for m in models)
    assert client.models.retrieve(MODEL).display_name == "Claude Haiku 4.5"


def test_large_image_body_accepted(fake):
    data = base64.b64encode(b"\x89PNG" + b"\0" * (3 * 1024 * 1024)).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "describe this"},
    ]
    msg = ant(fake).messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}])
    assert msg.content[0].text == "echo: describe this" and msg.usage.input_tokens == 2
    assert len(fake.requests[-1].body) > 4_000_000
    assert fake.requests[-1].json["messages"][0]["content"][0]["source"]["data"] == data


# ---------------------------------------------------------------------- OpenAI


def test_openai_json(fake):
    resp = oai(fake).chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    )
    assert resp.id.startswith("chatcmpl-") and resp.object == "chat.completion" and resp.model == "gpt-4o"
    choice = resp.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello there"
    assert resp.usage.prompt_tokens == 4 and resp.usage.completion_tokens == 3 and resp.usage.total_tokens == 7
    assert resp.usage.prompt_tokens_details.cached_tokens == 0
    rec = fake.requests[-1]
    assert rec.path == "/v1/chat/completions" and rec.provider == "openai"
    assert rec.headers["authorization"] == "Bearer sk-test-fake"


def test_openai_stream_without_usage(fake):
    chunks = list(
        oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b c"}], stream=True)
    )
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices for c in chunks)  # no usage chunk unless asked


def test_openai_stream_with_usage(fake):
    chunks = list(
        oai(fake).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage.prompt_tokens == 3 and last.usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_tool_calls_json_and_stream_helper(fake):
    fake.responder = lambda req, provider: {"tool": "get_weather", "input": {"city": "Paris"}}
    client = oai(fake)
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=[OPENAI_TOOL])
    resp = client.chat.completions.create(**kw)
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    with client.chat.completions.stream(**kw) as stream:
        final = stream.get_final_completion()
    (scall,) = final.choices[0].message.tool_calls
    assert json.loads(scall.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"

    fake.responder = None
    forced = client.chat.completions.create(**kw, tool_choice="required")
    assert json.loads(forced.choices[0].message.tool_calls[0].function.arguments) == {"city": "echo: weather?"}


def test_openai_models(fake):
    ids = [m.id for m in oai(fake).models.list()]
    assert "gpt-4o" in ids


# ---------------------------------------------------------------------- failures


def test_fail_next_rate_limit_no_retries(fake):
    fake.fail_next(429, retry_after="0")
    with pytest.raises(anthropic.RateLimitError) as info:
        ant(fake).messages.create(model=MODEL, max_tokens=50, messages=USER)
    err = info.value
    assert err.status_code == 429 and err.response.headers["retry-after"] == "0"
    assert err.body["type"] == "error" and err.body["error"]["type"] == "rate_limit_error"
    assert err.request_id and err.request_id.startswith("req_")
    assert len(fake.requests) == 1
    # the failure was used up
    assert ant(fake).messages.create(model=MODEL, max_tokens=50, messages=USER).content


def test_fail_next_retries_succeed(fake):
    fake.fail_next(429, n=2, retry_after="0.01")
    msg = ant(fake, max_retries=2).messages.create(model=MODEL, max_tokens=50, messages=USER)
    assert msg.content[0].text.startswith("echo:")
    assert len(fake.requests) == 3
    assert [r.headers.get("x-stainless-retry-count") for r in fake.requests] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (400, anthropic.BadRequestError, "invalid_request_error"),
    ],
)
def test_fail_next_anthropic_shapes(fake, status, exc, kind):
    fake.fail_next(status)
    with pytest.raises(exc) as info:
        ant(fake).messages.create(model=MODEL, max_tokens=50, messages=USER)
    assert info.value.body["error"]["type"] == kind


def test_fail_next_openai_shape_and_path_prefix(fake):
    fake.fail_next(429, path_prefix="/v1/chat", body=None)
    # an Anthropic call does not consume the OpenAI-only failure
    assert ant(fake).messages.create(model=MODEL, max_tokens=50, messages=USER).content
    with pytest.raises(openai.RateLimitError) as info:
        oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert info.value.code == "rate_limit_exceeded"
    assert oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices

    fake.fail_next(503, body={"error": {"message": "custom", "type": "server_error", "param": None, "code": None}})
    with pytest.raises(openai.InternalServerError) as info:
        oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["message"] == "custom"


def test_control_headers(fake):
    client = ant(fake)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL, max_tokens=50, messages=USER, extra_headers={"x-fake-status": "429", "x-fake-retry-after": "2"}
        )
    assert info.value.response.headers["retry-after"] == "2"

    t0 = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=50, messages=USER, extra_headers={"x-fake-delay-ms": "200"})
    assert time.monotonic() - t0 >= 0.2

    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        with client.messages.stream(
            model=MODEL, max_tokens=50, messages=USER, extra_headers={"x-fake-cut-after": "4"}
        ) as stream:
            stream.get_final_message()


def test_delay_attribute(fake):
    fake.delay = 0.15
    t0 = time.monotonic()
    oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 >= 0.15


def test_cut_stream_raises_then_recovers(fake):
    client = ant(fake)
    fake.cut_next(3)
    seen = []
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        with client.messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
            for event in stream:
                seen.append(event.type)
    assert seen == ["message_start", "content_block_start"]  # + the ping the SDK hides
    # only the next stream was cut
    with client.messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"

    fake.cut_next(2)
    with pytest.raises(openai.APIConnectionError):
        list(
            oai(fake).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x y"}], stream=True
            )
        )


def test_events_are_flushed_one_by_one(fake):
    fake.event_delay = 0.05
    arrivals = []
    t0 = time.monotonic()
    with ant(fake).messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
        for _ in stream:
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) >= 10
    # the first event arrives long before the last: nothing is buffered until the end
    assert arrivals[-1] > 0.4 and arrivals[0] < arrivals[-1] / 3


def test_unknown_path_missing_auth_and_bad_request(fake):
    status, headers, body = raw(fake, "GET", "/v1/nope", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error" and "request-id" in headers
    status, _, body = raw(fake, "POST", "/v1/embeddingz", {"a": 1}, headers={"authorization": "Bearer k"})
    err = json.loads(body)["error"]
    assert status == 404 and set(err) == {"message", "type", "param", "code"}
    assert [r.path for r in fake.requests] == ["/v1/nope", "/v1/embeddingz"]
    assert fake.requests[-1].json == {"a": 1}

    status, _, body = raw(fake, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": USER})
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.BadRequestError):
        ant(fake).messages.create(model=MODEL, messages=USER, max_tokens=5, extra_body={"messages": []})


def test_wait_for_and_reset(fake):
    oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert len(fake.wait_for(1, path="/v1/chat/completions", timeout=1)) == 1
    fake.fail_next(500, n=5)
    fake.reset()
    assert fake.requests == []
    assert oai(fake).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices


def test_count_words():
    assert count_words("  a b\n c ") == 3 and count_words("") == 0
