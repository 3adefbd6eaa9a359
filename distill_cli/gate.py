"""The quality gate: does a student agree with its teacher on calls it never trained on?

    summary = run_gate("intent.student", "runs/", verdicts="gate.parquet")
    summary.passed, summary.lower_bound, summary.decision, summary.reason

The gate runs the student on the held-out rows of its own train/holdout split
(recomputed from the salt and fraction in its spec: it never scores a training
row), judges each answer against the teacher's recorded output, and passes when
the one-sided Wilson lower bound of end-to-end agreement reaches
`min_agreement` over at least `min_examples` examples. A declined call counts as
agreeing (the teacher answers it); a student or judge error counts as a
disagreement and is reported apart, so a run of errors can never pass.

The economics (routed cost, cost reduction, the spend cap) live in economics.py;
`decide` turns the gate's figures into a decision. This module never prints and never exits; it writes
nothing but the verdicts file it was asked for, atomically.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable, Iterable, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import schemas, store
from distill_cli.economics import (
    SpendCap,
    SpendCapReached,
    cost_reduction,
    format_reduction,
    routed_cost,
)
from distill_cli.errors import InputError, NotEnoughData, ProviderError
from distill_cli.files import check_output, write_atomically
from distill_cli.formatting import pct
from distill_cli.judges import Judge, JudgeError, make_judge
from distill_cli.prices import Usage
from distill_cli.providers import FATAL_STATUSES, Failure, RetryPolicy, Stop, Stopped, retrying
from distill_cli.stats import wilson_bounds
from distill_cli.students.base import Student, StudentError
from distill_cli.students.registry import load_chain, load_student

SUMMARY_SCHEMA = "gate-summary/1"
TEACHER_SERVED = schemas.TEACHER_SERVED
# A store whose teacher rows are all training rows of the student is refused as a leak when that
# could happen by chance less often than this; otherwise it is just too little data (exit 5).
LEAK_CHANCE = 0.001

T = TypeVar("T")
# A student that could not answer any of its first this many examples cannot run here: stop (exit 4).
BREAKER = 10


# ---- the decision ----------------------------------------------------------------------------------------------


def decide(
    *,
    n: int,
    min_examples: int,
    passed: bool,
    agreement: float | None,
    lower_bound: float | None,
    min_agreement: float,
    coverage: float | None,
    cost_reduction: float | None,
    errors: int = 0,
    confidence: float = 0.95,
) -> tuple[str, str]:
    """The decision and a one-line reason, from the gate's figures.

    collecting (too few examples) > fallback_teacher (agreement too low) >
    no_change (the student would not be cheaper) > distilled.
    """
    if n < min_examples:
        return "collecting", f"collecting ({n}/{min_examples})"
    if not passed:
        reason = (
            f"agreement {pct(agreement)}, lower bound {pct(lower_bound)} < {pct(min_agreement)} "
            f"at {confidence:.0%} confidence; the teacher keeps answering"
        )
        if errors:
            reason += f" ({errors} error{'s' if errors != 1 else ''} counted as disagreements)"
        return "fallback_teacher", reason
    at = f"at {pct(coverage, 0)} coverage"
    if cost_reduction is None:
        return "distilled", f"agrees {pct(agreement)} {at}; cost reduction unknown (teacher calls have no recorded cost)"
    if cost_reduction <= 1.0:
        return "no_change", f"not cheaper than the teacher ({format_reduction(cost_reduction)} {at})"
    if math.isinf(cost_reduction):
        return "distilled", f"free: the student answers every call at no cost ({at[3:]})"
    return "distilled", f"{format_reduction(cost_reduction)} cheaper {at}"


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One gated example: a row of the verdicts file (plus what the judging cost)."""

    example_id: str
    task: str
    student_id: str
    input: str
    teacher_output: str
    student_output: str | None
    answered: bool
    agree: bool  # end to end: a declined call agrees, because the teacher answers it
    score: float
    judge: str | None
    reason: str | None
    error: str | None
    student_cost_usd: float | None
    latency_ms: float
    confidence: float | None
    tier: int | None = None  # a chain's tier that answered
    error_kind: str | None = None  # "student" or "judge"
    judge_cost_usd: float = 0.0
    unanswerable: bool = False  # the student raised StudentError: it could not answer (provider, key, timeout)

    def row(self) -> dict:
        return {name: getattr(self, name) for name in schemas.VERDICTS_SCHEMA.names}

    @property
    def disagreement(self) -> bool:
        return self.answered and not self.agree and self.error is None


