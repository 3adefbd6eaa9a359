"""providers.py: the one key rule, one client per loop, and the one retry policy, with the real SDKs against the
fake provider on loopback: `x-should-retry`, `retry-after`, and one request per attempt (no SDK retries under it)."""

from __future__ import annotations

import asyncio
import re

import pytest
from gate_support import FAKE_KEY, STUDENT_MODEL, TEACHER, label_responder, make_rows, spec, write_store

from distill_cli.drift import Teacher
from distill_cli.errors import InputError, ProviderError
from distill_cli.gate import run_gate
from distill_cli.judges import JudgeError, LLMJudge
from distill_cli.prices import load_prices
from distill_cli.providers import (
    Clients,
    Failure,
    RetryPolicy,
    Stop,
    check_key_env,
    read_key,
)
from distill_cli.students import few_shot
from distill_cli.students.base import StudentError

SECRET = "ghp_secret_never_read_0000"


class Sleeps:
    """An injected sleep: records what the policy asked for and waits for nothing."""

    def __init__(self):
        self.waits = []

    async def __call__(self, seconds):
        self.waits.append(seconds)


def messages(fake) -> list:
    return [r for r in fake.requests if r.path in ("/v1/messages", "/v1/chat/completions")]


@pytest.fixture
def upstream(fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)  # trusted by the environment, as a proxy would be
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return fake_provider


def llm_student(url: str, *, api: str = "anthropic", retry: RetryPolicy | None = None, **params) -> few_shot.LLMStudent:
    s = spec("few-shot", student_model=STUDENT_MODEL,
             params={"api": api, "base_url": url, "api_key_env": "ANTHROPIC_API_KEY", **params})
    prompt = few_shot.Prompt("Classify the ticket.", "examples", [], None)
    return few_shot.LLMStudent(s, prompt, [], load_prices(), allowed_endpoints=(url,), retry=retry)


def judge(fake, sleeps: Sleeps, **kwargs) -> LLMJudge:
    return LLMJudge("claude-sonnet-5-5", base_url=fake.url, api_key=FAKE_KEY, retry=RetryPolicy(sleep=sleeps), **kwargs)


def same(body, provider):
    return "SAME\nThe same label."


# ---- the policy ------------------------------------------------------------------------------------------------


def test_the_policy_decides_from_status_and_headers():
    policy = RetryPolicy(attempts=3)
    assert policy.decide(Failure(401, {}, "no"), 1) == (None, Stop.FATAL)
    assert policy.decide(Failure(401, {"x-should-retry": "true"}, "no"), 1) == (None, Stop.FATAL)  # a key is never cured
    assert policy.decide(Failure(400, {}, "bad"), 1) == (None, Stop.REJECTED)
    assert policy.decide(Failure(400, {"x-should-retry": "true"}, "bad"), 1) == (pytest.approx(0.5, abs=0.125), None)
    assert policy.decide(Failure(529, {"x-should-retry": "false"}, "busy"), 1) == (None, Stop.TOLD)
    assert policy.decide(Failure(None, {"x-should-retry": "False"}, "down"), 1) == (None, Stop.TOLD)
    assert policy.decide(Failure(429, {"retry-after": "7"}, "slow down"), 1) == (7.0, None)
    assert policy.decide(Failure(429, {"retry-after-ms": "1500", "retry-after": "2"}, "slow down"), 2) == (1.5, None)
    assert policy.decide(Failure(429, {"retry-after": "61"}, "slow down"), 1) == (61.0, Stop.TOO_LONG)
    assert policy.decide(Failure(503, {"retry-after": "0"}, "down"), 3) == (None, Stop.EXHAUSTED)


# ---- x-should-retry --------------------------------------------------------------------------------------------


def test_x_should_retry_false_stops_the_judge_at_once(fake_provider):
    fake_provider.responder = same
    fake_provider.fail_next(529, n=5, headers={"x-should-retry": "false"})
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as e:
        judge(fake_provider, sleeps).judge("refund", "REFUND", "q")
    assert str(e.value) == "llm judge claude-sonnet-5-5: HTTP 529: Overloaded (the provider said not to retry)"
    assert len(messages(fake_provider)) == 1 and sleeps.waits == []


