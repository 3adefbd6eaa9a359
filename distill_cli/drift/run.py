"""Drift: is a student that passed its gate still fit to serve? Run from cron, night after night.

    result = run_drift("intent.student", "runs/", since="24h", log="drift.parquet", demote=True)
    result.status, result.drifted, result.reasons, result.to_dict()

Four checks over the calls of the student's task in the window (`since` before `now`):

- agreement: the student's answers against the teacher's on the same calls (the
  shadow pairs the router recorded and, with `live_teacher`, a sample of recent
  student-served inputs re-asked of the teacher now, cost counted and capped by
  `max_spend`), judged as the gate judges. End-to-end agreement counts declines as
  agreeing, as the gate does. A sequential detector over the drift log's runs
  decides (a mixture CUSUM e-detector between agreement >= `min_agreement` and
  lower alternatives): when agreement stays at or above `min_agreement`, the
  chance of any false alarm in the first T runs is at most T / (2 x `arl`), however
  many runs cron makes. docs/drift.md explains it.
- input: a domain classifier (TF-IDF, logistic regression) trying to tell recent
  inputs from the student's training inputs; drifted when its cross-fitted AUC
  exceeds max(0.55, the AUC a label-blind scorer reaches with chance 1/(6 x `arl`)).
- decline: the decline rate against the one measured on the student's dev split.
- output: the served answers' distribution against the teacher's on training rows
  (closed sets of answers only): Jensen-Shannon distance, with a bootstrap p-value
  and a 0.1 floor.
Each single-run test is at level 1/(6 x `arl`), so all four together raise a false
alarm in the first T runs with chance at most T / `arl`.

What drift reads (the router's row contract):
  served_by='student', student_id=<id>   the student answered; `output` is its answer
  served_by='fallback', student_id=<id>  the student declined or failed; the teacher answered
  served_by='shadow', pair_id=<row id>   the teacher, asked in the background about that student row
  served_by='teacher'                    the teacher alone (no student, or the student demoted)

Demotion. With `demote`, a drifted run writes the marker `<student file>.demoted`
(serving.py: what it holds, what the router asks, what lifts it). A run given
`verdicts` removes a marker that no longer counts (`clear_demotion`).

This module never prints and never exits; it writes only the drift log (one row per
run, appended by rewriting to a temporary file and renaming) and the marker.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import math
import os
import random
import re
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import schemas, store
from distill_cli.errors import InputError, NotEnoughData, ProviderError
from distill_cli.files import check_output, write_atomically
from distill_cli.gate import SpendCap, SpendCapReached, run_capped
from distill_cli.judges import (
    CLOSED_SET,
    Judge,
    JudgeError,
    LLMJudge,
    RetryPolicy,
    call_with_retries,
    make_judge,
    normalize,
)
from distill_cli.serving import (
    DemotionInfo,
    clear_demotion,
    content_problem,
    gate_files,
    is_demoted,
    latest_gate,
    write_demotion,
)
from distill_cli.stats import wilson_bounds, z_one_sided
from distill_cli.students.base import StudentSpec, in_holdout, read_student_file

RESULT_SCHEMA = "drift-result/1"
CHECKS = ("agreement", "input", "decline", "output")

LIVE_SAMPLE = 50  # student-served inputs re-asked of the teacher with live_teacher and no `sample`
INPUT_SAMPLE = 2000  # inputs per side the domain classifier sees at most
MIN_INPUTS = 20  # fewer recent or training inputs (or served calls) than this: the check is skipped
AUC_FLOOR = 0.55  # Evidently's rule for large samples: a smaller shift is not worth an alarm
DECLINE_MARGIN = 0.05  # the decline rate must be confidently this much above the dev split's
JS_FLOOR = 0.1  # Jensen-Shannon distance (base 2) below which an answer mix change is not an alarm
CONCURRENCY = 8  # live teacher calls and LLM judgements at once
# Alternative disagreement rates of the agreement detector, as multiples of 1 - min_agreement.
ALTERNATIVES = (1.25, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)
SERVING = ("teacher", "student", "fallback")  # one row per call the job made (shadow rows duplicate a call)


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One check of a run: `status` is ok, drifted or skipped; `message` says what it saw and why."""

    name: str
    status: str
    message: str
    statistic: float | None = None
    threshold: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"


