"""The recording proxy, driven by the real anthropic and openai SDKs against the fake provider."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import anthropic
import httpx2
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from distill_cli import store
from distill_cli.recorder import Outcome, Proxy, record_to
from distill_cli.recorder.proxy import is_loopback, job_headers, upstream_headers

MODEL = "claude-haiku-4-5"
ANT_KEY = "sk-ant-api03-" + "Qw7_rT" * 15 + "AA"
OAI_KEY = "sk-proj-" + "Zp4xLm" * 10
USER = [{"role": "user", "content": "what is the capital of France"}]
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@contextmanager
def recording(tmp_path: Path, fake, **kw):
    with record_to(
        tmp_path / "store", anthropic_upstream=fake.url, openai_upstream=fake.url + "/v1", set_env=False, **kw
    ) as rec:
        yield rec


def ant(rec, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=kw.pop("max_retries", 0), **kw)


def oai(rec, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=rec.openai_base_url, api_key=OAI_KEY, max_retries=kw.pop("max_retries", 0), **kw)


def stored(path: Path) -> list[dict]:
    con = store.connect()
    store.examples_view(con, [path], "test")
    cur = con.execute("SELECT * FROM examples ORDER BY ts, id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def raw(url: str, body: bytes | None = None, headers: dict | None = None, method: str = "POST"):
    """(status, headers, body bytes) of a plain request."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def every_byte(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


# ---------------------------------------------------------------------- Anthropic


def test_anthropic_json_call_becomes_a_row(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        msg = ant(rec).messages.create(model=MODEL, max_tokens=100, system="be brief", messages=USER)
    assert msg.content[0].text == "echo: what is the capital of France"
    [row] = stored(tmp_path / "store")
    assert row["provider"] == "anthropic" and row["source"] == "proxy" and row["endpoint"] == "/v1/messages"
    assert row["model"] == MODEL and row["served_by"] == "teacher" and row["run_id"] == rec.run_id
    assert row["input"] == "what is the capital of France" and row["output"] == msg.content[0].text
    assert row["status"] == 200 and row["error"] is None and row["stream"] is False
    assert row["stop_reason"] == "end_turn"
    assert (row["input_tokens"], row["output_tokens"]) == (msg.usage.input_tokens, msg.usage.output_tokens)
    assert row["cost_usd"] > 0 and row["latency_ms"] > 0 and row["ttft_ms"] is None
    assert row["task"].startswith("haiku-be-brief-")
    assert json.loads(row["response_json"])["id"] == msg.id
    assert json.loads(row["request_json"])["system"] == "be brief"
    assert rec.summary.total.calls == 1
    # the job's key went upstream, untouched, and nowhere else
    assert fake_provider.requests[-1].headers["authorization"] == f"Bearer {ANT_KEY}"
    assert ANT_KEY.encode() not in every_byte(tmp_path / "store")


def test_anthropic_stream_sync_and_async(tmp_path, fake_provider):
    async def async_calls(rec):
        client = anthropic.AsyncAnthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=0)
        plain = await client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "async json"}])
        async with client.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "async stream"}]
        ) as stream:
            final = await stream.get_final_message()
        await client.close()
        return plain, final

    with recording(tmp_path, fake_provider) as rec:
        with ant(rec).messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
            pieces = list(stream.text_stream)
            sync_final = stream.get_final_message()
        async_plain, async_final = asyncio.run(async_calls(rec))
    assert len(pieces) > 3
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    row = rows["what is the capital of France"]
    assert row["stream"] is True and row["error"] is None and row["status"] == 200
    assert row["output"] == "".join(pieces) == sync_final.content[0].text
    assert row["output_tokens"] == sync_final.usage.output_tokens  # from message_delta, not message_start's 1
    assert row["input_tokens"] == sync_final.usage.input_tokens and row["cost_usd"] > 0
    assert row["stop_reason"] == "end_turn" and 0 < row["ttft_ms"] <= row["latency_ms"]
    assembled = json.loads(row["response_json"])
    assert assembled["id"] == sync_final.id and assembled["content"] == [{"type": "text", "text": row["output"]}]
    assert rows["async json"]["output"] == async_plain.content[0].text and rows["async json"]["stream"] is False
    assert rows["async stream"]["output"] == async_final.content[0].text and rows["async stream"]["stream"] is True


