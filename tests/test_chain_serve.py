"""Serving a chain: `record --student a --student b` asks a, then b, then the teacher, and the rows say who answered.

Tiers here are in-memory students whose behaviour is scripted by the message's first
word; the teacher is the fake provider on loopback, the clients the real SDKs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_record_cli import job_env, upstreams, write_job
from test_record_proxy import stored
from test_route import TASK, TEACHER, ant, ask, demote, oai, oai_ask, routed, write_cache_student
from test_route_cli import job_request, run
from typer.testing import CliRunner

from distill_cli import canonical, schemas
from distill_cli.cli import app
from distill_cli.recorder.router import Route
from distill_cli.students.base import Answer, Student, StudentError, StudentSpec, request_input
from distill_cli.students.chain import Chain
from distill_cli.students.registry import load_chain

CHAIN = "tier-a > tier-b"
COST_A = 0.001  # what tier a spends on every call it is asked, declined or not (an LLM tier's tokens)
COST_B = 0.01


class Tier(Student):
    """A chain tier: does `behaviour[first word of the text]` (decline when the word is not there).

    answer: `label` at confidence 0.9; decline (confidence 0.2); error (StudentError); crash (ValueError);
    slow (sleeps 2 s, then answers). Every call asked costs `cost`, a decline too.
    """

    def __init__(self, student_id: str, label: str, cost: float, behaviour: dict[str, str]) -> None:
        super().__init__(StudentSpec(id=student_id, kind="toy", task=TASK, teacher_model=TEACHER))
        self.label, self.cost, self.behaviour = label, cost, behaviour
        self.asked: list[str] = []

    def answer(self, request: dict) -> Answer:
        raise NotImplementedError("async only")

    async def answer_async(self, request: dict) -> Answer:
        text = request_input(request)
        self.asked.append(text)
        what = self.behaviour.get(text.split()[0], "decline")
        if what == "error":
            raise StudentError(f"{self.id} upstream said 529")
        if what == "crash":
            raise ValueError(f"a bug in {self.id}")
        if what == "slow":
            await asyncio.sleep(2)
        if what == "decline":
            return Answer(None, confidence=0.2, cost_usd=self.cost, reason="unsure", input_tokens=40, output_tokens=1)
        return Answer(self.label, confidence=0.9, cost_usd=self.cost, input_tokens=40, output_tokens=3)


# first word -> (what tier a does, what tier b does)
SCRIPT = {
    "easy": ("answer", "answer"),
    "hard": ("decline", "answer"),
    "stuck": ("decline", "decline"),
    "fails": ("error", "answer"),
    "crashes": ("crash", "answer"),
    "slow": ("slow", "answer"),
    "broken": ("decline", "crash"),
    "lagging": ("decline", "slow"),
    "doomed": ("error", "error"),
    "erratic": ("error", "decline"),
}


def tiers() -> tuple[Tier, Tier]:
    a = Tier("tier-a", "card_arrival", COST_A, {w: s[0] for w, s in SCRIPT.items()})
    b = Tier("tier-b", "lost_card", COST_B, {w: s[1] for w, s in SCRIPT.items()})
    return a, b


def chain_route(tmp_path: Path, a: Student, b: Student) -> Route:
    return Route(Chain([a, b]), tmp_path / "a.student", gate=None)


def chain_of(row: dict) -> dict | None:
    return json.loads(row["metadata"]).get("chain") if row["metadata"] else None


def attempt(tier: int, answered: bool, cost: float | None, error: str | None = None) -> dict:
    return {"tier": tier, "student_id": ["tier-a", "tier-b"][tier], "answered": answered, "cost_usd": cost,
            "error": error}


def send(rec, shape: str, text: str) -> tuple[str, str]:
    """(model, text) of the answer the job gets, through the real SDK, in one of four request shapes."""
    if shape == "anthropic":
        msg = ant(rec).messages.create(**ask(text))
        return msg.model, msg.content[0].text
    if shape == "anthropic-stream":
        with ant(rec).messages.stream(**ask(text)) as stream:
            pieces = "".join(stream.text_stream)
            msg = stream.get_final_message()
        assert pieces == msg.content[0].text
        return msg.model, pieces
    if shape == "openai":
        completion = oai(rec).chat.completions.create(**oai_ask(text))
        return completion.model, completion.choices[0].message.content
    chunks = list(oai(rec).chat.completions.create(**oai_ask(text), stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    return chunks[0].model, "".join(c.choices[0].delta.content or "" for c in chunks)


SHAPES = ["anthropic", "anthropic-stream", "openai", "openai-stream"]


# ---------------------------------------------------------------------- routing order


@pytest.mark.parametrize("shape", SHAPES)
def test_each_tier_answers_what_the_one_before_declined_and_the_teacher_the_rest(tmp_path, fake_provider, shape):
    a, b = tiers()
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)]) as (rec, router):
        easy = send(rec, shape, "easy one")
        hard = send(rec, shape, "hard one")
        stuck = send(rec, shape, "stuck one")
    assert easy == ("tier-a", "card_arrival") and hard == ("tier-b", "lost_card")
    assert stuck[1] == "echo: stuck one" and stuck[0] != "tier-b"  # the teacher's answer, as upstream sent it
    assert a.asked == ["easy one", "hard one", "stuck one"] and b.asked == ["hard one", "stuck one"]
    assert len(fake_provider.requests) == 1
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    provider = shape.split("-")[0]
    assert [(rows[t]["served_by"], rows[t]["student_id"], rows[t]["provider"], rows[t]["model"])
            for t in ("easy one", "hard one")] == [("student", "tier-a", "student", "tier-a"),
                                                   ("student", "tier-b", "student", "tier-b")]
    assert (rows["stuck one"]["served_by"], rows["stuck one"]["student_id"], rows["stuck one"]["provider"]) == (
        "fallback", "tier-b", provider)
    assert rows["easy one"]["output"] == "card_arrival" and rows["hard one"]["output"] == "lost_card"
    assert rows["easy one"]["stream"] is shape.endswith("stream") and rows["hard one"]["confidence"] == 0.9
    # The row's cost is every tier asked: tier a's declined attempt counts in the call tier b answered.
    assert rows["easy one"]["cost_usd"] == pytest.approx(COST_A)
    assert rows["hard one"]["cost_usd"] == pytest.approx(COST_A + COST_B)
    assert rows["stuck one"]["cost_usd"] > 0 and rows["stuck one"]["cost_usd"] != pytest.approx(COST_A + COST_B)
    assert rows["stuck one"]["confidence"] == 0.2  # the declining tier's the row names, not a made-up 0
    assert chain_of(rows["easy one"]) == {"id": CHAIN, "tier": 0, "tiers": [attempt(0, True, COST_A)]}
    assert chain_of(rows["hard one"]) == {"id": CHAIN, "tier": 1,
                                          "tiers": [attempt(0, False, COST_A), attempt(1, True, COST_B)]}
    assert chain_of(rows["stuck one"]) == {"id": CHAIN, "tier": None,
                                           "tiers": [attempt(0, False, COST_A), attempt(1, False, COST_B)]}
    stats = router.routes[TASK].stats
    assert (stats.served, stats.declined, stats.errors, stats.timeouts, stats.calls) == (2, 1, 0, 0, 3)
    assert [(t.student, t.asked, t.answered, t.declined) for t in stats.tiers] == [("tier-a", 3, 1, 2),
                                                                                    ("tier-b", 2, 1, 1)]
    [summary] = router.to_dict()["students"]
    assert summary["student"] == CHAIN and summary["tiers"] == [
        {"student": "tier-a", "asked": 3, "answered": 1, "declined": 2, "errors": 0, "timeouts": 0},
        {"student": "tier-b", "asked": 2, "answered": 1, "declined": 1, "errors": 0, "timeouts": 0}]
    assert router.student_ids == {CHAIN, "tier-a", "tier-b"}  # every id a row's model may carry


def test_a_single_students_summary_has_no_tiers(tmp_path, fake_provider):
    a, _ = tiers()
    with routed(tmp_path, fake_provider, [Route(a, tmp_path / "a.student", gate=None)]) as (rec, router):
        send(rec, "anthropic", "easy one")
    [row] = stored(tmp_path / "store")
    assert row["student_id"] == "tier-a" and row["metadata"] in (None, "{}")
    assert "tiers" not in router.to_dict()["students"][0] and router.routes[TASK].stats.tiers == []


# ---------------------------------------------------------------------- fallbacks at every tier


A_FAILED = {
    "fails": "tier-a: tier-a upstream said 529",
    "crashes": "tier-a: ValueError: a bug in tier-a",
    "slow": "tier-a: no answer within 300 ms",
}


@pytest.mark.parametrize("word", sorted(A_FAILED))
def test_a_first_tier_that_fails_or_times_out_passes_the_call_to_the_next(tmp_path, fake_provider, word):
    a, b = tiers()
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)], student_timeout=0.3) as (rec, router):
        started = time.monotonic()
        answers = [send(rec, shape, f"{word} {shape}") for shape in ("anthropic", "openai-stream")]
        elapsed = time.monotonic() - started
    assert answers == [("tier-b", "lost_card")] * 2 and fake_provider.requests == []
    assert elapsed < 1.9  # a slow tier is not waited for: 2 s each otherwise
    for row in stored(tmp_path / "store"):
        assert (row["served_by"], row["student_id"], row["output"]) == ("student", "tier-b", "lost_card")
        assert row["cost_usd"] == pytest.approx(COST_B)  # a failed tier's spend is unknown, not made up
        assert chain_of(row) == {"id": CHAIN, "tier": 1,
                                 "tiers": [attempt(0, False, None, A_FAILED[word]), attempt(1, True, COST_B)]}
    stats = router.routes[TASK].stats
    assert (stats.served, stats.errors, stats.timeouts) == (2, 0, 0)
    tier_a = stats.tiers[0]
    assert (tier_a.errors, tier_a.timeouts) == ((0, 2) if word == "slow" else (2, 0))
    assert stats.last_error == A_FAILED[word]


# word -> (the row's tier attempts, the route's counter, its last error)
TEACHER_FALLBACKS = {
    "stuck": ([attempt(0, False, COST_A), attempt(1, False, COST_B)], "declined", None),
    "broken": ([attempt(0, False, COST_A), attempt(1, False, None, "tier-b: ValueError: a bug in tier-b")], "errors",
               "tier-b: ValueError: a bug in tier-b"),
    "lagging": ([attempt(0, False, COST_A), attempt(1, False, None, "tier-b: no answer within 300 ms")], "timeouts",
                "tier-b: no answer within 300 ms"),
    "doomed": ([attempt(0, False, None, "tier-a: tier-a upstream said 529"),
                attempt(1, False, None, "tier-b: tier-b upstream said 529")], "errors", "tier-b: tier-b upstream said 529"),
    "erratic": ([attempt(0, False, None, "tier-a: tier-a upstream said 529"), attempt(1, False, COST_B)], "declined",
                "tier-a: tier-a upstream said 529"),
}


@pytest.mark.parametrize("word", sorted(TEACHER_FALLBACKS))
def test_the_teacher_answers_what_the_last_tier_declines_or_fails(tmp_path, fake_provider, word):
    a, b = tiers()
    tier_attempts, counter, last_error = TEACHER_FALLBACKS[word]
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)], student_timeout=0.3,
                shadow_rate=1.0) as (rec, router):
        started = time.monotonic()
        answers = [send(rec, shape, f"{word} {shape}") for shape in ("anthropic", "openai-stream")]
        elapsed = time.monotonic() - started
    assert [text for _, text in answers] == [f"echo: {word} anthropic", f"echo: {word} openai-stream"]
    assert elapsed < 1.9
    rows = stored(tmp_path / "store")
    assert [(r["served_by"], r["student_id"], r["provider"]) for r in rows] == [
        ("fallback", "tier-b", "anthropic"), ("fallback", "tier-b", "openai")]  # and no shadow of a fallback
    for row in rows:
        assert row["cost_usd"] > 0 and row["output"].startswith("echo: ")  # the teacher's, priced as the teacher
        assert chain_of(row) == {"id": CHAIN, "tier": None, "tiers": tier_attempts}
        assert row["confidence"] == (0.2 if tier_attempts[-1]["error"] is None else None)
    stats = router.routes[TASK].stats
    assert getattr(stats, counter) == 2 and stats.served == 0 and stats.calls == 2 and stats.shadows == 0
    assert stats.last_error == last_error
    assert [t.asked for t in stats.tiers] == [2, 2] and len(fake_provider.requests) == 2


def test_the_timeout_applies_to_each_tier(tmp_path, fake_provider):
    """Tier a declines at once, tier b is slow: b still gets the whole timeout (it is not shared with a)."""

    class Patient(Tier):
        async def answer_async(self, request: dict) -> Answer:
            await asyncio.sleep(0.25)
            return await super().answer_async(request)

    a = Patient("tier-a", "card_arrival", COST_A, {"hard": "decline"})
    b = Patient("tier-b", "lost_card", COST_B, {"hard": "answer"})
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)], student_timeout=0.4) as (rec, router):
        assert send(rec, "anthropic", "hard one") == ("tier-b", "lost_card")  # 0.5 s in all, each tier within 0.4


def test_a_declined_llm_tier_costs_its_real_tokens(tmp_path, fake_provider, monkeypatch):
    """A few-shot tier on the fake provider: an answer outside the teacher's labels is declined, and paid for."""
    from distill_cli.students import few_shot, load_student
    from distill_cli.students.base import write_student_file

    monkeypatch.setenv("DISTILL_TEST_STUDENT_API_KEY", "student-test-key-not-real")
    haiku = StudentSpec(
        id="haiku-tier", kind="few-shot", task=TASK, teacher_model=TEACHER, student_model="claude-haiku-4-5",
        params={"api": "anthropic", "base_url": fake_provider.url, "api_key_env": "DISTILL_TEST_STUDENT_API_KEY"},
    )
    prompt = few_shot.Prompt("Classify the support message.", "examples", [("where is my card", "card_arrival")],
                             ["card_arrival", "lost_card"])
    path = write_student_file(tmp_path / "haiku.student", haiku, few_shot.rows_for(prompt, []))
    llm = load_student(path, allowed_endpoints=[fake_provider.url])
    fake_provider.responder = lambda body, provider: (
        "card_arrival" if body["model"] == "claude-haiku-4-5" and "easy" in json.dumps(body) else None)
    _, b = tiers()
    with routed(tmp_path, fake_provider, [Route(Chain([llm, b]), path, gate=None)]) as (rec, router):
        assert send(rec, "anthropic", "easy one") == ("haiku-tier", "card_arrival")
        assert send(rec, "openai-stream", "hard one") == ("tier-b", "lost_card")  # haiku said "echo: ...": declined
        assert send(rec, "anthropic-stream", "stuck one")[1] == "echo: stuck one"  # the teacher's
    assert [r.json["model"] for r in fake_provider.requests] == ["claude-haiku-4-5"] * 3 + [TEACHER]
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    easy, hard, stuck = (chain_of(rows[t]) for t in ("easy one", "hard one", "stuck one"))
    haiku_cost = easy["tiers"][0]["cost_usd"]
    assert 0 < haiku_cost < 1e-4 and rows["easy one"]["cost_usd"] == pytest.approx(haiku_cost)
    assert rows["easy one"]["input_tokens"] > 0 and rows["easy one"]["student_id"] == "haiku-tier"
    [declined, answered] = hard["tiers"]
    assert declined["answered"] is False and declined["student_id"] == "haiku-tier" and declined["cost_usd"] > 0
    assert rows["hard one"]["cost_usd"] == pytest.approx(declined["cost_usd"] + COST_B)
    assert (answered["student_id"], answered["answered"], hard["tier"]) == ("tier-b", True, 1)
    assert stuck["tier"] is None and stuck["tiers"][0]["cost_usd"] > 0 and stuck["tiers"][1]["cost_usd"] == COST_B
    assert [(t.answered, t.declined) for t in router.routes[TASK].stats.tiers] == [(1, 2), (1, 1)]


