"""The OpenAI Responses API (`POST /v1/responses`) under `distill record`: recorded, priced, answered by students,
replayed; driven by the real `openai` SDK against the fake provider on loopback."""

from __future__ import annotations

import json

import openai
import pytest
from test_record_proxy import OAI_KEY, raw, recording, stored
from test_route import TASK, routed, toy_route

from distill_cli import calls
from distill_cli.prices import load_prices, usage_from_responses
from distill_cli.recorder import record_to
from distill_cli.recorder.replay import Replay
from distill_cli.recorder.router import Router
from distill_cli.recorder.sse import EventSplitter, ResponsesStream

MODEL = "gpt-4o"  # $2.50 input, $1.25 cached input, $10 output per million tokens (data/prices.json)
INSTRUCTIONS = "You sort tickets."
TOOLS = [{"type": "function", "name": "route_ticket", "description": "Send a ticket to a team",
          "parameters": {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]},
          "strict": True}]
# The fake's counts for the calls below: 3 words of instructions + 4 of input, plus the headers' extra tokens.
EXTRA = {"x-fake-cached-tokens": "4", "x-fake-reasoning-tokens": "3"}
NOWHERE = "http://127.0.0.1:9"


def oai(rec) -> openai.OpenAI:
    return openai.OpenAI(base_url=rec.openai_base_url, api_key=OAI_KEY, max_retries=0)


def hand_cost(uncached: int, cached: int, output: int) -> float:
    return (uncached * 2.50 + cached * 1.25 + output * 10.00) / 1_000_000


# ---------------------------------------------------------------------- recorded calls


def test_a_json_call_is_a_row_priced_by_hand(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        resp = oai(rec).responses.create(model=MODEL, instructions=INSTRUCTIONS, input="where is my card",
                                         extra_headers=EXTRA)
    assert resp.output_text == "echo: where is my card" and resp.status == "completed"
    # 7 words + 4 cached in; 5 words + 3 reasoning out
    assert (resp.usage.input_tokens, resp.usage.input_tokens_details.cached_tokens) == (11, 4)
    assert (resp.usage.output_tokens, resp.usage.output_tokens_details.reasoning_tokens) == (8, 3)
    [row] = stored(tmp_path / "store")
    assert row["provider"] == "openai" and row["endpoint"] == "/v1/responses" and row["model"] == MODEL
    assert row["input"] == "You sort tickets.\n\nwhere is my card"
    assert row["output"] == "echo: where is my card" and row["stop_reason"] == "completed"
    assert (row["status"], row["error"], row["stream"], row["source"]) == (200, None, False, "proxy")
    # cached tokens come out of the input count; reasoning tokens are output (already inside output_tokens)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (7, 4, 8)
    assert (row["cache_write_5m_tokens"], row["cache_write_1h_tokens"]) == (0, 0)
    assert row["cost_usd"] == pytest.approx(hand_cost(7, 4, 8)) == pytest.approx(0.0001025)
    assert json.loads(row["response_json"])["id"] == resp.id
    assert json.loads(row["request_json"])["instructions"] == INSTRUCTIONS
    assert OAI_KEY not in json.dumps(row, default=str)
    assert row["task"].startswith("gpt-4o-you-sort-")


def test_a_streamed_call_is_assembled_from_response_completed(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        with oai(rec).responses.stream(model=MODEL, instructions=INSTRUCTIONS, input="where is my card",
                                       extra_headers=EXTRA) as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        events = list(oai(rec).responses.create(model=MODEL, instructions=INSTRUCTIONS, input="and my parcel",
                                                stream=True))
    assert "".join(deltas) == "echo: where is my card" == final.output_text and len(deltas) == 5
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first, second = stored(tmp_path / "store")
    assert first["stream"] is True and first["endpoint"] == "/v1/responses" and first["error"] is None
    assert first["output"] == "echo: where is my card" and first["ttft_ms"] is not None
    assert (first["input_tokens"], first["cache_read_tokens"], first["output_tokens"]) == (7, 4, 8)
    assert first["cost_usd"] == pytest.approx(hand_cost(7, 4, 8))
    assert json.loads(first["response_json"])["id"] == final.id
    assert second["output"] == "echo: and my parcel" and second["output_tokens"] == 4
    assert second["cost_usd"] == pytest.approx(hand_cost(6, 0, 4))


def test_previous_response_id_and_tools_pass_through_intact(tmp_path, fake_provider):
    fake_provider.responder = lambda req, provider: {"tool": "route_ticket", "input": {"team": "cards"}} \
        if req.get("tools") else None
    with recording(tmp_path, fake_provider) as rec:
        first = oai(rec).responses.create(model=MODEL, input="route my ticket", tools=TOOLS)
        call = first.output[0]
        second = oai(rec).responses.create(
            model=MODEL, previous_response_id=first.id, tools=TOOLS,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "routed"}])
        # The exact bytes a job sends reach upstream unchanged, a stream's too (nothing is added to it).
        body = json.dumps({"model": MODEL, "input": "hi", "stream": True, "tools": TOOLS,
                           "previous_response_id": second.id}, indent=1).encode()
        status, _, streamed = raw(rec.openai_base_url + "/responses", body,
                                  {"Authorization": f"Bearer {OAI_KEY}", "Content-Type": "application/json"})
    assert call.type == "function_call" and (call.name, json.loads(call.arguments)) == ("route_ticket", {"team": "cards"})
    upstream = fake_provider.requests
    assert [r.path for r in upstream] == ["/v1/responses"] * 3
    assert upstream[1].json["previous_response_id"] == first.id and upstream[1].json["tools"] == TOOLS
    assert upstream[1].json["input"][0]["call_id"] == call.call_id
    assert status == 200 and upstream[2].body == body and b"event: response.completed" in streamed
    rows = stored(tmp_path / "store")
    assert len(rows) == 3 and all(r["endpoint"] == "/v1/responses" and r["error"] is None for r in rows)
    assert rows[0]["output"] == '{"input":{"team":"cards"},"tool":"route_ticket"}'
    assert rows[1]["input"] == "routed" and json.loads(rows[1]["request_json"])["previous_response_id"] == first.id
    assert rows[2]["stream"] is True and rows[2]["output"] == '{"input":{"team":"cards"},"tool":"route_ticket"}'
    assert rows[0]["task"] == rows[1]["task"]  # same model family, instructions and tools: one task