def test_tool_use_and_thinking(tmp_path, fake_provider):
    fake_provider.responder = lambda req, provider: (
        {"tool": "get_weather", "input": {"city": "Paris"}} if req.get("tools") else None
    )
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with recording(tmp_path, fake_provider) as rec:
        client = ant(rec)
        tool_json = client.messages.create(model=MODEL, max_tokens=200, tools=[TOOL], messages=USER)
        with client.messages.stream(
            model=MODEL, max_tokens=200, tools=[TOOL], messages=[{"role": "user", "content": "tool stream"}]
        ) as stream:
            tool_stream = stream.get_final_message()
        with client.messages.stream(
            model=MODEL, max_tokens=2000, thinking=thinking, messages=[{"role": "user", "content": "think"}]
        ) as stream:
            thought = stream.get_final_message()
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    expected_tool = '{"input":{"city":"Paris"},"tool":"get_weather"}'
    assert tool_json.stop_reason == tool_stream.stop_reason == "tool_use"
    assert rows["what is the capital of France"]["output"] == expected_tool
    assert rows["tool stream"]["output"] == expected_tool and rows["tool stream"]["stop_reason"] == "tool_use"
    assert rows["tool stream"]["task"].startswith("haiku-get_weather-")
    blocks = json.loads(rows["think"]["response_json"])["content"]
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"] == thought.content[0].thinking and blocks[0]["signature"] == thought.content[0].signature
    assert rows["think"]["output"] == thought.content[1].text  # thinking is not part of the output