@dataclass
class GateSummary:
    """The gate's result: printed by the CLI, stored in the verdicts file's footer."""

    student: str
    student_kind: str
    task: str
    n: int
    answered: int
    declined: int
    agreeing: int  # answered and judged the same
    disagreements: int
    errors: int
    student_errors: int
    judge_errors: int
    coverage: float
    agreement: float
    agreement_answered: float | None
    lower_bound: float
    upper_bound: float
    min_agreement: float
    min_examples: int
    confidence: float
    passed: bool
    judge: str
    judge_reason: str
    teacher_cost_per_call: float | None
    teacher_cost_unknown: int  # gated rows whose teacher call has no recorded cost
    student_cost_per_call: float | None
    routed_cost_per_call: float | None
    cost_reduction: float | None
    decision: str
    reason: str
    held_out: int  # held-out rows available (before --limit)
    teacher_rows: int  # the task's teacher rows in the store, training and held out
    common_errors: list = field(default_factory=list)  # [[error, count], ...], the most frequent first
    judge_calls: int = 0
    judge_cache_hits: int = 0
    judge_cost_usd: float = 0.0
    student_cost_usd: float = 0.0
    spent_usd: float = 0.0
    seconds: float = 0.0
    verdicts_file: str | None = None
    student_digest: str | None = None  # the content the gate measured (students/base.content_digest): what it certifies
    chain: list = field(default_factory=list)  # every student it certified, in order: {"id", "kind", "digest"}
    gated_at: str | None = None  # when the gate ran (UTC): what orders gates and lifts a demotion, never a file's mtime
    tier_answered: list | None = None  # a chain's answers per tier, in order
    student_endpoint: str | None = None  # where an LLM student's calls went
    verdicts: list[Verdict] = field(default_factory=list, repr=False)

    @property
    def collecting(self) -> bool:
        return self.decision == "collecting"

    def to_dict(self) -> dict:
        data = {"schema": SUMMARY_SCHEMA}
        data.update({k: v for k, v in asdict(self).items() if k != "verdicts"})
        # JSON has no infinity: a free student's reduction is the string "inf" (float("inf") reads it back).
        if data["cost_reduction"] is not None and math.isinf(data["cost_reduction"]):
            data["cost_reduction"] = "inf"
        return data

    def worst(self, k: int = 10) -> list[Verdict]:
        """The k worst disagreements: least similar first, then the most confident."""
        bad = [v for v in self.verdicts if v.disagreement]
        bad.sort(key=lambda v: (v.score, -(v.confidence or 0.0), v.example_id))
        return bad[:k]


# ---- selecting the held-out rows -------------------------------------------------------------------------------


@dataclass
class Example:
    id: str
    input: str
    teacher_output: str
    request_json: str
    teacher_cost: float | None  # as recorded
    model: str | None = None
    usage: Usage | None = None
    ts: object = None

    def repriced(self, prices) -> float | None:
        """The teacher call's cost from its recorded usage under `prices` (the price in force when it ran)."""
        if self.model is None or self.usage is None:
            return None
        return prices.cost(self.model, self.usage, at=self.ts)


@dataclass
class Selection:
    examples: list[Example]
    held_out: int
    teacher_rows: int


def _held_out_share(student: Student) -> float:
    """The share of rows the student's split holds out (a chain's tiers each hold out their own)."""
    tiers = getattr(student, "tiers", [student])
    return min(t.spec.split["holdout"] for t in tiers)