def test_x_should_retry_true_retries_what_the_status_alone_would_not(fake_provider):
    fake_provider.responder = same
    fake_provider.fail_next(400, n=1, headers={"x-should-retry": "true"})
    sleeps = Sleeps()
    assert judge(fake_provider, sleeps).judge("refund", "REFUND", "q").agree
    assert len(messages(fake_provider)) == 2 and len(sleeps.waits) == 1
    fake_provider.fail_next(400, n=1)  # without the header a 400 is this request's fault: not retried
    with pytest.raises(JudgeError, match="HTTP 400"):
        judge(fake_provider, Sleeps()).judge("refund", "Refund", "q")
    assert len(messages(fake_provider)) == 3


def test_x_should_retry_false_stops_the_student_and_the_gate_does_not_retry_it(tmp_path, upstream):
    rows = make_rows(120)
    upstream.responder = label_responder(rows)
    sleeps = Sleeps()
    student = llm_student(upstream.url, retry=RetryPolicy(sleep=sleeps))
    upstream.fail_next(503, n=1, headers={"x-should-retry": "false"})
    with pytest.raises(StudentError, match="503") as e:
        student.answer({"messages": [{"role": "user", "content": rows[0].text}]})
    assert e.value.status == 503 and e.value.stopped is Stop.TOLD and len(messages(upstream)) == 1
    upstream.reset()
    upstream.fail_next(503, n=1, headers={"x-should-retry": "false"})
    gate_sleeps = Sleeps()
    s = run_gate(student, write_store(tmp_path / "runs", rows), judge="normalized", concurrency=1,
                 retry=RetryPolicy(sleep=gate_sleeps))
    assert s.n == 120 and s.errors == 1
    assert len(messages(upstream)) == 120 and sleeps.waits == [] and gate_sleeps.waits == []


def test_x_should_retry_false_stops_the_live_teacher(upstream):
    sleeps = Sleeps()
    teacher = Teacher(TEACHER, "anthropic", load_prices(), retry=RetryPolicy(sleep=sleeps))
    upstream.fail_next(429, n=5, headers={"x-should-retry": "false"})
    with pytest.raises(ProviderError, match=r"^live teacher claude-sonnet-5-5: HTTP 429: .*\(the provider said not to retry\)$"):
        asyncio.run(ask_once(teacher))
    assert len(messages(upstream)) == 1 and sleeps.waits == []


async def ask_once(teacher: Teacher):
    try:
        return await teacher.ask(teacher.request_for('{"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}'))
    finally:
        await teacher.aclose()


# ---- retry-after -----------------------------------------------------------------------------------------------


def test_the_student_honours_retry_after(upstream):
    upstream.responder = lambda body, provider: "label_1"
    sleeps = Sleeps()
    student = llm_student(upstream.url, retry=RetryPolicy(sleep=sleeps))
    upstream.fail_next(429, n=2, retry_after="7")
    answer = asyncio.run(answer_once(student))
    assert answer.output == "label_1" and sleeps.waits == [7.0, 7.0] and len(messages(upstream)) == 3
    upstream.fail_next(529, n=1, headers={"retry-after-ms": "1500"})
    asyncio.run(answer_once(student))
    assert sleeps.waits == [7.0, 7.0, 1.5]


async def answer_once(student):
    try:
        return await student.answer_async({"messages": [{"role": "user", "content": "ticket"}]})
    finally:
        await student.aclose()


def test_a_retry_after_longer_than_max_wait_is_not_slept_through(tmp_path, upstream):
    rows = make_rows(120)
    upstream.responder = label_responder(rows)
    sleeps = Sleeps()
    student = llm_student(upstream.url, retry=RetryPolicy(sleep=sleeps))
    upstream.fail_next(429, n=1, retry_after="3600")
    with pytest.raises(ProviderError, match=r"429: .* \(asked to retry after 3600 s; the gate stopped\)$"):
        run_gate(student, write_store(tmp_path / "runs", rows), judge="normalized", concurrency=1,
                 retry=RetryPolicy(sleep=Sleeps()))
    assert sleeps.waits == [] and len(messages(upstream)) == 1