@dataclass
class DriftResult:
    """A drift run: what each check saw, whether the student drifted, and the row appended to the log."""

    student: str
    student_kind: str
    task: str
    window_start: datetime
    window_end: datetime
    since: str
    calls: int  # calls of the task in the window (shadow rows not counted)
    served: int  # calls the student was asked (answered + declined)
    answered: int
    declined: int
    decline_rate: float | None
    pairs: int  # student answers checked against the teacher (shadow + live)
    agreeing: int
    judge_errors: int
    declines_counted: int  # declines weighed in at the pairs' sampling rate (end-to-end agreement)
    agreement: float | None
    lower_bound: float | None
    upper_bound: float | None
    confidence: float
    evidence: float | None  # the sequential detector's statistic after this run
    evidence_threshold: float
    detector_runs: int  # runs with pairs folded into the detector since it last restarted
    input_shift: float | None
    input_shift_threshold: float | None
    output_shift: float | None
    checks: list[Check]
    drifted: bool
    demoted: bool
    demotion: DemotionInfo | None
    newly_demoted: bool
    cleared: DemotionInfo | None  # a demotion this run found lifted (and removed)
    min_agreement: float
    arl: float
    judge: str | None
    judge_reason: str | None
    live_calls: int
    teacher_spent_usd: float
    judge_spent_usd: float
    spent_usd: float
    log: str | None
    log_rows: int
    notes: list[str] = field(default_factory=list)
    disagreements: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "demoted" if self.demoted else "drifted" if self.drifted else "ok"

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.message}" for c in self.checks if c.drifted]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        data = {"schema": RESULT_SCHEMA, "status": self.status, "reasons": self.reasons}
        data.update(asdict(self))
        for key in ("window_start", "window_end"):
            data[key] = getattr(self, key).isoformat()
        return data


# ---- time ------------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def window_start(since: str | datetime, now: datetime) -> datetime:
    """The start of the window: `since` as a duration before `now` (`24h`, `90m`, `7d`, `2w`) or a moment (ISO-8601)."""
    if isinstance(since, datetime):
        start = since
    else:
        m = _DURATION.match(str(since))
        if m:
            return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()])
        try:
            start = datetime.fromisoformat(str(since).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"--since {since!r}: not a duration (24h, 90m, 7d, 2w) or an ISO-8601 time") from None
    start = _utc(start)
    if start >= now:
        raise InputError(f"--since {since}: {start.isoformat()} is not before now ({now.isoformat()})")
    return start


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# ---- the sequential agreement detector ---------------------------------------------------------------------------


def alternatives(min_agreement: float) -> np.ndarray:
    """The disagreement rates the detector weighs against 1 - min_agreement, equally."""
    q0 = 1.0 - min_agreement
    if q0 <= 0:
        return np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    return np.unique(np.minimum(0.999, q0 * np.array(ALTERNATIVES)))


def run_log_evidence(n: int, k: int, min_agreement: float) -> np.ndarray:
    """log of each alternative's likelihood ratio over a run's n observations, k of them agreeing.

    Under agreement >= min_agreement each ratio has expectation <= 1 (an e-value).
    """
    q1 = alternatives(min_agreement)
    p0, q0 = min_agreement, 1.0 - min_agreement
    with np.errstate(divide="ignore"):
        agree_term = k * np.log((1.0 - q1) / p0) if k else np.zeros_like(q1)
        disagree_term = (n - k) * (np.log(q1) - math.log(q0) if q0 > 0 else np.full_like(q1, np.inf)) if n - k else 0.0
    return agree_term + disagree_term


class AgreementDetector:
    """The mixture CUSUM e-detector over runs of agreement observations.

    Per alternative j: C_j <- max(C_j, 1) x e_j(run); the statistic is the mean of
    the C_j. Runs without observations change nothing. When agreement stays at or
    above min_agreement, P(statistic reaches A within T runs) <= T / A (docs/drift.md).
    """

    def __init__(self, min_agreement: float) -> None:
        self.min_agreement = min_agreement
        self.log_c = np.zeros(len(alternatives(min_agreement)))
        self.runs = 0

    def update(self, n: int, k: int) -> float:
        """Fold in a run of n observations, k agreeing; returns the log statistic."""
        if n > 0:
            self.log_c = np.maximum(self.log_c, 0.0) + run_log_evidence(n, k, self.min_agreement)
            self.runs += 1
        return self.log_statistic

    @property
    def log_statistic(self) -> float:
        if not self.runs:
            return -math.inf
        top = float(np.max(self.log_c))
        if math.isinf(top):
            return top
        return top + math.log(float(np.mean(np.exp(self.log_c - top))))


def fold_evidence(runs: Iterable[tuple[int, int]], min_agreement: float) -> tuple[float, int]:
    """(log statistic, runs with observations) of the detector after runs of (n, k)."""
    detector = AgreementDetector(min_agreement)
    for n, k in runs:
        detector.update(n, k)
    return detector.log_statistic, detector.runs


# ---- input drift: the domain classifier --------------------------------------------------------------------------


def null_auc_spread(n_recent: int, n_reference: int) -> float:
    """The standard deviation of a label-blind scorer's AUC (Mann-Whitney null): (n0 + n1 + 1) / (12 n0 n1), square-rooted."""
    return math.sqrt((n_recent + n_reference + 1) / (12.0 * n_recent * n_reference))