def test_other_responses_paths_pass_through_unrecorded_byte_for_byte(tmp_path, fake_provider):
    headers = {"Authorization": f"Bearer {OAI_KEY}"}
    direct = raw(fake_provider.url + "/v1/responses/resp_123", headers=headers, method="GET")
    with recording(tmp_path, fake_provider) as rec:
        proxied = raw(rec.openai_base_url + "/responses/resp_123", headers=headers, method="GET")
        counted = raw(rec.openai_base_url + "/responses/input_tokens", b'{"model": "gpt-4o", "input": "hi"}', headers)
    assert proxied[0] == direct[0] == 404 and proxied[2] == direct[2]
    assert counted[0] == 404 and fake_provider.requests[-1].path == "/v1/responses/input_tokens"
    assert stored(tmp_path / "store") == []


def test_a_failed_or_unknown_previous_response_is_an_error_row(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        with pytest.raises(openai.BadRequestError):
            oai(rec).responses.create(model=MODEL, input="hi", previous_response_id="resp_nope")
    [row] = stored(tmp_path / "store")
    assert row["status"] == 400 and "resp_nope" in row["error"] and row["cost_usd"] is None


# ---------------------------------------------------------------------- usage, and a cut stream


def test_responses_usage_reader():
    usage = usage_from_responses({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60},
                                  "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30}})
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (40, 60, 50)
    odd = usage_from_responses({"input_tokens": 10, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 9}})
    assert odd.output_tokens == 9  # never fewer output tokens than were reasoned
    bad = usage_from_responses({"input_tokens": -1, "output_tokens": 5})
    assert bad.unknown == {"input_tokens"} and "usage.input_tokens is -1" in bad.problem
    prices = load_prices()
    row = calls.responses_row({"model": MODEL, "input": "x"}, {"object": "response", "model": MODEL, "status": "completed",
                              "output": [], "usage": {"input_tokens": 1, "output_tokens": 1}}, prices=prices)
    assert row["output"] == "" and row["cost_usd"] == pytest.approx(hand_cost(1, 0, 1))
    chat_shaped = calls.responses_row({"model": MODEL, "input": "x"}, {"choices": []}, prices=prices)
    assert chat_shaped["error"] == "unreadable answer: a JSON object that is no response"


def test_a_cut_stream_keeps_what_arrived(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        with pytest.raises((openai.APIError, Exception)):
            list(oai(rec).responses.create(model=MODEL, input="one two three four", stream=True,
                                           extra_headers={"x-fake-cut-after": "7"}))
    [row] = stored(tmp_path / "store")
    assert row["error"].startswith("incomplete") and row["output"] == "echo: one two " and row["cost_usd"] is None
    splitter, stream = EventSplitter(), ResponsesStream()
    for event in splitter.feed(b'event: error\ndata: {"type":"error","code":"server_error","message":"boom"}\n\n'):
        stream.feed(event)
    assert stream.error == "server_error: boom" and stream.result() is None


# ---------------------------------------------------------------------- students and replay


def test_a_routed_student_answers_responses_calls_the_sdk_parses(tmp_path, fake_provider):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)]) as (rec, router):
        client = oai(rec)
        plain = client.responses.create(model=MODEL, input="where is my card", previous_response_id=None)
        with client.responses.stream(model=MODEL, input=[{"role": "user", "content": "where is it"}]) as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            streamed = stream.get_final_response()
        events = list(client.responses.create(model=MODEL, input="and now", stream=True))
        tool = client.responses.create(model=MODEL, input="tool please", tools=TOOLS)
        with client.responses.stream(model=MODEL, input="tool stream", tools=TOOLS) as stream:
            arg_deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
            tool_streamed = stream.get_final_response()
    assert fake_provider.requests == []  # no teacher asked
    assert plain.object == "response" and plain.model == "toy-student" and plain.status == "completed"
    assert plain.output_text == "card_arrival" and plain.output[0].type == "message"
    assert (plain.usage.input_tokens, plain.usage.output_tokens) == (0, 0)
    assert "".join(deltas) == "card_arrival" == streamed.output_text and streamed.id.startswith("resp_")
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "card_arrival"
    for r in (tool, tool_streamed):
        [call] = r.output
        assert call.type == "function_call" and (call.name, json.loads(call.arguments)) == ("route_ticket", {"team": "cards"})
        assert r.tools[0].name == "route_ticket"  # the request's tools echoed, as the API does
    assert "".join(arg_deltas) == tool_streamed.output[0].arguments
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    assert {r["served_by"] for r in rows.values()} == {"student"} and len(rows) == 5
    assert rows["where is it"]["endpoint"] == "/v1/responses" and rows["where is it"]["stream"] is True
    assert rows["where is it"]["output"] == "card_arrival" and rows["where is it"]["provider"] == "student"
    assert rows["tool please"]["output"] == '{"input":{"team":"cards"},"tool":"route_ticket"}'
    assert router.routes[TASK].stats.served == 5


