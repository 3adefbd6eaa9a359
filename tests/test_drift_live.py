"""drift --live-teacher: recent student-served calls re-asked of the teacher through the real anthropic SDK
(pointed at the fake provider by ANTHROPIC_BASE_URL), cost counted, capped by max_spend."""

from __future__ import annotations

import random

import pytest
from drift_support import TEACHER

from distill_cli.drift import run_drift
from distill_cli.economics import SpendCapReached
from distill_cli.errors import ProviderError
from distill_cli.prices import load_prices

FAKE_KEY = "sk-ant-test-fake-drift-0000"


@pytest.fixture
def teacher(fake_provider, monkeypatch, queries):
    """The fake upstream as the teacher: answers each query with its intent (or `wrong` for those in `.wrong`)."""
    held, _ = queries
    labels = {q.text: q.label for q in held}
    fake_provider.wrong = set()

    def respond(body, provider):
        text = body["messages"][-1]["content"]
        return "wrong_intent" if text in fake_provider.wrong else labels.get(text, "unknown")

    fake_provider.responder = respond
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return fake_provider


def test_live_teacher_checks_recent_student_answers(site, queries, teacher):
    held, _ = queries
    rng = random.Random(1)
    now = site.day(rng.sample(held, 120), 0, rng, shadow_rate=0.0)  # no shadow pairs: only the live teacher checks
    r = run_drift(site.student, site.stores, now=now, live_teacher=True, sample=12, log=site.log)
    assert r.live_calls == 12 and r.pairs == 12 and r.agreeing == 12
    calls = [q for q in teacher.requests if q.path == "/v1/messages"]
    assert len(calls) == 12
    assert all(q.json["model"] == TEACHER and "stream" not in q.json for q in calls)
    assert all(FAKE_KEY in (q.header("x-api-key"), q.header("authorization", "").removeprefix("Bearer ")) for q in calls)
    # Cost: what the price table says the teacher's reported usage costs, summed.
    prices = load_prices()
    assert r.teacher_spent_usd > 0 and r.spent_usd == pytest.approx(r.teacher_spent_usd)
    assert r.check("agreement").details["live_pairs"] == 12
    assert r.status == "ok"
    assert prices.lookup(TEACHER) is not None


def test_live_teacher_disagreeing_is_agreement_drift(site, queries, teacher):
    held, _ = queries
    rng = random.Random(2)
    day = rng.sample(held, 150)
    teacher.wrong = {q.text for q in day[: len(day) // 3]}
    now = site.day(day, 0, rng, shadow_rate=0.0)
    # Every served input re-asked: the outcome must not depend on which rows a sample happens to draw.
    r = run_drift(site.student, site.stores, now=now, live_teacher=True, sample=len(day))
    assert r.check("agreement").drifted and r.agreement < 0.85
    assert all(d["live"] and d["teacher"] == "wrong_intent" for d in r.disagreements)


def test_spend_cap_stops_the_run_and_writes_nothing(site, queries, teacher):
    held, _ = queries
    rng = random.Random(3)
    now = site.day(rng.sample(held, 120), 0, rng, shadow_rate=0.0)
    with pytest.raises(SpendCapReached, match=r"--max-spend \$0\.01 reached: spent \$0\.0\d+ \(teacher \$0\.0\d+, judge \$0\.0000\) "
                       r"on \d+ of 80 student answers; drift did not finish, no log row written") as caught:
        # 80 asked: 40 calls of claude-sonnet-5-5 ($2 / $10) at the fake's token counts cost less than the cap.
        run_drift(site.student, site.stores, now=now, live_teacher=True, sample=80, max_spend=0.01, log=site.log)
    assert caught.value.exit_status == 4
    asked = len([q for q in teacher.requests if q.path == "/v1/messages"])
    assert 1 <= asked < 80
    assert not site.log.exists()


def test_live_teacher_without_a_key_is_a_provider_error(site, queries, teacher, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    held, _ = queries
    rng = random.Random(4)
    now = site.day(rng.sample(held, 60), 0, rng, shadow_rate=0.0)
    with pytest.raises(ProviderError, match=r"--live-teacher asks the teacher \(claude-sonnet-5-5\) and needs an API key: "
                       r"set ANTHROPIC_API_KEY"):
        run_drift(site.student, site.stores, now=now, live_teacher=True)
    assert teacher.requests == []


def test_refused_key_is_a_provider_error(site, queries, teacher):
    held, _ = queries
    rng = random.Random(5)
    now = site.day(rng.sample(held, 60), 0, rng, shadow_rate=0.0)
    teacher.fail_next(401, 100)
    with pytest.raises(ProviderError, match=r"live teacher claude-sonnet-5-5: authentication refused \(HTTP 401\)"):
        run_drift(site.student, site.stores, now=now, live_teacher=True, sample=5, log=site.log)
    assert not site.log.exists()


def test_live_teacher_asks_only_calls_new_since_the_last_run(site, queries, teacher):
    held, _ = queries
    rng = random.Random(6)
    now = site.day(rng.sample(held, 80), 0, rng, shadow_rate=0.0)
    first = run_drift(site.student, site.stores, now=now, live_teacher=True, sample=10, log=site.log)
    assert first.live_calls == 10
    # An hour later nothing new was served: the same calls are not re-asked (or counted) again.
    again = run_drift(site.student, site.stores, now=now.replace(hour=1), live_teacher=True, sample=10, log=site.log)
    assert again.live_calls == 0
    assert any("no new student-served call" in n for n in again.notes)