def input_shift(recent: list[str], reference: list[str], alpha: float, *, seed: int = 0) -> Check:
    """Can a classifier tell recent inputs from training inputs? Cross-fitted AUC against a threshold.

    Two halves, each scored by a model fitted on the other: given its model, a half's
    AUC under no change is exactly a label-blind scorer's (the Mann-Whitney null), so
    the mean of the two halves' z-scores has spread <= 1 however they correlate. The
    threshold is max(AUC_FLOOR, 0.5 + z(1 - alpha) x the halves' null spread). (Pooling
    out-of-fold scores across folds, as Evidently's bootstrap assumes, is not exact:
    on banking77 its null spread is 1.35x the Mann-Whitney one; docs/drift.md.)
    """
    n1, n0 = len(recent), len(reference)
    if n1 < MIN_INPUTS or n0 < MIN_INPUTS:
        return Check("input", "skipped", f"too few inputs to compare ({n1:,} recent, {n0:,} training; {MIN_INPUTS} each needed)",
                     details={"recent": n1, "training": n0})
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    texts = reference + recent
    y = np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)]
    # The vectoriser sees no labels, so fitting it once on both groups leaks nothing into the halves.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    try:
        features = vectorizer.fit_transform(texts)
    except ValueError:  # no words at all
        return Check("input", "skipped", "the inputs hold no words to compare", details={"recent": n1, "training": n0})

    def model():
        # newton-cg: the steadiest of sklearn's solvers on a few thousand short texts (tenths of a second).
        return LogisticRegression(solver="newton-cg", max_iter=200, class_weight="balanced")

    aucs, spreads = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fit, score in StratifiedKFold(n_splits=2, shuffle=True, random_state=seed).split(features, y):
            scores = model().fit(features[fit], y[fit]).decision_function(features[score])
            aucs.append(float(roc_auc_score(y[score], scores)))
            spreads.append(null_auc_spread(int(y[score].sum()), int(len(score) - y[score].sum())))
    auc = float(np.mean(aucs))
    threshold = max(AUC_FLOOR, 0.5 + z_one_sided(1 - alpha) * float(np.mean(spreads)))
    details = {"recent": n1, "training": n0, "auc": round(auc, 4), "halves": [round(x, 4) for x in aucs],
               "threshold": round(threshold, 4)}
    if auc <= threshold:
        message = f"recent inputs look like the training inputs (domain classifier AUC {auc:.3f} <= {threshold:.3f}; {n1:,} recent, {n0:,} training)"
        return Check("input", "ok", message, auc, threshold, details)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = model().fit(features, y)
    terms = np.asarray(vectorizer.get_feature_names_out())
    top = [str(t) for t in terms[np.argsort(-whole.coef_[0])[:8]]]
    details["recent_terms"] = top
    message = (
        f"recent inputs differ from the training inputs: a classifier tells them apart with AUC {auc:.3f} > {threshold:.3f} "
        f"({n1:,} recent, {n0:,} training); typical of recent inputs: {', '.join(repr(t) for t in top[:5])}"
    )
    return Check("input", "drifted", message, auc, threshold, details)


# ---- decline rate and answer mix -----------------------------------------------------------------------------------


def dev_decline_rate(spec: StudentSpec) -> float | None:
    """1 - coverage on the student's dev split, from its spec's metrics (None when it records none)."""
    coverage = (spec.metrics or {}).get("coverage")
    if isinstance(coverage, (int, float)) and not isinstance(coverage, bool) and 0 <= coverage <= 1:
        return 1.0 - float(coverage)
    return None


def decline_shift(declined: int, served: int, dev_rate: float | None, alpha: float) -> Check:
    if dev_rate is None:
        return Check("decline", "skipped", "the student's spec records no dev-split coverage to compare with")
    if served < MIN_INPUTS:
        return Check("decline", "skipped", f"the student was asked {served} times in the window ({MIN_INPUTS} needed)",
                     details={"served": served, "dev_rate": dev_rate})
    rate = declined / served
    lower = wilson_bounds(declined, served, 1 - alpha)[0]
    limit = dev_rate + DECLINE_MARGIN
    details = {"served": served, "declined": declined, "rate": round(rate, 4), "lower_bound": round(lower, 4),
               "dev_rate": round(dev_rate, 4), "limit": round(limit, 4)}
    said = f"declined {_pct(rate)} of {served:,} calls against {_pct(dev_rate)} on its dev split"
    if lower > limit:
        return Check("decline", "drifted", f"the student {said} (lower bound {_pct(lower)} > {_pct(limit)}): "
                     "the teacher is answering more of the traffic, so savings fall", rate, limit, details)
    return Check("decline", "ok", f"the student {said}", rate, limit, details)