def test_a_demoted_tier_stops_the_chain(tmp_path, fake_provider):
    """The gate certified the chain whole: when drift demotes one tier, the teacher answers the chain's calls."""
    a, b = tiers()
    route = Route(Chain([a, b]), tmp_path / "a.student", gate=None, tier_paths=[tmp_path / "a.student",
                                                                               tmp_path / "b.student"])
    demote(tmp_path / "b.student", student_id="tier-b")
    demote(tmp_path / "a.student", student_id="an-older-tier-a")  # a marker of another student: does not count
    warnings: list[str] = []
    with routed(tmp_path, fake_provider, [route], warn=warnings.append) as (rec, router):
        assert send(rec, "anthropic", "easy one")[1] == "echo: easy one"
    assert a.asked == [] and b.asked == [] and route.stats.while_demoted == 1
    [row] = stored(tmp_path / "store")
    assert (row["served_by"], row["student_id"]) == ("teacher", None)
    [warning] = warnings
    assert warning.startswith("Warning: student tier-b demoted at ")
    assert warning.endswith(f"The chain {CHAIN} does not serve; the teacher answers its calls.")


# ---------------------------------------------------------------------- shadows


def test_shadows_pair_with_the_tier_that_answered(tmp_path, fake_provider):
    a, b = tiers()
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)], shadow_rate=1.0) as (rec, router):
        send(rec, "anthropic", "easy one")
        send(rec, "openai-stream", "hard one")
        fake_provider.wait_for(2)
    rows = stored(tmp_path / "store")
    students = {r["input"]: r for r in rows if r["served_by"] == "student"}
    shadows = {r["input"]: r for r in rows if r["served_by"] == "shadow"}
    assert len(rows) == 4 and set(students) == set(shadows) == {"easy one", "hard one"}
    for text, tier, student_id in (("easy one", 0, "tier-a"), ("hard one", 1, "tier-b")):
        shadow = shadows[text]
        assert shadow["pair_id"] == students[text]["id"] and shadow["student_id"] == student_id
        assert shadow["output"] == f"echo: {text}" and shadow["cost_usd"] > 0
        # The shadow names the chain and the tier it checks; the attempts' costs stay on the student's row.
        assert chain_of(shadow) == {"id": CHAIN, "tier": tier}
    assert router.routes[TASK].stats.shadows == 2


