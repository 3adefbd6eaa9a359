"""The drift run: read the window's calls, run the four checks, append the log row, demote on drift.

`run_drift` takes its steps in order and returns a DriftResult; the checks
themselves live in agreement.py and shifts.py, the queries in queries.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa

from distill_cli import store
from distill_cli.drift.agreement import AgreementFigures, agreement_check
from distill_cli.drift.judging import Spent, judge_pairs
from distill_cli.drift.log import LogRow, append_log, history, read_log
from distill_cli.drift.queries import (
    Pair,
    Traffic,
    count_traffic,
    live_candidates,
    recent_sample,
    shadow_pairs,
    student_inputs,
    training_sample,
)
from distill_cli.drift.results import Check, DriftResult
from distill_cli.drift.shifts import MIN_INPUTS, decline_shift, dev_decline_rate, input_shift, output_shift
from distill_cli.drift.teacher import Teacher
from distill_cli.drift.window import utc, utc_minute, window_start
from distill_cli.errors import InputError, NotEnoughData
from distill_cli.files import check_output
from distill_cli.judges import Judge, make_judge
from distill_cli.serving import (
    DemotionInfo,
    clear_demotion,
    content_problem,
    gate_files,
    is_demoted,
    latest_gate,
    latest_member_gate,
    write_demotion,
)
from distill_cli.students.base import StudentSpec, read_student_file

LIVE_SAMPLE = 50  # student-served inputs re-asked of the teacher with live_teacher and no `sample`


@dataclass
class Scope:
    """What one run looks at: the student, the stores, the window (and its part after the last run), its seed."""

    spec: StudentSpec
    stores: list[str]
    start: datetime
    now: datetime
    fresh_start: datetime
    seed: str  # every sample a run draws: new each run, the same on a replay
    notes: list[str] = field(default_factory=list)  # what the result and the log row say besides the checks

    @property
    def where(self) -> str:
        return ", ".join(self.stores)


@dataclass
class Judged:
    """The pairs a run judged, those that count (the teacher answered), the judge and what it all cost."""

    pairs: list[Pair]
    checked: list[Pair]
    judge: str | None = None
    judge_reason: str | None = None
    spent: Spent = field(default_factory=Spent)


def run_drift(
    student: str | Path,
    stores: str | Path | Iterable[str | Path],
    *,
    since: str | datetime = "24h",
    sample: int | None = None,
    live_teacher: bool = False,
    max_spend: float | None = None,
    min_agreement: float = 0.95,
    log: str | Path | None = None,
    demote: bool = False,
    now: datetime | str | None = None,
    prices=None,
    judge: str | Judge = "auto",
    judge_model: str | None = None,
    verdicts: Iterable[str | Path] = (),
    arl: float = 1000.0,
    confidence: float = 0.95,
    progress: Callable[[int, int, float], None] | None = None,
) -> DriftResult:
    """Check a serving student for drift over the calls in `stores` in the window `since` before `now`.

    `sample`: at most this many shadow pairs are judged (a fixed pseudo-random choice)
    and, with `live_teacher`, this many fresh student-served inputs re-asked (default 50).
    `arl`: when nothing changes, P(any false alarm within T runs) <= T / arl.
    `verdicts`: passing gate verdicts files that lift an earlier demotion of this student.

    Raises InputError (3), ProviderError / SpendCapReached (4; nothing written) and
    NotEnoughData (5: no call of the task in the window at all).
    """
    started = time.perf_counter()
    _check_settings(min_agreement, sample, max_spend, arl, confidence)
    now = datetime.now(timezone.utc) if now is None else utc(datetime.fromisoformat(now) if isinstance(now, str) else now)
    start = window_start(since, now)
    spec, student_table = read_student_file(student, "drift")
    _check_certified(student, spec, verdicts)
    stores = [str(s) for s in ([stores] if isinstance(stores, (str, Path)) else stores)]
    old_log = _old_log(log)
    if prices is None:
        from distill_cli.prices import load_prices

        prices = load_prices()
    alpha = 1.0 / (6.0 * arl)  # each single-run test; the detector gets threshold 2 x arl (the package docstring)

    # Demotion first: a lifted or stale marker goes, a standing one is reported.
    notes: list[str] = []
    cleared, standing = _demotion_first(student, spec, verdicts, notes)
    con = store.connect()
    store.examples_view(con, stores, "drift")
    increments, last_end = history(old_log, spec, now)
    fresh_start = max(start, last_end) if last_end is not None and last_end < now else start
    scope = Scope(spec, stores, start, now, fresh_start, f"{spec.id}:{now.isoformat()}", notes)
    traffic = _count_calls(con, scope, since)

    pairs, teacher = _pairs_to_judge(con, scope, sample, live_teacher, prices)
    judged = _judge(pairs, scope, judge, judge_model, prices, teacher, max_spend, progress)
    agreement, figures = agreement_check(judged.checked, traffic, increments, min_agreement, arl, confidence)
    checks = [agreement, *_shift_checks(con, scope, student_table, traffic, alpha)]
    drifted = any(c.drifted for c in checks)

    newly_demoted = drifted and demote and standing is None
    row = _log_row(scope, checks, figures, judged, traffic, demoted=standing is not None or newly_demoted)
    if newly_demoted:
        standing = write_demotion(student, spec, now, [f"{c.name}: {c.message}" for c in checks if c.drifted], row.to_record())
    log_rows = append_log(log, row) if log is not None else 0
    return DriftResult(
        student=spec.id, student_kind=spec.kind, task=spec.task, window_start=start, window_end=now, since=str(since),
        calls=traffic.calls, served=row.served, answered=traffic.answered, declined=traffic.declined,
        decline_rate=row.decline_rate, pairs=row.pairs, agreeing=row.agreeing,
        judge_errors=sum(1 for p in judged.checked if p.error), declines_counted=figures.declines_counted,
        agreement=figures.agreement, lower_bound=figures.lower, upper_bound=figures.upper, confidence=confidence,
        evidence=figures.evidence, evidence_threshold=2 * arl, detector_runs=figures.runs,
        input_shift=row.input_shift, input_shift_threshold=row.input_shift_threshold, output_shift=row.output_shift,
        checks=checks, drifted=drifted, demoted=row.demoted, demotion=standing, newly_demoted=newly_demoted,
        cleared=cleared, min_agreement=min_agreement, arl=arl, judge=judged.judge,
        judge_reason=judged.judge_reason, live_calls=sum(1 for p in judged.pairs if p.live),
        teacher_spent_usd=judged.spent.teacher, judge_spent_usd=judged.spent.judge, spent_usd=judged.spent.total,
        log=str(log) if log is not None else None, log_rows=log_rows, notes=notes,
        disagreements=_disagreements(judged.checked), seconds=round(time.perf_counter() - started, 3),
    )


def _check_settings(min_agreement, sample, max_spend, arl, confidence) -> None:
    if not 0 < min_agreement <= 1:
        raise InputError(f"min_agreement must be in (0, 1], not {min_agreement}")
    if sample is not None and sample < 1:
        raise InputError(f"sample must be at least 1, not {sample}")
    if max_spend is not None and not 0 < max_spend < math.inf:
        raise InputError(f"max_spend must be a finite amount more than 0, not {max_spend}")
    if not 2 <= arl < math.inf:
        raise InputError(f"arl must be a finite number of runs, at least 2, not {arl}")
    if not 0.5 <= confidence < 1:
        raise InputError(f"confidence must be in [0.5, 1), not {confidence}")


def _check_certified(student: str | Path, spec: StudentSpec, verdicts: Iterable[str | Path]) -> None:
    """InputError when the newest passing gate of this student id, or of a chain it is a tier of, certified other
    content than the file's. A tier gated only within a chain has no gate of its own: that is no reason to refuse."""
    files = gate_files(student, verdicts)
    for gate in (latest_gate(spec.id, files, "drift --verdicts"), latest_member_gate(spec.id, files)):
        problem = content_problem(student, spec.id, spec.digest, gate) if gate and gate.passed else None
        if problem is not None:
            raise InputError(problem)


