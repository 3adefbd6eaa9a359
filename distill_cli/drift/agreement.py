"""The agreement check: the student's answers against the teacher's, decided by a sequential detector.

A mixture CUSUM e-detector over the drift log's runs, between agreement >=
`min_agreement` and lower alternatives: when agreement stays at or above
`min_agreement`, the chance of any false alarm in the first T runs is at most
T / (2 x `arl`), however many runs cron makes (docs/drift.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from distill_cli.drift.queries import Pair, Traffic
from distill_cli.drift.results import Check
from distill_cli.formatting import pct
from distill_cli.stats import wilson_bounds

# Alternative disagreement rates of the agreement detector, as multiples of 1 - min_agreement.
ALTERNATIVES = (1.25, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)


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


@dataclass
class AgreementFigures:
    """The window's end-to-end agreement and its bounds, and the detector's state after the run."""

    agreement: float | None
    lower: float | None
    upper: float | None
    declines_counted: int
    evidence: float | None  # None until a run with pairs is folded in
    runs: int


def agreement_check(
    checked: list[Pair], traffic: Traffic, increments: list[tuple[int, int]], min_agreement: float, arl: float, confidence: float
) -> tuple[Check, AgreementFigures]:
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
    figures = AgreementFigures(agreement, lower, upper, d, evidence, runs)
    details = {"pairs": len(checked), "agreeing": sum(p.agree for p in checked), "declines_counted": d, "n": n, "k": k,
               "new_n": new_n, "new_k": new_k, "evidence": evidence, "threshold": threshold, "runs": runs,
               "live_pairs": sum(1 for p in checked if p.live)}
    target = pct(min_agreement)
    alarm = evidence is not None and log_stat >= math.log(threshold)
    if n:
        said = (f"{pct(agreement)} end to end over {len(checked):,} teacher-checked answers (+{d:,} declines), "
                f"bounds [{pct(lower)}, {pct(upper)}]")
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