def test_the_jobs_own_metadata_stays_on_every_row(tmp_path, fake_provider):
    a, b = tiers()
    tag = {"x-distill-metadata": json.dumps({"customer": "c-42"})}
    with routed(tmp_path, fake_provider, [chain_route(tmp_path, a, b)], shadow_rate=1.0) as (rec, _):
        ant(rec).messages.create(**ask("hard one"), extra_headers=tag)
        ant(rec).messages.create(**ask("stuck one"), extra_headers=tag)
        fake_provider.wait_for(2)
    rows = stored(tmp_path / "store")
    assert sorted(r["served_by"] for r in rows) == ["fallback", "shadow", "student"]
    assert all(json.loads(r["metadata"])["customer"] == "c-42" for r in rows)


# ---------------------------------------------------------------------- the command


def cache_tiers(tmp_path: Path) -> tuple[Path, Path]:
    """Tier a knows "hello one", tier b "hello two"; each passed a gate of its own, beside its file."""
    a = write_cache_student(tmp_path / "a.student", "tier-a", TASK,
                            {canonical.input_hash(job_request("hello one")): "greeting"})
    b = write_cache_student(tmp_path / "b.student", "tier-b", TASK,
                            {canonical.input_hash(job_request("hello two")): "second greeting"})
    for path, student_id in ((a, "tier-a"), (b, "tier-b")):
        write_gate(Path(f"{path}.verdicts.parquet"), student_id, load_chain([path]).spec.digest)
    return a, b


