"""How long `distill gate` takes, end to end, for a local student and for an LLM student.

    python bench/gate_speed.py [--only classifier|llm] [--repeat 3]

1. classifier: the banking77 sample store (13,083 calls) and a `classifier` student
   built from it (core install, no embeddings); `distill gate STUDENT STORE --verdicts
   --junit` timed as a fresh process (start-up, imports and loading included) over its
   ~2,600 held-out rows. Target: <= 5 s. Store and student are built once under
   bench/out/gate_speed/ and reused.
2. llm: 1,000 held-out calls and a `few-shot` student (built by build-student, no
   dev calls), whose every call goes through the real `anthropic.AsyncAnthropic`
   client to a fake upstream on 127.0.0.1 that takes 300 ms per call (its own
   process, as a real upstream would be); `distill gate --concurrency 32` timed as a
   fresh process. Target: <= 15 s (the floor is 1,000 x 0.3 s / 32 = 9.4 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "gate_speed"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "samples"))


def run(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, done


def classifier(repeat: int) -> dict:
    store, student = OUT / "banking77", OUT / "banking77.student"
    if not (store / "_journal").exists() or not any(store.glob("date=*")):
        import build_store

        build_store.build(store)
    if not student.exists():
        from distill_cli.students.build import build_student

        print("building the classifier student once (about a minute)...", file=sys.stderr)
        build_student(store, student, kind="classifier", embeddings="off")
    verdicts, junit = OUT / "gate.parquet", OUT / "gate.xml"
    cmd = [sys.executable, "-m", "distill_cli", "gate", str(student), str(store), "--verdicts", str(verdicts),
           "--junit", str(junit), "--format", "json"]
    times, summary = [], None
    for _ in range(repeat):
        seconds, done = run(cmd)
        if done.returncode not in (0, 1):
            raise SystemExit(f"gate failed ({done.returncode}): {done.stderr.strip()}")
        times.append(seconds)
        summary = json.loads(done.stdout)
    return {
        "command": " ".join(["distill", *cmd[3:]]).replace(str(ROOT) + "/", ""),
        "seconds": times,
        "median_s": statistics.median(times),
        "n": summary["n"],
        "coverage": round(summary["coverage"], 4),
        "agreement": round(summary["agreement"], 4),
        "lower_bound": round(summary["lower_bound"], 4),
        "passed": summary["passed"],
        "decision": summary["decision"],
        "reason": summary["reason"],
        "gate_s": summary["seconds"],
    }


FAKE_SERVER = """
import sys
sys.path.insert(0, {tests!r})
from fake_provider import FakeProvider
def respond(body, provider):
    last = body["messages"][-1]["content"]
    text = last if isinstance(last, str) else last[0]["text"]
    return "label_" + str(len(text) % 7)
with FakeProvider(responder=respond, delay={delay}) as fake:
    print(fake.url, flush=True)
    sys.stdin.read()
"""


def llm(repeat: int, n: int = 1000, delay: float = 0.3, concurrency: int = 32) -> dict:
    import shutil

    from gate_support import FAKE_KEY, Row, make_rows, write_store

    from distill_cli.students.build import build_student
    from distill_cli.students.training import salt_for

    server = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER.format(tests=str(ROOT / "tests"), delay=delay)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().strip()
        env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": FAKE_KEY}
        work = OUT / "llm"
        shutil.rmtree(work, ignore_errors=True)
        # n held-out rows under the split build-student makes with seed 0, and 400 to train on.
        rows = [Row(r.id, r.text, "label_" + str(len(r.text) % 7), r.held_out)
                for r in make_rows(n, 400, salt=salt_for(0))]
        store = write_store(work / "store", rows)
        student = work / "fs.student"
        os.environ.update(env)
        build_student(store, student, kind="few-shot", dev_calls=0)  # no upstream call
        cmd = [sys.executable, "-m", "distill_cli", "gate", str(student), str(store), "--concurrency", str(concurrency),
               "--verdicts", str(work / "gate.parquet"), "--format", "json"]
        times, summary = [], None
        for _ in range(repeat):
            seconds, done = run(cmd, env=env)
            if done.returncode not in (0, 1):
                raise SystemExit(f"gate failed ({done.returncode}): {done.stderr.strip()}")
            times.append(seconds)
            summary = json.loads(done.stdout)
    finally:
        server.stdin.close()
        server.wait(10)
    return {
        "command": " ".join(["distill", *cmd[3:]]).replace(str(ROOT) + "/", ""),
        "student_kind": summary["student_kind"],
        "examples": summary["n"],
        "upstream_delay_s": delay,
        "concurrency": concurrency,
        "seconds": times,
        "median_s": statistics.median(times),
        "floor_s": n * delay / concurrency,
        "gate_s": summary["seconds"],
        "errors": summary["errors"],
        "agreement": summary["agreement"],
        "spent_usd": round(summary["spent_usd"], 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["classifier", "llm"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.only in (None, "classifier"):
        results["classifier"] = r = classifier(args.repeat)
        print(f"classifier: {r['n']} held-out rows in {r['median_s']:.2f} s median (target <= 5 s); "
              f"{r['decision']}: {r['reason']}")
    if args.only in (None, "llm"):
        results["llm"] = r = llm(args.repeat)
        print(f"llm: {r['examples']} examples at 300 ms per call, concurrency {r['concurrency']}: "
              f"{r['median_s']:.2f} s median (target <= 15 s, floor {r['floor_s']:.1f} s), {r['errors']} errors")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
