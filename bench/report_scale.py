"""`distill report --format json` end to end over stores of 100k, 1M and 10M calls.

    python bench/report_scale.py [--sizes 100000,1000000,10000000] [--repeat 3] [--copied-parts N]

Stores are generated with DuckDB (realistic examples/1 rows: four tasks, a
student serving most of one of them with fallbacks and shadow checks, a 6 KB
system prompt sent uncached, repeated FAQ inputs, high-stakes tags, errors, a
model with no price), 30 days with 8 parts per day, under bench/out/ (gitignored),
and reused when present. Each size is timed as a fresh `python -m distill_cli report
STORE --format json` process (start-up included); peak memory is the child's max RSS.

With --copied-parts N, each store is first given N of its parts a second time under another name
(as when two stores' parts are copied together): the report must count their calls once, and the
figure is the cost of finding and dropping the repeats.

Targets on the 2-core machine: <= 1.5 s at 1M rows, <= 5 s at 10M, peak <= 1 GB,
time growing no worse than linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

OUT = Path(__file__).resolve().parent / "out"
DAYS = 30
PARTS_PER_DAY = 8
START = "2026-10-01"

WORDS = (
    "card account transfer payment refund pending declined cash withdrawal exchange rate fee charge top up "
    "app phone pin blocked lost stolen identity verify balance statement limit virtual physical delivery "
    "arrived still waiting yesterday today week why how can my the a is not was been have please help "
    "urgent again twice wrong amount currency abroad travel salary deposit cheque contactless apple google"
).split()
INTENTS = [f"intent_{i:02d}" for i in range(77)]
SYSTEM_INTENT = "You classify customer messages for an online bank. Answer with one intent label.\n" + "\n".join(
    INTENTS * 3
)
SYSTEM_EXTRACT = "Extract the invoice fields as JSON: vendor, date, total, currency, lines.\n" + (
    "Rules: amounts are decimals; dates are ISO-8601; unknown fields are null; never invent a vendor. " * 60
)
SYSTEM_FAQ = "Answer the customer's question from the FAQ in two sentences."
SYSTEM_LEGAL = "Review the clause for legal risk and explain your reasoning."


def _sql_json(text: str) -> str:
    """A JSON string literal of `text`, quoted as a SQL string."""
    return "'" + json.dumps(text).replace("'", "''") + "'"


def _generate_part(con, path: Path, day: int, part: int, n: int, seed: int) -> None:
    """One part of `n` rows for day `day`, all values derived from hash(row number, seed)."""
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    intents = "[" + ", ".join(f"'{w}'" for w in INTENTS) + "]"
    base = seed * 1_000_000_000 + day * 10_000_000 + part * 1_000_000
    con.execute(
        f"""
