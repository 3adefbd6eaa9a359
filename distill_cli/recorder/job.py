"""Running the recorder around a job (`distill record -- CMD`) or as a service (`--serve`).

The job inherits stdin/stdout/stderr and the environment, plus the two base
URLs. SIGTERM is forwarded to it; SIGINT too, unless it came from the terminal
(then the job, in the terminal's foreground process group, got it already and a
second one would interrupt its cleanup). The proxy keeps serving until the job
has exited, so calls the job makes while shutting down are still recorded.
Exit status: the job's own; 128+N if a signal N ended it; 127 / 126 when it
could not be started (not found / not executable), as a shell would.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from typing import Callable, Sequence

from distill_cli.errors import DistillError
from distill_cli.recorder.session import Recorder
from distill_cli.recorder.summary import RecordSummary

FORWARDED = (signal.SIGINT, signal.SIGTERM)


class JobNotStarted(DistillError):
    """The command after `--` could not be started."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _from_terminal(sig: int) -> bool:
    """Whether a SIGINT most likely came from the terminal to our whole foreground group."""
    if sig != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a function for the job's child process that has the kernel send it SIGTERM when the
    recorder dies, even by SIGKILL: its calls could no longer reach the proxy, so it must not run on
    orphaned. Elsewhere None. Resolved here, in the parent, so the child only makes one libc call.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    parent = os.getpid()

    def in_child() -> None:
        prctl(pr_set_pdeathsig, sigterm)
        if os.getppid() != parent:  # the recorder died between fork and prctl: as if just after
            os.kill(os.getpid(), sigterm)

    return in_child


def _settle_heap() -> None:
    """Leave what start-up allocated (modules, pyarrow, DuckDB, ...) out of garbage collection.

    Otherwise every full collection walks it all: a 75 ms pause of the proxy, every
    few thousand calls. This process is the recorder's own, so freezing is safe here
    (record_to, inside someone else's process, does not).
    """
    gc.collect()
    gc.freeze()


async def run_job(recorder: Recorder, command: Sequence[str], *, stdout=None) -> int:
    """Start the recorder, run `command` against it, stop the recorder; returns the job's exit status.

    `stdout`: where the job's standard output goes (default: ours); `--format json` sends it to stderr
    so that our stdout holds only the JSON summary.
    """
    await recorder.start()
    _settle_heap()
    try:
        env = {**os.environ, **recorder.env()}
        try:
            # No other Python thread runs yet (rolls start theirs later), so a preexec_fn is safe here.
            process = await asyncio.create_subprocess_exec(*command, env=env, stdout=stdout, preexec_fn=_die_with_parent())
        except FileNotFoundError:
            raise JobNotStarted(f"{command[0]}: command not found", 127) from None
        except PermissionError:
            raise JobNotStarted(f"{command[0]}: permission denied", 126) from None
        except OSError as e:
            raise JobNotStarted(f"{command[0]}: cannot run ({e.strerror or e})", 126) from None
        loop = asyncio.get_running_loop()

        def forward(sig: int) -> None:
            if process.returncode is None and not _from_terminal(sig):
                process.send_signal(sig)

        for sig in FORWARDED:
            loop.add_signal_handler(sig, forward, sig)
        try:
            status = await process.wait()
        finally:
            for sig in FORWARDED:
                loop.remove_signal_handler(sig)
    finally:
        await recorder.stop()
    status = status if status >= 0 else 128 - status
    recorder.summary.exit_status = status
    return status


async def serve(recorder: Recorder, on_ready: Callable[[Recorder], None]) -> RecordSummary:
    """Start the recorder, call `on_ready`, serve until SIGTERM/SIGINT, then stop cleanly."""
    await recorder.start()
    _settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        for sig in FORWARDED:
            loop.add_signal_handler(sig, stop.set)
        on_ready(recorder)
        await stop.wait()
    finally:
        for sig in FORWARDED:
            loop.remove_signal_handler(sig)
        await recorder.stop()
    return recorder.summary
