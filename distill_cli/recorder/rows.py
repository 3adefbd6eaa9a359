"""A recorded call and its outcome -> an examples/1 row, with `--redact` applied.

Rows are built by calls.py (credentials stripped, priced) from the bodies only;
headers never reach a row. Redaction runs on the parsed bodies first, so the
JSON columns stay valid JSON and `input`/`output` are derived from masked text,
then once more over every stored text column, for a pattern that only matches
across JSON structure.
"""

from __future__ import annotations

import re
from typing import Iterable

from distill_cli import calls
from distill_cli.canonical import REDACTED
from distill_cli.errors import InputError
from distill_cli.prices import PriceTable
from distill_cli.recorder.proxy import Call, Outcome

TEXT_COLUMNS = ("input", "output", "request_json", "response_json", "error", "metadata")


class BadPattern(InputError):
    """A --redact pattern that is not a regular expression."""


class Redactor:
    """Masks every match of the user's patterns with [REDACTED]."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = []
        for pattern in patterns:
            try:
                self.patterns.append(re.compile(pattern))
            except re.error as e:
                raise BadPattern(f"{pattern!r} is not a regular expression ({e})") from None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def text(self, text: str | None) -> str | None:
        if text is None:
            return None
        for pattern in self.patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def value(self, obj):
        """A copy of a JSON value with every string (keys too) masked."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k): self.value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        return obj

    def row(self, row: dict) -> dict:
        for column in TEXT_COLUMNS:
            if isinstance(row.get(column), str):
                row[column] = self.text(row[column])
        return row


def call_row(call: Call, outcome: Outcome, *, prices: PriceTable, run_id: str, redactor: Redactor) -> dict:
    """The row of one proxied call (not yet completed: id/ts defaults are the store's)."""
    request, response, metadata = call.request, outcome.body, call.metadata
    error = outcome.error
    if redactor:
        request, response, metadata = redactor.value(request), redactor.value(response), redactor.value(metadata)
        error = redactor.text(error)
    row = call.api.row(
        request,
        response,
        prices=prices,
        status=outcome.status,
        error=error,
        task=call.task,
        endpoint=call.path,
        run_id=run_id,
        ts=call.ts,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        metadata=calls.metadata_json(metadata),
        **({"service_tier": call.service_tier} if call.service_tier else {}),
        **{"source": "proxy", **outcome.columns},  # a router's answer may say otherwise (source=replay)
    )
    return redactor.row(row) if redactor else row
