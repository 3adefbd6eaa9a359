"""The window a drift run checks: `--since` as a duration or a moment, in UTC."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from distill_cli.errors import InputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def window_start(since: str | datetime, now: datetime) -> datetime:
    """The start of the window: `since` as a duration before `now` (`24h`, `90m`, `7d`, `2w`) or a moment (ISO-8601)."""
    if isinstance(since, datetime):
        start = since
    else:
        m = _DURATION.match(str(since))
        if m:
            return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()])
        try:
            start = datetime.fromisoformat(str(since).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"--since {since!r}: not a duration (24h, 90m, 7d, 2w) or an ISO-8601 time") from None
    start = utc(start)
    if start >= now:
        raise InputError(f"--since {since}: {start.isoformat()} is not before now ({now.isoformat()})")
    return start


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")

