"""What checking a student file's content digest adds to loading it.

A student file carries the digest of its content (students/base.py), checked on
every read: `gate`, `record --student` and `drift` pay it once per process. This
measures, on the BANKING77 classifier student (bench/routing_latency.py builds it),
in one run and alternating: reading the Parquet file, computing the digest, and
`load_student` whole (read + digest check + the kind's loader).

    .venv/bin/python bench/student_load.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "samples"), str(ROOT / "bench")]

import pyarrow.parquet as pq  # noqa: E402
from routing_latency import prepared  # noqa: E402

from distill_cli import schemas  # noqa: E402
from distill_cli.students import load_student  # noqa: E402
from distill_cli.students.base import _digest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    _, student, _ = prepared()
    times: dict[str, list[float]] = {"read": [], "digest": [], "load_student": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        table = pq.read_table(student)
        times["read"].append(time.perf_counter() - started)
        spec = json.loads(table.schema.metadata[schemas.STUDENT_SPEC_KEY.encode()])
        rows = table.replace_schema_metadata(None)
        started = time.perf_counter()
        _digest(spec, rows)
        times["digest"].append(time.perf_counter() - started)
        started = time.perf_counter()
        load_student(student)
        times["load_student"].append(time.perf_counter() - started)
    size = student.stat().st_size / 1e6
    print(f"student file: {student.name}, {size:.1f} MB, {table.num_rows:,} rows; {args.rounds} rounds, median ms:")
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for name, ms in medians.items():
        print(f"  {name:<13} {ms:8.1f}")
    print(f"  the digest is {medians['digest'] / medians['load_student']:.0%} of load_student")


if __name__ == "__main__":
    main()