def _old_log(log: str | Path | None) -> pa.Table | None:
    """The drift log's rows so far (None without --log or before its first run), once --log is known writable."""
    if log is None:
        return None
    old = read_log(log)
    check_output(log, "drift", "drift --log")
    return old


def _demotion_first(
    student: str | Path, spec: StudentSpec, verdicts: Iterable[str | Path], notes: list[str]
) -> tuple[DemotionInfo | None, DemotionInfo | None]:
    """Remove a marker a passing gate lifted (or a stale one); returns (what was cleared, the demotion still standing)."""
    cleared = clear_demotion(student, student_id=spec.id, verdicts=verdicts, digest=spec.digest)
    if cleared is not None:
        if cleared.student_id == spec.id:
            notes.append(f"the demotion of {spec.id} ({cleared.demoted_at}) was lifted by a passing gate; marker removed")
        else:
            notes.append(f"removed a stale demotion marker of an earlier student ({cleared.student_id})")
    return cleared, is_demoted(student, student_id=spec.id, verdicts=verdicts, digest=spec.digest)


def _count_calls(con, scope: Scope, since: str | datetime) -> Traffic:
    """The window's traffic; NotEnoughData (or InputError for an unknown task) when the task has no call in it."""
    spec = scope.spec
    traffic = count_traffic(con, spec, scope.start, scope.now, scope.fresh_start)
    if traffic.calls == 0:
        tasks = store.store_tasks(con, scope.stores, when_empty="nothing to check for drift")
        store.check_task(spec.task, tasks, scope.stores, of=", the task of the student")
        raise NotEnoughData(
            f"{scope.where}: no calls of task {spec.task!r} between {utc_minute(scope.start)} and {utc_minute(scope.now)} "
            f"(--since {since}); nothing to check: is the job running, and recording to this store?"
        )
    for other, count in sorted(traffic.other_students.items(), key=lambda kv: -kv[1]):
        scope.notes.append(f"{count:,} calls in the window were tried on another student ({other}), not checked here")
    for chain, count in sorted(traffic.earlier_tiers.items(), key=lambda kv: -kv[1]):
        scope.notes.append(f"{count:,} calls in the window were answered by an earlier tier of chain {chain} "
                           f"and never reached {spec.id}")
    return traffic


