"""Store write throughput: journaled appends (~1 KB rows), bulk JSONL import (both paths), bytes on disk.

    python bench/store_write.py [--rows 200000] [--import-rows 200000]

Targets on the 2-core machine: >= 20,000 journaled rows/s, >= 100,000 imported rows/s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import tempfile
import time
from pathlib import Path

from distill_cli import store
from distill_cli.importer import import_jsonl
from distill_cli.prices import load_prices


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_kb_row(rng: random.Random, i: int) -> dict:
    words = " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(60))
    return {
        "task": "support-intent",
        "provider": "anthropic",
        "source": "proxy",
        "endpoint": "/v1/messages",
        "model": "claude-sonnet-5-5",
        "served_by": "teacher",
        "input": words[:400],
        "output": "card_arrival",
        "request_json": json.dumps({"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": words[:400]}]}),
        "status": 200,
        "stream": False,
        "input_tokens": 420,
        "output_tokens": 4,
        "cost_usd": 0.00088,  # 420 x $2 + 4 x $10 per million tokens (claude-sonnet-5-5)
        "price_version": "bench",
        "latency_ms": 812.5,
        "input_hash": f"{i:032x}",
    }


def bench_journaled(rows: int, tmp: Path) -> dict:
    rng = random.Random(1)
    data = [one_kb_row(rng, i) for i in range(rows)]
    size = len(json.dumps(store.complete_row(dict(data[0]))))
    s = tmp / "journaled"
    t = time.perf_counter()
    with store.StoreWriter(s) as w:
        for r in data:
            w.append(r)
    elapsed = time.perf_counter() - t
    return {"rows": rows, "row_bytes_json": size, "seconds": elapsed, "rows_per_s": rows / elapsed,
            "bytes_on_disk_per_million": du(s) / rows * 1_000_000}


def import_line(i: int, text: str, form: str) -> dict:
    """One line of a log: the flat form, plain or with a metadata object (which Python re-serialises)."""
    line = {"input": f"{text} {i}", "output": "card_arrival", "model": "claude-sonnet-5-5",
            "task": "support-intent", "usage": {"input_tokens": 420, "output_tokens": 4}}
    if form == "metadata":
        line["metadata"] = {"ticket": i, "queue": "cards"}
    return line


def bench_import(rows: int, tmp: Path, form: str = "flat") -> dict:
    rng = random.Random(2)
    f = tmp / f"calls-{form}.jsonl"
    with open(f, "w") as out:
        for i in range(rows):
            text = " ".join(rng.choice(["card", "refund", "where", "is", "my", "transfer", "pending", "fee"]) for _ in range(12))
            out.write(json.dumps(import_line(i, text, form)) + "\n")
    t = time.perf_counter()
    result = import_jsonl(tmp / f"imported-{form}", f, prices=load_prices())
    elapsed = time.perf_counter() - t
    assert result.imported == rows
    return {"rows": rows, "rows_per_s": rows / elapsed,
            "bytes_on_disk_per_million": du(tmp / f"imported-{form}") / rows * 1_000_000}


def bench_roll_stall(tmp: Path, rows: int = 10_000) -> dict:
    """Largest delay a roll of `rows` rows causes a 1 ms ticker on an event loop in the writing process."""
    import asyncio

    rng = random.Random(3)
    data = [one_kb_row(rng, i) for i in range(rows)]
    w = store.StoreWriter(tmp / "stall", roll_rows=rows)
    for r in data[:-1]:
        w.append(r)
    lags: list[float] = []

    async def main() -> float:
        async def ticker() -> None:
            end = time.perf_counter() + 2.0
            while time.perf_counter() < end:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - t - 0.001) * 1000)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.2)
        t = time.perf_counter()
        w.append(data[-1])  # the row that rolls the segment
        append_ms = (time.perf_counter() - t) * 1000
        await task
        return append_ms

    append_ms = asyncio.run(main())
    w.close()
    return {"rows": rows, "append_ms": append_ms, "max_lag_ms": max(lags)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--import-rows", type=int, default=200_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="distill-bench-"))
    try:
        j = bench_journaled(args.rows, tmp)
        print(f"journaled append: {j['rows']:,} rows of ~{j['row_bytes_json']} B JSON in {j['seconds']:.2f} s = "
              f"{j['rows_per_s']:,.0f} rows/s (target >= 20,000); {j['bytes_on_disk_per_million'] / 1e6:.1f} MB per million rows")
        i = bench_import(args.import_rows, tmp)
        print(f"bulk import (flat JSONL, {i['rows']:,} rows): {i['rows_per_s']:,.0f} rows/s (target >= 100,000); "
              f"{i['bytes_on_disk_per_million'] / 1e6:.1f} MB per million rows")
        m = bench_import(args.import_rows, tmp, form="metadata")
        print(f"bulk import (flat JSONL with a distinct metadata object on every line): "
              f"{m['rows_per_s']:,.0f} rows/s")
        r = bench_roll_stall(tmp)
        print(f"roll of {r['rows']:,} rows: the append that rolls returned in {r['append_ms']:.2f} ms; "
              f"largest delay of a 1 ms event-loop ticker meanwhile {r['max_lag_ms']:.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