def output_shift(recent: Counter, reference: Counter, alpha: float, *, seed: int = 0) -> Check:
    """Served answers against the teacher's on training rows: Jensen-Shannon distance and its chance under no change.

    The p-value is a parametric bootstrap of the two-sample homogeneity test: both
    samples drawn again from their pooled answer mix, the distance recomputed. It
    stays exact where a chi-square approximation fails (77 answers, 150 calls a day).
    """
    n1, n0 = sum(recent.values()), sum(reference.values())
    if n1 < MIN_INPUTS or n0 < MIN_INPUTS:
        return Check("output", "skipped", f"too few answers to compare ({n1:,} recent, {n0:,} training)")
    if len(reference) > CLOSED_SET or 2 * len(reference) > n0:
        return Check("output", "skipped", "the teacher's answers are free text, not a closed set: no distribution to compare")
    from scipy.spatial.distance import jensenshannon

    labels = sorted(set(recent) | set(reference), key=lambda x: (-(recent[x] + reference[x]), x))
    a = np.array([recent[x] for x in labels], dtype=float)
    b = np.array([reference[x] for x in labels], dtype=float)
    js = float(jensenshannon(a / n1, b / n0, base=2))
    pooled = (a + b) / (n1 + n0)
    rng = np.random.default_rng(seed)
    sims = int(min(100_000, max(2_000, 4 / alpha)))
    at_least = done = 0
    # Stop drawing once the p-value cannot end below alpha: only a real change pays for every draw.
    while done < sims and (1 + at_least) / (1 + sims) < alpha:
        size = min(1_000, sims - done)
        null = jensenshannon(rng.multinomial(n1, pooled, size=size) / n1, rng.multinomial(n0, pooled, size=size) / n0,
                             axis=1, base=2)
        at_least += int(np.count_nonzero(null >= js - 1e-12))
        done += size
    p = (1 + at_least) / (1 + done)
    shares = sorted(labels, key=lambda x: (-abs(recent[x] / n1 - reference[x] / n0), x))[:3]
    moves = ", ".join(f"{x!r} {_pct(reference[x] / n0)} -> {_pct(recent[x] / n1)}" for x in shares)
    new = sorted(x for x in recent if x not in reference)
    details = {"recent": n1, "training": n0, "js": round(js, 4), "p_value": p, "moves": moves, "new_answers": new[:10]}
    said = f"Jensen-Shannon distance {js:.3f} over {n1:,} served answers, p = {p:.2g} under no change"
    if p < alpha and js >= JS_FLOOR:
        extra = f"; answers never seen in training: {', '.join(repr(x) for x in new[:3])}" if new else ""
        return Check("output", "drifted", f"the mix of answers changed ({said}): {moves}{extra}", js, JS_FLOOR, details)
    return Check("output", "ok", f"the mix of answers is as in training ({said})", js, JS_FLOOR, details)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


# ---- reading the store ---------------------------------------------------------------------------------------------


@dataclass
class Pair:
    """A student answer and the teacher's answer to the same call."""

    id: str
    fresh: bool  # after the previous run's window: new evidence for the detector
    input: str
    student_output: str
    teacher_output: str | None  # None until a live teacher call answers
    request_json: str | None = None
    confidence: float | None = None
    agree: bool = False
    error: str | None = None
    reason: str | None = None
    live: bool = False
    cost_usd: float = 0.0


@dataclass
class Traffic:
    calls: int = 0
    answered: int = 0
    declined: int = 0
    fresh_answered: int = 0
    fresh_declined: int = 0
    other_students: dict = field(default_factory=dict)


def _count_traffic(con, spec: StudentSpec, start: datetime, end: datetime, fresh_start: datetime) -> Traffic:
    rows = con.execute(
        f"""SELECT served_by, student_id, ts > ? AS fresh, count(*), count(*) FILTER (WHERE {schemas.complete_answer_sql()})
           FROM examples WHERE task = ? AND ts > ? AND ts <= ? GROUP BY ALL""",
        [fresh_start, spec.task, start, end],
    ).fetchall()
    t = Traffic()
    for served_by, student_id, fresh, count, with_output in rows:
        if served_by in SERVING:
            t.calls += count
        if served_by in ("student", "fallback") and student_id != spec.id:
            t.other_students[student_id] = t.other_students.get(student_id, 0) + count
            continue
        if served_by == "student":
            t.answered += with_output
            t.fresh_answered += with_output if fresh else 0
        elif served_by == "fallback":
            t.declined += count
            t.fresh_declined += count if fresh else 0
    return t


_STUDENT_ROWS = (
    f"st.task = ? AND st.served_by = 'student' AND st.student_id = ? AND st.ts > ? AND st.ts <= ? AND {schemas.complete_answer_sql('st')}"
)


def _shadow_pairs(con, spec: StudentSpec, start: datetime, end: datetime, fresh_start: datetime) -> tuple[list[Pair], int]:
    """The window's student answers the teacher also answered (shadow rows), and how many shadow calls failed."""
    rows = con.execute(
        f"""SELECT st.id, any_value(st.ts > ?), any_value(st.input), any_value(st.output), any_value(st.confidence),
                   first(sh.output ORDER BY sh.ts) FILTER (WHERE {schemas.teacher_answer_sql('sh')})
            FROM examples st JOIN examples sh ON sh.pair_id = st.id AND sh.served_by = 'shadow' AND sh.task = st.task
            WHERE {_STUDENT_ROWS} GROUP BY st.id ORDER BY st.id""",
        [fresh_start, spec.task, spec.id, start, end],
    ).fetchall()
    pairs = [Pair(i, bool(f), text or "", out, teacher, confidence=c) for i, f, text, out, c, teacher in rows if teacher is not None]
    return pairs, len(rows) - len(pairs)