def test_the_gate_honours_retry_after_for_any_student(tmp_path, upstream):
    """A student that does not retry itself (here the test kind `llm-test`, SDK retries off) is retried by the gate."""
    from gate_support import write_llm_student

    rows = make_rows(120)
    upstream.responder = label_responder(rows)
    upstream.fail_next(429, n=2, retry_after="3")
    sleeps = Sleeps()
    s = run_gate(write_llm_student(tmp_path / "t.student", upstream.url, max_retries=0),
                 write_store(tmp_path / "runs", rows), judge="normalized", concurrency=1, retry=RetryPolicy(sleep=sleeps))
    assert s.errors == 0 and sleeps.waits == [3.0, 3.0] and len(messages(upstream)) == 122


# ---- one request per attempt -----------------------------------------------------------------------------------


def test_one_request_per_attempt_for_the_student(upstream):
    upstream.responder = lambda body, provider: "label_1"
    sleeps, blocking = Sleeps(), []
    student = llm_student(upstream.url, retry=RetryPolicy(attempts=4, sleep=sleeps, blocking_sleep=blocking.append))
    upstream.fail_next(529, n=3)
    assert student.answer_text("ticket").output == "label_1"  # the sync client too: SDK retries off
    assert len(messages(upstream)) == 4 and len(blocking) == 3 and sleeps.waits == []
    upstream.reset()
    upstream.fail_next(529, n=100, retry_after="0")
    with pytest.raises(StudentError, match="529") as e:
        asyncio.run(answer_once(student))
    assert len(messages(upstream)) == 4 and e.value.attempts == 4 and e.value.stopped is Stop.EXHAUSTED


def test_a_gated_llm_student_makes_its_policys_requests_not_fifteen(tmp_path, upstream):
    rows = make_rows(120)
    runs = write_store(tmp_path / "runs", rows)
    upstream.fail_next(500, n=10_000, retry_after="0")
    student = llm_student(upstream.url)  # the student's own policy: three requests, as the SDK's two retries made
    gate_sleeps = Sleeps()
    with pytest.raises(ProviderError) as e:
        run_gate(student, runs, judge="normalized", concurrency=1, retry=RetryPolicy(sleep=gate_sleeps))
    assert str(e.value).startswith(f"student few-shot-student: {STUDENT_MODEL} at {upstream.url}: 500: ")
    assert str(e.value).endswith(" (still failing after 3 attempts; the gate stopped)")
    assert len(messages(upstream)) == few_shot.STUDENT_ATTEMPTS == 3 and gate_sleeps.waits == []
    assert all(r.header("x-stainless-retry-count") in (None, "0") for r in messages(upstream))


def test_one_request_per_attempt_for_the_judge_and_the_teacher(upstream):
    upstream.responder = same
    upstream.fail_next(529, n=100)
    sleeps = Sleeps()
    llm = LLMJudge("claude-sonnet-5-5", api_key=FAKE_KEY, retry=RetryPolicy(attempts=3, sleep=sleeps))
    with pytest.raises(ProviderError, match=r"\(gave up after 3 attempts\)$"):
        llm.judge("refund", "REFUND", "q")
    assert len(messages(upstream)) == 3 and len(sleeps.waits) == 2
    upstream.reset()
    upstream.fail_next(529, n=100)
    teacher = Teacher(TEACHER, "anthropic", load_prices(), retry=RetryPolicy(attempts=2, sleep=Sleeps()))
    with pytest.raises(ProviderError, match=r"^live teacher claude-sonnet-5-5: HTTP 529: Overloaded \(gave up after 2 attempts\)$"):
        asyncio.run(ask_once(teacher))
    assert len(messages(upstream)) == 2