def select_held_out(student: Student, stores: Iterable[str | Path], *, limit: int | None = None) -> Selection:
    """The student's held-out teacher rows in `stores`, in id order (the first `limit` of them).

    Refuses (InputError, exit 3) a student whose spec records no split, and a store
    whose teacher rows are all training rows of the student when that is too
    unlikely to be chance (the store was cut down to the training split).
    """
    spec = student.spec
    problem = student.split_problem()
    if problem:
        raise InputError(problem)
    stores = [str(s) for s in stores]
    where = ", ".join(stores)
    con = store.connect()
    store.examples_view(con, stores, "gate")
    tasks = store.store_tasks(con, stores, when_empty="nothing to gate")
    store.check_task(spec.task, tasks, stores, of=f", the task of student {spec.id}")
    teacher_rows = f"task = ? AND {schemas.teacher_answer_sql()}"
    ids = [r[0] for r in con.execute(f"SELECT DISTINCT id FROM examples WHERE {teacher_rows}", [spec.task]).fetchall()]
    if not ids:
        raise NotEnoughData(f"{where}: no successful teacher calls of task {spec.task!r} yet; nothing to gate")
    held = sorted(i for i in ids if student.holds_out(i))
    if not held:
        fraction = _held_out_share(student)
        chance = (1 - fraction) ** len(ids)
        if chance < LEAK_CHANCE:
            raise InputError(
                f"{where}: all {len(ids)} teacher calls of task {spec.task!r} are training rows of student {spec.id} "
                f"(its split holds out {fraction:.0%}, so this is no accident); gate never scores a student on its "
                "training rows: give it a store with calls it was not built from"
            )
        raise NotEnoughData(
            f"{where}: none of the {len(ids)} teacher calls of task {spec.task!r} is in the held-out "
            f"{fraction:.0%} of student {spec.id}; collecting (0 held-out examples)"
        )
    chosen = held[:limit] if limit else held
    con.register("held", pa.table({"id": chosen}))
    rows = con.execute(
        f"SELECT e.id, e.input, e.output, e.request_json, e.cost_usd, e.model, e.ts, e.input_tokens, e.output_tokens, "
        f"e.cache_read_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens "
        f"FROM examples e JOIN held USING (id) WHERE {teacher_rows} ORDER BY e.id",
        [spec.task],
    ).fetchall()
    by_id: dict[str, Example] = {}
    for id_, text, output, request_json, cost, model, ts, *tokens in rows:
        usage = Usage(*(int(t or 0) for t in tokens))
        by_id.setdefault(id_, Example(id_, text or "", output, request_json or "", cost, model, usage, ts))
    return Selection([by_id[i] for i in chosen], len(held), len(ids))


# ---- scoring ---------------------------------------------------------------------------------------------------


async def run_capped(
    count: int,
    work: Callable[[int], Awaitable[T]],
    *,
    concurrency: int,
    spend: SpendCap,
    cost_of: Callable[[T], float],
    after: Callable[[int, T], None] | None = None,
) -> list[T | None]:
    """`await work(i)` for i in 0..count-1 with `concurrency` at once, under `spend`'s cap.

    Returns the results in order; those never started because the cap stopped the
    run are None (`spend.stopped` is then True). `after(i, result)` runs once per
    finished unit, in completion order; an exception from `work` or `after` stops
    the run (cancelling what is in flight) and is raised.
    """
    results: list[T | None] = [None] * count
    state = {"next": 0, "in_flight": 0}
    ready = asyncio.Condition()

    async def worker() -> None:
        while True:
            async with ready:
                while True:
                    if state["next"] >= count or spend.stopped:
                        return
                    admitted = spend.admit(state["in_flight"])
                    if admitted == "go":
                        break
                    if admitted == "stop":
                        spend.stopped = True
                        ready.notify_all()
                        return
                    await ready.wait()
                i = state["next"]
                state["next"] += 1
                state["in_flight"] += 1
            finished = False
            try:
                results[i] = await work(i)
                finished = True
            finally:
                async with ready:
                    state["in_flight"] -= 1
                    if finished:
                        spend.add(cost_of(results[i]))
                    ready.notify_all()
            if after is not None:
                after(i, results[i])

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, count)))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for w in workers:
            if not w.done():
                w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    for w in done:
        if not w.cancelled() and w.exception() is not None:
            raise w.exception()
    return results


async def _ask(student: Student, request: dict, retry: RetryPolicy):
    """The student's answer, retrying a StudentError that carries a transient HTTP status under `retry`.

    LLM kinds retry under the same policy themselves (their SDKs never do), so an
    error they already stopped on is not retried again. A refused key or a missing
    model (401/403/404), or a transient failure still there after the retries, is
    a ProviderError: the gate cannot go on.
    """
    try:
        return await retrying(lambda: student.answer_async(request), retry, failure=_student_failure)
    except Stopped as stopped:
        error, reason, attempts, wait = stopped.error, stopped.reason, stopped.attempts, stopped.wait
    except StudentError as e:
        if getattr(e, "stopped", None) is None:
            raise
        error, reason, attempts, wait = e, e.stopped, e.attempts, getattr(e, "wait", None)
    if reason is Stop.FATAL:
        raise ProviderError(f"{error} ({FATAL_STATUSES[error.status]}; the gate stopped)") from None
    if reason is Stop.EXHAUSTED:
        raise ProviderError(f"{error} (still failing after {attempts} attempts; the gate stopped)") from None
    if reason is Stop.TOO_LONG:
        raise ProviderError(f"{error} (asked to retry after {wait:.0f} s; the gate stopped)") from None
    raise error