def test_multi_megabyte_image_body_passes_byte_for_byte(tmp_path, fake_provider):
    data = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 12_000).decode()
    request = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                    {"type": "text", "text": "describe this"},
                ],
            }
        ],
    }
    body = json.dumps(request, indent=1).encode()  # odd spacing: the proxy must not re-serialise
    with recording(tmp_path, fake_provider) as rec:
        status, _, answer = raw(
            rec.anthropic_base_url + "/v1/messages",
            body,
            {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        msg = ant(rec).messages.create(**request)
    assert status == 200 and json.loads(answer)["content"][0]["text"] == "echo: describe this"
    assert len(body) > 4_000_000 and fake_provider.requests[0].body == body
    assert msg.content[0].text == "echo: describe this"
    rows = stored(tmp_path / "store")
    assert [r["input"] for r in rows] == ["[image]\ndescribe this"] * 2
    assert json.loads(rows[0]["request_json"])["messages"][0]["content"][0]["source"]["data"] == data


def test_count_tokens_and_other_paths_pass_through_unrecorded(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        count = ant(rec).messages.count_tokens(model=MODEL, messages=USER)
        models = ant(rec).models.list()
        oai_models = oai(rec).models.list()
    assert count.input_tokens == 6
    assert [m.id for m in models.data][0] == "claude-opus-4-7" and oai_models.data[0].id == "gpt-4o"
    assert [r.path for r in fake_provider.requests] == ["/v1/messages/count_tokens", "/v1/models", "/v1/models"]
    assert fake_provider.requests[2].provider == "openai"  # no anthropic-version header: OpenAI's upstream
    assert stored(tmp_path / "store") == []


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, kind",
    [(400, "invalid_request_error"), (401, "authentication_error"), (429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error")],
)
def test_upstream_errors_reach_the_job_exactly_and_are_recorded(tmp_path, fake_provider, status, kind):
    error_body = {"type": "error", "error": {"type": kind, "message": f"fixed {status}"}, "request_id": "req_fixed"}
    fake_provider.fail_next(status, retry_after="7" if status == 429 else None, body=error_body)
    with recording(tmp_path, fake_provider) as rec:
        got_status, headers, body = raw(
            rec.anthropic_base_url + "/v1/messages",
            json.dumps({"model": MODEL, "max_tokens": 10, "messages": USER}).encode(),
            {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        fake_provider.fail_next(status, retry_after="7" if status == 429 else None)
        with pytest.raises(anthropic.APIStatusError) as caught:
            ant(rec).messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert got_status == status and body == json.dumps(error_body, separators=(",", ":")).encode()
    assert headers["request-id"].startswith("req_011") and headers["content-type"] == "application/json; charset=utf-8"
    assert headers.get("retry-after") == ("7" if status == 429 else None)
    assert caught.value.status_code == status and caught.value.body["error"]["type"] == kind
    rows = stored(tmp_path / "store")
    assert [r["status"] for r in rows] == [status, status]
    assert rows[0]["error"] == f"{kind}: fixed {status}" and rows[1]["error"].startswith(f"{kind}: ")
    assert all(r["output"] is None and r["cost_usd"] is None for r in rows)
    assert rec.summary.total.errors == 2


def test_each_sdk_retry_is_its_own_row(tmp_path, fake_provider):
    fake_provider.fail_next(529, n=2, retry_after="0.01")
    with recording(tmp_path, fake_provider) as rec:
        msg = ant(rec, max_retries=2).messages.create(model=MODEL, max_tokens=10, messages=USER)
        fake_provider.fail_next(429, retry_after="0.01", path_prefix="/v1/chat")
        completion = oai(rec, max_retries=1).chat.completions.create(model="gpt-4o", messages=USER)
    assert msg.content[0].text and completion.choices[0].message.content
    rows = stored(tmp_path / "store")
    assert [(r["provider"], r["status"]) for r in rows] == [
        ("anthropic", 529), ("anthropic", 529), ("anthropic", 200), ("openai", 429), ("openai", 200)
    ]
    assert rows[0]["error"].startswith("overloaded_error") and rows[3]["error"].startswith("requests: ")


def test_cut_stream_is_recorded_as_incomplete(tmp_path, fake_provider):
    fake_provider.cut_next(after_events=5)
    with recording(tmp_path, fake_provider) as rec:
        with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
            with ant(rec).messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
                list(stream.text_stream)
        fake_provider.cut_next(after_events=3)
        with pytest.raises((openai.APIConnectionError, httpx2.TransportError)):
            list(oai(rec).chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    ant_row, oai_row = stored(tmp_path / "store")
    assert ant_row["error"].startswith("incomplete: upstream stream cut") and ant_row["stream"] is True
    full = "echo: what is the capital of France"
    assert ant_row["output"] and full.startswith(ant_row["output"]) and ant_row["output"] != full
    assert json.loads(ant_row["response_json"])["type"] == "message"
    assert oai_row["error"].startswith("incomplete") and full.startswith(oai_row["output"])


def test_unreachable_upstream_gives_502_in_the_providers_shape(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connection refused
        with record_to(tmp_path / "store", anthropic_upstream=dead, openai_upstream=dead + "/v1", set_env=False) as rec:
            with pytest.raises(anthropic.InternalServerError) as a:
                ant(rec).messages.create(model=MODEL, max_tokens=10, messages=USER)
            with pytest.raises(openai.InternalServerError) as o:
                oai(rec).chat.completions.create(model="gpt-4o", messages=USER)
    assert a.value.status_code == 502 and a.value.body["error"]["type"] == "api_error"
    assert o.value.status_code == 502 and o.value.body["type"] == "server_error"
    assert "unreachable" in a.value.body["error"]["message"]
    rows = stored(tmp_path / "store")
    assert [r["status"] for r in rows] == [502, 502]
    assert all(r["error"].startswith("upstream_unreachable: distill proxy: upstream http://127.0.0.1:") for r in rows)
    assert ANT_KEY not in str(a.value) and OAI_KEY not in str(o.value)


def test_job_closing_mid_stream_is_recorded(tmp_path, fake_provider):
    fake_provider.event_delay = 0.05
    with recording(tmp_path, fake_provider) as rec:
        body = json.dumps({"model": MODEL, "max_tokens": 50, "messages": USER, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", rec.proxy.port)) as s:
            s.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\nx-api-key: k\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
            )
            assert s.recv(100).startswith(b"HTTP/1.1 200")
    [row] = stored(tmp_path / "store")
    assert row["error"] == "incomplete: the job closed the connection before the stream ended"


def test_job_giving_up_before_the_answer_is_recorded(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        body = json.dumps({"model": MODEL, "max_tokens": 50, "messages": USER}).encode()
        with socket.create_connection(("127.0.0.1", rec.proxy.port)) as s:
            s.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\nx-api-key: k\r\n"
                b"x-fake-delay-ms: 200\r\ncontent-length: %d\r\n\r\n" % len(body) + body
            )
            fake_provider.wait_for(1)
    [row] = stored(tmp_path / "store")  # upstream answered (and billed) after the job had gone
    assert row["status"] == 200 and row["output"] == "echo: what is the capital of France"
    assert row["error"] == "incomplete: the job closed the connection before the answer arrived"


# ---------------------------------------------------------------------- concurrency


def test_fifty_concurrent_streams_lose_and_mix_nothing(tmp_path, fake_provider):
    fake_provider.event_delay = 0.002

    async def calls(rec):
        a = anthropic.AsyncAnthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=0)
        o = openai.AsyncOpenAI(base_url=rec.openai_base_url, api_key=OAI_KEY, max_retries=0)

        async def one_anthropic(i):
            async with a.messages.stream(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": f"question number {i}"}]
            ) as stream:
                return await stream.get_final_text()

        async def one_openai(i):
            chunks = await o.chat.completions.create(
                model="gpt-4o", stream=True, messages=[{"role": "user", "content": f"question number {i}"}]
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

        texts = await asyncio.gather(*[(one_anthropic if i % 2 else one_openai)(i) for i in range(50)])
        await a.close()
        await o.close()
        return texts

    with recording(tmp_path, fake_provider) as rec:
        texts = asyncio.run(calls(rec))
    assert texts == [f"echo: question number {i}" for i in range(50)]
    rows = stored(tmp_path / "store")
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50
    assert sorted(r["input"] for r in rows) == sorted(f"question number {i}" for i in range(50))
    for r in rows:
        assert r["output"] == "echo: " + r["input"] and r["error"] is None
        assert r["provider"] == ("anthropic" if int(r["input"].split()[-1]) % 2 else "openai")
        assert r["output_tokens"] == 4 and r["input_tokens"] == 3


# ---------------------------------------------------------------------- OpenAI


def test_openai_json_and_tool_calls(tmp_path, fake_provider):
    fake_provider.responder = lambda req, provider: {"tool": "lookup", "input": {"q": "x"}} if req.get("tools") else None
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with recording(tmp_path, fake_provider) as rec:
        plain = oai(rec).chat.completions.create(model="gpt-4o", messages=USER)
        chunks = list(oai(rec).chat.completions.create(model="gpt-4o", messages=USER, tools=tools, stream=True))
    plain_row, tool_row = stored(tmp_path / "store")
    assert plain_row["output"] == plain.choices[0].message.content and plain_row["endpoint"] == "/v1/chat/completions"
    assert (plain_row["input_tokens"], plain_row["output_tokens"]) == (6, 7) and plain_row["cost_usd"] > 0
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert tool_row["output"] == '{"input":{"q":"x"},"tool":"lookup"}' and tool_row["stop_reason"] == "tool_calls"
    assert fake_provider.requests[-1].headers["authorization"] == f"Bearer {OAI_KEY}"


def test_openai_stream_without_include_usage_gets_usage_recorded_and_hidden(tmp_path, fake_provider):
    request = {"model": "gpt-4o", "messages": USER, "stream": True}
    with recording(tmp_path, fake_provider) as rec:
        chunks = list(oai(rec).chat.completions.create(**request))
        status, _, body = raw(
            rec.openai_base_url + "/chat/completions",
            json.dumps(request).encode(),
            {"authorization": f"Bearer {OAI_KEY}", "content-type": "application/json"},
        )
    # the job sees the stream it asked for: every chunk has choices, none carries usage
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: what is the capital of France"
    assert status == 200 and b'"usage"' not in body and body.endswith(b"data: [DONE]\n\n")
    events = [json.loads(e[6:]) for e in body.decode().split("\n\n") if e.startswith("data: {")]
    assert all(e["choices"] for e in events)
    # upstream was asked for usage, and the row has it
    assert fake_provider.requests[0].json["stream_options"] == {"include_usage": True}
    for row in stored(tmp_path / "store"):
        assert (row["input_tokens"], row["output_tokens"]) == (6, 7) and row["cost_usd"] > 0
        assert json.loads(row["request_json"]).get("stream_options") is None  # the job's request, as sent
        assert json.loads(row["response_json"])["usage"]["prompt_tokens"] == 6


def test_openai_stream_with_include_usage_passes_unchanged(tmp_path, fake_provider):
    request = {"model": "gpt-4o", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    body = json.dumps(request).encode()
    with recording(tmp_path, fake_provider) as rec:
        chunks = list(oai(rec).chat.completions.create(**request))
        raw(rec.openai_base_url + "/chat/completions", body, {"authorization": f"Bearer {OAI_KEY}"})
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert fake_provider.requests[1].body == body  # not rewritten
    rows = stored(tmp_path / "store")
    assert [(r["input_tokens"], r["output_tokens"]) for r in rows] == [(6, 7), (6, 7)]


# ---------------------------------------------------------------------- task, metadata, redaction, secrets


def test_task_and_metadata_headers(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        client = ant(rec)
        client.messages.create(
            model=MODEL, max_tokens=10, messages=USER,
            extra_headers={"x-distill-task": "capitals", "x-distill-metadata": '{"team": "geo", "n": 1}', "x-distill-route": "x"},
        )
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(model=MODEL, max_tokens=10, messages=USER, extra_headers={"x-distill-metadata": "{nope"})
        with pytest.raises(openai.BadRequestError) as bad_oai:
            oai(rec).chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"x-distill-metadata": "[1]"})
    assert bad.value.body["error"]["message"].startswith("distill: header x-distill-metadata is not valid JSON")
    assert bad_oai.value.body["message"] == "distill: header x-distill-metadata must be a JSON object"
    [row] = stored(tmp_path / "store")  # refused calls are neither forwarded nor recorded
    assert row["task"] == "capitals" and json.loads(row["metadata"]) == {"n": 1, "team": "geo"}
    assert len(fake_provider.requests) == 1
    assert not [h for h in fake_provider.requests[0].headers if h.startswith("x-distill")]


def test_run_task_overrides_the_header(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider, task="run-wide") as rec:
        ant(rec).messages.create(model=MODEL, max_tokens=10, messages=USER, extra_headers={"x-distill-task": "other"})
    assert [r["task"] for r in stored(tmp_path / "store")] == ["run-wide"]


def test_redact_masks_every_stored_text_column(tmp_path, fake_provider):
    card = "4111-1111-1111-1111"
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": f"bad card {card}"}}
    with recording(tmp_path, fake_provider, redact=[r"\d{4}-\d{4}-\d{4}-\d{4}", "secret-name"]) as rec:
        client = ant(rec)
        messages = [{"role": "user", "content": f"my card is {card}, I am secret-name"}]
        meta = json.dumps({"card": card})
        client.messages.create(model=MODEL, max_tokens=50, messages=messages, extra_headers={"x-distill-metadata": meta})
        fake_provider.fail_next(400, body=error)
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=MODEL, max_tokens=50, messages=messages)
    ok, failed = stored(tmp_path / "store")
    assert ok["input"] == "my card is [REDACTED], I am [REDACTED]" and ok["output"] == "echo: " + ok["input"]
    assert json.loads(ok["metadata"]) == {"card": "[REDACTED]"}
    assert json.loads(ok["request_json"])["messages"][0]["content"] == ok["input"]  # still valid JSON
    assert failed["error"] == "invalid_request_error: bad card [REDACTED]"
    everything = every_byte(tmp_path / "store")
    assert card.encode() not in everything and b"secret-name" not in everything


def test_keys_never_reach_the_store(tmp_path, fake_provider):
    fake_provider.fail_next(401)
    with recording(tmp_path, fake_provider) as rec:
        client = ant(rec)
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model=MODEL, max_tokens=10, messages=USER)
        leaked = [{"role": "user", "content": f"my key is {ANT_KEY} ok"}]
        client.messages.create(model=MODEL, max_tokens=50, messages=leaked, metadata={"user_id": "u1"})
        oai(rec).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"key {OAI_KEY}"}])
        journal = every_byte(tmp_path / "store")  # while the journal is live, too
    everything = every_byte(tmp_path / "store") + journal
    assert ANT_KEY.encode() not in everything and OAI_KEY.encode() not in everything
    assert b"sk-ant-api03" not in everything
    assert len(stored(tmp_path / "store")) == 3


# ---------------------------------------------------------------------- loopback only


def test_proxy_listens_on_loopback_only(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        sockets = [s for site in rec.proxy._runner.sites for s in site._server.sockets]
        assert [s.getsockname()[0] for s in sockets] == ["127.0.0.1"]
        assert rec.anthropic_base_url == f"http://127.0.0.1:{rec.proxy.port}" and rec.proxy.port > 0
        assert rec.openai_base_url == rec.anthropic_base_url + "/v1"


@pytest.mark.parametrize(
    "peer, ok",
    [(("127.0.0.1", 5), True), (("127.8.9.10", 5), True), (("::1", 5, 0, 0), True), (("::ffff:127.0.0.1", 5, 0, 0), True),
     (("10.0.0.5", 5), False), (("192.168.1.2", 5), False), (("::ffff:10.0.0.1", 5, 0, 0), False), (None, False),
     (("example.com", 5), False)],
)
def test_loopback_check(peer, ok):
    assert is_loopback(peer) is ok


def test_non_loopback_peer_is_refused_before_anything_is_forwarded():
    seen = []
    proxy = Proxy(on_call=lambda call, outcome: seen.append(call), anthropic_upstream="http://127.0.0.1:9")
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: ("10.1.2.3", 40000) if name == "peername" else default
    request = make_mocked_request(
        "POST", "/v1/messages", headers={"anthropic-version": "2023-06-01"}, transport=transport
    )
    response = asyncio.run(proxy._handle(request))
    assert response.status == 403 and seen == []


@pytest.mark.parametrize(
    "headers",
    [{"Host": "attacker.example:8080"}, {"Host": "127.0.0.1:8080", "Origin": "http://attacker.example"},
     {"Host": "evil.127.0.0.1.nip.io"}],
)
def test_web_pages_cannot_use_the_proxy(headers):
    """A browser can reach 127.0.0.1 (cross-origin POST, DNS rebinding); SDKs send no Origin and a loopback Host."""
    seen = []
    proxy = Proxy(on_call=lambda call, outcome: seen.append(call), anthropic_upstream="http://127.0.0.1:9")
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: ("127.0.0.1", 40000) if name == "peername" else default
    request = make_mocked_request("POST", "/v1/messages", headers={"anthropic-version": "2023-06-01", **headers},
                                  transport=transport)
    response = asyncio.run(proxy._handle(request))
    assert response.status == 403 and seen == []


def test_credentials_in_the_upstream_url_never_reach_a_row_or_the_job(tmp_path):
    with record_to(tmp_path / "store", anthropic_upstream="http://user:sk-ant-api03-URLSECRET12345@127.0.0.1:9",
                   set_env=False) as rec:
        request = urllib.request.Request(
            rec.anthropic_base_url + "/v1/messages", method="POST",
            data=json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": "k"},
        )
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        body = raised.value.read().decode()
    assert raised.value.code == 502 and "127.0.0.1:9" in body and "URLSECRET" not in body
    assert b"URLSECRET" not in every_byte(tmp_path / "store")


# ---------------------------------------------------------------------- headers and the routing seam


def test_header_hygiene():
    from multidict import CIMultiDict

    job = CIMultiDict(
        [("Host", "127.0.0.1:1"), ("Content-Length", "5"), ("Connection", "keep-alive, x-hop"), ("X-Hop", "1"),
         ("x-api-key", ANT_KEY), ("X-Distill-Task", "t"), ("Accept-Encoding", "gzip"), ("anthropic-beta", "a"),
         ("anthropic-beta", "b"), ("Proxy-Authorization", "Basic x")]
    )
    up = upstream_headers(job)
    assert sorted(k for k, _ in up.items()) == ["Accept-Encoding", "anthropic-beta", "anthropic-beta", "x-api-key"]
    assert up["x-api-key"] == ANT_KEY and up.getall("anthropic-beta") == ["a", "b"] and up["Accept-Encoding"] == "identity"
    back = job_headers(
        CIMultiDict([("Transfer-Encoding", "chunked"), ("retry-after", "3"), ("request-id", "r"), ("Keep-Alive", "5")])
    )
    assert dict(back) == {"retry-after": "3", "request-id": "r"}


def test_answer_seam_lets_a_call_be_answered_locally_and_shadowed(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        async def local(call, job):
            message = {"type": "message", "role": "assistant", "model": "student-1", "id": "msg_local",
                       "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn", "stop_sequence": None,
                       "usage": {"input_tokens": 0, "output_tokens": 0}}
            shadow = await rec.proxy.forward(call, None)  # the teacher, asked on the side: relayed to nobody
            shadow.columns = {"served_by": "shadow", "pair_id": "p1"}
            rec.proxy.on_call(call, shadow)
            return Outcome(response=web.json_response(message), status=200, body=message,
                           columns={"served_by": "student", "student_id": "student-1", "pair_id": "p1"})

        rec.proxy.answer = local
        msg = ant(rec).messages.create(model=MODEL, max_tokens=10, messages=USER)
        status, _, body = raw(  # a stream request: the shadow call assembles the teacher's stream
            rec.anthropic_base_url + "/v1/messages",
            json.dumps({"model": MODEL, "max_tokens": 10, "messages": USER, "stream": True}).encode(),
            {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01"},
        )
    assert msg.content[0].text == "Paris" and status == 200 and json.loads(body)["content"][0]["text"] == "Paris"
    rows = sorted(stored(tmp_path / "store"), key=lambda r: (r["stream"], r["served_by"]))
    served = [(r["served_by"], r["student_id"], r["model"], r["output"], r["stream"]) for r in rows]
    assert served == [
        ("shadow", None, MODEL, "echo: what is the capital of France", False),
        ("student", "student-1", "student-1", "Paris", False),
        ("shadow", None, MODEL, "echo: what is the capital of France", True),
        ("student", "student-1", "student-1", "Paris", True),
    ]
    assert rows[2]["error"] is None and rows[2]["output_tokens"] == 7  # the shadow stream was assembled
    assert len(fake_provider.requests) == 2


def test_env_is_set_for_clients_made_inside_and_restored(tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)  # where the job would have gone: the upstream
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANT_KEY)
    with record_to(tmp_path / "store") as rec:
        assert rec.proxy.anthropic.upstream == fake_provider.url
        anthropic.Anthropic(max_retries=0).messages.create(model=MODEL, max_tokens=10, messages=USER)
    import os

    assert os.environ["ANTHROPIC_BASE_URL"] == fake_provider.url and "OPENAI_BASE_URL" not in os.environ
    assert len(stored(tmp_path / "store")) == 1 and rec.summary.total.calls == 1


def test_journal_rolls_into_parts_off_the_event_loop_by_count_and_age(tmp_path, fake_provider):
    from distill_cli.recorder import Recorder

    now = [0.0]
    s = tmp_path / "store"

    async def scenario():
        rec = Recorder(s, anthropic_upstream=fake_provider.url, roll_rows=3, roll_seconds=60, clock=lambda: now[0])
        await rec.start()
        client = anthropic.AsyncAnthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=0)
        for i in range(7):
            await client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": f"q{i}"}])
        rec.writer.wait()  # the two full segments' rolls, on the writer's thread
        by_count = len(list(s.glob("date=*/*.parquet")))
        rec.roll_if_due()  # one row waiting, not yet old
        now[0] = 61
        rec.roll_if_due()
        rec.writer.wait()
        by_age = len(list(s.glob("date=*/*.parquet")))
        await client.close()
        await rec.stop()
        return by_count, by_age

    assert asyncio.run(scenario()) == (2, 3)
    assert list((s / "_journal").glob("*.jsonl")) == []
    assert sorted(r["input"] for r in stored(s)) == [f"q{i}" for i in range(7)]