def _pairs_to_judge(con, scope: Scope, sample: int | None, live_teacher: bool, prices) -> tuple[list[Pair], Teacher | None]:
    """Shadow pairs (at most `sample`), then with `live_teacher` fresh student answers to re-ask, and the teacher to ask."""
    spec = scope.spec
    pairs, failed_shadows = shadow_pairs(con, spec, scope.start, scope.now, scope.fresh_start)
    if sample is not None and len(pairs) > sample:
        pairs = sorted(random.Random(scope.seed).sample(pairs, sample), key=lambda p: p.id)
    if failed_shadows:
        scope.notes.append(f"{failed_shadows:,} shadow calls of the teacher failed and were left out")
    if not live_teacher:
        return pairs, None
    if not spec.teacher_model:
        raise InputError(f"student {spec.id}: its spec names no teacher model, so --live-teacher cannot ask it")
    live = live_candidates(con, spec, scope.fresh_start, scope.now, sample or LIVE_SAMPLE, scope.seed)
    if not live:
        scope.notes.append("--live-teacher: no new student-served call without a shadow pair to re-ask")
        return pairs, None
    return pairs + live, Teacher(spec.teacher_model, spec.provider or "anthropic", prices)


def _judge(pairs: list[Pair], scope: Scope, judge: str | Judge, judge_model: str | None, prices, teacher: Teacher | None,
           max_spend: float | None, progress) -> Judged:
    """Judge the pairs (the live teacher answering first); the ones the teacher answered are the checked ones."""
    judged = Judged(pairs, [])
    if pairs:
        if isinstance(judge, Judge):
            the_judge, judged.judge_reason = judge, "given"
        else:
            known = [p.teacher_output for p in pairs if p.teacher_output is not None]
            the_judge, judged.judge_reason = make_judge(judge, outputs=known, model=judge_model or scope.spec.teacher_model,
                                                        prices=prices)
        judged.judge = getattr(the_judge, "name", None)
        judged.spent = judge_pairs(pairs, the_judge, teacher, max_spend, progress)
    teacher_errors = [p for p in pairs if p.error and p.error.startswith("teacher:")]
    if teacher_errors:
        scope.notes.append(f"the teacher could not answer {len(teacher_errors)} re-asked calls (e.g. {teacher_errors[0].error}); "
                           "left out")
    judged.checked = [p for p in pairs if p.teacher_output is not None and not (p.error or "").startswith("teacher:")]
    return judged