COPY (
WITH r AS (
  SELECT i, {base} + i AS k, hash({base} + i) % 1000 AS u, hash({base} + i, 7) % 1000 AS v
  FROM range({n}) t(i)
), t AS (
  SELECT *,
    CASE WHEN u < 550 THEN 'support-intent' WHEN u < 800 THEN 'extract-invoice'
         WHEN u < 950 THEN 'faq-answer' WHEN u < 998 THEN 'legal-review' ELSE 'experimental' END AS task,
    TIMESTAMPTZ '{START} 00:00:00+00' + INTERVAL ({day}) DAY
      + to_microseconds(CAST(({part} * {n} + i) * (86400000000 // ({PARTS_PER_DAY} * {n})) AS BIGINT)) AS ts
  FROM r
), s AS (
  SELECT *,
    CASE WHEN task = 'support-intent' AND {day} >= 15 THEN
           CASE WHEN v < 800 THEN 'student' WHEN v < 850 THEN 'fallback' WHEN v < 870 THEN 'shadow' ELSE 'teacher' END
         ELSE 'teacher' END AS served_by,
    CASE task WHEN 'support-intent' THEN 'claude-sonnet-5-5' WHEN 'extract-invoice' THEN 'claude-sonnet-5-5'
              WHEN 'faq-answer' THEN 'claude-haiku-4-5' WHEN 'legal-review' THEN 'claude-opus-4-5'
              ELSE 'acme-llm-1' END AS teacher_model,
    CASE WHEN task = 'faq-answer' AND v < 400 THEN 'faq ' || (hash(k, 3) % 2000)
         ELSE array_to_string(list_transform(range(CAST(6 + hash(k, 5) % 12 AS BIGINT)), lambda j: {words}[CAST(1 + hash(k, j) % {len(WORDS)} AS BIGINT)]), ' ')
    END AS input,
    hash(k, 11) % 1000 < 5 AS failed
  FROM t
), o AS (
  SELECT *,
    CASE WHEN failed THEN NULL
         WHEN task = 'support-intent' THEN {intents}[CAST(1 + hash(input) % 77 AS BIGINT)]
         WHEN task = 'extract-invoice' THEN '{{"vendor":"v' || hash(k, 13) % 5000 || '","total":' || hash(k, 17) % 100000 / 100 || '}}'
         WHEN task = 'faq-answer' THEN 'You can do that in the app under Settings. ' || input
         ELSE 'The clause limits liability; risk is ' || (hash(k, 19) % 3) || ' because ' || input END AS output,
    CASE task WHEN 'support-intent' THEN {_sql_json(SYSTEM_INTENT)} WHEN 'extract-invoice' THEN {_sql_json(SYSTEM_EXTRACT)}
              WHEN 'faq-answer' THEN {_sql_json(SYSTEM_FAQ)} ELSE {_sql_json(SYSTEM_LEGAL)} END AS system_json,
    CASE WHEN served_by = 'student' THEN 0
         WHEN failed THEN 0
         WHEN task = 'support-intent' THEN 560 + length(input) // 4
         WHEN task = 'extract-invoice' THEN 1480 + length(input) // 4
         ELSE 20 + length(input) // 4 END AS input_tokens,
    CASE WHEN served_by = 'student' OR failed THEN 0
         WHEN task = 'support-intent' THEN 4 WHEN task = 'extract-invoice' THEN 40 + hash(k, 23) % 60
         ELSE 60 + hash(k, 29) % 300 END AS output_tokens
  FROM s
)
SELECT
  lpad(upper(to_hex(epoch_ms(ts))), 10, '0') || upper(substr(md5(k::VARCHAR), 1, 16)) AS id,
  ts,
  'run-' || {day} AS run_id,
  task,
  CASE WHEN served_by = 'student' THEN 'student' ELSE 'anthropic' END AS provider,
  'proxy' AS source,
  '/v1/messages' AS endpoint,
  CASE WHEN served_by = 'student' THEN 'intent-classifier-01' ELSE teacher_model END AS model,
  served_by,
  CASE WHEN served_by <> 'teacher' THEN 'intent-classifier-01' END AS student_id,
  CASE WHEN served_by = 'shadow' THEN 'pair-' || k END AS pair_id,
  input,
  output,
  '{{"max_tokens":1024,"messages":[{{"content":' || to_json(input)::VARCHAR || ',"role":"user"}}],"model":"' || teacher_model
    || '","system":' || system_json || '}}' AS request_json,
  CASE WHEN output IS NOT NULL THEN '{{"content":[{{"text":' || to_json(output)::VARCHAR || ',"type":"text"}}],"role":"assistant"}}' END
    AS response_json,
  CAST(CASE WHEN failed THEN 529 ELSE 200 END AS INTEGER) AS status,
  CASE WHEN failed THEN 'overloaded_error: Overloaded' END AS error,
  task = 'extract-invoice' AND v % 2 = 0 AS stream,
  CASE WHEN output IS NOT NULL THEN 'end_turn' END AS stop_reason,
  CAST(input_tokens AS BIGINT) AS input_tokens,
  CAST(output_tokens AS BIGINT) AS output_tokens,
  CAST(0 AS BIGINT) AS cache_read_tokens,
  CAST(0 AS BIGINT) AS cache_write_5m_tokens,
  CAST(0 AS BIGINT) AS cache_write_1h_tokens,
  CASE WHEN served_by = 'student' THEN 0.0
       WHEN failed OR teacher_model = 'acme-llm-1' THEN NULL
       WHEN teacher_model = 'claude-sonnet-5-5' THEN (input_tokens * 2 + output_tokens * 10) / 1e6
       WHEN teacher_model = 'claude-haiku-4-5' THEN (input_tokens * 1 + output_tokens * 5) / 1e6
       ELSE (input_tokens * 5 + output_tokens * 25) / 1e6 END AS cost_usd,
  '2026-11-26' AS price_version,
  CASE WHEN served_by = 'student' THEN 0.05 ELSE 400 + hash(k, 31) % 1500 END::DOUBLE AS latency_ms,
  CASE WHEN task = 'extract-invoice' AND v % 2 = 0 THEN 300.0 END AS ttft_ms,
  md5(task || input) AS input_hash,
  CASE WHEN served_by = 'student' THEN 0.9 + (hash(k, 37) % 100) / 1000 END AS confidence,
  CASE WHEN task = 'legal-review' THEN '{{"stakes": "high"}}' ELSE '{{"team": "support"}}' END AS metadata
FROM o
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000, KV_METADATA {{'distill.schema': 'examples/1'}})
"""
    )


def generate(rows: int) -> Path:
    """A store of `rows` calls under bench/out/, reused when it is already complete."""
    store = OUT / f"store-{rows}"
    done = store / ".complete"
    if done.exists():
        return store
    shutil.rmtree(store, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    per_part = rows // (DAYS * PARTS_PER_DAY)
    started = time.perf_counter()
    for day in range(DAYS):
        d = con.execute(f"SELECT (DATE '{START}' + INTERVAL ({day}) DAY)::DATE").fetchone()[0]
        folder = store / f"date={d.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        for part in range(PARTS_PER_DAY):
            _generate_part(con, folder / f"part-{day:02d}{part:02d}.parquet", day, part, per_part, seed=rows)
        print(f"  generating {rows:,}: day {day + 1}/{DAYS} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    done.write_text(str(rows))
    return store


def with_copied_parts(store: Path, copies: int) -> Path:
    """A store of the same parts (hard links) plus `copies` of them again under other names: repeated ids."""
    out = store.with_name(f"{store.name}-copied{copies}")
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    parts = sorted(store.rglob("*.parquet"))
    for part in parts:
        (out / part.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(part, out / part.parent.name / part.name)
    for part in parts[:: max(1, len(parts) // copies)][:copies]:
        os.link(part, out / part.parent.name / f"copy-{part.name}")
    (out / ".complete").write_text(str(copies))
    return out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def run_report(store: Path) -> tuple[float, int, float, dict]:
    """Wall seconds, peak RSS (KB) and CPU seconds (user + system) of one `distill report --format json` process."""
    cmd = [sys.executable, "-m", "distill_cli", "report", str(store), "--format", "json"]
    time_bin = shutil.which("time") or "/usr/bin/time"
    env = {**os.environ, "NO_COLOR": "1"}
    if os.path.exists(time_bin):
        started = time.perf_counter()
        proc = subprocess.run([time_bin, "-f", "%M %U %S", *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        peak, user, system = proc.stderr.strip().splitlines()[-1].split()
        peak_kb, cpu = int(peak), float(user) + float(system)
    else:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # ru_maxrss of children is the largest so far: exact for the first run, an upper bound after.
        peak_kb = after.ru_maxrss
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"report failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, peak_kb, cpu, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copied-parts", type=int, default=0, help="add N parts a second time (repeated ids)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for rows in sizes:
        started = time.perf_counter()
        store = generate(rows)
        if args.copied_parts:
            store = with_copied_parts(store, args.copied_parts)
        gen = time.perf_counter() - started
        load = os.getloadavg()[0]
        runs = [run_report(store) for _ in range(args.repeat)]
        best = min(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        cpu = min(r[2] for r in runs)
        report = runs[0][3]
        results.append((rows, best, peak))
        files = len(list(store.rglob("*.parquet")))
        print(
            f"{rows:>11,} rows  {files} parts  {du(store) / 1e6:7.1f} MB  "
            f"wall {best:5.2f} s (best of {args.repeat}: {', '.join(f'{r[0]:.2f}' for r in runs)})  "
            f"cpu {cpu:5.2f} s  peak RSS {peak / 1024:4.0f} MB  load {load:.1f}  "
            f"calls {report['totals']['calls']:,}  (store ready in {gen:.0f} s)"
        )
    base_python = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import distill_cli.cli; print(time.perf_counter() - t)"],
        capture_output=True, text=True,
    ).stdout.strip()
    print(f"import distill_cli.cli: {float(base_python):.2f} s")
    for (r0, t0, _), (r1, t1, _) in zip(results, results[1:]):
        print(f"{r0:,} -> {r1:,} rows: x{r1 / r0:.0f} rows, x{t1 / t0:.1f} time")


if __name__ == "__main__":
    main()
