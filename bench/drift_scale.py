"""`distill drift` end to end over a 1M-call store, and how often it cries wolf.

    python bench/drift_scale.py [--rows 1000000] [--repeat 3] [--nights 200] [--histories 2000]

1. Speed. A store of `--rows` calls over 30 days is generated with DuckDB under
   bench/out/ (gitignored; reused when present): the support-intent task on
   BANKING77's real queries, the teacher alone for 15 days, then a student serving
   85% (15% fallbacks, a shadow check on 10% of its answers, 2% of them wrong: card_arrival),
   beside a second task drift must ignore. Timed as a fresh `python -m distill_cli
   drift STUDENT STORE --log LOG` process (start-up included) for --since 24h and 7d.
   Target on the 2-core machine: <= 10 s at 1M rows.
2. False alarms on stable traffic. `--nights` simulated nights of held-out BANKING77
   queries answered correctly (the router rows the tests use, tests/drift_support.py),
   each followed by a drift run with a log; counts the nights any check raised an alarm.
3. The detector alone. `--histories` simulated histories of 365 nightly runs of 60
   checks each with agreement exactly at 95% = --min-agreement (the boundary, where a
   false alarm is likeliest): the share that ever alarms within T runs against the
   bound T / (2 x arl); then how many runs a real drop takes to be caught.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
DAYS = 30
ROUTED_FROM = 15  # the student serves from this day on
START = datetime(2026, 10, 1, tzinfo=timezone.utc)
END = START + timedelta(days=DAYS)
STUDENT_ID = "support-intent-bench-student"
SALT = "0123456789abcdef"
TEACHER = "claude-sonnet-5-5"


def _queries() -> list[tuple[str, str]]:
    rows = []
    for split in ("train", "test"):
        with open(ROOT / "samples" / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as f:
            rows += [(r["text"], r["category"]) for r in csv.DictReader(f)]
    return rows


def _day_sql(day: int, n: int, n_queries: int) -> str:
    """One day's rows: calls of both tasks, and for routed support-intent calls the student/fallback/shadow rows."""
    base = day * 10_000_000
    routed = "TRUE" if day >= ROUTED_FROM else "FALSE"
    return f"""
WITH c AS (
  SELECT {base} + i AS k,
         TIMESTAMPTZ '{START.strftime('%Y-%m-%d')} 00:00:00+00' + INTERVAL ({day}) DAY
           + to_microseconds(CAST(i * (86400000000 // {n}) AS BIGINT)) AS ts,
         hash({base} + i) % 1000 AS u, hash({base} + i, 7) % 1000 AS v, CAST(hash({base} + i, 3) % {n_queries} AS BIGINT) AS qi
  FROM range({n}) t(i)
), q AS (
  SELECT c.*, CASE WHEN u < 850 THEN 'support-intent' ELSE 'faq-answer' END AS task,
         queries.text AS input, queries.label AS label
  FROM c JOIN queries ON queries.i = c.qi
), calls AS (
  SELECT *,
    CASE WHEN task = 'support-intent' AND {routed} THEN CASE WHEN v < 850 THEN 'student' ELSE 'fallback' END
         ELSE 'teacher' END AS served_by,
    lpad(upper(to_hex(epoch_ms(ts))), 10, '0') || upper(substr(md5(k::VARCHAR), 1, 16)) AS id
  FROM q
), rows AS (
  SELECT id, ts, task, served_by, input,
         CASE WHEN served_by = 'student' AND hash(k, 5) % 100 < 2 THEN 'card_arrival'  -- a classifier's mistake: another label
              WHEN task = 'faq-answer' THEN 'You can do that in the app: ' || input ELSE label END AS output,
         NULL AS pair_id, k
  FROM calls
  UNION ALL
  SELECT id || 'S', ts + INTERVAL 900 MILLISECOND, task, 'shadow', input, label, id, k
  FROM calls WHERE served_by = 'student' AND hash(k, 11) % 100 < 10
)
SELECT id, ts, 'run-{day}' AS run_id, task,
  CASE WHEN served_by = 'student' THEN 'student' ELSE 'anthropic' END AS provider,
  'proxy' AS source, '/v1/messages' AS endpoint,
  CASE WHEN served_by = 'student' THEN '{STUDENT_ID}' ELSE '{TEACHER}' END AS model,
  served_by,
  CASE WHEN served_by IN ('student', 'fallback', 'shadow') THEN '{STUDENT_ID}' END AS student_id,
  pair_id, input, output,
  '{{"max_tokens":16,"messages":[{{"content":' || to_json(input)::VARCHAR || ',"role":"user"}}],"model":"{TEACHER}"}}'
    AS request_json,
  '{{"content":[{{"text":' || to_json(output)::VARCHAR || ',"type":"text"}}],"role":"assistant"}}' AS response_json,
  CAST(200 AS INTEGER) AS status, NULL AS error, FALSE AS stream, 'end_turn' AS stop_reason,
  CAST(CASE WHEN served_by = 'student' THEN 0 ELSE 560 + length(input) // 4 END AS BIGINT) AS input_tokens,
  CAST(CASE WHEN served_by = 'student' THEN 0 ELSE 4 END AS BIGINT) AS output_tokens,
  CAST(0 AS BIGINT) AS cache_read_tokens, CAST(0 AS BIGINT) AS cache_write_5m_tokens,
  CAST(0 AS BIGINT) AS cache_write_1h_tokens,
  CASE WHEN served_by = 'student' THEN 0.0 ELSE ((560 + length(input) // 4) * 2 + 4 * 10) / 1e6 END AS cost_usd,
  '2026-11-26' AS price_version,
  CASE WHEN served_by = 'student' THEN 0.05 ELSE 400 + hash(k, 31) % 1500 END::DOUBLE AS latency_ms,
  NULL::DOUBLE AS ttft_ms, md5(task || input) AS input_hash,
  CASE WHEN served_by = 'student' THEN 0.9 + (hash(k, 37) % 100) / 1000 END AS confidence,
  '{{}}' AS metadata
FROM rows
"""