def write_gate(path: Path, student_id: str, digest: str, passed: bool = True) -> Path:
    """A verdicts file whose footer says a gate of `student_id` (content `digest`) passed."""
    summary = {"schema": "gate-summary/1", "student": student_id, "passed": passed, "student_digest": digest,
               "gated_at": datetime.now(timezone.utc).isoformat(),
               "reason": "9.0x cheaper at 89% coverage" if passed else "agreement too low"}
    schema = schemas.tagged(schemas.VERDICTS_SCHEMA, schemas.VERDICTS, {schemas.SUMMARY_KEY: json.dumps(summary)})
    pq.write_table(schema.empty_table(), path)
    return path


def test_an_ungated_or_reordered_chain_is_refused_before_the_job_runs(tmp_path):
    a, b = cache_tiers(tmp_path)
    marker = tmp_path / "job-ran"
    job = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    store = ["record", "--store", str(tmp_path / "s")]
    # Each tier's own gate does not license the chain.
    result = CliRunner().invoke(app, [*store, "--student", str(a), "--student", str(b), *job])
    assert result.exit_code == 3 and not marker.exists()
    assert result.output.startswith(f"Error: {a} {b}: student {CHAIN} has no passing gate (no verdicts for it in ")
    chain_file = a.parent / f"{a.name}+{b.name}.verdicts.parquet"
    assert f"run `distill gate {a} {b} STORE --verdicts {chain_file}` first and give it with --verdicts" in result.output
    # A gate of the chain in one order does not license the other order.
    gate = write_gate(tmp_path / "chain.parquet", CHAIN, load_chain([a, b]).spec.digest)
    result = CliRunner().invoke(app, [*store, "--student", str(b), "--student", str(a), "--verdicts", str(gate), *job])
    assert result.exit_code == 3 and not marker.exists()
    assert " ".join(result.output.split()) == (
        f"Error: {b} {a}: student tier-b > tier-a has no passing gate (no verdicts for it in {gate}, "
        f"{b}.verdicts.parquet); {gate} gates the same students in another order, {CHAIN}: a chain serves in the "
        f"order its gate certified; run `distill gate {b} {a} STORE --verdicts {b.parent / (b.name + '+' + a.name)}"
        ".verdicts.parquet` first and give it with --verdicts, or pass --allow-ungated")
    # A failed gate of the chain is refused as a student's is.
    failed = write_gate(tmp_path / "failed.parquet", CHAIN, load_chain([a, b]).spec.digest, passed=False)
    result = CliRunner().invoke(app, [*store, "--student", str(a), "--student", str(b), "--verdicts", str(failed), *job])
    assert result.exit_code == 3 and not marker.exists()
    assert f"student {CHAIN} failed its gate in {failed} (agreement too low)" in result.output
    # The chain in its gated order runs the job.
    result = CliRunner().invoke(app, [*store, "--student", str(a), "--student", str(b), "--verdicts", str(gate), *job])
    assert result.exit_code == 0 and marker.exists(), result.output


