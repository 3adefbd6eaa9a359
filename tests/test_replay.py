"""`--replay STORE`: a job's calls answered from a store's recorded answers, with no network."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import openai
import pytest
from test_record_proxy import stored
from test_route import TASK, TEACHER, ToyStudent, ant, ask, oai, oai_ask, toy_route

from distill_cli.errors import InputError
from distill_cli.recorder import record_to
from distill_cli.recorder.replay import Replay
from distill_cli.recorder.router import Router
from distill_cli.students.base import Answer

NOWHERE = "http://127.0.0.1:9"  # nothing listens: any call that went upstream would fail


@pytest.fixture
def recorded(tmp_path, fake_provider) -> Path:
    """A store with teacher answers to two Anthropic and one OpenAI request, recorded through the proxy."""
    fake_provider.responder = lambda req, provider: {"tool": "route_ticket", "input": {"team": "cards"}} \
        if req.get("tools") else None
    path = tmp_path / "recorded"
    with record_to(path, anthropic_upstream=fake_provider.url, openai_upstream=fake_provider.url + "/v1",
                   set_env=False, task=TASK) as rec:
        ant(rec).messages.create(**ask("where is my card"))
        ant(rec).messages.create(**ask("route it", tools=[{"name": "route_ticket", "input_schema": {"type": "object"}}]))
        oai(rec).chat.completions.create(**oai_ask("where is my card"))
        with pytest.raises(anthropic.InternalServerError):
            ant(rec).messages.create(**ask("this one failed"), extra_headers={"x-fake-status": "500"})
    fake_provider.reset()
    return path


def replaying(tmp_path: Path, recorded: Path, *, miss: str = "error", upstream: str = NOWHERE, routes=(), **kw):
    router = Router(routes, replay=Replay.load(recorded, miss=miss), **kw)
    return record_to(tmp_path / "runs", anthropic_upstream=upstream, openai_upstream=upstream + "/v1", set_env=False,
                     task=TASK, router=router)


def test_replay_answers_from_the_store_without_the_network(tmp_path, recorded):
    originals = {(r["provider"], r["input"]): json.loads(r["response_json"]) for r in stored(recorded) if r["status"] == 200}
    with replaying(tmp_path, recorded) as rec:
        plain = ant(rec).messages.create(**{**ask("where is my card"), "model": "claude-haiku-4-5"})  # model not in the hash
        with ant(rec).messages.stream(**ask("where is my card")) as stream:
            pieces = list(stream.text_stream)
            streamed = stream.get_final_message()
        tools = [{"name": "route_ticket", "input_schema": {"type": "object"}}]
        tool = ant(rec).messages.create(**ask("route it", tools=tools))
        with ant(rec).messages.stream(**ask("route it", tools=tools)) as stream:
            tool_streamed = stream.get_final_message()
        completion = oai(rec).chat.completions.create(**oai_ask("where is my card"))
        chunks = list(oai(rec).chat.completions.create(**oai_ask("where is my card"), stream=True))
    original = originals[("anthropic", "where is my card")]
    assert plain.model_dump(exclude_none=True)["content"] == original["content"] and plain.id == original["id"]
    assert plain.model == TEACHER  # the recorded answer, as recorded
    assert "".join(pieces) == "echo: where is my card" and streamed.id == original["id"]
    assert streamed.usage.output_tokens == original["usage"]["output_tokens"]
    for m in (tool, tool_streamed):
        assert m.content[0].type == "tool_use" and m.content[0].input == {"team": "cards"} and m.stop_reason == "tool_use"
    assert completion.choices[0].message.content == "echo: where is my card"
    assert completion.id == originals[("openai", "where is my card")]["id"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: where is my card"
    assert all(c.usage is None for c in chunks)  # no usage chunk: the job did not ask for one
    rows = stored(tmp_path / "runs")
    assert len(rows) == 6 and {(r["source"], r["served_by"], r["status"]) for r in rows} == {("replay", "teacher", 200)}
    assert rows[0]["cost_usd"] > 0 and rows[0]["input_tokens"] == original["usage"]["input_tokens"]  # priced as recorded


def test_a_miss_is_a_provider_error_the_sdk_raises(tmp_path, recorded):
    with replaying(tmp_path, recorded) as rec:
        with pytest.raises(anthropic.NotFoundError) as ant_error:
            ant(rec).messages.create(**ask("never asked before"))
        with pytest.raises(openai.NotFoundError) as oai_error:
            oai(rec).chat.completions.create(**oai_ask("never asked before"))
        with pytest.raises(anthropic.NotFoundError):  # a failed recorded call is not an answer to replay
            ant(rec).messages.create(**ask("this one failed"))
    assert ant_error.value.status_code == 404 and oai_error.value.status_code == 404
    message = ant_error.value.body["error"]["message"]
    assert message.startswith(f"distill replay: no recorded answer to this request in {recorded} (input_hash ")
    assert message.endswith("); record it first, or use --replay-miss live")
    assert ant_error.value.body["error"]["type"] == "not_found_error"
    rows = stored(tmp_path / "runs")
    assert [(r["source"], r["status"]) for r in rows] == [("replay", 404)] * 3
    assert rows[0]["error"].startswith("replay_miss: distill replay: no recorded answer")


def test_a_miss_goes_live_when_asked(tmp_path, recorded, fake_provider):
    with replaying(tmp_path, recorded, miss="live", upstream=fake_provider.url) as rec:
        hit = ant(rec).messages.create(**ask("where is my card"))
        live = ant(rec).messages.create(**ask("never asked before"))
    assert live.content[0].text == "echo: never asked before" and len(fake_provider.requests) == 1
    assert hit.content[0].text == "echo: where is my card"
    assert [(r["input"], r["source"]) for r in stored(tmp_path / "runs")] == [
        ("where is my card", "replay"), ("never asked before", "proxy")]


def test_the_student_answers_first_and_the_replay_is_the_teacher(tmp_path, recorded):
    student = ToyStudent()
    with replaying(tmp_path, recorded, routes=[toy_route(tmp_path, student)], shadow_rate=1.0) as rec:
        served = [ant(rec).messages.create(**ask("where is my card")) for _ in range(2)]
        student.answer_async = _declining
        fallback = ant(rec).messages.create(**ask("where is my card"))
    assert [m.model for m in served] == ["toy-student"] * 2 and fallback.content[0].text == "echo: where is my card"
    rows = stored(tmp_path / "runs")
    kinds = sorted((r["served_by"], r["source"]) for r in rows)
    assert kinds == [("fallback", "replay"), ("shadow", "replay"), ("shadow", "replay"), ("student", "proxy"),
                     ("student", "proxy")]
    shadows = [r for r in rows if r["served_by"] == "shadow"]
    assert {s["pair_id"] for s in shadows} == {r["id"] for r in rows if r["served_by"] == "student"}
    assert all(s["output"] == "echo: where is my card" for s in shadows)


async def _declining(request: dict) -> Answer:
    return Answer(None, confidence=0.1)


def test_replay_stores_are_checked(tmp_path, recorded):
    with pytest.raises(InputError, match=r"empty: no recorded teacher answers to replay \(every call would miss; see --replay-miss live\)"):
        Replay.load(_empty_store(tmp_path / "empty"))
    assert len(Replay.load(_empty_store(tmp_path / "empty2"), miss="live")) == 0
    with pytest.raises(InputError, match="no such"):
        Replay.load(tmp_path / "missing")
    replay = Replay.load(recorded)
    assert len(replay) == 3  # the failed call is not replayable


def _empty_store(path: Path) -> Path:
    from distill_cli import store

    store.prepare_store(path)
    return path