def _student_failure(e: BaseException) -> Failure | None:
    """What the policy judges: a StudentError with an HTTP status the student did not retry itself."""
    status = getattr(e, "status", None) if isinstance(e, StudentError) else None
    if not isinstance(status, int) or getattr(e, "stopped", None) is not None:
        return None
    return Failure(status, getattr(e, "headers", None) or {}, str(e))


async def _score(example: Example, student: Student, judge: Judge, task: str, retry: RetryPolicy) -> Verdict:
    verdict = Verdict(
        example_id=example.id, task=task, student_id=student.id, input=example.input,
        teacher_output=example.teacher_output, student_output=None, answered=False, agree=False, score=0.0,
        judge=None, reason=None, error=None, student_cost_usd=0.0, latency_ms=0.0, confidence=None,
    )
    started = time.perf_counter()
    try:
        request = json.loads(example.request_json)
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        verdict.error, verdict.error_kind = f"student: the recorded request is unusable ({e})", "student"
        return verdict
    try:
        answer = await _ask(student, request, retry)
    except ProviderError:
        raise
    except StudentError as e:
        verdict.error, verdict.error_kind, verdict.unanswerable = f"student: {e}", "student", True
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        # A chain that failed still paid the tiers it asked before (a declined LLM tier spent tokens). Its
        # `attempts` is the list of tiers asked; an LLM student's StudentError may carry a retry count there.
        asked = getattr(e, "attempts", None)
        if isinstance(asked, list):
            verdict.student_cost_usd = sum(getattr(a, "cost_usd", None) or 0.0 for a in asked)
        return verdict
    except Exception as e:  # noqa: BLE001 - a broken student is reported as errors, never as a pass
        verdict.error, verdict.error_kind = f"student: {type(e).__name__}: {e}", "student"
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict
    verdict.latency_ms = answer.latency_ms or (time.perf_counter() - started) * 1000
    verdict.student_cost_usd = answer.cost_usd
    verdict.tier = getattr(answer, "tier", None)
    verdict.confidence = answer.confidence
    if answer.output is None:
        verdict.agree, verdict.score = True, 1.0
        verdict.reason = f"declined ({answer.reason}); the teacher answers" if answer.reason else "declined; the teacher answers"
        return verdict
    verdict.student_output, verdict.answered, verdict.judge = answer.output, True, judge.name
    try:
        judgement = await judge.judge_async(example.teacher_output, answer.output, example.input)
    except ProviderError:
        raise
    except JudgeError as e:
        verdict.error, verdict.error_kind = f"judge: {e}", "judge"
        return verdict
    except Exception as e:  # noqa: BLE001
        verdict.error, verdict.error_kind = f"judge: {type(e).__name__}: {e}", "judge"
        return verdict
    verdict.agree, verdict.score, verdict.reason = judgement.agree, judgement.score, judgement.reason
    verdict.judge_cost_usd = judgement.cost_usd
    return verdict


async def _score_all(
    examples: list[Example],
    student: Student,
    judge: Judge,
    *,
    concurrency: int,
    spend: SpendCap,
    progress: Callable[[int, int, float], None] | None,
    retry: RetryPolicy,
) -> list[Verdict | None]:
    """Score every example with `concurrency` at once; stops early (leaving None) at the spend cap."""
    first: list[Verdict] = []

    def after(i: int, verdict: Verdict) -> None:
        _watch_first(verdict, first, student)
        if progress is not None:
            progress(spend.done, len(examples), spend.total)

    return await run_capped(
        len(examples),
        lambda i: _score(examples[i], student, judge, student.spec.task, retry),
        concurrency=concurrency,
        spend=spend,
        cost_of=lambda v: (v.student_cost_usd or 0.0) + v.judge_cost_usd,
        after=after,
    )


def _watch_first(verdict: Verdict, first: list[Verdict], student: Student) -> None:
    """Stop when the student could not answer any of its first BREAKER examples.

    That is a student that cannot run here (no key, an unreachable or refusing
    upstream), not one that disagrees: exit 4, before it spends on the rest.
    """
    if len(first) >= BREAKER:
        return
    first.append(verdict)
    if len(first) == BREAKER and all(v.unanswerable for v in first):
        raise ProviderError(
            f"student {student.id} could not answer any of the first {BREAKER} examples, so the gate stopped: "
            f"{first[0].error}"
        )


