"""A real job: classify support messages into banking intents with the `anthropic` SDK.

This is the kind of program distill wraps, unchanged:

    distill record --store runs/ --task support-intent -- python samples/support_job.py messages.txt

It reads one message per line and prints `intent<TAB>message` per line, then a
count. It knows nothing about distill: the SDK reads ANTHROPIC_BASE_URL, which
`distill record` points at its proxy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODEL = "claude-sonnet-5-5"  # claude-sonnet-4-5 until its end of life (2026-11-30)
INTENTS = json.loads((Path(__file__).parent / "banking77" / "categories.json").read_text())
SYSTEM = (
    "You classify customer messages for an online bank. Answer with exactly one intent "
    "label from the list below and nothing else.\n\nIntents:\n" + "\n".join(INTENTS)
)


def build_request(message: str) -> dict:
    """The Messages API request this job sends for one message."""
    return {"model": MODEL, "max_tokens": 16, "system": SYSTEM, "messages": [{"role": "user", "content": message}]}


def main(argv: list[str]) -> int:
    import anthropic

    if len(argv) != 2:
        print("usage: support_job.py MESSAGES.txt", file=sys.stderr)
        return 2
    messages = [line.strip() for line in Path(argv[1]).read_text().splitlines() if line.strip()]
    client = anthropic.Anthropic(max_retries=2)
    counts: dict[str, int] = {}
    for message in messages:
        reply = client.messages.create(**build_request(message))
        intent = "".join(block.text for block in reply.content if block.type == "text").strip()
        counts[intent] = counts.get(intent, 0) + 1
        print(f"{intent}\t{message}")
    print(f"classified {len(messages)} messages into {len(counts)} intents", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
