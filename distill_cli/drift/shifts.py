"""The three shift checks of a drift run, each a single test at level `alpha`: inputs, declines, answers.

- input: a domain classifier (TF-IDF, logistic regression) trying to tell recent
  inputs from the student's training inputs; drifted when its cross-fitted AUC
  exceeds max(0.55, the AUC a label-blind scorer reaches with chance `alpha`).
- decline: the decline rate against the one measured on the student's dev split.
- output: the served answers' distribution against the teacher's on training rows
  (closed sets of answers only): Jensen-Shannon distance, with a bootstrap p-value
  and a 0.1 floor.

Pure computation over what the caller read: no store, no network.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np

from distill_cli.drift.results import Check
from distill_cli.formatting import pct
from distill_cli.stats import wilson_bounds, z_one_sided
from distill_cli.students.base import StudentSpec
from distill_cli.students.training import CLOSED_SET_MAX

MIN_INPUTS = 20  # fewer recent or training inputs (or served calls) than this: the check is skipped
AUC_FLOOR = 0.55  # Evidently's rule for large samples: a smaller shift is not worth an alarm
DECLINE_MARGIN = 0.05  # the decline rate must be confidently this much above the dev split's
JS_FLOOR = 0.1  # Jensen-Shannon distance (base 2) below which an answer mix change is not an alarm


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
    said = f"declined {pct(rate)} of {served:,} calls against {pct(dev_rate)} on its dev split"
    if lower > limit:
        return Check("decline", "drifted", f"the student {said} (lower bound {pct(lower)} > {pct(limit)}): "
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
    if len(reference) > CLOSED_SET_MAX or 2 * len(reference) > n0:
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
    moves = ", ".join(f"{x!r} {pct(reference[x] / n0)} -> {pct(recent[x] / n1)}" for x in shares)
    new = sorted(x for x in recent if x not in reference)
    details = {"recent": n1, "training": n0, "js": round(js, 4), "p_value": p, "moves": moves, "new_answers": new[:10]}
    said = f"Jensen-Shannon distance {js:.3f} over {n1:,} served answers, p = {p:.2g} under no change"
    if p < alpha and js >= JS_FLOOR:
        extra = f"; answers never seen in training: {', '.join(repr(x) for x in new[:3])}" if new else ""
        return Check("output", "drifted", f"the mix of answers changed ({said}): {moves}{extra}", js, JS_FLOOR, details)
    return Check("output", "ok", f"the mix of answers is as in training ({said})", js, JS_FLOOR, details)