async def _run(examples, student, judge, *, concurrency, spend, progress, retry):
    try:
        return await _score_all(
            examples, student, judge, concurrency=concurrency, spend=spend, progress=progress, retry=retry
        )
    finally:
        await judge.aclose()
        closer = getattr(student, "aclose", None)
        if closer is not None:
            await closer()


# ---- the gate --------------------------------------------------------------------------------------------------


def run_gate(
    student_path_or_obj: str | Path | Student | list,
    stores: str | Path | Iterable[str | Path],
    *,
    min_agreement: float = 0.95,
    min_examples: int = 100,
    confidence: float = 0.95,
    judge: str | Judge = "auto",
    judge_model: str | None = None,
    verdicts: str | Path | None = None,
    concurrency: int = 8,
    max_spend: float | None = None,
    limit: int | None = None,
    prices=None,
    reprice: bool = False,
    judge_cache_dir: str | Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    retry: RetryPolicy | None = None,
    allowed_endpoints: tuple[str, ...] | list[str] = (),
) -> GateSummary:
    """Gate a student on the held-out rows of its split in `stores`; write `verdicts` if given.

    Returns the summary (also for too few examples: decision `collecting`).
    Raises InputError (3) for unusable input or a would-be leak, NotEnoughData (5)
    when no held-out row exists, ProviderError (4) when a provider fails beyond
    retries, SpendCapReached (4) when `max_spend` stops the run; in all of those
    no verdicts file is written.

    `prices` prices the LLM judge's calls; with `reprice` it also reprices the
    teacher calls from their recorded usage (as `report --prices` does) instead of
    taking the cost recorded with them.

    `progress(done, total, spent_usd)` is called after each example; `retry` is the
    backoff for provider failures (student and LLM judge), injectable for tests.
    `allowed_endpoints`: URLs an LLM student may call besides the providers' own (endpoints.py).
    """
    retry = retry or RetryPolicy()
    started = time.perf_counter()
    _check_settings(min_agreement, min_examples, confidence, concurrency, max_spend, limit)
    if verdicts is not None:
        check_output(verdicts, "verdicts", "gate")
    student = (
        student_path_or_obj
        if isinstance(student_path_or_obj, Student)
        else load_chain(student_path_or_obj, "gate", allowed_endpoints=allowed_endpoints)
        if isinstance(student_path_or_obj, list)
        else load_student(student_path_or_obj, "gate", allowed_endpoints=allowed_endpoints)
    )
    if isinstance(stores, (str, Path)):
        stores = [stores]
    selection = select_held_out(student, stores, limit=limit)
    examples = selection.examples

    if isinstance(judge, Judge):
        the_judge, judge_reason = judge, "given"
    else:
        the_judge, judge_reason = make_judge(
            judge,
            outputs=[e.teacher_output for e in examples],
            model=judge_model or student.spec.teacher_model,
            prices=prices,
            cache_dir=judge_cache_dir,
            retry=retry,
        )
    spend = SpendCap(max_spend)
    results = asyncio.run(
        _run(examples, student, the_judge, concurrency=concurrency, spend=spend, progress=progress, retry=retry)
    )
    scored = [v for v in results if v is not None]
    student_spent = sum(v.student_cost_usd or 0.0 for v in scored)
    judge_spent = sum(v.judge_cost_usd for v in scored)
    if len(scored) < len(examples):
        raise SpendCapReached(
            f"--max-spend ${max_spend:.2f} reached: spent ${spend.total:.4f} (student ${student_spent:.4f}, "
            f"judge ${judge_spent:.4f}) on {len(scored)} of {len(examples)} examples; the gate did not finish, "
            "no verdicts written"
        )
    if reprice:
        from distill_cli.prices import load_prices

        table = prices if prices is not None else load_prices()
        for e in examples:
            e.teacher_cost = e.repriced(table)
    summary = summarize(
        student,
        scored,
        examples,
        selection,
        min_agreement=min_agreement,
        min_examples=min_examples,
        confidence=confidence,
        judge_name=the_judge.name,
        judge_reason=judge_reason,
    )
    summary.judge_calls = getattr(the_judge, "calls", 0)
    summary.judge_cache_hits = getattr(the_judge, "cache_hits", 0)
    summary.judge_cost_usd = judge_spent
    summary.student_cost_usd = student_spent
    summary.spent_usd = spend.total
    summary.gated_at = datetime.now(timezone.utc).isoformat()
    summary.student_digest = student.spec.digest
    summary.student_endpoint = student.endpoint
    tiers = getattr(student, "tiers", [student])
    summary.chain = [{"id": t.id, "kind": t.spec.kind, "digest": t.spec.digest} for t in tiers]
    if len(tiers) > 1:
        summary.tier_answered = [sum(1 for v in scored if v.answered and v.tier == i) for i in range(len(tiers))]
    if verdicts is not None:
        summary.verdicts_file = str(verdicts)
    summary.seconds = round(time.perf_counter() - started, 3)
    if verdicts is not None:
        write_verdicts(verdicts, summary)
    return summary