def generate(rows: int) -> Path:
    """The bench store (reused when complete) and its student file, under bench/out/."""
    store = OUT / f"drift-store-{rows}"
    if (store / ".complete").exists():
        return store
    shutil.rmtree(store, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    queries = _queries()
    table = pa.table({"i": list(range(len(queries))), "text": [t for t, _ in queries], "label": [lb for _, lb in queries]})
    con.register("queries", table)
    # Calls per day such that calls + shadow rows come to `rows` (shadow rows: 10% of the 85% x 85% routed).
    per_day = int(rows / (DAYS + (DAYS - ROUTED_FROM) * 0.85 * 0.85 * 0.10))
    started = time.perf_counter()
    for day in range(DAYS):
        folder = store / f"date={(START + timedelta(days=day)).date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY ({_day_sql(day, per_day, len(queries))}) TO '{folder / 'part-bench.parquet'}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000, KV_METADATA {'distill.schema': 'examples/1'})"
        )
    (store / ".complete").write_text(str(rows))
    n = con.execute(f"SELECT count(*) FROM '{store}/**/*.parquet'").fetchone()[0]
    print(f"generated {n:,} rows in {time.perf_counter() - started:.1f} s: {store}", file=sys.stderr)
    return store


def write_student(path: Path) -> Path:
    from distill_cli.students import cache
    from distill_cli.students.base import StudentSpec, write_student_file

    built = START + timedelta(days=ROUTED_FROM)
    spec = StudentSpec(
        id=STUDENT_ID, kind="cache", task="support-intent", teacher_model=TEACHER, created=built.isoformat(),
        built_from={"newest": built.isoformat()}, split={"salt": SALT, "holdout": 0.2, "rule": "sha256(salt:id) < holdout"},
        metrics={"coverage": 0.85, "n_dev": 50_000},
    )
    return write_student_file(path, spec, cache.rows_for({}))


