"""The gate with LLM students and the LLM judge against the fake provider: concurrency, 429s, the spend cap."""

from __future__ import annotations

import asyncio

import pytest
from gate_support import (
    FAKE_KEY,
    STUDENT_MODEL,
    TEACHER,
    label_responder,
    make_rows,
    write_llm_student,
    write_scripted,
    write_store,
)
from typer.testing import CliRunner

from distill_cli.cli import app
from distill_cli.economics import SpendCapReached
from distill_cli.errors import ProviderError
from distill_cli.gate import run_gate
from distill_cli.prices import Usage, load_prices
from distill_cli.providers import RetryPolicy


@pytest.fixture
def rows():
    return make_rows(120, 20)


@pytest.fixture
def runs(tmp_path, rows):
    return write_store(tmp_path / "runs", rows)


@pytest.fixture
def upstream(fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return fake_provider


def student_cost() -> float:
    # The fake counts words: "Classify the ticket." (3) + "ticket number N: my card does not work" (8) in, one label out.
    return load_prices().cost(STUDENT_MODEL, Usage(input_tokens=3 + 8, output_tokens=1))


def test_an_llm_student_is_gated_concurrently(tmp_path, rows, runs, upstream):
    in_flight, peak = 0, 0
    answer = label_responder(rows)

    async def responder(body, provider):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return answer(body, provider)

    upstream.responder = responder
    student = write_llm_student(tmp_path / "llm.student", upstream.url)
    s = run_gate(student, runs, judge="normalized", concurrency=8)
    assert s.passed and s.n == 120 and s.errors == 0 and s.coverage == 1.0
    assert peak == 8
    assert s.student_cost_per_call == pytest.approx(student_cost())
    assert s.routed_cost_per_call == pytest.approx(student_cost())
    assert s.cost_reduction == pytest.approx(0.002 / student_cost())
    assert s.spent_usd == pytest.approx(120 * student_cost())
    assert {r.json["model"] for r in upstream.requests} == {STUDENT_MODEL}


def test_an_llm_student_rides_out_429s(tmp_path, rows, runs, upstream):
    upstream.responder = label_responder(rows)
    upstream.fail_next(429, n=2, retry_after="0")
    s = run_gate(write_llm_student(tmp_path / "llm.student", upstream.url), runs, judge="normalized")
    assert s.errors == 0 and s.n == 120 and s.passed
    assert len(upstream.requests) == 122  # two refused, retried by the student's SDK client


class Sleeps:
    def __init__(self):
        self.waits = []

    async def __call__(self, seconds):
        self.waits.append(seconds)


def test_the_gate_retries_what_the_students_own_retries_left(tmp_path, rows, runs, upstream):
    upstream.responder = label_responder(rows)
    upstream.fail_next(429, n=4, retry_after="0")
    sleeps = Sleeps()
    student = write_llm_student(tmp_path / "llm.student", upstream.url, max_retries=0)
    s = run_gate(student, runs, judge="normalized", retry=RetryPolicy(sleep=sleeps))
    assert s.errors == 0 and s.n == 120 and len(upstream.requests) == 124 and len(sleeps.waits) == 4


def test_student_failures_retries_cannot_cure_stop_the_gate(tmp_path, rows, runs, upstream):
    upstream.fail_next(500, n=10_000)
    sleeps = Sleeps()
    student = write_llm_student(tmp_path / "llm.student", upstream.url, max_retries=0)
    with pytest.raises(ProviderError) as e:
        run_gate(student, runs, judge="normalized", concurrency=1, retry=RetryPolicy(sleep=sleeps))
    assert str(e.value) == "HTTP 500 (still failing after 5 attempts; the gate stopped)"
    assert len(sleeps.waits) == 4 and len(upstream.requests) == 5
    upstream.reset()
    upstream.fail_next(401, n=10_000)
    with pytest.raises(ProviderError) as e:
        run_gate(student, runs, judge="normalized", retry=RetryPolicy(sleep=sleeps))
    assert str(e.value) == "HTTP 401 (authentication refused; the gate stopped)"


def test_the_llm_judge_in_a_gate_is_cached_and_costed(tmp_path, rows, runs, upstream):
    held = [r for r in rows if r.held_out]
    wrong = {r.text for r in held[:3]}
    base = label_responder(rows, wrong=wrong)
    shouting = {r.text for r in held[3:13]}

    def responder(body, provider):
        text = base(body, provider)
        if body["model"] == STUDENT_MODEL and body["messages"][-1]["content"] in shouting:
            return text.upper()  # the same label, differently written: only a judge can tell
        return text

    upstream.responder = responder
    upstream.fail_next(429, n=2, retry_after="0")
    student = write_llm_student(tmp_path / "llm.student", upstream.url)
    s = run_gate(student, runs, judge="llm", concurrency=4)
    assert s.judge == "llm" and s.judge_reason == "asked for"
    assert s.judge_calls == 13 and s.judge_cache_hits == 0 and s.judge_errors == 0
    assert s.disagreements == 3 and s.agreeing == 117
    judge_requests = [r for r in upstream.requests if r.json and r.json.get("model") == TEACHER]
    assert len(judge_requests) >= 13
    assert s.judge_cost_usd > 0 and s.spent_usd == pytest.approx(s.judge_cost_usd + s.student_cost_usd)
    again = run_gate(student, runs, judge="llm")
    assert again.judge_calls == 0 and again.judge_cache_hits == 13 and again.judge_cost_usd == 0.0
    assert again.disagreements == 3


def test_auto_picks_the_llm_judge_for_free_text(tmp_path, upstream):
    rows = make_rows(100, 0, label=lambda i: f"Your card number {i} will arrive within five working days, sorry for the wait.")
    runs = write_store(tmp_path / "runs", rows)
    upstream.responder = label_responder(rows)
    s = run_gate(write_llm_student(tmp_path / "llm.student", upstream.url), runs)
    assert s.judge == "llm" and s.judge_reason == "auto: teacher outputs are free text"


def test_the_spend_cap_stops_the_gate(tmp_path, rows, runs, upstream):
    upstream.responder = label_responder(rows)
    cap = 30.5 * student_cost()
    verdicts = tmp_path / "gate.parquet"
    with pytest.raises(SpendCapReached) as e:
        run_gate(write_llm_student(tmp_path / "llm.student", upstream.url), runs, judge="normalized",
                 concurrency=8, max_spend=cap, verdicts=verdicts)
    assert e.value.exit_status == 4
    message = str(e.value)
    assert message.startswith(f"--max-spend ${cap:.2f} reached: spent $")
    assert message.endswith("of 120 examples; the gate did not finish, no verdicts written")
    assert len(upstream.requests) == 30  # every call it made fits under the cap
    assert "on 30 of 120 examples" in message
    assert not verdicts.exists()


def test_the_spend_cap_from_the_cli_exits_4(tmp_path, rows, runs, upstream):
    upstream.responder = label_responder(rows)
    student = write_llm_student(tmp_path / "llm.student", upstream.url)
    cap = 6.5 * student_cost()
    result = CliRunner().invoke(app, ["gate", str(student), str(runs), "--max-spend", str(cap), "--judge", "normalized"])
    assert result.exit_code == 4
    spent = 6 * student_cost()
    assert result.stderr == (
        f"Error: --max-spend ${cap:.2f} reached: spent ${spent:.4f} (student ${spent:.4f}, judge $0.0000) on 6 of 120 "
        "examples; the gate did not finish, no verdicts written\n"
    )


def test_a_refused_judge_key_stops_the_gate_with_exit_4(tmp_path, rows, runs, upstream):
    # Labels in capitals: the judge is asked about every one, and the upstream refuses the key.
    student = write_scripted(tmp_path / "s.student", {r.text: f"answer:{r.output.upper()}" for r in rows})
    upstream.fail_next(401, n=1000)
    verdicts = tmp_path / "gate.parquet"
    result = CliRunner().invoke(app, ["gate", str(student), str(runs), "--judge", "llm", "--verdicts", str(verdicts)])
    assert result.exit_code == 4
    assert result.stderr == "Error: llm judge claude-sonnet-5-5: authentication refused (HTTP 401): invalid x-api-key\n"
    assert not verdicts.exists()


def test_the_llm_judge_needs_a_key(tmp_path, rows, runs, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    student = write_scripted(tmp_path / "s.student", {r.text: f"answer:{r.output}" for r in rows})
    result = CliRunner().invoke(app, ["gate", str(student), str(runs), "--judge", "llm"])
    assert result.exit_code == 4
    assert result.stderr == "Error: the llm judge (claude-sonnet-5-5) needs an API key: set ANTHROPIC_API_KEY\n"


# ---- the few-shot kind that build-student makes -----------------------------------------------------------------


def few_shot_responder(rows, wrong: set[str]):
    """The teacher's label for a student request, another of the labels for the texts in `wrong`."""
    by_text = {r.text: r.output for r in rows}
    judge = label_responder(rows)

    def respond(body, provider):
        if body["model"] == TEACHER:
            return judge(body, provider)
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else last[0]["text"]
        label = by_text[text]
        return ("label_1" if label == "label_0" else "label_0") if text in wrong else label

    return respond


@pytest.fixture
def few_shot(tmp_path_factory, upstream):
    from distill_cli.students.build import build_student
    from distill_cli.students.training import salt_for

    work = tmp_path_factory.mktemp("few-shot")
    rows = make_rows(120, 150, salt=salt_for(0))  # the split build-student will make with seed 0
    runs = write_store(work / "runs", rows)
    build_student(runs, work / "fs.student", kind="few-shot", dev_calls=0)
    assert not upstream.requests
    return runs, work / "fs.student", rows


def test_a_few_shot_student_through_429s(few_shot, upstream):
    runs, student, rows = few_shot
    held = [r for r in rows if r.held_out]
    upstream.responder = few_shot_responder(rows, wrong={r.text for r in held[:4]})
    upstream.fail_next(429, n=2, retry_after="0")
    s = run_gate(student, runs, concurrency=16)
    assert s.student_kind == "few-shot" and s.n == 120 and s.errors == 0
    assert s.disagreements == 4 and s.agreeing == 116 and s.passed is False  # 116/120 = 96.7%: bound 92.8%
    assert s.decision == "fallback_teacher"
    assert len([r for r in upstream.requests if r.path == "/v1/messages"]) == 122
    assert s.student_cost_per_call > 0 and s.spent_usd == pytest.approx(s.student_cost_usd)
    cached = [r.json for r in upstream.requests if r.json and r.json["system"][-1].get("cache_control")]
    assert len(cached) == 122  # the student marks its static prefix for prompt caching


def test_a_few_shot_student_under_a_spend_cap(few_shot, upstream):
    runs, student, rows = few_shot
    upstream.responder = few_shot_responder(rows, wrong=set())
    with pytest.raises(SpendCapReached) as e:
        run_gate(student, runs, max_spend=0.0001, concurrency=8)
    message = str(e.value)
    spent = float(message.split("spent $", 1)[1].split(" ", 1)[0])
    assert 0 < spent <= 0.0001 and "of 120 examples" in message


def test_a_few_shot_student_without_its_key_stops_the_gate(few_shot, upstream, monkeypatch):
    runs, student, rows = few_shot
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderError) as e:
        run_gate(student, runs, judge="normalized")
    assert str(e.value).startswith("student ")
    assert str(e.value).endswith("environment variable ANTHROPIC_API_KEY (the API key) is not set")
    assert "could not answer any of the first 10 examples" in str(e.value)