def _live_candidates(con, spec: StudentSpec, fresh_start: datetime, end: datetime, n: int, seed: str) -> list[Pair]:
    """Up to n fresh student answers without a shadow pair, a pseudo-random choice fixed by `seed`."""
    rows = con.execute(
        f"""SELECT st.id, st.input, st.output, st.request_json, st.confidence FROM examples st
            WHERE {_STUDENT_ROWS} AND st.request_json IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM examples sh WHERE sh.pair_id = st.id AND sh.served_by = 'shadow')
            ORDER BY hash(st.id || ?), st.id LIMIT ?""",
        [spec.task, spec.id, fresh_start, end, seed, n],
    ).fetchall()
    return [Pair(i, True, text or "", out, None, request_json=req, confidence=c, live=True) for i, text, out, req, c in rows]


def _recent_inputs(con, task: str, start: datetime, end: datetime, spelling: dict, seed: str) -> tuple[list[str], Counter]:
    serving = ", ".join(f"'{s}'" for s in SERVING)
    where = f"task = ? AND ts > ? AND ts <= ? AND served_by IN ({serving})"
    inputs = [r[0] for r in con.execute(
        f"SELECT input FROM examples WHERE {where} AND input IS NOT NULL ORDER BY hash(id || ?), id LIMIT {INPUT_SAMPLE}",
        [task, start, end, seed],
    ).fetchall()]
    # Sized for closed sets; a free-text task is recognised from the reference and skipped.
    answers = con.execute(
        f"""SELECT output, count(*) FROM examples WHERE {where} AND {schemas.complete_answer_sql()}
            GROUP BY output ORDER BY 2 DESC LIMIT {4 * CLOSED_SET}""",
        [task, start, end],
    ).fetchall()
    return inputs, _answer_counts(answers, spelling)


def _answer_counts(rows, spelling: dict[str, str]) -> Counter:
    """Counts of (output, count) rows merged as the judge would (`normalize`), each under one spelling.

    `spelling` (normalised -> first spelling seen) is shared between the samples compared.
    """
    raw: Counter = Counter()
    for output, count in rows:
        raw[output] += count
    counts: Counter = Counter()
    for output, count in raw.most_common():
        counts[spelling.setdefault(normalize(output), output)] += count
    return counts


def _training_rows(con, spec: StudentSpec, before: datetime, spelling: dict, seed: str) -> tuple[list[str], Counter, str]:
    """Inputs and answer counts of a sample of the student's training rows recorded before `before`, and their source.

    Training rows: the task's teacher answers not held out by the student's split
    and no newer than the newest row it was built from. The sample changes with
    `seed` (each run's own): a sample fixed across runs would carry its quirks into
    every run, and the runs' false alarms would no longer be independent.
    """
    newest = _built_until(spec)
    if newest is not None:
        before = min(before, newest + timedelta(microseconds=1))
    rows = con.execute(
        f"""SELECT id, input, output FROM examples
            WHERE task = ? AND {schemas.teacher_answer_sql()} AND ts < ?
            ORDER BY hash(id || ?), id LIMIT {4 * INPUT_SAMPLE}""",
        [spec.task, before, seed],
    ).fetchall()
    split = spec.split or {}
    salt, fraction = split.get("salt"), split.get("holdout")
    if salt and isinstance(fraction, (int, float)) and 0 < fraction < 1:
        rows = [r for r in rows if not in_holdout(salt, r[0], fraction)]
        source = "the student's training split"
    else:
        source = "the teacher's answers before the window (the student records no split)"
    inputs = [r[1] for r in rows[:INPUT_SAMPLE] if r[1] is not None]
    return inputs, _answer_counts(((r[2], 1) for r in rows), spelling), source


def _int_seed(seed: str) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")


def _built_until(spec: StudentSpec) -> datetime | None:
    newest = (spec.built_from or {}).get("newest")
    if not newest:
        return None
    try:
        return _utc(datetime.fromisoformat(str(newest).replace("Z", "+00:00")))
    except ValueError:
        return None


def _student_inputs(table: pa.Table) -> list[str]:
    """Inputs a student file stores itself (demonstrations), when it has an `input` column."""
    if "input" not in table.column_names:
        return []
    return [t for t in table["input"].to_pylist()[:INPUT_SAMPLE] if t]


# ---- checking pairs: the live teacher and the judge ----------------------------------------------------------------


class Teacher:
    """The student's teacher, asked again about recorded requests through the provider's SDK.

    The SDK reads ANTHROPIC_BASE_URL / OPENAI_BASE_URL, so a proxy or a fake server
    sits in between as it would for the job. Retries follow `RetryPolicy`.
    """

    def __init__(self, model: str, provider: str, prices, *, retry: RetryPolicy | None = None, timeout: float = 60.0) -> None:
        self.model, self.provider, self.prices = model, provider, prices
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        key_env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
        self._api_key = os.environ.get(key_env) or (os.environ.get("ANTHROPIC_AUTH_TOKEN") if provider != "openai" else None)
        if not self._api_key:
            raise ProviderError(f"--live-teacher asks the teacher ({model}) and needs an API key: set {key_env}")
        self._client = None

    def _async_client(self):
        if self._client is None:
            if self.provider == "openai":
                import openai

                self._client = openai.AsyncOpenAI(api_key=self._api_key, max_retries=0, timeout=self.timeout)
            else:
                import anthropic

                self._client = anthropic.AsyncAnthropic(api_key=self._api_key, max_retries=0, timeout=self.timeout)
        return self._client

    def request_for(self, request_json: str) -> dict:
        request = json.loads(request_json)
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
        request = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        request["model"] = self.model
        return request

    async def ask(self, request: dict) -> tuple[str | None, float | None]:
        """The teacher's answer text and what the call cost (None when the model has no known price)."""
        from distill_cli import calls

        client = self._async_client()
        if self.provider == "openai":
            reply = await call_with_retries(lambda: client.chat.completions.create(**request), self.retry, what=f"live teacher {self.model}")
            row = calls.openai_row(request, reply.model_dump(), prices=self.prices)
        else:
            reply = await call_with_retries(lambda: client.messages.create(**request), self.retry, what=f"live teacher {self.model}")
            row = calls.anthropic_row(request, reply.model_dump(), prices=self.prices)
        return row["output"], row["cost_usd"]

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


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