def test_a_gated_chain_answers_a_real_job(tmp_path, fake_provider):
    a, b = cache_tiers(tmp_path)
    gate = write_gate(tmp_path / "chain.parquet", CHAIN, load_chain([a, b]).spec.digest)
    job = write_job(tmp_path, """
        print(ask("hello one"), flush=True)
        print(ask("hello two"), flush=True)
        print(ask("hello three"), flush=True)
        print(ask("hello one", extra_headers={"x-distill-route": "teacher"}), flush=True)
        sys.exit(5)
        """)
    s = tmp_path / "store"
    result = run(["--store", s, *upstreams(fake_provider), "--task", TASK, "--student", a, "--student", b,
                  "--verdicts", gate, "--shadow-rate", "0", "--", sys.executable, job], env=job_env())
    assert result.returncode == 5, result.stderr
    assert result.stdout == "greeting\nsecond greeting\necho: hello three\necho: hello one\n"
    err = result.stderr
    assert (f"Chain {CHAIN} (cache > cache, gate passed in {gate}) answers task {TASK}, each tier what the one "
            "before declined; shadow rate 0.") in err
    assert (f"Chain {CHAIN} answered 2 of 4 calls (50.0%); the teacher answered 2 (every tier declined 1, errors 0, "
            "timeouts 0, forced 1, demoted 0); 0 shadow calls.\n"
            "  tier 1, tier-a: answered 1 of the 3 calls it was asked (declined 2, errors 0, timeouts 0).\n"
            "  tier 2, tier-b: answered 1 of the 2 calls it was asked (declined 1, errors 0, timeouts 0).\n") in err
    assert "unknown" not in err.lower()  # the tiers' ids are not unpriced models
    rows = {(r["input"], r["served_by"]): r for r in stored(s)}
    assert sorted(rows) == [("hello one", "student"), ("hello one", "teacher"), ("hello three", "fallback"),
                            ("hello two", "student")]
    assert rows["hello one", "student"]["student_id"] == "tier-a" and rows["hello one", "student"]["model"] == "tier-a"
    assert rows["hello two", "student"]["student_id"] == "tier-b"
    assert chain_of(rows["hello two", "student"]) == {"id": CHAIN, "tier": 1,
                                                      "tiers": [attempt(0, False, 0.0), attempt(1, True, 0.0)]}
    assert chain_of(rows["hello three", "fallback"])["tier"] is None
    assert chain_of(rows["hello one", "teacher"]) is None  # the chain was not asked