def time_drift(store: Path, student: Path, since: str, repeat: int) -> tuple[float, dict]:
    """Best wall seconds of a fresh `distill drift` process, and its JSON result."""
    best, result = float("inf"), {}
    for _ in range(repeat):
        log = OUT / "drift-bench-log.parquet"
        log.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "distill_cli", "drift", str(student), str(store), "--since", since,
               "--now", END.isoformat(), "--log", str(log), "--format", "json"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        wall = time.perf_counter() - started
        if proc.returncode not in (0, 1):
            raise SystemExit(f"drift failed ({proc.returncode}): {proc.stderr[-2000:]}")
        if wall < best:
            best, result = wall, json.loads(proc.stdout)
    return best, result


def false_alarms(nights: int) -> dict:
    """Stable BANKING77 traffic for `nights` nights, drift after each; alarms per check."""
    sys.path.insert(0, str(ROOT / "samples"))
    sys.path.insert(0, str(ROOT / "tests"))
    import build_store
    from drift_support import Site, holdout_queries

    from distill_cli.drift import run_drift

    sample = OUT / "sample-store"
    if not (sample / ".complete").exists():
        shutil.rmtree(sample, ignore_errors=True)
        build_store.build(sample)
        (sample / ".complete").write_text("done")
    work = OUT / "false-alarms"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    site = Site(work, sample)
    held, _ = holdout_queries(sample)
    rng = random.Random(2026)
    counts = {"nights": nights, "any": 0, "agreement": 0, "input": 0, "decline": 0, "output": 0}
    started = time.perf_counter()
    for night in range(nights):
        now = site.day(rng.sample(held, 150), night, rng)
        r = run_drift(site.student, site.stores, now=now, log=site.log)
        counts["any"] += r.drifted
        for c in r.checks:
            counts[c.name] += c.drifted
    counts["seconds_per_night"] = round((time.perf_counter() - started) / nights, 2)
    return counts


def first_alarms(agreement: float, histories: int, *, min_agreement: float = 0.95, arl: float = 1000,
                 per_run: int = 60, horizon: int = 365) -> np.ndarray:
    """The run of each simulated history's first alarm (horizon + 1 when none) at a true agreement."""
    from distill_cli.drift import AgreementDetector

    rng = np.random.default_rng(0)
    threshold = np.log(2 * arl)
    first = []
    for agreeing in rng.binomial(per_run, agreement, size=(histories, horizon)):
        detector = AgreementDetector(min_agreement)
        first.append(next((t for t, k in enumerate(agreeing, 1) if detector.update(per_run, int(k)) >= threshold), horizon + 1))
    return np.array(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nights", type=int, default=200)
    parser.add_argument("--histories", type=int, default=2000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    store = generate(args.rows)
    student = write_student(OUT / "drift-bench.student")
    for since in ("24h", "7d"):
        wall, r = time_drift(store, student, since, args.repeat)
        checks = ", ".join(f"{c['name']} {c['status']}" for c in r["checks"])
        print(f"drift over {args.rows:,} rows, --since {since}: {wall:.2f} s end to end (best of {args.repeat}); "
              f"{r['calls']:,} calls in the window, {r['pairs']:,} pairs judged, library {r['seconds']:.2f} s; {checks}")

    if args.nights:
        fa = false_alarms(args.nights)
        print(f"stable traffic, {fa['nights']} nights of 150 held-out BANKING77 calls: {fa['any']} nights with an alarm "
              f"(agreement {fa['agreement']}, input {fa['input']}, decline {fa['decline']}, output {fa['output']}); "
              f"{fa['seconds_per_night']} s per night")

    if args.histories:
        worst = first_alarms(0.95, args.histories)
        for T in (30, 100, 365):
            print(f"detector at agreement = min_agreement 95% (worst case), {args.histories} histories of 60 checks a run: "
                  f"P(alarm within {T} runs) = {np.mean(worst <= T):.4f} (bound T/(2 arl) = {T / 2000:.4f})")
        for agreement in (0.93, 0.90, 0.85, 0.70):
            delay = first_alarms(agreement, min(args.histories, 500), horizon=60)
            print(f"detector at agreement {agreement:.0%}, 60 checks a run: runs to alarm median {np.median(delay):.0f}, "
                  f"90th percentile {np.percentile(delay, 90):.0f}")


if __name__ == "__main__":
    main()
