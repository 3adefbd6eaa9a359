"""Write support messages the student never trained on, one per line, for `make demo`'s job.

    python samples/demo_messages.py STUDENT STORE -n 300 -o messages.txt

They are the first N rows (by id) of the student's own held-out split of the
sample store (the rows `distill gate` scored), so each is new to the student and
each has a recorded teacher answer the demo's `--replay` finds. Messages that
would not come back unchanged from a line of a text file (leading or trailing
spaces, line breaks) are skipped: `support_job.py` strips its lines, and the
request must hash as recorded to replay.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill_cli.gate import select_held_out
from distill_cli.students import load_student


def held_out_messages(student_path: str, store: str, n: int) -> list[str]:
    student = load_student(student_path, "demo_messages.py")
    examples = select_held_out(student, [store]).examples
    fit = [e.input for e in examples if e.input and e.input == e.input.strip() and "\n" not in e.input and "\r" not in e.input]
    return fit[:n]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("store")
    parser.add_argument("-n", type=int, default=300, help="how many messages (default 300)")
    parser.add_argument("-o", "--out", required=True, help="the text file to write")
    args = parser.parse_args(argv)
    messages = held_out_messages(args.student, args.store, args.n)
    Path(args.out).write_text("".join(m + "\n" for m in messages), encoding="utf-8")
    print(f"wrote {len(messages)} held-out support messages to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
