"""The `classifier` student: a local linear model over the teacher's closed set of outputs.

Features are TF-IDF over word 1-2 grams and char 2-5 grams within word boundaries
(sublinear tf, each block l2-normalised), plus, when the `embeddings` extra is
installed, a sentence embedding (all-MiniLM-L6-v2). The model is a linear SVM per
output (one-vs-rest); its scores become a probability by a softmax whose
temperature is fitted on out-of-fold scores.

Calibration by cross-fitting: the training split is cut into `FOLDS` folds by a
hash of (salt, id); each fold is scored by a model fitted on the others, so every
training row gets a score from a model that never saw it. The decline threshold
is chosen on those scores (`choose_threshold`), and the student is the average
of the fold models: a linear model again (the mean of their weights), whose
confidences on unseen rows are distributed like the ones the threshold was
chosen on. (A single refit on all rows is more confident than the fold models,
so a threshold chosen on them would answer more calls than it certified.)

The file holds the vocabulary, idf and weights as plain rows and float arrays;
loading rebuilds the scorer with numpy and never unpickles anything. This module
never calls a provider.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

from distill_cli import stats
from distill_cli.economics import expected_reduction
from distill_cli.errors import InputError
from distill_cli.students.base import Answer, Student, StudentSpec, request_input
from distill_cli.students.training import BuildContext, base_spec

FOLDS = 5
SVM_C = 1.0
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
MIN_DF = {"word": 1, "char": 2}
EMBEDDING_WEIGHT = 1.0  # scale of the (unit-length) sentence embedding as a feature
DENSE_C = 10.0  # inverse regularisation of the logistic regression on embeddings
DENSE_WEIGHTS = (0.25, 0.5, 1.0, 2.0)  # candidate weights of the embedding scores beside the TF-IDF scores
# The threshold must leave the gate's bound above --min-agreement with this probability
# on a fresh holdout of the expected size (see choose_threshold).
CERTIFY_PROBABILITY = 0.9
NEVER = 1.01  # a threshold no confidence reaches: the student declines everything

ROWS_SCHEMA = pa.schema(
    [
        ("part", pa.string()),  # "class", "word", "char" or "embed"
        ("term", pa.string()),  # the output (class rows) or the n-gram (feature rows)
        ("value", pa.float64()),  # intercept (class rows) or idf (feature rows)
        ("weights", pa.list_(pa.float32())),  # a feature's weight for every class, in class order
    ]
)

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


# ---- features ---------------------------------------------------------------------------------------------------


def word_grams(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    grams = list(tokens)
    for n in range(2, WORD_NGRAMS[1] + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def char_grams(text: str) -> list[str]:
    grams = []
    lo, hi = CHAR_NGRAMS
    for word in text.lower().split():
        padded = f" {word} "
        size = len(padded)
        for n in range(lo, min(hi, size) + 1):
            grams += [padded[i : i + n] for i in range(size - n + 1)]
    return grams


ANALYZERS: dict[str, Callable[[str], list[str]]] = {"word": word_grams, "char": char_grams}


@dataclass
class Block:
    """One TF-IDF block: its n-gram vocabulary (term -> column) and idf per column."""

    name: str
    vocab: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, name: str, texts: Sequence[str]) -> Block:
        analyze = ANALYZERS[name]
        df: Counter = Counter()
        for text in texts:
            df.update(set(analyze(text)))
        terms = sorted(t for t, c in df.items() if c >= MIN_DF[name])
        counts = np.array([df[t] for t in terms], dtype=np.float64)
        # Smoothed idf, as scikit-learn's TfidfTransformer computes it.
        idf = np.log((1 + len(texts)) / (1 + counts)) + 1.0
        return cls(name, {t: i for i, t in enumerate(terms)}, idf)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of one text: sublinear tf x idf, l2-normalised."""
        vocab = self.vocab
        tf = Counter(g for g in ANALYZERS[self.name](text) if g in vocab)
        if not tf:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        cols = np.fromiter((vocab[g] for g in tf), np.int64, len(tf))
        vals = (1.0 + np.log(np.fromiter(tf.values(), np.float64, len(tf)))) * self.idf[cols]
        return cols, vals / np.sqrt(vals @ vals)