def test_replay_answers_responses_calls(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider, task=TASK) as rec:
        original = oai(rec).responses.create(model=MODEL, instructions=INSTRUCTIONS, input="where is my card",
                                             extra_headers=EXTRA)
    router = Router([], replay=Replay.load(tmp_path / "store"))
    with record_to(tmp_path / "runs", anthropic_upstream=NOWHERE, openai_upstream=NOWHERE + "/v1", set_env=False,
                   task=TASK, router=router) as rec:
        again = oai(rec).responses.create(model="gpt-4o-mini", instructions=INSTRUCTIONS, input="where is my card")
        with oai(rec).responses.stream(model=MODEL, instructions=INSTRUCTIONS, input="where is my card") as stream:
            streamed = stream.get_final_response()
        with pytest.raises(openai.NotFoundError):
            oai(rec).responses.create(model=MODEL, instructions=INSTRUCTIONS, input="never asked")
    assert again.id == original.id == streamed.id and again.output_text == streamed.output_text == original.output_text
    rows = stored(tmp_path / "runs")
    assert [(r["source"], r["status"]) for r in rows] == [("replay", 200), ("replay", 200), ("replay", 404)]
    assert rows[1]["stream"] is True and rows[1]["endpoint"] == "/v1/responses"
    assert rows[0]["cost_usd"] == rows[1]["cost_usd"] == pytest.approx(hand_cost(7, 4, 8))  # priced as recorded
