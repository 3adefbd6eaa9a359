"""Cascades on BANKING77: what a chain of students saves over the best single one, as the gate certifies it.

Everything runs offline on the banking77 sample store (13,083 calls of
claude-sonnet-5-5; samples/build_store.py), on the default hash split
(--holdout 0.2, --seed 0), and every figure is `distill gate`'s own (run_gate,
the default gate: min agreement 0.95 at 95% confidence, the judge `auto` picks: normalized for these labels),
certified on the held-out calls no tier trained on:

1. best single local student: `build-student --kind classifier` (core; and the
   embeddings classifier where its weights are installed), gated alone;
2. local chain: the core classifier, then a second local classifier built from
   the training calls the first declines (the hard residue; as
   `build-student --after` will). With the embeddings weights installed the
   second tier adds them. Thresholds are chosen for the chain on the dev split
   (out-of-fold scores of the training rows, as the classifier chooses its own):
   the first tier's target agreement is swept, the second tier's threshold is
   the lowest at which the chain's dev agreement still predicts a pass, and the
   pair with the highest dev coverage is built;
3. local chain + SIMULATED LLM tier: a stand-in for claude-haiku-5-5 that
   answers the teacher's recorded label with probability --p (else a wrong
   label), priced from data/prices.json at the call's recorded token counts.
   Its answers are simulated, not a real model's; its agreement rate is a
   parameter of this benchmark, not a measurement.

For each: coverage, agreement and its one-sided 95% Wilson lower bound, cost
per call (teacher, students, routed) and the certified cost reduction.

    python bench/cascade.py                      # about 1.5 minutes on 2 cores
    python bench/cascade.py --p 0.97,0.95,0.9    # one simulated chain per agreement rate

Work files go under bench/out/cascade/ (the store is reused, students rebuilt).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "cascade"
sys.path[:0] = [str(ROOT), str(ROOT / "samples")]

from distill_cli import store  # noqa: E402
from distill_cli.gate import run_gate  # noqa: E402
from distill_cli.prices import Usage, load_prices  # noqa: E402
from distill_cli.students import classifier as C  # noqa: E402
from distill_cli.students.base import Answer, Student, StudentSpec, request_input, write_student_file  # noqa: E402
from distill_cli.students.build import build_student  # noqa: E402
from distill_cli.students.chain import Chain  # noqa: E402
from distill_cli.students.registry import load_student  # noqa: E402
from distill_cli.students.training import base_spec, closed_set, select  # noqa: E402

SIMULATED_MODEL = "claude-haiku-5-5"
FIRST_TARGETS = (0.95, 0.955, 0.96, 0.965, 0.97, 0.975, 0.98)  # the first tier's target agreement, swept on dev
MIN_AGREEMENT = 0.95  # the default gate


# ---- the second tier: a classifier of the calls the first declines ---------------------------------------------


@dataclasses.dataclass
class CrossFit:
    """A classifier cross-fitted as classifier.train fits one, without choosing a threshold."""

    featurizer: C.Featurizer
    fitted: list
    weight: float
    temperature: float
    confidence: np.ndarray  # out-of-fold, per training row
    agrees: np.ndarray  # out-of-fold top answer == the teacher's
    parts: tuple  # (x, dense, truth, folds, n_classes): what the nested cross-fit needs

    def model(self, classes) -> C.LinearModel:
        weights = np.mean([p[0][0] for p in self.fitted], axis=0)
        intercepts = np.mean([p[0][1] for p in self.fitted], axis=0)
        if self.featurizer.encoder is not None:
            weights = np.vstack([weights, self.weight * np.mean([p[1][0] for p in self.fitted], axis=0)])
            intercepts = intercepts + self.weight * np.mean([p[1][1] for p in self.fitted], axis=0)
        return C.LinearModel(list(classes), weights.astype(np.float32), intercepts, self.temperature)

    def averaged_threshold(self, single: float) -> float:
        """The averaged model's threshold answering the share of calls `single` answers for one fold model."""
        x, dense, truth, folds, n_classes = self.parts
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return C._averaged_threshold(x, dense, truth, folds, n_classes, C.SVM_C, self.weight, self.temperature, single)