def test_a_chains_json_summary_names_its_tiers(tmp_path, fake_provider):
    a, b = cache_tiers(tmp_path)
    gate = write_gate(tmp_path / "chain.parquet", CHAIN, load_chain([a, b]).spec.digest)
    job = write_job(tmp_path, 'print(ask("hello two"))\n', sdk=False)
    result = run(["--store", tmp_path / "store", *upstreams(fake_provider), "--task", TASK, "--student", a,
                  "--student", b, "--verdicts", gate, "--format", "json", "--", sys.executable, job], env=job_env())
    assert result.returncode == 0, result.stderr
    [route] = json.loads(result.stdout)["routing"]["students"]
    assert (route["student"], route["served"], route["file"]) == (CHAIN, 1, str(a))
    assert route["digest"] == load_chain([a, b]).spec.digest and route["gate"]["verdicts"] == str(gate)
    assert route["tiers"] == [
        {"student": "tier-a", "asked": 1, "answered": 0, "declined": 1, "errors": 0, "timeouts": 0},
        {"student": "tier-b", "asked": 1, "answered": 1, "declined": 0, "errors": 0, "timeouts": 0}]


def test_a_chain_of_another_task_than_the_runs_is_warned_about(tmp_path):
    a, b = cache_tiers(tmp_path)
    gate = write_gate(tmp_path / "chain.parquet", CHAIN, load_chain([a, b]).spec.digest)
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), "--task", "other", "--student", str(a),
                                      "--student", str(b), "--verdicts", str(gate), "--", sys.executable, "-c", "pass"])
    assert result.exit_code == 0, result.output
    assert (f"Warning: the chain {CHAIN} is of task {TASK}, but every call of this run is task other (--task): "
            "it will answer none of them.") in result.output
    assert f"Chain {CHAIN}: no calls of task {TASK}." in result.output