def _judge_pairs(pairs: list[Pair], judge: Judge, teacher: Teacher | None, max_spend: float | None, progress) -> Spent:
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


# ---- the drift log -----------------------------------------------------------------------------------------------


def read_log(path: str | Path) -> pa.Table | None:
    """The drift log's rows (None when the file does not exist yet); InputError for anything but a drift log."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise InputError(f"{path}: is a directory; --log needs a file name")
    schemas.check_kind(path, schemas.read_kind(path), "drift", "drift --log")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: drift log is damaged ({str(e).splitlines()[0]})") from None


def _history(log: pa.Table | None, spec: StudentSpec, now: datetime) -> tuple[list[tuple[int, int]], datetime | None]:
    """This student's earlier runs as detector increments (n, k) since its last demotion, and the last window end."""
    if log is None:
        return [], None
    rows = [r for r in log.to_pylist() if r["student_id"] == spec.id and r["task"] == spec.task and r["ts"] and r["ts"] < now]
    rows.sort(key=lambda r: r["ts"])
    last_end = max((r["window_end"] for r in rows if r["window_end"]), default=None)
    demoted_at = [i for i, r in enumerate(rows) if r["demoted"]]
    if demoted_at:
        rows = rows[demoted_at[-1] + 1 :]  # a demotion restarts the detector: the next serving is a new start
    increments = []
    for r in rows:
        try:
            agreement = json.loads(r["reasons"] or "{}")["checks"]["agreement"]
            increments.append((int(agreement["new_n"]), int(agreement["new_k"])))
        except (ValueError, KeyError, TypeError):
            continue  # a row without detector increments (written by hand or elsewhere) adds nothing
    return increments, last_end