def cross_fit(examples, classes, salt: str, encoder=None) -> CrossFit:
    """Out-of-fold scores of `examples` (training rows), by the classifier's own folds and model."""
    from threadpoolctl import threadpool_limits

    texts = [e.input for e in examples]
    index = {" ".join(c.split()): i for i, c in enumerate(classes)}
    truth = np.array([index.get(" ".join(e.output.split()), -1) for e in examples])
    with threadpool_limits(limits=1):
        featurizer = C.Featurizer.fit(texts, encoder)
        x = C.Featurizer(featurizer.blocks).matrix(texts)
        dense = None if encoder is None else C.EMBEDDING_WEIGHT * encoder.encode(texts).astype(np.float64)
        folds = np.array([C.fold_of(salt, e.id) for e in examples])
        fitted = [C._fit_parts(x, dense, truth, (folds != k) & (truth >= 0), len(classes), C.SVM_C) for k in range(C.FOLDS)]
        oof = np.zeros((len(texts), len(fitted[0]), len(classes)))
        for k, parts in enumerate(fitted):
            rows = folds == k
            if rows.any():
                oof[rows] = C._part_scores(parts, x, dense, rows)
        weight, temperature = C._combine(oof, truth)
    proba = C.softmax(oof[:, 0] + weight * oof[:, -1] if dense is not None else oof[:, 0], temperature)
    return CrossFit(featurizer, fitted, weight, temperature, proba.max(axis=1), proba.argmax(axis=1) == truth,
                    (x, dense, truth, folds, len(classes)))


@dataclasses.dataclass
class ChainPlan:
    first_target: float  # the first tier's --min-agreement
    first_single: float  # its threshold for one fold model (out-of-fold scores)
    residue: list  # the training rows it declines
    second: CrossFit | None
    second_single: float  # the second tier's threshold for one fold model
    dev_coverage: float  # the chain's, on the dev rows
    dev_first_coverage: float
    dev_agreement: float
    predicted_bound: float


