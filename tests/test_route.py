"""Routing in the recorder: students answer through the proxy, the teacher falls back, shadows check them.

The real `anthropic` and `openai` SDKs parse what the proxy answers for a student;
the teacher is the fake provider on loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anthropic
import openai
import pyarrow.parquet as pq
import pytest
from test_record_proxy import ANT_KEY, OAI_KEY, stored

from distill_cli import canonical, schemas, serving
from distill_cli.errors import InputError
from distill_cli.recorder import record_to
from distill_cli.recorder.router import Route, Router, load_routes
from distill_cli.students import cache, few_shot
from distill_cli.students.base import (
    Answer,
    Student,
    StudentError,
    StudentSpec,
    read_student_file,
    request_input,
    write_student_file,
)

TEACHER = "claude-sonnet-4-6"
TASK = "support"
SYSTEM = "Classify the support message."
TOOLS = [{"name": "route_ticket", "description": "Send a ticket to a team",
          "input_schema": {"type": "object", "properties": {"team": {"type": "string"}}}}]
OAI_TOOLS = [{"type": "function", "function": {"name": "route_ticket", "parameters": {"type": "object"}}}]


def spec(student_id: str = "toy-student", task: str = TASK, kind: str = "toy") -> StudentSpec:
    return StudentSpec(id=student_id, kind=kind, task=task, teacher_model=TEACHER)


class ToyStudent(Student):
    """Answers by the message text: `decline ...`, `error ...`, `crash ...`, `slow ...`, `tool ...`, else a label."""

    def __init__(self, student_spec: StudentSpec | None = None) -> None:
        super().__init__(student_spec or spec())
        self.asked: list[str] = []

    def answer(self, request: dict) -> Answer:
        raise NotImplementedError("async only")

    async def answer_async(self, request: dict) -> Answer:
        text = request_input(request)
        self.asked.append(text)
        word = text.split()[0]
        if word == "decline":
            return Answer(None, confidence=0.31, reason="unsure")
        if word == "error":
            raise StudentError("student upstream said 529")
        if word == "crash":
            raise ValueError("a bug in the student")
        if word == "slow":
            await asyncio.sleep(2)
        if word == "tool":
            return Answer(canonical.dumps({"tool": "route_ticket", "input": {"team": "cards"}}), confidence=0.97)
        return Answer("card_arrival", confidence=0.93)


@contextmanager
def routed(tmp_path: Path, fake, routes, **router_kw):
    router_kw.setdefault("shadow_rate", 0.0)  # shadows drawn at random would make row counts flaky
    router = Router(routes, **router_kw)
    with record_to(
        tmp_path / "store", anthropic_upstream=fake.url, openai_upstream=fake.url + "/v1", set_env=False, task=TASK,
        router=router,
    ) as rec:
        yield rec, router


def toy_route(tmp_path: Path, student: Student | None = None) -> Route:
    return Route(student or ToyStudent(), tmp_path / "toy.student", gate=None)


def ant(rec, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=0, **kw)


def oai(rec) -> openai.OpenAI:
    return openai.OpenAI(base_url=rec.openai_base_url, api_key=OAI_KEY, max_retries=0)


def ask(text: str, **kw) -> dict:
    return {"model": TEACHER, "max_tokens": 20, "system": SYSTEM, "messages": [{"role": "user", "content": text}], **kw}


def oai_ask(text: str, **kw) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}], **kw}


def by_input(rows: list[dict], served_by: str | None = None) -> dict[str, dict]:
    return {r["input"]: r for r in rows if served_by is None or r["served_by"] == served_by}


# ---------------------------------------------------------------------- student answers the SDKs parse


def test_anthropic_sdk_parses_student_answers_json_and_stream(tmp_path, fake_provider):
    async def async_calls(rec):
        client = anthropic.AsyncAnthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY, max_retries=0)
        plain = await client.messages.create(**ask("async plain"))
        async with client.messages.stream(**ask("async stream")) as stream:
            final = await stream.get_final_message()
        await client.close()
        return plain, final

    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=0) as (rec, router):
        msg = ant(rec).messages.create(**ask("where is my card"))
        with ant(rec).messages.stream(**ask("where is my new card")) as stream:
            pieces = list(stream.text_stream)
            streamed = stream.get_final_message()
        events = [e.type for e in ant(rec).messages.create(**ask("raw events please"), stream=True)]
        async_plain, async_final = asyncio.run(async_calls(rec))
    assert fake_provider.requests == []  # the teacher was never asked
    for m in (msg, streamed, async_plain, async_final):
        assert m.type == "message" and m.role == "assistant" and m.model == "toy-student"
        assert m.content[0].type == "text" and m.content[0].text == "card_arrival"
        assert m.stop_reason == "end_turn" and (m.usage.input_tokens, m.usage.output_tokens) == (0, 0)
        assert m.id.startswith("msg_")
    assert "".join(pieces) == "card_arrival"
    assert events == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                      "message_delta", "message_stop"]
    rows = by_input(stored(tmp_path / "store"))
    assert len(rows) == 5 and {r["served_by"] for r in rows.values()} == {"student"}
    row = rows["where is my card"]
    assert (row["provider"], row["model"], row["student_id"], row["task"]) == ("student", "toy-student", "toy-student", TASK)
    assert row["output"] == "card_arrival" and row["confidence"] == 0.93 and row["cost_usd"] == 0.0
    assert row["status"] == 200 and row["error"] is None and row["stop_reason"] == "end_turn" and row["pair_id"] is None
    assert (row["input_tokens"], row["output_tokens"]) == (0, 0) and row["latency_ms"] > 0
    assert row["input_hash"] == canonical.input_hash(ask("where is my card"))
    assert json.loads(row["response_json"])["id"] == msg.id
    assert rows["where is my new card"]["stream"] is True and rows["where is my new card"]["ttft_ms"] > 0
    assert router.routes[TASK].stats.served == 5


def test_openai_sdk_parses_student_answers_json_and_stream(tmp_path, fake_provider):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=0) as (rec, _):
        plain = oai(rec).chat.completions.create(**oai_ask("where is my card"))
        chunks = list(oai(rec).chat.completions.create(**oai_ask("where is it"), stream=True))
        with_usage = list(oai(rec).chat.completions.create(
            **oai_ask("and now"), stream=True, stream_options={"include_usage": True}))
    assert fake_provider.requests == []
    assert plain.object == "chat.completion" and plain.model == "toy-student"
    assert plain.choices[0].message.content == "card_arrival" and plain.choices[0].finish_reason == "stop"
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (0, 0)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "card_arrival"
    assert all(c.choices and c.usage is None and c.model == "toy-student" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 0
    rows = by_input(stored(tmp_path / "store"))
    assert [rows[t]["served_by"] for t in ("where is my card", "where is it", "and now")] == ["student"] * 3
    assert rows["where is it"]["endpoint"] == "/v1/chat/completions" and rows["where is it"]["stream"] is True
    assert rows["where is it"]["output"] == "card_arrival" and rows["where is it"]["provider"] == "student"


def test_tool_call_answers_come_back_as_tool_calls(tmp_path, fake_provider):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=0) as (rec, _):
        msg = ant(rec).messages.create(**ask("tool please", tools=TOOLS))
        with ant(rec).messages.stream(**ask("tool stream", tools=TOOLS)) as stream:
            streamed = stream.get_final_message()
        completion = oai(rec).chat.completions.create(**oai_ask("tool please", tools=OAI_TOOLS))
        chunks = list(oai(rec).chat.completions.create(**oai_ask("tool stream", tools=OAI_TOOLS), stream=True))
    for m in (msg, streamed):
        assert m.stop_reason == "tool_use" and [b.type for b in m.content] == ["tool_use"]
        assert (m.content[0].name, m.content[0].input) == ("route_ticket", {"team": "cards"})
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls" and completion.choices[0].message.content is None
    assert (call.function.name, json.loads(call.function.arguments)) == ("route_ticket", {"team": "cards"})
    streamed_call = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls][0][0]
    assert streamed_call.function.name == "route_ticket" and chunks[-1].choices[0].finish_reason == "tool_calls"
    for row in stored(tmp_path / "store"):  # the row's output is the student's canonical answer again
        assert row["served_by"] == "student" and row["output"] == '{"input":{"team":"cards"},"tool":"route_ticket"}'


def test_an_llm_student_answers_with_its_real_tokens_and_cost(tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("DISTILL_TEST_STUDENT_API_KEY", "student-test-key-not-real")
    student_spec = StudentSpec(
        id="few-shot-test", kind="few-shot", task=TASK, teacher_model=TEACHER, student_model="claude-haiku-4-5",
        params={"api": "anthropic", "base_url": fake_provider.url, "api_key_env": "DISTILL_TEST_STUDENT_API_KEY"},
    )
    prompt = few_shot.Prompt(SYSTEM, "examples", [("where is my card", "card_arrival")], None)
    path = write_student_file(tmp_path / "llm.student", student_spec, few_shot.rows_for(prompt, []))
    from distill_cli.students import load_student

    student = load_student(path, allowed_endpoints=[fake_provider.url])
    with routed(tmp_path, fake_provider, [Route(student, path, None)], shadow_rate=0) as (rec, _):
        msg = ant(rec).messages.create(**ask("my card never came"))
    [student_call] = fake_provider.requests
    assert student_call.json["model"] == "claude-haiku-4-5"  # the student asked its own model; the teacher nobody
    assert msg.model == "few-shot-test" and msg.content[0].text == "echo: my card never came"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 5
    [row] = stored(tmp_path / "store")
    assert row["served_by"] == "student" and row["confidence"] == 0.5
    assert (row["input_tokens"], row["output_tokens"]) == (msg.usage.input_tokens, 5)
    assert row["cost_usd"] > 0 and row["cost_usd"] < 1e-4  # Haiku's price of those tokens


# ---------------------------------------------------------------------- the teacher falls back


@pytest.mark.parametrize("text, counter", [("decline this one", "declined"), ("error on this one", "errors"),
                                           ("crash on this one", "errors")])
def test_fallback_on_decline_and_on_student_failure(tmp_path, fake_provider, text, counter):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=1.0) as (rec, router):
        msg = ant(rec).messages.create(**ask(text))
        chunks = list(oai(rec).chat.completions.create(**oai_ask(text), stream=True))
    assert msg.content[0].text == f"echo: {text}" and msg.model == TEACHER  # the teacher's answer, as upstream sent it
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"echo: {text}"
    rows = stored(tmp_path / "store")
    assert [(r["served_by"], r["student_id"], r["provider"]) for r in rows] == [
        ("fallback", "toy-student", "anthropic"), ("fallback", "toy-student", "openai")]
    assert all(r["cost_usd"] > 0 and r["output"] == f"echo: {text}" for r in rows)
    assert rows[0]["confidence"] == (0.31 if counter == "declined" else None)
    stats = router.routes[TASK].stats
    assert getattr(stats, counter) == 2 and stats.served == 0 and stats.shadows == 0  # no shadow of a fallback
    assert len(fake_provider.requests) == 2
    if counter == "errors":
        assert stats.last_error in ("StudentError: student upstream said 529", "ValueError: a bug in the student")


def test_fallback_on_timeout_does_not_wait_for_the_student(tmp_path, fake_provider):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], student_timeout=0.05) as (rec, router):
        started = time.monotonic()
        msg = ant(rec).messages.create(**ask("slow student here"))
        elapsed = time.monotonic() - started
    assert msg.content[0].text == "echo: slow student here" and elapsed < 1.5
    [row] = stored(tmp_path / "store")
    assert (row["served_by"], row["student_id"]) == ("fallback", "toy-student")
    assert router.routes[TASK].stats.timeouts == 1 and router.routes[TASK].stats.last_error == "no answer within 50 ms"


def test_forced_teacher_header_and_other_tasks(tmp_path, fake_provider):
    student = ToyStudent()
    with routed(tmp_path, fake_provider, [toy_route(tmp_path, student)]) as (rec, router):
        forced = ant(rec).messages.create(**ask("critical: where is my card"), extra_headers={"x-distill-route": "Teacher"})
        auto = ant(rec).messages.create(**ask("where is my card"), extra_headers={"x-distill-route": "auto"})
        with pytest.raises(anthropic.BadRequestError, match="x-distill-route must be one of auto, teacher, not 'student'"):
            ant(rec).messages.create(**ask("where is my card"), extra_headers={"x-distill-route": "student"})
    assert forced.content[0].text == "echo: critical: where is my card" and auto.model == "toy-student"
    assert student.asked == ["where is my card"]  # a forced call never reaches the student
    rows = stored(tmp_path / "store")
    assert [(r["served_by"], r["student_id"], r["status"]) for r in rows] == [
        ("teacher", None, 200), ("student", "toy-student", 200), ("teacher", None, 400)]
    assert router.routes[TASK].stats.forced_teacher == 1
    # calls of a task without a student go to the teacher untouched
    router2 = Router([toy_route(tmp_path, ToyStudent(spec(task="other-task")))])
    with record_to(tmp_path / "store2", anthropic_upstream=fake_provider.url, set_env=False, router=router2) as rec:
        other = ant(rec).messages.create(**ask("where is my card"))
    assert other.model == TEACHER and stored(tmp_path / "store2")[0]["served_by"] == "teacher"


# ---------------------------------------------------------------------- shadows


def test_shadow_calls_go_out_after_the_answer_and_are_paired(tmp_path, fake_provider):
    fake_provider.delay = 0.8  # a slow teacher: the job must not wait for it
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=1.0) as (rec, router):
        started = time.monotonic()
        msg = ant(rec).messages.create(**ask("where is my card"))
        chunks = list(oai(rec).chat.completions.create(**oai_ask("where is my card"), stream=True))
        answered = time.monotonic() - started
        arrived = fake_provider.wait_for(2)
    assert msg.model == "toy-student" and "".join(c.choices[0].delta.content or "" for c in chunks) == "card_arrival"
    assert answered < 0.7  # both answers arrived before the teacher could have answered either
    assert {r.path for r in arrived} == {"/v1/messages", "/v1/chat/completions"}
    [messages] = [r for r in arrived if r.path == "/v1/messages"]
    assert messages.headers["authorization"] == f"Bearer {ANT_KEY}"  # the shadow asks with the job's own key
    rows = stored(tmp_path / "store")
    students = {r["endpoint"]: r for r in rows if r["served_by"] == "student"}
    shadows = {r["endpoint"]: r for r in rows if r["served_by"] == "shadow"}
    assert len(rows) == 4 and set(shadows) == set(students) == {"/v1/messages", "/v1/chat/completions"}
    for endpoint, shadow in shadows.items():
        student_row = students[endpoint]
        assert shadow["pair_id"] == student_row["id"] and shadow["student_id"] == "toy-student"
        assert shadow["output"] == "echo: where is my card" and shadow["cost_usd"] > 0 and shadow["status"] == 200
        assert shadow["ts"] > student_row["ts"] and shadow["input_hash"] == student_row["input_hash"]
    assert shadows["/v1/chat/completions"]["stream"] is True and shadows["/v1/chat/completions"]["error"] is None
    assert router.routes[TASK].stats.shadows == 2


def test_shadow_rate_samples_with_the_given_rng(tmp_path, fake_provider):
    texts = [f"where is card {i}" for i in range(40)]
    draws = random.Random(5)
    expected = sum(draws.random() < 0.25 for _ in texts)
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=0.25, rng=random.Random(5)) as (rec, router):
        client = ant(rec)
        for text in texts:
            client.messages.create(**ask(text))
    rows = stored(tmp_path / "store")
    shadows = [r for r in rows if r["served_by"] == "shadow"]
    assert 0 < expected < 40 and len(shadows) == expected == router.routes[TASK].stats.shadows
    assert len(fake_provider.requests) == expected
    ids = {r["id"] for r in rows if r["served_by"] == "student"}
    assert {s["pair_id"] for s in shadows} <= ids and len({s["pair_id"] for s in shadows}) == expected


def test_no_shadow_at_rate_zero(tmp_path, fake_provider):
    with routed(tmp_path, fake_provider, [toy_route(tmp_path)], shadow_rate=0) as (rec, _):
        for i in range(5):
            ant(rec).messages.create(**ask(f"where is card {i}"))
    assert fake_provider.requests == [] and {r["served_by"] for r in stored(tmp_path / "store")} == {"student"}
    with pytest.raises(InputError, match="shadow rate must be between 0 and 1"):
        Router([], shadow_rate=1.5)


# ---------------------------------------------------------------------- demotion


def demote(student_path: Path, student_id: str = "toy-student", when: datetime | None = None) -> None:
    serving.write_demotion(student_path, spec(student_id), when or datetime.now(timezone.utc),
                         ["agreement 81.0% is confidently below 95.0%"], {"drifted": True})


def test_a_demoted_student_does_not_answer(tmp_path, fake_provider):
    route = toy_route(tmp_path)
    demote(route.path)
    warnings: list[str] = []
    with routed(tmp_path, fake_provider, [route], warn=warnings.append) as (rec, router):
        msg = ant(rec).messages.create(**ask("where is my card"))
    assert msg.model == TEACHER and route.student.asked == []
    [row] = stored(tmp_path / "store")
    assert (row["served_by"], row["student_id"]) == ("teacher", None)
    assert route.stats.while_demoted == 1
    [warning] = warnings
    assert warning.startswith("Warning: student toy-student demoted at ") and "agreement 81.0% is confidently below 95.0%" in warning
    assert warning.endswith("The teacher answers its calls.")
    # a marker naming another student (the file was rebuilt since) does not count
    demote(route.path, student_id="an-older-student")
    assert Router([toy_route(tmp_path)]).routes[TASK].demotion is None


def test_a_running_proxy_notices_a_demotion_within_the_recheck_interval(tmp_path, fake_provider):
    now = [1000.0]
    route = toy_route(tmp_path)
    warnings: list[str] = []
    with routed(tmp_path, fake_provider, [route], recheck_seconds=60, clock=lambda: now[0], warn=warnings.append,
                shadow_rate=0) as (rec, _):
        client = ant(rec)
        assert client.messages.create(**ask("first call")).model == "toy-student"
        demote(route.path, when=datetime(2026, 1, 1, tzinfo=timezone.utc))
        now[0] += 30
        assert client.messages.create(**ask("within the interval")).model == "toy-student"  # not re-read yet
        now[0] += 30
        assert client.messages.create(**ask("after the interval")).model == TEACHER
        assert len(warnings) == 1 and "demoted" in warnings[0]
        # a passing gate of the same student, newer than the demotion, lifts it
        gate = write_verdicts(tmp_path / "toy.student.verdicts.parquet", "toy-student", passed=True)
        route.verdicts.append(gate)
        now[0] += 60
        assert client.messages.create(**ask("gated again")).model == "toy-student"
    assert warnings[1] == "Student toy-student is no longer demoted; it answers again."
    served = [(r["input"], r["served_by"]) for r in stored(tmp_path / "store")]
    assert served == [("first call", "student"), ("within the interval", "student"), ("after the interval", "teacher"),
                      ("gated again", "student")]


# ---------------------------------------------------------------------- gating


def write_verdicts(
    path: Path, student_id: str, *, passed: bool, reason: str | None = None, student: Path | None = None,
    gated_at: datetime | None = None,
) -> Path:
    """A verdicts file whose footer holds a gate summary of `student_id` (certifying the content of `student`)."""
    summary = {"schema": "gate-summary/1", "student": student_id, "passed": passed,
               "reason": reason or ("9.0x cheaper at 89% coverage" if passed else
                                    "agreement 91.0%, lower bound 89.2% < 95.0% at 95% confidence; the teacher keeps answering")}
    if student is not None:
        summary["student_digest"] = read_student_file(student)[0].digest
    summary["gated_at"] = (gated_at or datetime.now(timezone.utc)).isoformat()
    schema = schemas.tagged(schemas.VERDICTS_SCHEMA, schemas.VERDICTS, {schemas.SUMMARY_KEY: json.dumps(summary)})
    pq.write_table(schema.empty_table(), path)
    return path


def write_cache_student(path: Path, student_id: str = "cache-student", task: str = TASK, answers: dict | None = None) -> Path:
    student_spec = StudentSpec(id=student_id, kind="cache", task=task, teacher_model=TEACHER)
    return write_student_file(path, student_spec, cache.rows_for(answers or {}))


def test_only_gated_students_serve(tmp_path):
    student = write_cache_student(tmp_path / "intent.student")
    with pytest.raises(InputError) as e:
        load_routes([student])
    assert str(e.value) == (
        f"{student}: student cache-student has no passing gate (no verdicts for it in {student}.verdicts.parquet "
        f"(not found)); run `distill gate {student} STORE --verdicts {student}.verdicts.parquet` first, "
        "or pass --allow-ungated"
    )
    other = write_verdicts(tmp_path / "other.parquet", "another-student", passed=True)
    with pytest.raises(InputError, match=r"no verdicts for it in .*other\.parquet\);"):
        load_routes([student], verdicts=[other])
    failed = write_verdicts(tmp_path / "gate.parquet", "cache-student", passed=False)
    with pytest.raises(InputError) as e:
        load_routes([student], verdicts=[failed])
    assert str(e.value) == (
        f"{student}: student cache-student failed its gate in {failed} (agreement 91.0%, lower bound 89.2% < 95.0% "
        "at 95% confidence; the teacher keeps answering); it may not serve (--allow-ungated overrides)"
    )
    warnings: list[str] = []
    [route] = load_routes([student], verdicts=[failed], allow_ungated=True, warn=warnings.append)
    assert route.gate is None and warnings == [
        f"Warning: {student}: student cache-student failed its gate in {failed}; serving it anyway (--allow-ungated)"
    ]


def test_the_newest_gate_of_the_student_decides_and_the_file_beside_it_counts(tmp_path):
    import os

    now = datetime.now(timezone.utc)
    student = write_cache_student(tmp_path / "intent.student")
    beside = write_verdicts(tmp_path / "intent.student.verdicts.parquet", "cache-student", passed=True, student=student,
                            gated_at=now - timedelta(hours=1))
    [route] = load_routes([student])
    assert route.gate.verdicts == str(beside) and route.gate.passed
    later_fail = write_verdicts(tmp_path / "rerun.parquet", "cache-student", passed=False, gated_at=now)
    with pytest.raises(InputError, match="failed its gate in .*rerun.parquet"):
        load_routes([student], verdicts=[later_fail])
    # When a gate ran is what its summary says: touching (or copying) the older pass does not make it newer.
    os.utime(beside, (time.time() + 3600, time.time() + 3600))
    with pytest.raises(InputError, match="failed its gate in .*rerun.parquet"):
        load_routes([student], verdicts=[later_fail])
    earlier_fail = write_verdicts(tmp_path / "rerun.parquet", "cache-student", passed=False, gated_at=now - timedelta(hours=2))
    assert load_routes([student], verdicts=[earlier_fail])[0].gate.verdicts == str(beside)


def test_gating_errors_name_the_file(tmp_path):
    student = write_cache_student(tmp_path / "intent.student")
    twin = write_cache_student(tmp_path / "twin.student", student_id="twin-student")
    for s, i in ((student, "cache-student"), (twin, "twin-student")):
        write_verdicts(Path(f"{s}.verdicts.parquet"), i, passed=True, student=s)
    # Two students of one task are a chain (students/chain.py): it needs a gate of its own, in that order.
    with pytest.raises(InputError) as e:
        load_routes([student, twin])
    assert str(e.value).startswith(
        f"{student} {twin}: student cache-student > twin-student has no passing gate (no verdicts for it in "
        f"{student}.verdicts.parquet); run `distill gate {student} {twin} STORE --verdicts "
        f"{tmp_path / 'intent.student+twin.student.verdicts.parquet'}` first and give it with --verdicts"
    )
    with pytest.raises(InputError, match=r"^intent\.student is a student file; record --verdicts needs a verdicts file$"):
        load_routes([student], verdicts=[student])
    with pytest.raises(InputError, match=r"^.*intent\.student\.verdicts\.parquet is a verdicts file; record --student needs a student file$"):
        load_routes([Path(f"{student}.verdicts.parquet")])
    with pytest.raises(InputError, match=r"missing\.student: no such file$"):
        load_routes([tmp_path / "missing.student"])
