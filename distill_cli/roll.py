"""`python -m distill_cli.roll` (stdin: STORE, JOURNAL, SEGMENT, NUL-separated): one journal segment into
Parquet parts, at low priority.

A recording proxy's writer runs its rolls here rather than on one of its own
threads (`StoreWriter(roll_in="process")`): converting 10,000 rows takes a few
hundred milliseconds of CPU, and inside the proxy's process it competed with the
event loop for the GIL and for a core, which showed as the proxy's p99 latency.
Here it runs at the lowest CPU priority, so it takes what the proxy leaves.

The writer keeps the segment's file open and locked until this exits, then
removes the journal: the lock and crash semantics are the writer's, unchanged.
Exit 0 when the parts are on disk (or already were); otherwise the writer
converts the segment itself and reports what fails.
"""

from __future__ import annotations

import os
import sys


def _background_priority() -> None:
    """Lowest CPU priority: never real-time (inherited from a `chrt` parent), niceness 19."""
    try:
        if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: the niceness still applies
        pass
    try:
        os.nice(19)
    except OSError:
        pass


def main(fields: list[str]) -> int:
    if len(fields) != 3:
        print("usage: python -m distill_cli.roll, with STORE, JOURNAL and SEGMENT on stdin, NUL-separated", file=sys.stderr)
        return 2
    _background_priority()
    from distill_cli import store

    store_path, journal, segment = fields
    with open(journal, "rb") as f:
        table = store.journal_table(f.read())
    store.write_parts(store_path, table, segment)
    return 0


if __name__ == "__main__":
    sys.exit(main([os.fsdecode(field) for field in sys.stdin.buffer.read().split(b"\0")]))