def plan_chain(first: CrossFit, train, classes, salt: str, expected_holdout: int, encoder=None, say=print) -> ChainPlan:
    """The first tier's target and the second tier's threshold that answer the most dev calls with a predicted pass."""
    best = None
    for target in FIRST_TARGETS:
        t1 = C.choose_threshold(first.confidence, first.agrees, target, expected_holdout)
        declined = first.confidence < t1.value
        residue = [e for e, d in zip(train, declined) if d]
        if len(residue) < 2 * C.FOLDS or len({e.output for e in residue}) < 2:
            continue
        second = cross_fit(residue, classes, salt, encoder)
        # The chain on the dev rows: what tier 1 answers always stands (confidence 2 > any threshold); the
        # residue is ranked by tier 2's out-of-fold confidence. choose_threshold applies the gate's rule, with
        # the classifier's margin, to the whole chain: the lowest tier-2 threshold still predicted to pass.
        confidence = np.where(declined, 0.0, 2.0)
        agrees = first.agrees.copy()
        confidence[declined], agrees[declined] = second.confidence, second.agrees
        chosen = C.choose_threshold(confidence, agrees, MIN_AGREEMENT, expected_holdout)
        plan = ChainPlan(target, t1.value, residue, second, chosen.value if chosen.value <= 1 else C.NEVER,
                         chosen.coverage, t1.coverage, chosen.agreement, chosen.predicted_gate_bound)
        top = np.argsort(-second.confidence, kind="stable")[: max(1, len(residue) // 10)]
        say(f"  first tier at {target}: answers {t1.coverage:.1%} of dev calls, declines {len(residue)}; the second "
            f"tier's most confident tenth of those agrees {second.agrees[top].mean():.0%} (out of fold); "
            f"the chain answers {plan.dev_coverage:.1%} (predicted gate bound {plan.predicted_bound:.4f})")
        if best is None or plan.dev_coverage > best.dev_coverage:
            best = plan
    return best


def write_second_tier(path: Path, plan: ChainPlan, first: Student, selection, classes, encoder) -> Student:
    """The second tier as a classifier student file, on the first tier's split (so both hold out the same calls)."""
    residue_selection = dataclasses.replace(selection, train=plan.residue)
    settings = {"min_agreement": MIN_AGREEMENT, "embeddings": encoder.name if encoder else None, "C": C.SVM_C,
                "folds": C.FOLDS, "after": first.id}
    spec = base_spec("classifier", residue_selection, settings)
    threshold = plan.second.averaged_threshold(plan.second_single)
    model = plan.second.model(classes)
    spec.threshold = round(threshold, 6)
    spec.params = {
        "model": "linear SVM (one-vs-rest) on TF-IDF" + (" + logistic regression on embeddings" if encoder else "")
        + ", mean of the cross-fitting fold models, trained on the calls the first tier declines",
        "C": C.SVM_C, "folds": C.FOLDS, "temperature": model.temperature, "classes": len(classes),
        "embeddings": {"model": encoder.name, "dim": encoder.dim, "scores_weight": plan.second.weight,
                       "logistic_C": C.DENSE_C} if encoder else None,
        "after": {"id": first.id, "digest": first.spec.digest, "first_target": plan.first_target},
    }
    spec.metrics = {"n_train": len(plan.residue), "chain_dev_coverage": round(plan.dev_coverage, 4),
                    "chain_dev_agreement": round(plan.dev_agreement, 4),
                    "chain_predicted_gate_lower_bound": round(plan.predicted_bound, 4), "threshold": spec.threshold}
    write_student_file(path, spec, C.rows_for(plan.second.featurizer, model))
    return load_student(path)


# ---- the simulated LLM tier --------------------------------------------------------------------------------------


class SimulatedLLM(Student):
    """A stand-in for an LLM student: the teacher's recorded answer with probability p, else another label.

    Nothing is asked of any model. Each call is priced as `model` at the teacher call's recorded
    input tokens and the answer's estimated output tokens (the sample store's estimate, chars / 4).
    Which calls it gets wrong is seeded by the input, so a run repeats exactly.
    """

    def __init__(self, task: str, teacher_model: str, calls: dict, labels: list[str], p: float, prices,
                 model: str = SIMULATED_MODEL, seed: int = 0) -> None:
        params = {"p": p, "model": model, "seed": seed}
        digest = "sha256:" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        super().__init__(StudentSpec(id=f"simulated-{model}-p{p}", kind="simulated-llm", task=task,
                                     teacher_model=teacher_model, student_model=model, params=params, digest=digest))
        self.calls, self.labels, self.p, self.prices, self.model, self.seed = calls, labels, p, prices, model, seed

    def split_problem(self) -> str | None:
        return None

    def holds_out(self, example_id: str) -> bool:
        return True  # it trained on nothing

    def answer(self, request: dict) -> Answer:
        text = request_input(request, self.spec.provider)
        teacher_output, input_tokens = self.calls[text]
        rng = random.Random(f"{self.seed}:{text}")
        output = teacher_output if rng.random() < self.p else rng.choice([x for x in self.labels if x != teacher_output])
        usage = Usage(input_tokens=input_tokens, output_tokens=math.ceil(len(output) / 4))
        return Answer(output, confidence=None, cost_usd=self.prices.cost(self.model, usage), input_tokens=input_tokens,
                      output_tokens=usage.output_tokens, model=f"simulated {self.model}")


def simulated_tier(store_dir: Path, task: str, teacher_model: str, labels: list[str], p: float) -> SimulatedLLM:
    con = store.connect()
    store.examples_view(con, [store_dir], "bench")
    calls = {text: (output, int(tokens)) for text, output, tokens in
             con.execute("SELECT input, output, input_tokens FROM examples WHERE task = ?", [task]).fetchall()}
    return SimulatedLLM(task, teacher_model, calls, labels, p, load_prices())


# ---- the run ----------------------------------------------------------------------------------------------------


def gated(name: str, student, store_dir: Path) -> dict:
    started = time.perf_counter()
    s = run_gate(student, store_dir)  # the default gate: 0.95 at 95% confidence, judge auto (normalized here)
    return {
        "config": name, "student": s.student, "passed": s.passed, "n": s.n, "coverage": s.coverage,
        "agreement": s.agreement, "lower_bound": s.lower_bound, "tier_answered": s.tier_answered,
        "teacher_cost_per_call": s.teacher_cost_per_call, "student_cost_per_call": s.student_cost_per_call,
        "routed_cost_per_call": s.routed_cost_per_call, "cost_reduction": s.cost_reduction, "judge": s.judge,
        "decision": s.decision, "seconds": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", default="0.97",
                        help="the simulated LLM tier's agreement rate; several, comma-separated, for one chain each (default 0.97)")
    parser.add_argument("--seed", type=int, default=0, help="the split seed (default 0)")
    parser.add_argument("--embeddings", choices=("auto", "on", "off"), default="auto",
                        help="the embeddings classifier, single and as the second tier (default: when installed)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    started = time.perf_counter()
    import build_store

    from distill_cli.students import embeddings

    encoder = None if args.embeddings == "off" else embeddings.default_encoder(required=args.embeddings == "on")
    if encoder is None:
        print(f"(embeddings not installed: {embeddings.INSTALL} to measure them too)")
    OUT.mkdir(parents=True, exist_ok=True)
    store_dir = OUT / "store"
    if not store_dir.exists():
        build_store.build(store_dir)
    for old in OUT.glob("*.student"):
        old.unlink()

    say = print
    say("building the single students ...")
    singles = {"core": OUT / "core.student"}
    build_student(store_dir, singles["core"], kind="classifier", embeddings="off", seed=args.seed)
    if encoder is not None:
        singles["embeddings"] = OUT / "embeddings.student"
        build_student(store_dir, singles["embeddings"], kind="classifier", embeddings="on", seed=args.seed)

    say("choosing the chain's thresholds on the dev split (out-of-fold scores of the training rows) ...")
    selection = select([store_dir], task=build_store.TASK, holdout=0.2, seed=args.seed)
    classes = closed_set([e.output for e in selection.train]).classes
    expected_holdout = max(selection.n_holdout, 100)
    first_fit = cross_fit(selection.train, classes, selection.salt)
    plan = plan_chain(first_fit, selection.train, classes, selection.salt, expected_holdout, encoder, say)
    if plan is None:
        print("no first-tier target leaves a residue to train a second tier on", file=sys.stderr)
        return 1
    say(f"chosen: first tier at {plan.first_target}, second tier trained on {len(plan.residue)} declined calls; "
        f"dev coverage {plan.dev_first_coverage:.1%} + {plan.dev_coverage - plan.dev_first_coverage:.1%}")
    first_path = OUT / "first.student"
    if plan.first_target == MIN_AGREEMENT:
        first_path.write_bytes(singles["core"].read_bytes())
    else:
        build_student(store_dir, first_path, kind="classifier", embeddings="off", seed=args.seed,
                      min_agreement=plan.first_target)
    first = load_student(first_path)
    second = write_second_tier(OUT / "second.student", plan, first, selection, classes, encoder)
    teacher_model = first.spec.teacher_model
    rates = [float(p) for p in args.p.split(",")]
    simulated = {p: simulated_tier(store_dir, build_store.TASK, teacher_model, classes, p) for p in rates}

    say("gating ...")
    results = [gated(f"single: {name}", load_student(path), store_dir) for name, path in singles.items()]
    passing = [r for r in results if r["passed"]]
    best = max(passing, key=lambda r: r["cost_reduction"]) if passing else None
    chains = [("local chain: core > residue classifier", Chain([first, second]))]
    for p, llm in simulated.items():
        chains += [
            (f"core > SIMULATED {SIMULATED_MODEL}, p={p}", Chain([load_student(singles["core"]), llm])),
            (f"local chain > SIMULATED {SIMULATED_MODEL}, p={p}", Chain([first, second, llm])),
        ]
    results += [gated(name, chain, store_dir) for name, chain in chains]

    seconds = time.perf_counter() - started
    print()
    print(f"cascades on banking77: {len(selection.train)} training calls, split seed {args.seed}; "
          f"default gate (min agreement {MIN_AGREEMENT}, 95% confidence); whole run {seconds:.0f} s")
    header = (f"{'configuration':<52} {'gate':<5} {'n':>5} {'coverage':>9} {'per tier':>16} {'agreement':>9} "
              f"{'lower':>7} {'teacher $':>10} {'students $':>10} {'routed $':>10} {'reduction':>9}")
    print(header)
    for r in results:
        tiers = "/".join(str(t) for t in r["tier_answered"]) if r["tier_answered"] else "-"
        print(f"{r['config']:<52} {'pass' if r['passed'] else 'FAIL':<5} {r['n']:>5} {r['coverage']:>9.1%} {tiers:>16} "
              f"{r['agreement']:>9.2%} {r['lower_bound']:>7.2%} {r['teacher_cost_per_call']:>10.6f} "
              f"{r['student_cost_per_call']:>10.7f} {r['routed_cost_per_call']:>10.7f} "
              + (f"{r['cost_reduction']:>8.1f}x" if r["passed"] else f"{'none':>9}"))  # a failed gate certifies nothing
    if best:
        for r in results[len(singles):]:
            if r["passed"]:
                print(f"{r['config']}: {r['cost_reduction'] / best['cost_reduction']:.2f}x the best single student's "
                      f"certified reduction ({best['config']}, {best['cost_reduction']:.1f}x)")
    asked = [r for r in results if "SIMULATED" in r["config"]]
    if asked:
        r = asked[0]
        per_call = r["student_cost_per_call"] * r["n"] / r["tier_answered"][-1]
        print(f"(the SIMULATED {SIMULATED_MODEL} tier answers the teacher's label with probability p ({args.p}), "
              f"else a wrong label: its answers are simulated, not a real model's. It is priced from data/prices.json "
              f"at the recorded token counts: ${per_call:.7f} a call asked, against the teacher's "
              f"${r['teacher_cost_per_call']:.6f})")
    if args.json:
        print(json.dumps(results, default=str))
    # The single student and the local chain must pass; a simulated tier's pass depends on the p it is given.
    return 0 if all(r["passed"] for r in results if "SIMULATED" not in r["config"]) else 1


if __name__ == "__main__":
    sys.exit(main())