def test_an_openai_compatible_student_retries_under_the_same_policy(fake_provider):
    fake_provider.responder = lambda body, provider: "label_2"
    sleeps = Sleeps()
    student = llm_student(fake_provider.openai_url, api="openai", retry=RetryPolicy(sleep=sleeps), key_required=False,
                          api_key_env=None)
    fake_provider.require_auth = False
    fake_provider.fail_next(503, n=2, retry_after="1", path_prefix="/v1/chat")
    assert student.answer_text("ticket").output == "label_2"
    assert sleeps.waits == [1.0, 1.0] and len(messages(fake_provider)) == 3
    fake_provider.fail_next(400, n=1, path_prefix="/v1/chat")
    with pytest.raises(StudentError, match=re.escape(f"{fake_provider.openai_url}/chat/completions answered 400")) as e:
        student.answer_text("ticket")
    assert e.value.status == 400 and e.value.stopped is Stop.REJECTED and len(messages(fake_provider)) == 4


# ---- keys ------------------------------------------------------------------------------------------------------


def test_the_key_variable_rule():
    assert check_key_env("VLLM_API_KEY", who="x") == "VLLM_API_KEY"
    for name in ("GITHUB_TOKEN", "api_key", "AWS_SECRET_ACCESS_KEY", "_API_KEY", "X_API_KEY_2"):
        with pytest.raises(InputError, match=re.escape(f"x: its key variable {name!r} is not a *_API_KEY variable")):
            check_key_env(name, who="x")
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "ANTHROPIC_AUTH_TOKEN": "t", "MY_API_KEY": "m"}
    assert read_key("anthropic", who="x", environ=env) == "a"
    assert read_key("openai", who="x", environ=env) == "o"
    assert read_key("anthropic", "MY_API_KEY", who="x", environ=env) == "m"
    assert read_key("anthropic", who="x", environ={"ANTHROPIC_AUTH_TOKEN": "t"}) == "t"
    assert read_key("openai", who="x", environ={"ANTHROPIC_AUTH_TOKEN": "t"}) is None
    assert read_key("anthropic", "MY_API_KEY", who="x", environ={"ANTHROPIC_AUTH_TOKEN": "t"}) is None


def test_the_judge_and_the_teacher_keep_the_key_rule_too(upstream, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    with pytest.raises(InputError) as e:
        LLMJudge("claude-sonnet-5-5", key_env="GITHUB_TOKEN")
    assert str(e.value) == ("llm judge claude-sonnet-5-5: its key variable 'GITHUB_TOKEN' is not a *_API_KEY variable; "
                            "refusing to read it")
    with pytest.raises(InputError) as e:
        Teacher(TEACHER, "anthropic", load_prices(), key_env="GITHUB_TOKEN")
    assert str(e.value) == ("live teacher claude-sonnet-5-5: its key variable 'GITHUB_TOKEN' is not a *_API_KEY variable; "
                            "refusing to read it")
    assert upstream.requests == []
    # A *_API_KEY variable is read, and its key is the one sent.
    monkeypatch.setenv("JUDGE_API_KEY", "sk-ant-test-judge-key-0000")
    upstream.responder = same
    assert LLMJudge("claude-sonnet-5-5", key_env="JUDGE_API_KEY").judge("a", "A").agree
    sent = upstream.requests[-1]
    assert "sk-ant-test-judge-key-0000" in (sent.header("x-api-key") or "") + (sent.header("authorization") or "")
    with pytest.raises(ProviderError, match="needs an API key: set OTHER_API_KEY"):
        Teacher(TEACHER, "anthropic", load_prices(), key_env="OTHER_API_KEY")
    assert all(SECRET not in str(r.headers) for r in upstream.requests)


# ---- clients ---------------------------------------------------------------------------------------------------


def test_one_client_per_running_loop_with_sdk_retries_off():
    reads = []

    def key():
        reads.append(1)
        return "sk-ant-test-fake"

    clients = Clients("anthropic", key, base_url="http://127.0.0.1:9")

    async def twice():
        first, second = clients.async_client(), clients.async_client()
        await clients.aclose()
        return first, second

    a, b = asyncio.run(twice())
    c, _ = asyncio.run(twice())
    assert a is b and a is not c and a.max_retries == 0 and len(reads) == 2
    assert clients.sync_client() is clients.sync_client() and clients.sync_client().max_retries == 0
    oai = Clients("openai", lambda: "sk-test-fake", base_url="http://127.0.0.1:9/v1", timeout=5)
    assert oai.sync_client().max_retries == 0 and oai.sync_client().timeout == 5