@dataclass
class Featurizer:
    """Text -> one sparse row: the TF-IDF blocks side by side, then the embedding (if any)."""

    blocks: list[Block]
    encoder: object | None = None  # has .encode(texts) -> (n, d) unit rows, and .dim
    offsets: list[int] = field(init=False)
    width: int = field(init=False)

    def __post_init__(self) -> None:
        self.offsets, start = [], 0
        for block in self.blocks:
            self.offsets.append(start)
            start += len(block.idf)
        self.width = start + (self.encoder.dim if self.encoder is not None else 0)

    @classmethod
    def fit(cls, texts: Sequence[str], encoder=None) -> Featurizer:
        return cls([Block.fit(name, texts) for name in ANALYZERS], encoder)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        cols, vals = [], []
        for block, offset in zip(self.blocks, self.offsets):
            c, v = block.row(text)
            cols.append(c + offset)
            vals.append(v)
        if self.encoder is not None:
            cols.append(np.arange(self.width - self.encoder.dim, self.width))
            vals.append(EMBEDDING_WEIGHT * self.encoder.encode([text])[0].astype(np.float64))
        return np.concatenate(cols), np.concatenate(vals)

    def matrix(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> sparse.csr_matrix:
        indptr, cols, vals = [0], [], []
        tfidf_width = self.width - (self.encoder.dim if self.encoder is not None else 0)
        for text in texts:
            parts = [block.row(text) for block in self.blocks]
            for (c, v), offset in zip(parts, self.offsets):
                cols.append(c + offset)
                vals.append(v)
            indptr.append(indptr[-1] + sum(len(c) for c, _ in parts))
        tfidf = sparse.csr_matrix(
            (np.concatenate(vals) if vals else np.empty(0), np.concatenate(cols) if cols else np.empty(0, np.int64), indptr),
            shape=(len(texts), tfidf_width),
        )
        if self.encoder is None:
            return tfidf
        dense = EMBEDDING_WEIGHT * self.encoder.encode(list(texts), progress=progress).astype(np.float64)
        return sparse.hstack([tfidf, sparse.csr_matrix(dense)], format="csr")


# ---- the model --------------------------------------------------------------------------------------------------


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores * temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class LinearModel:
    """Scores = X W + b over `classes`; probabilities = softmax(scores x temperature)."""

    classes: list[str]
    weights: np.ndarray  # (features, classes) float32
    intercepts: np.ndarray  # (classes,)
    temperature: float = 1.0

    def scores(self, x) -> np.ndarray:
        return np.asarray(x @ self.weights) + self.intercepts

    def proba(self, x) -> np.ndarray:
        return softmax(self.scores(x), self.temperature)


def fold_of(salt: str, example_id: str, folds: int = FOLDS) -> int:
    """The cross-fitting fold of a training example: a hash of (salt, id), like the holdout split."""
    digest = hashlib.sha256(f"{salt}:fold:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def _fit_svm(x, y: np.ndarray, n_classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest linear SVM; (weights (features, n_classes), intercepts). Classes absent from `y` never win."""
    from sklearn.svm import LinearSVC

    present = np.unique(y)
    weights = np.zeros((x.shape[1], n_classes))
    intercepts = np.full(n_classes, -1.0)  # an absent class scores like a confident "not this one"
    if len(present) == 1:
        intercepts[present[0]] = 1.0
        return weights, intercepts
    svm = LinearSVC(C=c, dual=True, max_iter=5000, random_state=0).fit(x, y)
    if len(present) == 2:  # scikit-learn keeps one score for two classes: split it symmetrically
        weights[:, present[0]], weights[:, present[1]] = -svm.coef_[0] / 2, svm.coef_[0] / 2
        intercepts[present[0]], intercepts[present[1]] = -svm.intercept_[0] / 2, svm.intercept_[0] / 2
    else:
        weights[:, present] = svm.coef_.T
        intercepts[present] = svm.intercept_
    return weights, intercepts


def fit_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """The softmax temperature that minimises the log loss of the known answers (rows with truth >= 0)."""
    from scipy.optimize import minimize_scalar

    known = truth >= 0
    if not known.any():
        return 1.0
    s, t = scores[known], truth[known]

    def loss(temperature: float) -> float:
        p = softmax(s, temperature)[np.arange(len(t)), t]
        return float(-np.log(p + 1e-12).mean())

    return float(minimize_scalar(loss, bounds=(0.05, 200.0), method="bounded").x)


@dataclass
class Threshold:
    value: float
    coverage: float
    agreement: float  # end to end on the out-of-fold rows
    agreement_answered: float | None
    lower_bound: float  # Wilson lower bound of end-to-end agreement on those rows
    predicted_gate_bound: float  # what the gate is expected to see, with CERTIFY_PROBABILITY


def choose_threshold(
    confidence: np.ndarray, agrees: np.ndarray, min_agreement: float, expected_holdout: int,
    before: tuple[int, int] = (0, 0),
) -> Threshold:
    """The lowest confidence threshold the gate's rule is expected to accept on unseen data.

    For a threshold t, k = (rows answered and agreeing) + (rows declined) of n
    out-of-fold rows, p = k/n. The gate computes the one-sided 95% Wilson lower
    bound of p on `expected_holdout` rows; the holdout's own p differs from ours
    by sampling noise on both sides (se_dev, se_holdout). We accept t when

        wilson_lower(p, expected_holdout) - z(CERTIFY_PROBABILITY) * sqrt(se_dev^2 + se_holdout^2) >= min_agreement

    so the gate should pass with about that probability. Declining everything
    (t = NEVER) always qualifies, so a student that cannot be trusted answers nothing.

    In a chain (`build-student --after`) the rule is the chain's, end to end: `before`
    = (agreeing, answered) of the earlier tiers on the dev rows they answer, rows this
    tier never sees; `confidence`/`agrees` are this tier's on the rows they all
    decline. Then k = agreeing + (this tier's rows answered and agreeing) + (its rows
    declined), of n = answered + len(confidence), under the same bound and margin. A
    tier that costs nothing makes the chain cheapest by answering most, so the lowest
    qualifying threshold is still the one. Declining everything qualifies only when
    the earlier tiers' own disagreements leave the chain within the rule.
    `coverage` and `agreement_answered` are this tier's, on its rows; `agreement`,
    `lower_bound` and `predicted_gate_bound` the chain's (with no `before`, the same).
    """
    k0, n0 = before
    n_own = len(confidence)
    n = n0 + n_own
    order = np.argsort(-confidence, kind="stable")
    conf, ok = confidence[order], agrees[order]
    answered_ok = np.cumsum(ok)
    z = stats.z_one_sided(CERTIFY_PROBABILITY)
    h = max(expected_holdout, 1)
    best = None
    # Candidate cut after position i answers the i+1 most confident rows; only where the confidence changes.
    cuts = [i for i in range(n_own) if i == n_own - 1 or conf[i + 1] < conf[i]]
    def predict(k: int) -> float:
        p = k / n
        noise = math.sqrt(p * (1 - p) / n + p * (1 - p) / h)
        return stats.wilson_lower(round(p * h), h) - z * noise

    for i in cuts:
        answered = i + 1
        k = k0 + int(answered_ok[i]) + (n_own - answered)
        predicted = predict(k)
        if predicted >= min_agreement:
            best = (i, k, predicted)
    if best is None:
        k = k0 + n_own
        return Threshold(NEVER, 0.0, k / n if n else 1.0, None, stats.wilson_lower(k, n), predict(k) if n else stats.wilson_lower(h, h))
    i, k, predicted = best
    answered = i + 1
    return Threshold(
        value=float(conf[i]),
        coverage=answered / n_own,
        agreement=k / n,
        agreement_answered=float(answered_ok[i]) / answered,
        lower_bound=stats.wilson_lower(k, n),
        predicted_gate_bound=predicted,
    )


def _averaged_threshold(x, dense, truth, folds, n_classes, c, weight, temperature, single: float) -> float:
    """The threshold for the averaged model that answers as many unseen calls as `single` does for one fold model.

    An average of linear models is more confident than each of them (the noise in
    the runner-up scores averages out), so the same threshold would answer more
    calls than were certified. Fold 0 is held out of a nested cross-fit over the
    other folds: on its rows, the share of calls a single nested model answers
    at `single` is matched by a threshold on the nested models' average.
    """
    target = folds == 0
    if single >= NEVER or not target.any():
        return single
    nested = [_fit_parts(x, dense, truth, (folds != 0) & (folds != j) & (truth >= 0), n_classes, c) for j in range(1, FOLDS)]

    def combined(parts):
        s = _part_scores(parts, x, dense, target)
        return s[:, 0] + weight * s[:, -1] if dense is not None else s[:, 0]

    scores = [combined(parts) for parts in nested]
    single_conf = np.concatenate([softmax(s, temperature).max(axis=1) for s in scores])
    coverage = float((single_conf >= single).mean())
    if coverage <= 0:
        return NEVER
    averaged = softmax(np.mean(scores, axis=0), temperature).max(axis=1)
    # The averaged model's confidence at the same coverage (a quantile from the top).
    return float(max(single, np.quantile(averaged, 1 - coverage, method="higher")))


@dataclass
class Trained:
    featurizer: Featurizer
    model: LinearModel
    threshold: Threshold
    n_train: int  # rows the folds were fitted on (outputs in the closed set)
    n_dev: int  # rows scored out of fold (every training row)
    seconds: float
    embedding_weight: float | None = None
    # Out of fold, every training row: the top confidence, whether the top answer is the teacher's, and the
    # threshold chosen on them (before `_averaged_threshold` maps it to the averaged model).
    dev_confidence: np.ndarray | None = None
    dev_agrees: np.ndarray | None = None
    dev_threshold: float | None = None


def train(
    ids: Sequence[str],
    texts: Sequence[str],
    outputs: Sequence[str],
    classes: Sequence[str],
    *,
    salt: str,
    min_agreement: float,
    expected_holdout: int,
    encoder=None,
    c: float = SVM_C,
    progress: Callable[[str], None] | None = None,
    before: tuple[int, int] = (0, 0),
    average: bool = True,
) -> Trained:
    """Fit the featurizer and the fold models, calibrate, choose the threshold.

    `classes` is the closed set the student may answer; a training row whose
    output is outside it is not learned from but still scored, as a certain
    disagreement unless declined. `before`: the earlier tiers of a chain
    (`choose_threshold`). `average` False skips mapping the threshold to the
    averaged model (only the out-of-fold decisions are wanted).
    """
    from threadpoolctl import threadpool_limits

    # Every matrix here is small or sparse: one BLAS/OpenMP thread is faster, and on a busy machine several
    # times faster (idle pool threads spin while they wait for a core).
    with threadpool_limits(limits=1):
        return _train(ids, texts, outputs, classes, salt, min_agreement, expected_holdout, encoder, c,
                      progress or (lambda _msg: None), before, average)


def _train(ids, texts, outputs, classes, salt, min_agreement, expected_holdout, encoder, c, say, before, average) -> Trained:
    started = time.perf_counter()
    # Outputs are matched to classes by their normalised form (whitespace runs collapsed, ends stripped).
    index = {" ".join(c_.split()): i for i, c_ in enumerate(classes)}
    truth = np.array([index.get(" ".join(o.split()), -1) for o in outputs])
    n_classes = len(classes)
    say("features")
    featurizer = Featurizer.fit(texts, encoder)
    x = Featurizer(featurizer.blocks).matrix(texts)
    dense = None
    if encoder is not None:
        say(f"embedding {len(texts)} inputs with {encoder.name}")
        dense = EMBEDDING_WEIGHT * encoder.encode(list(texts)).astype(np.float64)
    folds = np.array([fold_of(salt, i) for i in ids])
    say(f"fitting {FOLDS} fold models")
    # One fold at a time: liblinear's solver draws from the C library's global random state, so folds fitted
    # in parallel threads would make the same store and seed give different students.
    fitted = [_fit_parts(x, dense, truth, (folds != k) & (truth >= 0), n_classes, c) for k in range(FOLDS)]
    oof = np.zeros((len(texts), len(fitted[0]), n_classes))
    for k, parts in enumerate(fitted):
        rows = folds == k
        if rows.any():
            oof[rows] = _part_scores(parts, x, dense, rows)
    weight, temperature = _combine(oof, truth)
    proba = softmax(oof[:, 0] + weight * oof[:, -1] if dense is not None else oof[:, 0], temperature)
    agrees = proba.argmax(axis=1) == truth
    confidence = proba.max(axis=1)
    threshold = choose_threshold(confidence, agrees, min_agreement, expected_holdout, before)
    single = threshold.value
    if average:
        say("measuring how averaging sharpens confidence")
        threshold.value = _averaged_threshold(x, dense, truth, folds, n_classes, c, weight, temperature, single)
    weights = np.mean([parts[0][0] for parts in fitted], axis=0)
    intercepts = np.mean([parts[0][1] for parts in fitted], axis=0)
    if dense is not None:
        weights = np.vstack([weights, weight * np.mean([parts[1][0] for parts in fitted], axis=0)])
        intercepts = intercepts + weight * np.mean([parts[1][1] for parts in fitted], axis=0)
    model = LinearModel(list(classes), weights.astype(np.float32), intercepts, temperature)
    return Trained(featurizer, model, threshold, int((truth >= 0).sum()), len(texts), time.perf_counter() - started,
                   weight if dense is not None else None, confidence, agrees, single)


def _fit_parts(x, dense, truth, rows, n_classes: int, c: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sparse model (TF-IDF) and, with embeddings, the dense one, each fitted on `rows`."""
    parts = [_fit_svm(x[rows], truth[rows], n_classes, c)]
    if dense is not None:
        parts.append(_fit_dense(dense[rows], truth[rows], n_classes))
    return parts


def _part_scores(parts, x, dense, rows) -> np.ndarray:
    """(rows, parts, classes): each part's scores."""
    out = [np.asarray(x[rows] @ parts[0][0]) + parts[0][1]]
    if dense is not None:
        out.append(dense[rows] @ parts[1][0] + parts[1][1])
    return np.stack(out, axis=1)


def _fit_dense(e: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on the sentence embeddings: (weights (dim, n_classes), intercepts)."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    weights = np.zeros((e.shape[1], n_classes))
    intercepts = np.full(n_classes, -10.0)
    if len(present) == 1:
        intercepts[present[0]] = 0.0
        return weights, intercepts
    lr = LogisticRegression(C=DENSE_C, max_iter=500).fit(e, y)
    if len(present) == 2:
        weights[:, present[0]], weights[:, present[1]] = -lr.coef_[0] / 2, lr.coef_[0] / 2
        intercepts[present[0]], intercepts[present[1]] = -lr.intercept_[0] / 2, lr.intercept_[0] / 2
    else:
        weights[:, present] = lr.coef_.T
        intercepts[present] = lr.intercept_
        intercepts[np.setdiff1d(np.arange(n_classes), present)] = lr.intercept_.min() - 10.0
    return weights, intercepts


def _nll(scores: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    known = truth >= 0
    p = softmax(scores[known], temperature)[np.arange(int(known.sum())), truth[known]]
    return float(-np.log(p + 1e-12).mean())


def _combine(oof: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(weight of the dense scores, softmax temperature), by the log loss of the out-of-fold scores."""
    if oof.shape[1] == 1:
        return 0.0, fit_temperature(oof[:, 0], truth)
    best = None
    for weight in DENSE_WEIGHTS:
        scores = oof[:, 0] + weight * oof[:, 1]
        temperature = fit_temperature(scores, truth)
        loss = _nll(scores, truth, temperature)
        if best is None or loss < best[0]:
            best = (loss, weight, temperature)
    return best[1], best[2]


# ---- the student ------------------------------------------------------------------------------------------------


class ClassifierStudent(Student):
    def __init__(self, spec: StudentSpec, featurizer: Featurizer, model: LinearModel) -> None:
        super().__init__(spec)
        self.featurizer = featurizer
        self.model = model
        self.threshold = spec.threshold if spec.threshold is not None else 0.0

    def answer(self, request: dict) -> Answer:
        return self.answer_text(request_input(request, self.spec.provider))

    def answer_text(self, text: str) -> Answer:
        started = time.perf_counter()
        cols, vals = self.featurizer.row(text)
        scores = vals @ self.model.weights[cols] + self.model.intercepts
        proba = softmax(scores, self.model.temperature)
        best = int(proba.argmax())
        confidence = float(proba[best])
        latency = (time.perf_counter() - started) * 1000
        if confidence < self.threshold:
            return Answer(
                None, confidence=confidence, latency_ms=latency,
                reason=f"confidence {confidence:.3f} below threshold {self.threshold:.3f}",
            )
        return Answer(self.model.classes[best], confidence=confidence, cost_usd=0.0, latency_ms=latency)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """(top output, confidence) for many texts at once, ignoring the threshold."""
        proba = self.model.proba(self.featurizer.matrix(texts))
        return [self.model.classes[i] for i in proba.argmax(axis=1)], proba.max(axis=1)


def rows_for(featurizer: Featurizer, model: LinearModel) -> pa.Table:
    n_classes = len(model.classes)
    parts, terms, values = ["class"] * n_classes, list(model.classes), [float(b) for b in model.intercepts]
    for block in featurizer.blocks:
        by_column = sorted(block.vocab.items(), key=lambda kv: kv[1])
        parts += [block.name] * len(by_column)
        terms += [t for t, _ in by_column]
        values += block.idf.tolist()
    if featurizer.encoder is not None:
        parts += ["embed"] * featurizer.encoder.dim
        terms += [str(i) for i in range(featurizer.encoder.dim)]
        values += [0.0] * featurizer.encoder.dim
    n_features = featurizer.width
    flat = pa.array(model.weights.reshape(-1), type=pa.float32())
    # Class rows carry no weights; feature row j carries its n_classes weights.
    list_offsets = np.concatenate([np.zeros(n_classes), np.arange(n_features + 1) * n_classes]).astype(np.int32)
    weights = pa.ListArray.from_arrays(pa.array(list_offsets), flat)
    return pa.table(
        {"part": parts, "term": terms, "value": pa.array(values, pa.float64()), "weights": weights}, schema=ROWS_SCHEMA
    )


def build(ctx: BuildContext):
    """Train on the closed set of the teacher's outputs, certify a threshold: (spec, rows, spent, notes)."""
    encoder, notes = None, []
    if ctx.embeddings not in ("auto", "on", "off"):
        raise InputError(f"--embeddings must be auto, on or off, not {ctx.embeddings!r}")
    if ctx.embeddings != "off":
        from distill_cli.students import embeddings

        encoder = embeddings.default_encoder(required=ctx.embeddings == "on")
        if encoder is None:
            notes.append(f"sentence embeddings off: install the weights ({embeddings.INSTALL}) for a student that answers more")
    sel = ctx.selection
    settings = {
        "min_agreement": ctx.min_agreement, "embeddings": encoder.name if encoder else None,
        "C": SVM_C, "folds": FOLDS,
    }
    spec = base_spec("classifier", sel, settings)
    ctx.say(f"training on {len(sel.train)} examples" + (f" with {encoder.name} embeddings" if encoder else ""))
    before = ctx.before
    trained = train(
        [e.id for e in sel.train], [e.input for e in sel.train], [e.output for e in sel.train], ctx.outputs.classes,
        salt=sel.salt, min_agreement=ctx.min_agreement, expected_holdout=ctx.expected_holdout,
        encoder=encoder, progress=ctx.say, before=(before.agreeing, before.answered) if before else (0, 0),
    )
    t = trained.threshold
    spec.threshold = round(t.value, 6)
    spec.params = {
        "features": {"word_ngrams": list(WORD_NGRAMS), "char_wb_ngrams": list(CHAR_NGRAMS),
                     "sublinear_tf": True, "min_df": MIN_DF},
        "model": "linear SVM (one-vs-rest) on TF-IDF"
        + (" + multinomial logistic regression on embeddings" if encoder else "")
        + ", mean of the cross-fitting fold models",
        "C": SVM_C,
        "folds": FOLDS,
        "temperature": trained.model.temperature,
        "classes": len(ctx.outputs.classes),
        "embeddings": {"model": encoder.name, "dim": encoder.dim, "scores_weight": trained.embedding_weight,
                       "logistic_C": DENSE_C} if encoder else None,
        "certify_probability": CERTIFY_PROBABILITY,
        "expected_holdout": ctx.expected_holdout,
        "dev_threshold": trained.dev_threshold,  # on the out-of-fold confidences (see `out_of_fold`)
    }
    spec.metrics = {
        "dev": f"out-of-fold scores of all {trained.n_dev} training rows ({FOLDS} folds by hash of salt and id)",
        "n_train": trained.n_train,
        "n_dev": trained.n_dev,
        "coverage": round(t.coverage, 4),
        "agreement_answered": None if t.agreement_answered is None else round(t.agreement_answered, 4),
        "agreement": round(t.agreement, 4),
        "lower_bound": round(t.lower_bound, 4),
        "predicted_gate_lower_bound": round(t.predicted_gate_bound, 4),
        "threshold": round(t.value, 6),
        "min_agreement": ctx.min_agreement,
        "student_cost_per_call": 0.0,
        "expected_cost_reduction": expected_reduction(t.coverage, 0.0, sel.teacher_cost_per_call),
        "train_seconds": round(trained.seconds, 2),
    }
    if before:
        _chain_metrics(spec, trained, ctx)
        if t.predicted_gate_bound < ctx.min_agreement:
            notes.append(
                f"the earlier tiers alone leave the chain below --min-agreement {ctx.min_agreement} on the dev rows "
                "(they disagree with the teacher too often): this tier declines every call and the chain is not expected to pass"
            )
    if t.coverage == 0:
        notes.append("the classifier cannot be certified at this agreement on this data: it will decline every call")
    return spec, rows_for(trained.featurizer, trained.model), 0.0, notes


def _chain_metrics(spec: StudentSpec, trained: Trained, ctx: BuildContext) -> None:
    """A tier built after others: its own figures on the rows it sees, and the chain's on every training row."""
    before, t, m = ctx.before, trained.threshold, spec.metrics
    answers = trained.dev_confidence >= trained.dev_threshold
    own_k = int((answers & trained.dev_agrees).sum() + (~answers).sum())
    m["dev"] = (f"out-of-fold scores of the {trained.n_dev} training rows the earlier tiers decline "
                f"({FOLDS} folds by hash of salt and id)")
    m["agreement"] = round(own_k / trained.n_dev, 4)
    m["lower_bound"] = round(stats.wilson_lower(own_k, trained.n_dev), 4)
    del m["predicted_gate_lower_bound"]  # the chain's, below: a tier of a chain is gated as the chain
    alone = choose_threshold(trained.dev_confidence, trained.dev_agrees, ctx.min_agreement, ctx.expected_holdout)
    coverage = (before.answered + int(answers.sum())) / before.rows
    m["expected_cost_reduction"] = None
    m["chain"] = {
        "tiers": [*(b["id"] for b in before.tiers), spec.id],
        "n_dev": before.rows,
        "answered": [*(b["answered"] for b in before.tiers), int(answers.sum())],
        "coverage": round(coverage, 4),
        "agreement": round(t.agreement, 4),
        "lower_bound": round(t.lower_bound, 4),
        "predicted_gate_lower_bound": round(t.predicted_gate_bound, 4),
        "dev_threshold": trained.dev_threshold,
        "dev_threshold_alone": alone.value,
        "expected_cost_reduction": expected_reduction(coverage, before.cost_per_call, ctx.selection.teacher_cost_per_call)
        if before.cost_per_call is not None else None,
        "rule": "the gate's one-sided Wilson bound with the certify margin, for the chain end to end on every training "
                "row: the earlier tiers' out-of-fold answers, this tier's on what they decline, declines agreeing",
    }


def settings_of(spec: StudentSpec) -> dict:
    """The settings `build` hashed into this classifier's id."""
    embedding = spec.params.get("embeddings")
    return {"min_agreement": spec.metrics.get("min_agreement"), "embeddings": embedding["model"] if embedding else None,
            "C": spec.params.get("C"), "folds": spec.params.get("folds")}


def out_of_fold(student: ClassifierStudent, examples: Sequence, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """(answers, agrees): what `student` does with the training rows it was built from, as its out-of-fold models did.

    Asked directly, a classifier is sure of the rows it was fitted on and declines almost none of them;
    the cross-fit it was certified on is refitted (the same rows, salt and settings give the same folds and
    scores) and its dev threshold applied. The caller checks that `examples` are the rows it was built from.
    """
    spec = student.spec
    trained = train(
        [e.id for e in examples], [e.input for e in examples], [e.output for e in examples], student.model.classes,
        salt=salt, min_agreement=spec.metrics["min_agreement"], expected_holdout=int(spec.params["expected_holdout"]),
        encoder=student.featurizer.encoder, c=float(spec.params.get("C", SVM_C)), average=False,
    )
    threshold = spec.params.get("dev_threshold")
    if threshold is None:  # built before dev_threshold was recorded: alone, so the cross-fit chooses it again
        threshold = trained.dev_threshold
    return trained.dev_confidence >= threshold, trained.dev_agrees


def load(spec: StudentSpec, table: pa.Table, path) -> ClassifierStudent:
    part = table["part"]
    is_class = pc.equal(part, "class")
    classes = table.filter(is_class)
    labels = classes["term"].to_pylist()
    intercepts = classes["value"].to_numpy()
    features = table.filter(pc.invert(is_class))
    weights = features["weights"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    weights = weights.reshape(features.num_rows, len(labels))
    names = features["part"].to_numpy(zero_copy_only=False)
    terms = features["term"].to_pylist()
    idf = features["value"].to_numpy()
    blocks = []
    for name in ANALYZERS:
        where = np.flatnonzero(names == name)
        if len(where):
            start = int(where[0])
            block_terms = terms[start : start + len(where)]
            blocks.append(Block(name, {t: i for i, t in enumerate(block_terms)}, idf[start : start + len(where)]))
    encoder = None
    embedding = (spec.params or {}).get("embeddings")
    if embedding:
        from distill_cli.students.embeddings import load_encoder

        encoder = load_encoder(embedding["model"], where=str(path))
    featurizer = Featurizer(blocks, encoder)
    temperature = float(spec.params.get("temperature", 1.0))
    if not np.isfinite(temperature):
        raise ValueError(f"temperature {temperature} is not a finite number")
    model = LinearModel(labels, np.ascontiguousarray(weights), intercepts, temperature)
    return ClassifierStudent(spec, featurizer, model)

