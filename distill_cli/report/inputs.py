"""What `report` is given: the paths sorted by their `distill.schema`, and the `--since` and `--budget` options."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from distill_cli import remote, schemas
from distill_cli.errors import InputError

NEEDED_BY = "report"


# ---- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A spending limit: `amount` USD per `per` ("day" or "month", a month being 30 days)."""

    amount: float
    per: str


_BUDGET = re.compile(r"\$?\s*(\d+(?:\.\d+)?)\s*(?:usd)?\s*/\s*(day|d|month|mo|m)", re.IGNORECASE)
_DURATION = re.compile(r"(\d+)\s*(h|d|w)", re.IGNORECASE)


def parse_budget(text: str | Budget) -> Budget:
    """`50/day`, `$1000/month` -> Budget; ValueError otherwise."""
    if isinstance(text, Budget):
        return text
    m = _BUDGET.fullmatch(text.strip())
    if not m or not 0 < float(m.group(1)) < math.inf:
        raise ValueError(f"budget {text!r}: expected USD per day or month, like 50/day or 1000/month")
    return Budget(float(m.group(1)), "day" if m.group(2).lower() in ("day", "d") else "month")


def parse_since(text: str | datetime | date, now: datetime) -> datetime:
    """`7d`, `24h`, `2w`, an ISO date or datetime -> an aware UTC datetime; ValueError otherwise."""
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day, tzinfo=timezone.utc)
    m = _DURATION.fullmatch(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        return now - timedelta(hours=n if unit == "h" else 0, days=n if unit == "d" else 7 * n if unit == "w" else 0)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since {text!r}: expected a duration like 7d or 24h, or a date like 2026-11-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---- inputs ----------------------------------------------------------------------------------


@dataclass
class Inputs:
    stores: list = field(default_factory=list)  # Paths, or URIs of remote stores
    verdicts: list[Path] = field(default_factory=list)
    drift: list[Path] = field(default_factory=list)
    students: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: [str(p) for p in v] for k, v in self.__dict__.items()}


_READS = "report reads example stores, verdicts files, drift logs and student files"


def classify_inputs(paths: Iterable[str | Path]) -> Inputs:
    """Sort paths by their `distill.schema`: directories are stores, files by their footer tag."""
    found = Inputs()
    for raw in paths:
        if remote.is_remote(raw):  # a store in object storage (s3://, gs://, abfs://)
            found.stores.append(raw)
            continue
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{raw}: no such file or directory")
        if path.is_dir():
            found.stores.append(path)
            continue
        tag = schemas.read_kind(path)
        if tag is None:
            raise InputError(f"{path.name}: not a distill file (no {schemas.SCHEMA_KEY} tag); {_READS}")
        kind = tag.partition("/")[0]
        if kind not in schemas.KIND_NAMES:
            raise InputError(f"{path.name}: unknown kind {tag!r}; {_READS}")
        schemas.check_kind(path, tag, kind, NEEDED_BY)
        by_kind = {"examples": found.stores, "verdicts": found.verdicts, "drift": found.drift, "student": found.students}
        by_kind[kind].append(path)
    return found


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(sql_str(v) for v in values)