def _shift_checks(con, scope: Scope, student_table: pa.Table, traffic: Traffic, alpha: float) -> list[Check]:
    """The input, decline and output checks of the window against the student's training rows and dev split."""
    spec, seed = scope.spec, scope.seed
    spelling: dict[str, str] = {}
    training = training_sample(con, spec, scope.start, spelling, seed)
    recent = recent_sample(con, spec.task, scope.start, scope.now, spelling, seed)
    training_inputs, source = training.inputs, training.source
    if len(training_inputs) < MIN_INPUTS and student_inputs(student_table):
        training_inputs, source = student_inputs(student_table), "the inputs stored in the student file"
    # Beyond 4 training inputs per recent one the AUC's spread hardly narrows; the fit only gets slower.
    training_inputs = training_inputs[: max(4 * len(recent.inputs), 500)]
    input_check = input_shift(recent.inputs, training_inputs, alpha, seed=_int_seed(seed))
    input_check.details["training_source"] = source
    decline_check = decline_shift(traffic.declined, traffic.answered + traffic.declined, dev_decline_rate(spec), alpha)
    output_check = output_shift(recent.answers, training.answers, alpha, seed=_int_seed(seed))
    return [input_check, decline_check, output_check]


def _log_row(scope: Scope, checks: list[Check], figures: AgreementFigures, judged: Judged, traffic: Traffic, *,
             demoted: bool) -> LogRow:
    """The run's row in the drift log; its `reasons` carry every check's details, the spend and the notes."""
    by_name = {c.name: c for c in checks}
    served = traffic.answered + traffic.declined
    reasons = json.dumps({
        "drifted": [c.name for c in checks if c.drifted],
        "messages": [f"{c.name}: {c.message}" for c in checks if c.drifted],
        "checks": {c.name: {"status": c.status, "statistic": c.statistic, "threshold": c.threshold, "message": c.message,
                            **c.details} for c in checks},
        "spent_usd": round(judged.spent.total, 6),
        "notes": scope.notes,
    }, sort_keys=True, default=str)
    return LogRow(
        ts=scope.now, student_id=scope.spec.id, task=scope.spec.task, window_start=scope.start, window_end=scope.now,
        pairs=len(judged.checked), agreeing=sum(p.agree for p in judged.checked), agreement=figures.agreement,
        lower_bound=figures.lower, upper_bound=figures.upper, served=served,
        decline_rate=traffic.declined / served if served else None,
        input_shift=by_name["input"].statistic, input_shift_threshold=by_name["input"].threshold,
        output_shift=by_name["output"].statistic, drifted=any(c.drifted for c in checks), demoted=demoted, reasons=reasons,
    )


def _disagreements(checked: list[Pair]) -> list[dict]:
    """The first ten checked pairs the judge found disagreeing, as the result shows them."""
    return [
        {"id": p.id, "input": p.input, "student": p.student_output, "teacher": p.teacher_output, "confidence": p.confidence,
         "why": p.error or p.reason, "live": p.live}
        for p in checked if not p.agree
    ][:10]


def _int_seed(seed: str) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
