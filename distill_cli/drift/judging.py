"""Checking pairs: the live teacher's answer where one is needed, then the judge's verdict, under a spend cap.

Fills in each Pair (teacher answer, agree, reason, error) and returns what was spent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from distill_cli.drift.queries import Pair
from distill_cli.drift.teacher import Teacher
from distill_cli.economics import SpendCap, SpendCapReached
from distill_cli.gate import run_capped
from distill_cli.judges import Judge, JudgeError, LLMJudge

CONCURRENCY = 8  # live teacher calls and LLM judgements at once


@dataclass
class Spent:
    """What a run spent on the live teacher and on the judge."""

    teacher: float = 0.0
    judge: float = 0.0

    @property
    def total(self) -> float:
        return self.teacher + self.judge


async def _check_pair(pair: Pair, judge: Judge, teacher: Teacher | None) -> tuple[float, float]:
    """Fill in the pair's teacher answer (live) and verdict; returns (teacher cost, judge cost)."""
    teacher_cost = 0.0
    if pair.live:
        try:
            pair.teacher_output, cost = await teacher.ask(teacher.request_for(pair.request_json or ""))
        except (JudgeError, ValueError) as e:  # a request this teacher refuses: no answer to compare with
            pair.error = f"teacher: {e}"
            return 0.0, 0.0
        teacher_cost = cost or 0.0
        pair.cost_usd = teacher_cost
        if pair.teacher_output is None:
            pair.error = "teacher: no answer text"
            return teacher_cost, 0.0
    try:
        judgement = await judge.judge_async(pair.teacher_output, pair.student_output, pair.input)
    except JudgeError as e:  # counted as a disagreement, as the gate counts it
        pair.agree, pair.error = False, f"judge: {e}"
        return teacher_cost, 0.0
    pair.agree, pair.reason = judgement.agree, judgement.reason
    return teacher_cost, judgement.cost_usd


def judge_pairs(pairs: list[Pair], judge: Judge, teacher: Teacher | None, max_spend: float | None, progress) -> Spent:
    """Judge every pair (asking the live teacher first where needed) under `max_spend`; SpendCapReached if it stops."""
    spent = Spent()
    if teacher is None and not isinstance(judge, LLMJudge):
        for pair in pairs:  # rule judges: no network, no spend, no event loop
            try:
                j = judge.judge(pair.teacher_output, pair.student_output, pair.input)
                pair.agree, pair.reason = j.agree, j.reason
            except JudgeError as e:
                pair.agree, pair.error = False, f"judge: {e}"
        return spent
    cap = SpendCap(max_spend)

    def after(i: int, costs: tuple[float, float]) -> None:
        spent.teacher += costs[0]
        spent.judge += costs[1]
        if progress is not None:
            progress(cap.done, len(pairs), cap.total)

    async def check_all():
        try:
            return await run_capped(len(pairs), lambda i: _check_pair(pairs[i], judge, teacher), concurrency=CONCURRENCY,
                                    spend=cap, cost_of=sum, after=after)
        finally:
            await judge.aclose()
            if teacher is not None:
                await teacher.aclose()

    asyncio.run(check_all())
    if cap.stopped:
        raise SpendCapReached(
            f"--max-spend ${max_spend:.2f} reached: spent ${spent.total:.4f} (teacher ${spent.teacher:.4f}, judge "
            f"${spent.judge:.4f}) on {cap.done} of {len(pairs)} student answers; drift did not finish, no log row written"
        )
    return spent