def append_log(path: str | Path, row: dict) -> int:
    """Append one row to the drift log: rewrite old rows + the new one to a temporary file, then rename.

    A lock file beside the log keeps two runs from losing each other's row. Returns the row count.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = schemas.tagged(schemas.DRIFT_SCHEMA, schemas.DRIFT)
    lock_path = path.parent / f".{path.name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        old = read_log(path)
        rows = (old.select(schema.names).to_pylist() if old is not None else []) + [row]
        table = pa.Table.from_pylist(rows, schema=schema)
        write_atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))
    return len(rows)


# ---- the drift run -----------------------------------------------------------------------------------------------


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


def _store_tasks(con, stores, where: str, task: str) -> None:
    """NotEnoughData for an empty store; InputError when the store never saw the task."""
    tasks = con.execute("SELECT task, count(*) FROM examples GROUP BY task ORDER BY 2 DESC, 1").fetchall()
    if not tasks:
        hint = store.journal_hint(stores)
        raise NotEnoughData(f"{where}: no calls recorded yet; nothing to check for drift" + (f"; {hint}" if hint else ""))
    if task not in {t for t, _ in tasks}:
        listed = ", ".join(f"{t} ({c})" for t, c in tasks[:10])
        raise InputError(f"{where}: no calls of task {task!r}, the task of the student; tasks there: {listed}")


def _check_certified(student: str | Path, spec: StudentSpec, verdicts: Iterable[str | Path]) -> None:
    """InputError when the newest passing gate of this student id certified other content than the file's."""
    gate = latest_gate(spec.id, gate_files(student, verdicts), "drift --verdicts")
    problem = content_problem(student, spec.id, spec.digest, gate) if gate and gate.passed else None
    if problem is not None:
        raise InputError(problem)


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
    now = datetime.now(timezone.utc) if now is None else _utc(datetime.fromisoformat(now) if isinstance(now, str) else now)
    start = window_start(since, now)
    spec, student_table = read_student_file(student, "drift")
    _check_certified(student, spec, verdicts)
    if isinstance(stores, (str, Path)):
        stores = [stores]
    stores = [str(s) for s in stores]
    where = ", ".join(stores)
    old_log = read_log(log) if log is not None else None
    if log is not None:
        check_output(log, "drift", "drift --log")
    if prices is None:
        from distill_cli.prices import load_prices

        prices = load_prices()
    alpha = 1.0 / (6.0 * arl)  # each single-run test; the detector gets threshold 2 x arl (module docstring)
    notes: list[str] = []

    # Demotion first: a lifted or stale marker goes, a standing one is reported.
    cleared = clear_demotion(student, student_id=spec.id, verdicts=verdicts, digest=spec.digest)
    if cleared is not None:
        if cleared.student_id == spec.id:
            notes.append(f"the demotion of {spec.id} ({cleared.demoted_at}) was lifted by a passing gate; marker removed")
        else:
            notes.append(f"removed a stale demotion marker of an earlier student ({cleared.student_id})")
    standing = is_demoted(student, student_id=spec.id, verdicts=verdicts, digest=spec.digest)

    seed = f"{spec.id}:{now.isoformat()}"  # every sample a run draws: new each run, the same on a replay
    con = store.connect()
    store.examples_view(con, stores, "drift")
    increments, last_end = _history(old_log, spec, now)
    fresh_start = max(start, last_end) if last_end is not None and last_end < now else start
    traffic = _count_traffic(con, spec, start, now, fresh_start)
    if traffic.calls == 0:
        _store_tasks(con, stores, where, spec.task)
        raise NotEnoughData(
            f"{where}: no calls of task {spec.task!r} between {_when(start)} and {_when(now)} (--since {since}); "
            "nothing to check: is the job running, and recording to this store?"
        )
    for other, count in sorted(traffic.other_students.items(), key=lambda kv: -kv[1]):
        notes.append(f"{count:,} calls in the window were tried on another student ({other}), not checked here")

    # Agreement: shadow pairs, then live teacher pairs, all judged alike.
    pairs, failed_shadows = _shadow_pairs(con, spec, start, now, fresh_start)
    if sample is not None and len(pairs) > sample:
        pairs = sorted(random.Random(seed).sample(pairs, sample), key=lambda p: p.id)
    if failed_shadows:
        notes.append(f"{failed_shadows:,} shadow calls of the teacher failed and were left out")
    teacher = None
    if live_teacher:
        if not spec.teacher_model:
            raise InputError(f"student {spec.id}: its spec names no teacher model, so --live-teacher cannot ask it")
        live = _live_candidates(con, spec, fresh_start, now, sample or LIVE_SAMPLE, seed)
        if live:
            teacher = Teacher(spec.teacher_model, spec.provider or "anthropic", prices)
            pairs += live
        else:
            notes.append("--live-teacher: no new student-served call without a shadow pair to re-ask")
    the_judge, judge_reason = None, None
    spent = Spent()
    if pairs:
        if isinstance(judge, Judge):
            the_judge, judge_reason = judge, "given"
        else:
            known = [p.teacher_output for p in pairs if p.teacher_output is not None]
            the_judge, judge_reason = make_judge(judge, outputs=known, model=judge_model or spec.teacher_model, prices=prices)
        spent = _judge_pairs(pairs, the_judge, teacher, max_spend, progress)
    teacher_errors = [p for p in pairs if p.error and p.error.startswith("teacher:")]
    if teacher_errors:
        notes.append(f"the teacher could not answer {len(teacher_errors)} re-asked calls (e.g. {teacher_errors[0].error}); left out")
    checked = [p for p in pairs if p.teacher_output is not None and not (p.error or "").startswith("teacher:")]
    agreement_check, figures = _agreement(checked, traffic, increments, min_agreement, arl, confidence)

    spelling: dict[str, str] = {}
    training_inputs, training_answers, source = _training_rows(con, spec, start, spelling, seed)
    recent_inputs, recent_answers = _recent_inputs(con, spec.task, start, now, spelling, seed)
    if len(training_inputs) < MIN_INPUTS and _student_inputs(student_table):
        training_inputs, source = _student_inputs(student_table), "the inputs stored in the student file"
    # Beyond 4 training inputs per recent one the AUC's spread hardly narrows; the fit only gets slower.
    training_inputs = training_inputs[: max(4 * len(recent_inputs), 500)]
    input_check = input_shift(recent_inputs, training_inputs, alpha, seed=_int_seed(seed))
    input_check.details["training_source"] = source
    decline_check = decline_shift(traffic.declined, traffic.answered + traffic.declined, dev_decline_rate(spec), alpha)
    output_check = output_shift(recent_answers, training_answers, alpha, seed=_int_seed(seed))
    checks = [agreement_check, input_check, decline_check, output_check]
    drifted = any(c.drifted for c in checks)

    served = traffic.answered + traffic.declined
    row = {
        "ts": now, "student_id": spec.id, "task": spec.task, "window_start": start, "window_end": now,
        "pairs": len(checked), "agreeing": sum(p.agree for p in checked), "agreement": figures["agreement"],
        "lower_bound": figures["lower"], "upper_bound": figures["upper"], "served": served,
        "decline_rate": traffic.declined / served if served else None,
        "input_shift": input_check.statistic, "input_shift_threshold": input_check.threshold,
        "output_shift": output_check.statistic, "drifted": drifted, "demoted": False, "reasons": None,
    }
    newly_demoted = drifted and demote and standing is None
    row["demoted"] = standing is not None or newly_demoted
    reasons = [f"{c.name}: {c.message}" for c in checks if c.drifted]
    row["reasons"] = json.dumps({
        "drifted": [c.name for c in checks if c.drifted],
        "messages": reasons,
        "checks": {c.name: {"status": c.status, "statistic": c.statistic, "threshold": c.threshold, "message": c.message,
                            **c.details} for c in checks},
        "spent_usd": round(spent.total, 6),
        "notes": notes,
    }, sort_keys=True, default=str)
    if newly_demoted:
        standing = write_demotion(student, spec, now, reasons, row)
    log_rows = append_log(log, row) if log is not None else 0

    disagreements = [
        {"id": p.id, "input": p.input, "student": p.student_output, "teacher": p.teacher_output, "confidence": p.confidence,
         "why": p.error or p.reason, "live": p.live}
        for p in checked if not p.agree
    ][:10]
    return DriftResult(
        student=spec.id, student_kind=spec.kind, task=spec.task, window_start=start, window_end=now, since=str(since),
        calls=traffic.calls, served=served, answered=traffic.answered, declined=traffic.declined,
        decline_rate=row["decline_rate"], pairs=len(checked), agreeing=row["agreeing"],
        judge_errors=sum(1 for p in checked if p.error), declines_counted=figures["declines_counted"],
        agreement=figures["agreement"], lower_bound=figures["lower"], upper_bound=figures["upper"], confidence=confidence,
        evidence=figures["evidence"], evidence_threshold=2 * arl, detector_runs=figures["runs"],
        input_shift=input_check.statistic, input_shift_threshold=input_check.threshold, output_shift=output_check.statistic,
        checks=checks, drifted=drifted, demoted=row["demoted"], demotion=standing, newly_demoted=newly_demoted,
        cleared=cleared, min_agreement=min_agreement, arl=arl, judge=getattr(the_judge, "name", None),
        judge_reason=judge_reason, live_calls=sum(1 for p in pairs if p.live), teacher_spent_usd=spent.teacher,
        judge_spent_usd=spent.judge, spent_usd=spent.total, log=str(log) if log is not None else None,
        log_rows=log_rows, notes=notes, disagreements=disagreements, seconds=round(time.perf_counter() - started, 3),
    )


