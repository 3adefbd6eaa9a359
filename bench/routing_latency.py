"""What routing costs a call, and what it saves: the classifier student behind `distill record --serve`.

1. Latency. A classifier student built on the banking77 sample store serves through
   a real `distill record --serve --student` process (journaling to a temporary
   store, shadow rate 0). The same held-out support requests, one at a time
   (the shape of samples/support_job.py), go in rounds:
     - straight to a loopback teacher that answers at once (bench/proxy_overhead.py's
       upstream: no model time, so what remains is HTTP and the proxy);
     - through the proxy to that teacher (`x-distill-route: teacher`);
     - through the proxy to the student (JSON, and SSE).
   The student's own answer time (in process) is measured apart. The added
   latency of a student-served call is all of its round trip: the job waits for
   that instead of a hosted teacher's ~1 s.
2. Savings. The demo's job step on this student: 300 held-out messages through
   `distill record --student --replay` (the teacher replayed from the sample store,
   default shadow rate), then `distill report --format json`; prints the realised
   cost reduction as the report computes it.

    /tmp/v/bin/python bench/routing_latency.py [--calls 1000] [--rounds 5]

The store and student are built once under bench/out/routing/ (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "routing"
sys.path[:0] = [str(ROOT), str(ROOT / "samples"), str(ROOT / "bench")]

from proxy_overhead import HEADERS, pct  # noqa: E402  (the same loopback teacher and percentiles)

DISTILL = [sys.executable, "-m", "distill_cli"]
TASK = "support-intent"


def prepared() -> tuple[Path, Path, Path]:
    """(sample store, classifier student, its verdicts), built on first use."""
    import build_store

    store, student, verdicts = OUT / "store", OUT / "intent.student", OUT / "intent.student.verdicts.parquet"
    if not store.exists():
        build_store.build(store)
    if not student.exists():
        print("building the classifier student (about a minute) ...", file=sys.stderr)
        subprocess.run([*DISTILL, "build-student", str(store), "-o", str(student), "--task", TASK, "--kind", "classifier"],
                       check=True, capture_output=True)
    if not verdicts.exists():
        subprocess.run([*DISTILL, "gate", str(student), str(store), "--verdicts", str(verdicts), "--format", "json"],
                       check=True, capture_output=True)
    return store, student, verdicts


def held_out(student: Path, store: Path, n: int) -> list[str]:
    import demo_messages

    return demo_messages.held_out_messages(str(student), str(store), n)


# ---------------------------------------------------------------------- latency


async def timed(session, url: str, body: bytes, headers: dict) -> tuple[float, bytes]:
    """(ms, the whole response body) of one call."""
    start = time.perf_counter()
    async with session.post(url + "/v1/messages", data=body, headers=headers) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}: {data[:200]!r}")
    return (time.perf_counter() - start) * 1000, data


async def latency(upstream: str, proxy: str, messages: list[str], calls: int, rounds: int, student_id: str) -> dict:
    import aiohttp
    from support_job import build_request

    paths = {
        "teacher direct": (upstream, {}, False),
        "teacher via proxy": (proxy, {"x-distill-route": "teacher"}, False),
        "student via proxy": (proxy, {}, False),
        "student via proxy, sse": (proxy, {}, True),
    }
    bodies = [json.dumps(build_request(m)).encode() for m in messages]
    streams = [json.dumps({**build_request(m), "stream": True}).encode() for m in messages]
    served = {name: [] for name in paths}
    by_student = f'"model":"{student_id}"'.encode()  # in the message, or in the stream's message_start
    fell_back = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for url, extra, stream in paths.values():  # warm every path
            for body in (streams if stream else bodies)[:50]:
                await timed(session, url, body, {**HEADERS, **extra})
        per_round = calls // rounds
        for r in range(rounds):
            for name, (url, extra, stream) in paths.items():
                for i in range(per_round):
                    k = (r * per_round + i) % len(messages)
                    ms, data = await timed(session, url, (streams if stream else bodies)[k], {**HEADERS, **extra})
                    if name.startswith("student") and by_student not in data:
                        fell_back += not stream  # declined: the teacher answered; not a student-served call
                        continue
                    served[name].append(ms)
    result = {name: {"calls": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99), "mean": statistics.fmean(v)}
              for name, v in served.items()}
    result["fell_back"] = fell_back
    return result


def student_answer_times(student_path: Path, messages: list[str]) -> dict:
    from support_job import build_request

    from distill_cli.students import load_student

    student = load_student(student_path)
    times = []
    for m in messages * 3:
        request = build_request(m)
        start = time.perf_counter()
        student.answer(request)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50": pct(times, 0.5), "p99": pct(times, 0.99), "load_ms": student.load_ms, "id": student.id}


def run_latency(store: Path, student: Path, calls: int, rounds: int) -> tuple[dict, dict]:
    messages = held_out(student, store, 500)
    own = student_answer_times(student, messages)
    with tempfile.TemporaryDirectory() as tmp:
        upstream_proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "proxy_overhead.py"), "--upstream"],
                                         stdout=subprocess.PIPE, text=True)
        upstream = upstream_proc.stdout.readline().strip()
        proxy_proc = subprocess.Popen(
            [*DISTILL, "record", "--store", str(Path(tmp) / "runs"), "--serve", "--anthropic-upstream", upstream,
             "--task", TASK, "--student", str(student), "--shadow-rate", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"}, cwd=ROOT,
        )
        proxy = proxy_proc.stdout.readline().strip().split("=", 1)[1]
        proxy_proc.stdout.readline()
        try:
            result = asyncio.run(latency(upstream, proxy, messages, calls, rounds, own["id"]))
        finally:
            proxy_proc.send_signal(signal.SIGTERM)
            _, err = proxy_proc.communicate(timeout=120)
            upstream_proc.kill()
            upstream_proc.wait()
        if proxy_proc.returncode != 0:
            raise SystemExit(err)
    return result, own


# ---------------------------------------------------------------------- savings


def run_demo_job(store: Path, student: Path) -> dict:
    """The demo's job step and report on this student; the report's totals."""
    messages_file = OUT / "messages.txt"
    messages_file.write_text("".join(m + "\n" for m in held_out(student, store, 300)))
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        env = {**os.environ, "ANTHROPIC_API_KEY": "replay-no-key"}
        started = time.perf_counter()
        subprocess.run(
            [*DISTILL, "record", "--store", str(runs), "--task", TASK, "--student", str(student), "--replay", str(store),
             "--shadow-seed", "77", "--", sys.executable, str(ROOT / "samples" / "support_job.py"), str(messages_file)],
            check=True, capture_output=True, env=env,
        )
        seconds = time.perf_counter() - started
        report = subprocess.run([*DISTILL, "report", str(runs), "--format", "json"], check=True, capture_output=True, text=True)
    totals = json.loads(report.stdout)["totals"]
    totals["job_seconds"] = seconds
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per path (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the paths (default 5)")
    args = parser.parse_args()
    store, student, _ = prepared()
    result, own = run_latency(store, student, args.calls, args.rounds)
    totals = run_demo_job(store, student)

    print(f"routing latency: {sys.platform}, {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{args.calls} sequential calls per path in {args.rounds} rounds; student {own['id']}")
    print(f"student's own answer (in process): p50 {own['p50']:.3f} ms, p99 {own['p99']:.3f} ms (loaded in {own['load_ms']:.0f} ms)")
    print(f"{'path':<26} {'calls':>6} {'p50':>9} {'p99':>9} {'mean':>9}")
    for name, r in result.items():
        if isinstance(r, dict):
            print(f"{name:<26} {r['calls']:>6} {r['p50']:>7.2f}ms {r['p99']:>7.2f}ms {r['mean']:>7.2f}ms")
    print(f"(student declined {result['fell_back']} of the JSON calls; the teacher answered those, left out above)")
    p50 = result["student via proxy"]["p50"]
    print(f"added latency of a student-served call, p50: {p50:.2f} ms (target <= 2 ms: {'met' if p50 <= 2 else 'MISSED'})")
    reduction = totals["teacher_only_cost_usd"] / totals["cost_usd"] if totals["cost_usd"] else float("inf")
    print(f"demo job: {totals['calls']} calls, student {totals['student_calls']}, fallback {totals['fallback_calls']}, "
          f"shadow {totals['shadow_calls']}; spend ${totals['cost_usd']:.4f} vs teacher-only "
          f"${totals['teacher_only_cost_usd']:.4f}: saved {totals['savings_pct']:.1f}% ({reduction:.1f}x cheaper); "
          f"job {totals['job_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
