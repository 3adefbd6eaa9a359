"""Replay: answer a job's calls from a store's recorded teacher answers, without the network.

    replay = Replay.load("runs/", miss="error")
    recorded = replay.answer(call)            # an Outcome, or None when the store never saw this request

For offline CI of a job and for the demo. A call is matched by its API (`anthropic`
or `openai`) and `input_hash` (canonical.input_hash of the request, credentials
stripped, as the row of the recorded call was keyed): the same question with
another `model` or `stream` setting still matches. What the job gets is the
recorded `response_json`, as JSON, or re-streamed as the provider's events when
the job asked for a stream. Of several recorded answers to one request the
latest wins. Only answers the teacher gave (teacher, fallback and shadow rows)
that succeeded (status 200, no error) are replayed.

A miss is decided by the caller (router.py): `miss="error"` answers with a
404 in the provider's error shape (`miss_outcome`), which the job's SDK raises
as NotFoundError; `miss="live"` asks upstream instead. Rows of replayed calls,
hits and misses alike, carry `source=replay`; a live call after a miss is an
ordinary `proxy` row. Replayed rows keep the recorded usage, so they are priced
as the calls they replay would cost: the report of a replayed run shows what it
would have spent live.

Memory: every replayable answer is held in memory (one response_json per
distinct request). This module never touches the network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from distill_cli import canonical, store
from distill_cli.errors import InputError
from distill_cli.recorder.proxy import Call, Outcome
from distill_cli.recorder.responses import response_for

MISS_POLICIES = ("error", "live")
NEEDED_BY = "record --replay"
REPLAYABLE = """SELECT provider, input_hash, arg_max(response_json, ts) FROM examples
                WHERE COALESCE(served_by, 'teacher') IN ('teacher', 'fallback', 'shadow')
                  AND status = 200 AND error IS NULL AND response_json IS NOT NULL AND input_hash IS NOT NULL
                GROUP BY provider, input_hash"""


def request_hash(request: dict) -> str:
    """The input_hash the recorded row of this request carries."""
    return canonical.input_hash(canonical.strip_credentials(request))


class Replay:
    """Recorded answers by (API, input_hash)."""

    def __init__(self, source: str, answers: dict[tuple[str, str], str], *, miss: str = "error") -> None:
        if miss not in MISS_POLICIES:
            raise InputError(f"--replay-miss must be one of {', '.join(MISS_POLICIES)}, not {miss!r}")
        self.source = source
        self.answers = answers
        self.miss = miss
        self.hits = 0
        self.misses = 0

    @classmethod
    def load(cls, path: str | Path, *, miss: str = "error") -> Replay:
        """Read the replayable answers of a store (a directory of parts or one Parquet file)."""
        con = store.connect()
        store.examples_view(con, [path], NEEDED_BY)
        answers = {(provider, h): response for provider, h, response in con.execute(REPLAYABLE).fetchall()}
        if not answers and miss == "error":
            raise InputError(f"{path}: no recorded teacher answers to replay (every call would miss; see --replay-miss live)")
        return cls(str(path), answers, miss=miss)

    def __len__(self) -> int:
        return len(self.answers)

    def answer(self, call: Call) -> Outcome | None:
        """The recorded answer to `call` as the job asked for it, or None on a miss."""
        recorded = self.answers.get((call.api.name, request_hash(call.request)))
        if recorded is None:
            self.misses += 1
            return None
        self.hits += 1
        body = json.loads(recorded)
        latency = (time.monotonic() - call.started) * 1000
        return Outcome(
            response=response_for(call.api.shape, call.request, body),
            status=200,
            body=body,
            latency_ms=latency,
            ttft_ms=latency if call.request.get("stream") else None,
            columns={"source": "replay"},
        )

    def miss_outcome(self, call: Call) -> Outcome:
        """A provider-style 404 the job's SDK raises: this request was never recorded."""
        message = (
            f"distill replay: no recorded answer to this request in {self.source} "
            f"(input_hash {request_hash(call.request)}); record it first, or use --replay-miss live"
        )
        kind = "not_found_error" if call.api.name == "anthropic" else "invalid_request_error"
        return Outcome(
            response=call.api.error_response(404, kind, message),
            status=404,
            error=f"replay_miss: {message}",
            latency_ms=(time.monotonic() - call.started) * 1000,
            columns={"source": "replay"},
        )