def _agreement(checked: list[Pair], traffic: Traffic, increments, min_agreement: float, arl: float, confidence: float):
    """The agreement check: the window's end-to-end agreement with bounds, and the sequential detector's verdict.

    Pairs sample the student's answers; end-to-end agreement also counts its declines
    (the teacher answers them), so declines are weighed in at the pairs' sampling rate.
    """
    def end_to_end(pairs: list[Pair], answered: int, declined: int) -> tuple[int, int, int]:
        m = len(pairs)
        d = round(declined * m / answered) if answered and m else 0
        return m + d, sum(p.agree for p in pairs) + d, d

    n, k, d = end_to_end(checked, traffic.answered, traffic.declined)
    fresh = [p for p in checked if p.fresh]
    new_n, new_k, _ = end_to_end(fresh, traffic.fresh_answered, traffic.fresh_declined)
    log_stat, runs = fold_evidence([*increments, (new_n, new_k)], min_agreement)
    threshold = 2 * arl
    evidence = None if runs == 0 else math.exp(min(log_stat, 700.0))  # finite, so JSON can carry it
    agreement = k / n if n else None
    lower, upper = wilson_bounds(k, n, confidence) if n else (None, None)
    figures = {"agreement": agreement, "lower": lower, "upper": upper, "declines_counted": d, "evidence": evidence, "runs": runs}
    details = {"pairs": len(checked), "agreeing": sum(p.agree for p in checked), "declines_counted": d, "n": n, "k": k,
               "new_n": new_n, "new_k": new_k, "evidence": evidence, "threshold": threshold, "runs": runs,
               "live_pairs": sum(1 for p in checked if p.live)}
    target = _pct(min_agreement)
    alarm = evidence is not None and log_stat >= math.log(threshold)
    if n:
        said = (f"{_pct(agreement)} end to end over {len(checked):,} teacher-checked answers (+{d:,} declines), "
                f"bounds [{_pct(lower)}, {_pct(upper)}]")
    elif traffic.answered:
        said = (f"none of the {traffic.answered:,} student answers in the window was checked by the teacher "
                "(no shadow pairs; route with shadowing or pass --live-teacher)")
    else:
        said = "the student answered no call in the window"
    if alarm:
        message = (f"agreement is below {target}: {said}; sequential evidence {_evidence(evidence)} >= {threshold:,.0f} "
                   f"over {runs} run{'s' if runs != 1 else ''}")
        return Check("agreement", "drifted", message, evidence, threshold, details), figures
    if runs == 0:
        return Check("agreement", "skipped", said, None, threshold, details), figures
    watching = f"; evidence against >= {target}: {_evidence(evidence)} of {threshold:,.0f} needed over {runs} run{'s' if runs != 1 else ''}"
    return Check("agreement", "ok", said + watching, evidence, threshold, details), figures


def _evidence(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1e9:
        return f"{value:.1e}"
    return f"{value:.2g}" if value < 10 else f"{value:,.0f}"