def summarize(
    student: Student,
    verdicts: list[Verdict],
    examples: list[Example],
    selection: Selection,
    *,
    min_agreement: float,
    min_examples: int,
    confidence: float,
    judge_name: str,
    judge_reason: str,
) -> GateSummary:
    n = len(verdicts)
    answered = sum(v.answered for v in verdicts)
    declined = sum(1 for v in verdicts if not v.answered and v.error is None)
    agreeing = sum(1 for v in verdicts if v.answered and v.agree and v.error is None)
    student_errors = sum(1 for v in verdicts if v.error_kind == "student")
    judge_errors = sum(1 for v in verdicts if v.error_kind == "judge")
    k = agreeing + declined
    agreement = k / n if n else 0.0
    lower, upper = wilson_bounds(k, n, confidence)
    passed = n >= min_examples and lower >= min_agreement
    coverage = answered / n if n else 0.0

    teacher_costs = [e.teacher_cost for e in examples if e.teacher_cost is not None]
    teacher_cost = sum(teacher_costs) / len(teacher_costs) if teacher_costs else None
    student_costs = [v.student_cost_usd for v in verdicts if v.student_cost_usd is not None]
    student_cost = sum(student_costs) / len(student_costs) if student_costs else None
    routed = routed_cost(student_cost, teacher_cost, coverage)
    reduction = cost_reduction(teacher_cost, routed)
    decision, reason = decide(
        n=n, min_examples=min_examples, passed=passed, agreement=agreement, lower_bound=lower,
        min_agreement=min_agreement, coverage=coverage, cost_reduction=reduction,
        errors=student_errors + judge_errors, confidence=confidence,
    )
    return GateSummary(
        student=student.id,
        student_kind=student.spec.kind,
        task=student.spec.task,
        n=n,
        answered=answered,
        declined=declined,
        agreeing=agreeing,
        disagreements=sum(1 for v in verdicts if v.disagreement),
        errors=student_errors + judge_errors,
        student_errors=student_errors,
        judge_errors=judge_errors,
        coverage=coverage,
        agreement=agreement,
        agreement_answered=agreeing / answered if answered else None,
        lower_bound=lower,
        upper_bound=upper,
        min_agreement=min_agreement,
        min_examples=min_examples,
        confidence=confidence,
        passed=passed,
        judge=judge_name,
        judge_reason=judge_reason,
        teacher_cost_per_call=teacher_cost,
        teacher_cost_unknown=len(examples) - len(teacher_costs),
        student_cost_per_call=student_cost,
        routed_cost_per_call=routed,
        cost_reduction=reduction,
        decision=decision,
        reason=reason,
        held_out=selection.held_out,
        teacher_rows=selection.teacher_rows,
        common_errors=[[e, c] for e, c in Counter(v.error for v in verdicts if v.error).most_common(3)],
        verdicts=verdicts,
    )


def _check_settings(min_agreement, min_examples, confidence, concurrency, max_spend, limit) -> None:
    if not 0 < min_agreement <= 1:
        raise InputError(f"min_agreement must be in (0, 1], not {min_agreement}")
    if min_examples < 1:
        raise InputError(f"min_examples must be at least 1, not {min_examples}")
    if not 0.5 <= confidence < 1:
        raise InputError(f"confidence must be in [0.5, 1), not {confidence}")
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, not {concurrency}")
    if max_spend is not None and not 0 < max_spend < math.inf:
        raise InputError(f"max_spend must be a finite amount more than 0, not {max_spend}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, not {limit}")


def write_verdicts(path: str | Path, summary: GateSummary) -> Path:
    """Write the verdicts file (`verdicts/1`, summary JSON in the footer) atomically."""
    check_output(path, "verdicts", "gate")
    schema = schemas.tagged(
        schemas.VERDICTS_SCHEMA, schemas.VERDICTS, {schemas.SUMMARY_KEY: json.dumps(summary.to_dict(), sort_keys=True)}
    )
    table = pa.Table.from_pylist([v.row() for v in summary.verdicts], schema=schema)
    return write_atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))
