"""Judges: the rule judges, choosing one, and the LLM judge against the fake provider with the real SDKs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from distill_cli.errors import InputError, ProviderError
from distill_cli.judges import (
    RUBRIC,
    ExactJudge,
    JsonJudge,
    JudgeError,
    LLMJudge,
    NormalizedJudge,
    NumericJudge,
    choose_judge,
    judge_cache_dir,
    make_judge,
    normalize,
    parse_number,
    parse_verdict,
)
from distill_cli.prices import load_prices, usage_from_anthropic
from distill_cli.providers import RetryPolicy, retry_after_seconds

KEY = "sk-ant-test-fake-key-000000"


# ---- rule judges -----------------------------------------------------------------------------------------------


def test_exact():
    j = ExactJudge()
    assert j.judge("card_arrival", "card_arrival").agree
    d = j.judge("card_arrival", "Card_arrival")
    assert not d.agree and 0 < d.score < 1


def _words(seed: int, n: int) -> str:
    import random

    vocabulary = ("refund card account order package delivery courier storm warehouse tracking voucher receipt bank "
                  "email business days tomorrow noon door driver sorry wait price shipping amount arrived reply").split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def test_long_unrelated_texts_score_as_low_as_short_ones():
    """Above 4,000 characters together difflib scored with quick_ratio, a bound that ignores order: 0.97 here."""
    from difflib import SequenceMatcher

    teacher, student = _words(1, 400), _words(2, 400)  # about 2,800 characters each, the same words, unrelated
    assert len(teacher) + len(student) > 4000
    assert SequenceMatcher(None, teacher, student, autojunk=False).quick_ratio() > 0.95  # what it scored before
    far = ExactJudge().judge(teacher, student)
    assert not far.agree and far.score < 0.6
    short = ExactJudge().judge(teacher[:1000], student[:1000])
    assert abs(far.score - short.score) < 0.1  # no jump at a length threshold
    near = ExactJudge().judge(teacher, teacher.replace("refund", "return", 1))
    assert near.score > 0.99 > far.score  # the worst disagreement sorts first


@pytest.mark.parametrize(
    "teacher, student",
    [
        ("card_arrival", "Card_Arrival"),
        ("The answer is yes.", "the answer is yes"),
        ("yes", '"Yes"'),
        ("yes", "\u201cyes\u201d"),
        ("a  b\tc", "a b c"),
        ("refund", "```\nrefund\n```"),
        ("refund", "```text\nREFUND.\n```"),
        ("don't", "don\u2019t"),
    ],
)
def test_normalized_agrees_on_surface_differences(teacher, student):
    assert NormalizedJudge().judge(teacher, student).agree


@pytest.mark.parametrize("teacher, student", [("3.14", "314"), ("yes", "no"), ("card arrival", "card_arrival_late")])
def test_normalized_keeps_real_differences(teacher, student):
    j = NormalizedJudge().judge(teacher, student)
    assert not j.agree and j.reason.endswith(f"is not {normalize(teacher)!r}")


def test_json_ignores_key_order_and_number_noise():
    j = JsonJudge()
    assert j.judge('{"a": 1, "b": [1, 2]}', '```json\n{"b": [1, 2.0000000001], "a": 1.0}\n```').agree
    assert j.judge('[{"x": null}]', '[{"x": null}]').agree


@pytest.mark.parametrize(
    "student, reason",
    [
        ('{"a": 1, "b": [2, 1]}', "$.b[0]: 2 is not 1"),
        ('{"a": 1}', "$: missing key 'b'"),
        ('{"a": 1, "b": [1, 2], "c": 0}', "$: unexpected key 'c'"),
        ('{"a": true, "b": [1, 2]}', "$.a: true is not 1"),
        ('{"a": 1, "b": [1]}', "$.b: 1 items, not 2"),
        ("not json", "student output is not JSON: 'not json'"),
    ],
)
def test_json_names_the_first_difference(student, reason):
    j = JsonJudge().judge('{"a": 1, "b": [1, 2]}', student)
    assert not j.agree and j.reason == reason and 0 <= j.score < 1


def test_json_scores_by_shared_leaves():
    assert JsonJudge().judge('{"a": 1, "b": 2, "c": 3, "d": 4}', '{"a": 1, "b": 2, "c": 3, "d": 5}').score == 0.75


def test_json_judge_cannot_judge_a_teacher_answer_that_is_not_json():
    with pytest.raises(JudgeError, match="teacher output is not JSON"):
        JsonJudge().judge("hello", "{}")


@pytest.mark.parametrize(
    "text, value",
    [("42", 42.0), (" 3.50 ", 3.5), ("$1,234.50", 1234.5), ("45%", 45.0), ("The answer is 7.", 7.0),
     ("```\n-2e3\n```", -2000.0), ("1 or 2", None), ("none", None), ("nan", None)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_numeric_tolerance():
    assert NumericJudge().judge("1234.5", "$1,234.50").agree
    assert not NumericJudge().judge("100", "101").agree
    assert NumericJudge(rel_tol=0.02).judge("100", "101").agree
    j = NumericJudge().judge("100", "75")
    assert not j.agree and j.score == pytest.approx(0.75) and j.reason == "75 is not 100"
    assert NumericJudge().judge("100", "about a hundred").reason == "student output is not a number: 'about a hundred'"
    with pytest.raises(JudgeError, match="teacher output is not a number"):
        NumericJudge().judge("many", "3")


def test_choose_judge():
    assert choose_judge(['{"a": 1}', "[1, 2]"]) == ("json", "teacher outputs are JSON")
    assert choose_judge(["1", "2.5", "$3"]) == ("numeric", "teacher outputs are numbers")
    assert choose_judge(["card_arrival", "refund", "refund"]) == ("normalized", "teacher outputs are short (2 distinct)")
    long_labels = ["the customer wants a refund for a duplicated card payment made last week"] * 10
    assert choose_judge(long_labels) == ("normalized", "teacher outputs form a closed set (1 distinct)")
    prose = [f"Here is a long answer number {i} explaining at length what happened to the card." for i in range(20)]
    assert choose_judge(prose) == ("llm", "teacher outputs are free text")
    assert make_judge("auto", outputs=["1", "2"])[1] == "auto: teacher outputs are numbers"


def test_llm_judge_needs_a_model_and_a_key(monkeypatch):
    with pytest.raises(InputError, match="the llm judge needs a model"):
        make_judge("llm", model=None)
    with pytest.raises(ProviderError) as e:
        make_judge("llm", model="claude-sonnet-5-5")
    assert str(e.value) == "the llm judge (claude-sonnet-5-5) needs an API key: set ANTHROPIC_API_KEY"
    assert e.value.exit_status == 4


# ---- retry-after ---------------------------------------------------------------------------------------------


def test_retry_after_seconds():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0"}) == 0.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_verdict_parsing():
    assert parse_verdict("SAME\nBoth say refund.") == (True, "Both say refund.")
    assert parse_verdict("**Different** - the amounts differ") == (False, "the amounts differ")
    assert parse_verdict("same") == (True, "SAME")
    with pytest.raises(JudgeError, match="the judge answered neither SAME nor DIFFERENT: 'Maybe.'"):
        parse_verdict("Maybe.")


# ---- the LLM judge against the fake provider ------------------------------------------------------------------


def verdict_responder(body, provider):
    """SAME when the candidate equals the reference ignoring case, else DIFFERENT."""
    user = body["messages"][-1]["content"]
    ref = user.split("<reference>\n", 1)[1].split("\n</reference>", 1)[0]
    cand = user.split("<candidate>\n", 1)[1].split("\n</candidate>", 1)[0]
    return "SAME\nSame label." if ref.lower() == cand.lower() else "DIFFERENT\nOther label."


class Sleeps:
    def __init__(self):
        self.waits = []

    async def __call__(self, seconds):
        self.waits.append(seconds)


def llm_judge(fake, **kwargs):
    sleeps = kwargs.pop("sleeps", Sleeps())
    return LLMJudge("claude-sonnet-5-5", base_url=fake.url, api_key=KEY,
                    retry=kwargs.pop("retry", RetryPolicy(sleep=sleeps)), **kwargs)


def test_llm_judge_asks_with_the_rubric_and_counts_cost(fake_provider):
    fake_provider.responder = verdict_responder
    judge = llm_judge(fake_provider)
    same = judge.judge("refund", "REFUND", "I want my money back")
    assert same.agree and same.score == 1.0 and same.reason == "Same label." and not same.cached
    body = fake_provider.requests[-1].json
    assert body["model"] == "claude-sonnet-5-5" and body["system"] == RUBRIC
    assert "temperature" not in body  # the current Messages API refuses sampling parameters
    assert "<request>\nI want my money back\n</request>" in body["messages"][0]["content"]
    reply_usage = {"input_tokens": len((RUBRIC + " " + body["messages"][0]["content"]).split()), "output_tokens": 3}
    assert same.cost_usd == pytest.approx(load_prices().cost("claude-sonnet-5-5", usage_from_anthropic(reply_usage)))
    different = judge.judge("refund", "card_arrival", "I want my money back")
    assert not different.agree and different.score == 0.0 and different.reason == "Other label."
    assert judge.calls == 2 and judge.cost_usd == pytest.approx(same.cost_usd + different.cost_usd)


def test_identical_answers_need_no_call(fake_provider):
    judge = llm_judge(fake_provider)
    assert judge.judge("refund", "refund").agree and fake_provider.requests == []


def test_llm_verdicts_are_cached_on_disk_by_model_rubric_and_inputs(fake_provider, tmp_path):
    fake_provider.responder = verdict_responder
    first = llm_judge(fake_provider).judge("refund", "REFUND", "q")
    files = list(judge_cache_dir().rglob("*.json"))
    assert len(files) == 1 and judge_cache_dir().parent.parent == Path(os.environ["XDG_CACHE_HOME"])
    record = json.loads(files[0].read_text())
    assert record["agree"] is True and record["model"] == "claude-sonnet-5-5" and "api" not in json.dumps(record).lower()
    again = llm_judge(fake_provider).judge("refund", "REFUND", "q")
    assert again.cached and again.agree == first.agree and again.cost_usd == 0.0
    assert len(fake_provider.requests) == 1
    llm_judge(fake_provider).judge("refund", "REFUND", "another question")  # other inputs: asked again
    other_model = LLMJudge("claude-haiku-4-5", base_url=fake_provider.url, api_key=KEY)
    other_model.judge("refund", "REFUND", "q")  # another judge model: asked again
    assert len(fake_provider.requests) == 3


def test_cache_lives_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert judge_cache_dir() == tmp_path / "xdg" / "distill" / "judge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert judge_cache_dir() == tmp_path / "home" / ".cache" / "distill" / "judge"


def test_llm_judge_errors_are_never_cached(fake_provider):
    fake_provider.responder = lambda body, provider: "I cannot decide."
    with pytest.raises(JudgeError, match="the judge answered neither SAME nor DIFFERENT"):
        llm_judge(fake_provider).judge("refund", "REFUND", "q")
    assert not judge_cache_dir().exists() or not list(judge_cache_dir().rglob("*.json"))
    fake_provider.fail_next(400)
    with pytest.raises(JudgeError, match="HTTP 400"):
        llm_judge(fake_provider).judge("refund", "REFUND", "q")
    fake_provider.responder = verdict_responder
    assert llm_judge(fake_provider).judge("refund", "REFUND", "q").agree
    assert len(fake_provider.requests) == 3


def test_llm_judge_retries_429_honouring_retry_after(fake_provider):
    fake_provider.responder = verdict_responder
    fake_provider.fail_next(429, n=2, retry_after="0")
    sleeps = Sleeps()
    assert llm_judge(fake_provider, sleeps=sleeps).judge("refund", "REFUND", "q").agree
    assert sleeps.waits == [0.0, 0.0] and len(fake_provider.requests) == 3
    fake_provider.fail_next(529, n=1, retry_after="2")
    sleeps = Sleeps()
    assert llm_judge(fake_provider, sleeps=sleeps).judge("refund", "Refund", "q").agree
    assert sleeps.waits == [2.0]


def test_llm_judge_backs_off_exponentially_without_retry_after(fake_provider):
    fake_provider.responder = verdict_responder
    fake_provider.fail_next(529, n=3)
    sleeps = Sleeps()
    assert llm_judge(fake_provider, sleeps=sleeps).judge("refund", "REFUND", "q").agree
    assert len(sleeps.waits) == 3
    for attempt, wait in enumerate(sleeps.waits):
        assert 0.75 * 0.5 * 2**attempt <= wait <= 0.5 * 2**attempt


def test_llm_judge_gives_up_as_a_provider_error(fake_provider):
    fake_provider.fail_next(529, n=5)
    with pytest.raises(ProviderError) as e:
        llm_judge(fake_provider).judge("refund", "REFUND", "q")
    assert str(e.value) == "llm judge claude-sonnet-5-5: HTTP 529: Overloaded (gave up after 5 attempts)"
    fake_provider.reset()
    fake_provider.fail_next(429, retry_after="3600")
    with pytest.raises(ProviderError, match="asked to retry after 3600 s, more than 60 s"):
        llm_judge(fake_provider).judge("refund", "REFUND", "q")
    fake_provider.fail_next(401)
    with pytest.raises(ProviderError, match=r"authentication refused \(HTTP 401\): invalid x-api-key"):
        llm_judge(fake_provider).judge("refund", "REFUND", "q")


def test_unreachable_upstream_is_a_provider_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = LLMJudge("claude-sonnet-5-5", base_url=f"http://127.0.0.1:{port}", api_key=KEY,
                     retry=RetryPolicy(attempts=2, sleep=Sleeps()))
    with pytest.raises(ProviderError, match=r"llm judge claude-sonnet-5-5: unreachable: .*\(gave up after 2 attempts\)"):
        judge.judge("refund", "REFUND", "q")


def test_llm_judge_reads_the_sdk_environment(fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    fake_provider.responder = verdict_responder
    judge, reason = make_judge("llm", model="claude-sonnet-5-5")
    assert reason == "asked for" and judge.judge("a", "A").agree
    sent = fake_provider.requests[-1]
    assert KEY in (sent.header("x-api-key") or "") + (sent.header("authorization") or "")


def test_openai_judge(fake_provider):
    def respond(body, provider):
        assert provider == "openai" and body["messages"][0] == {"role": "system", "content": RUBRIC}
        assert body["temperature"] == 0
        return verdict_responder(body, provider)

    fake_provider.responder = respond
    judge = LLMJudge("gpt-4o", base_url=fake_provider.openai_url, api_key="sk-test-fake-openai-key-0000",
                     retry=RetryPolicy(sleep=Sleeps()))
    assert judge.provider == "openai"
    assert judge.judge("refund", "REFUND", "q").agree
    assert not judge.judge("refund", "card", "q").agree
    assert fake_provider.requests[-1].path == "/v1/chat/completions"
    assert judge.cost_usd > 0


def test_async_judging_shares_one_client(fake_provider):
    fake_provider.responder = verdict_responder
    judge = llm_judge(fake_provider)
    candidates = ["refund", "Refund", "REFUND", "rEFUND", "reFund", "refunD"]

    async def run():
        try:
            return await asyncio.gather(*(judge.judge_async("refund", c, "q") for c in candidates))
        finally:
            await judge.aclose()

    results = asyncio.run(run())
    assert [r.agree for r in results] == [True] * 6 and judge.calls == 5  # the identical one needs no call
