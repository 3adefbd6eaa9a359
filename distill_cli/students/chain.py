"""A chain of students for one task, cheapest first: the first tier that answers wins.

    chain = Chain([load_student("intent.student"), load_student("haiku.student")])
    answer = await chain.answer_async(request)   # answer.tier: who answered; answer.attempts: every tier asked

A chain is a Student, so the gate scores it and the router serves it exactly as one
student: a tier that declines, fails (StudentError or any exception) passes the call
to the next; the teacher answers what every tier leaves. What the chain costs a call
is what every tier it asked cost, declined attempts included (a declined LLM tier
still spent tokens). When the last tier asked failed rather than declined, the chain
fails (StudentError): the gate counts that as a disagreement, the router falls back.
A ProviderError (a refused key, a provider down beyond retries) is not passed on: it
stops the gate (exit 4) exactly as it does for one student.

Its identity is its members in order: the id `a > b` and a digest over the members'
content digests, so a gate certifies exactly this chain in this order. A call is
held out for the chain only when every tier held it out: the gate never scores a
chain on a row any tier trained on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from distill_cli.errors import InputError, ProviderError
from distill_cli.students.base import Answer, Student, StudentError, StudentSpec, request_input

SEPARATOR = " > "
CHAIN_KEY = "chain"  # the metadata key of a chain's row: {"id", "tier", "tiers": [every tier asked]}


@dataclass
class Attempt:
    """One tier asked about one call."""

    tier: int  # 0-based position in the chain
    student_id: str
    output: str | None  # None: declined or failed
    confidence: float | None
    cost_usd: float | None
    error: str | None = None
    reason: str | None = None  # why it declined
    timed_out: bool = False  # failed by taking longer than the chain's tier timeout

    def to_dict(self) -> dict:
        return {"tier": self.tier, "student_id": self.student_id, "answered": self.output is not None,
                "cost_usd": self.cost_usd, "error": self.error}


@dataclass
class ChainAnswer(Answer):
    """An Answer with who gave it: `tier` (None when every tier declined) and every attempt, in order."""

    tier: int | None = None
    student_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)


def chain_id(tiers: list[Student]) -> str:
    return SEPARATOR.join(t.id for t in tiers)


def chain_digest(tiers: list[Student]) -> str | None:
    """"sha256:<hex>" over the members' content digests in order; None when a member has none."""
    digests = [t.spec.digest for t in tiers]
    if any(d is None for d in digests):
        return None
    return "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()


class Chain(Student):
    """Students of one task asked in order; see the module docstring."""

    def __init__(self, tiers: list[Student]) -> None:
        if len(tiers) < 2:
            raise InputError("a chain needs two students or more")
        tasks = {t.spec.task for t in tiers}
        if len(tasks) > 1:
            raise InputError(f"a chain's students must share one task, not {', '.join(sorted(tasks))}")
        ids = [t.id for t in tiers]
        if len(set(ids)) < len(ids):
            raise InputError(f"a chain names student {next(i for i in ids if ids.count(i) > 1)} twice")
        first = tiers[0].spec
        spec = StudentSpec(
            id=chain_id(tiers), kind="chain", task=first.task, teacher_model=first.teacher_model, provider=first.provider,
            threshold=None, params={"tiers": [{"id": t.id, "kind": t.spec.kind, "digest": t.spec.digest} for t in tiers]},
            digest=chain_digest(tiers),
        )
        super().__init__(spec)
        self.tiers = list(tiers)

    @property
    def endpoint(self) -> str | None:
        found = [t.endpoint for t in self.tiers if t.endpoint]
        return ", ".join(found) if found else None

    def authorize(self, allowed: tuple[str, ...] = ()) -> None:
        for tier in self.tiers:
            tier.authorize(allowed)

    def holds_out(self, example_id: str) -> bool:
        return all(t.holds_out(example_id) for t in self.tiers)

    def split_problem(self) -> str | None:
        return next((p for p in (t.split_problem() for t in self.tiers) if p), None)

    def identity(self) -> list[dict]:
        """The members in order, as a verdicts file records them."""
        return self.spec.params["tiers"]

    def answer(self, request: dict) -> ChainAnswer:
        return asyncio.run(self.answer_async(request))

    async def answer_async(self, request: dict, *, tier_timeout: float | None = None) -> ChainAnswer:
        """The first answer of a tier, in order. `tier_timeout` (seconds): a tier slower than that is passed
        over like one that failed (the router's --student-timeout applies to each tier, not the whole chain)."""
        started = time.perf_counter()
        attempts: list[Attempt] = []
        failure: str | None = None
        for i, tier in enumerate(self.tiers):
            asked = request
            if tier.spec.provider != self.spec.provider:
                asked = tier.request_for(request_input(request, self.spec.provider))
            try:
                if tier_timeout is None:
                    got = await tier.answer_async(asked)
                else:
                    got = await asyncio.wait_for(tier.answer_async(asked), tier_timeout)
            except ProviderError:
                raise  # a refused key or a provider down beyond retries stops a gate, as it does for one student
            except Exception as e:  # noqa: BLE001 - any failure of a tier passes the call on, as the router does
                timed_out = tier_timeout is not None and isinstance(e, asyncio.TimeoutError)
                if timed_out:
                    failure = f"{tier.id}: no answer within {tier_timeout * 1000:.0f} ms"
                elif isinstance(e, StudentError):
                    failure = f"{tier.id}: {e}"
                else:
                    failure = f"{tier.id}: {type(e).__name__}: {e}"
                attempts.append(Attempt(i, tier.id, None, None, None, error=failure, timed_out=timed_out))
                continue
            attempts.append(Attempt(i, tier.id, got.output, got.confidence, got.cost_usd, reason=got.reason))
            if not got.declined:
                return self._answer(got, attempts, started, tier=i)
            failure = None  # a later decline: the teacher answers, no failure stands
        if failure is not None:
            error = StudentError(f"every tier declined or failed; the last failed ({failure})")
            error.attempts = attempts
            raise error
        reasons = "; ".join(f"{a.student_id}: " + (f"failed ({a.error})" if a.error else a.reason or "declined")
                            for a in attempts)
        return self._answer(Answer(None, confidence=0.0, reason=f"every tier declined or failed ({reasons})"),
                            attempts, started)

    def _answer(self, got: Answer, attempts: list[Attempt], started: float, tier: int | None = None) -> ChainAnswer:
        costs = [a.cost_usd for a in attempts if a.error is None]
        total = None if any(c is None for c in costs) else sum(costs)
        return ChainAnswer(
            got.output, confidence=got.confidence, cost_usd=total, input_tokens=got.input_tokens,
            output_tokens=got.output_tokens, cache_read_tokens=got.cache_read_tokens,
            cache_write_5m_tokens=got.cache_write_5m_tokens, latency_ms=(time.perf_counter() - started) * 1000,
            model=got.model, reason=got.reason, tier=tier, student_id=self.tiers[tier].id if tier is not None else None,
            attempts=attempts,
        )
