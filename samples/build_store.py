"""Build the sample example store from BANKING77, as if recorded from `support_job.py`.

Every one of the 13,083 queries becomes one call of `claude-sonnet-5-5` with the
job's system prompt (the 77 intents) and the query as the user turn; the reference
intent stands in for the teacher's answer. Real token counts are unknowable
offline, so they are ESTIMATED (about 4 characters per token, plus the Messages
API's per-message overhead) and every row says so in `metadata`.

Timestamps are spread over the 14 days before 2026-11-20 and ids are seeded, so
the store is the same on every machine.

    python samples/build_store.py OUT_DIR
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from support_job import MODEL, SYSTEM, build_request  # noqa: E402

from distill_cli import calls, store  # noqa: E402
from distill_cli.prices import load_prices  # noqa: E402

TASK = "support-intent"
END = datetime(2026, 11, 20, tzinfo=timezone.utc)
DAYS = 14
TOKENS_NOTE = "estimated: ceil(chars/4) + 8 per message; real counts are unknowable offline"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def build(out: Path, seed: int = 77) -> int:
    rng = random.Random(seed)
    queries = []
    for split in ("train", "test"):
        with open(HERE / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as f:
            queries += [(row["text"], row["category"], split) for row in csv.DictReader(f)]
    rng.shuffle(queries)
    prices = load_prices()
    start = END - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / len(queries)
    system_tokens = estimate_tokens(SYSTEM) + 8
    rows = []
    for i, (text, intent, split) in enumerate(queries):
        ts = start + step * i
        request = build_request(text)
        response = {
            "id": f"msg_sample{i:05d}",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": intent}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": system_tokens + estimate_tokens(text) + 8, "output_tokens": estimate_tokens(intent)},
        }
        row = calls.anthropic_row(
            request,
            response,
            prices=prices,
            task=TASK,
            source="import",
            run_id="sample-banking77",
            latency_ms=round(rng.uniform(600, 1400), 1),
            metadata=json.dumps({"dataset": "banking77", "split": split, "tokens": TOKENS_NOTE}),
        )
        row["ts"] = ts
        # Seeded ULIDs: the hash split of a student built on this store is the same on every machine.
        ms = int(ts.timestamp() * 1000)
        n = (ms << 80) | rng.getrandbits(80)
        row["id"] = store.new_id_from_int(n)
        rows.append(store.complete_row(row))
    store.prepare_store(out)
    store.append_rows(out, rows)
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_store.py OUT_DIR")
    out = Path(sys.argv[1])
    if out.exists() and any(out.glob("date=*")):
        sys.exit(f"{out}: already holds a store; remove it first")
    n = build(out)
    print(f"built {out}: {n} calls of {MODEL}, task {TASK}", file=sys.stderr)