def test_an_ungated_chain_with_an_llm_tier_names_its_endpoint(tmp_path, fake_provider, monkeypatch):
    from distill_cli.students import few_shot
    from distill_cli.students.base import write_student_file

    monkeypatch.setenv("DISTILL_TEST_STUDENT_API_KEY", "student-test-key-not-real")
    a, _ = cache_tiers(tmp_path)
    haiku = StudentSpec(
        id="haiku-tier", kind="few-shot", task=TASK, teacher_model=TEACHER, student_model="claude-haiku-4-5",
        params={"api": "anthropic", "base_url": fake_provider.url, "api_key_env": "DISTILL_TEST_STUDENT_API_KEY"},
    )
    llm = write_student_file(tmp_path / "haiku.student", haiku,
                             few_shot.rows_for(few_shot.Prompt("Classify.", "examples", [("hi", "greeting")], None), []))
    command = ["record", "--store", str(tmp_path / "s"), "--student", str(a), "--student", str(llm),
               "--", sys.executable, "-c", "pass"]
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 3 and "is not a provider's API host nor an endpoint you allowed" in refused.output
    result = CliRunner().invoke(app, [*command[:-4], "--allow-ungated", "--allow-endpoint", fake_provider.url,
                                      *command[-4:]])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"Warning: {a} {llm}: student tier-a > haiku-tier has no passing gate; serving it anyway "
                        "(--allow-ungated)")
    assert lines[1] == (f"Chain tier-a > haiku-tier (cache > few-shot, ungated) answers task {TASK}, each tier what "
                        "the one before declined; shadow rate 0.05.")
    assert lines[2] == f"Student haiku-tier calls {fake_provider.url} (key from DISTILL_TEST_STUDENT_API_KEY)"
