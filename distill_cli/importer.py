"""`distill record --import`: JSONL logs a team already has -> example store rows.

Every line is parsed and checked before anything is written, so a `--strict`
import that finds a bad line leaves the store exactly as it was, and a lenient
one writes only good lines, all at once, as new parts.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distill_cli import calls, store
from distill_cli.errors import InputError
from distill_cli.prices import PriceTable


@dataclass
class ImportResult:
    file: str
    store: str
    imported: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, problem)
    tasks: Counter = field(default_factory=Counter)
    unknown_models: list[str] = field(default_factory=list)
    run_id: str = ""

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "store": self.store,
            "imported": self.imported,
            "skipped": len(self.skipped),
            "bad_lines": [{"line": n, "problem": p} for n, p in self.skipped],
            "tasks": dict(self.tasks),
            "unknown_models": self.unknown_models,
            "run_id": self.run_id,
        }


class BadLine(ValueError):
    pass


def parse_line(obj, *, prices: PriceTable, task: str | None, run_id: str) -> dict:
    """One JSON log record -> a completed row; BadLine says what is wrong with it."""
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    common = {"source": "import", "run_id": run_id}
    ts = obj.get("ts")
    if ts is not None:
        try:
            common["ts"] = store.to_micros(ts) if isinstance(ts, str) else None
        except ValueError:
            raise BadLine(f"ts {ts!r} is not ISO-8601") from None
        if common["ts"] is None:
            raise BadLine("ts must be an ISO-8601 string")
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadLine("metadata must be a JSON object")
    line_task = obj.get("task")
    if line_task is not None and not isinstance(line_task, str):
        raise BadLine("task must be a string")
    task = task or line_task

    if "request" in obj:
        request, response = obj.get("request"), obj.get("response")
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise BadLine("request must be a request body with a messages list")
        if not isinstance(response, dict):
            raise BadLine("response must be a response body object")
        status = obj.get("status", 200)
        if not isinstance(status, int):
            raise BadLine("status must be an integer")
        if response.get("type") == "message" or (response.get("type") == "error" and "choices" not in response):
            row = calls.anthropic_row(request, response, prices=prices, status=status, task=task, **common)
        elif "choices" in response or ("error" in response and response.get("type") != "error"):
            row = calls.openai_row(request, response, prices=prices, status=status, task=task, **common)
        else:
            raise BadLine("response is neither a Messages API message nor a chat completion")
        if row["error"] and status == 200:
            row["status"] = 500 if "choices" not in response else 400
    elif "input" in obj or "output" in obj:
        for key in ("input", "output", "model"):
            if not isinstance(obj.get(key), str):
                raise BadLine(f"flat form needs a string {key!r}")
        usage = obj.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise BadLine("usage must be a JSON object")
        row = calls.flat_row(obj, prices=prices, task=task, **common)
    else:
        raise BadLine('expected {"request", "response"} or {"input", "output", "model"}')
    row["metadata"] = calls.metadata_json(meta)
    try:
        return store.complete_row(row)
    except (ValueError, TypeError) as e:
        raise BadLine(str(e)) from None


def import_jsonl(
    store_path: str | Path,
    file: str | Path,
    *,
    prices: PriceTable,
    task: str | None = None,
    strict: bool = False,
) -> ImportResult:
    """Import a JSONL log into a store. With `strict`, any bad line raises InputError and nothing is written."""
    path = Path(file)
    run_id = store.new_id()
    result = ImportResult(file=str(file), store=str(store_path), run_id=run_id)
    rows: list[dict] = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{file}: is a directory; --import takes a JSONL file") from None
    except OSError as e:
        raise InputError(f"{file}: cannot read ({e.strerror})") from None
    with f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rows.append(parse_line(json.loads(raw), prices=prices, task=task, run_id=run_id))
            except (BadLine, UnicodeDecodeError, ValueError) as e:
                problem = str(e) if isinstance(e, BadLine) else f"not valid JSON ({str(e).splitlines()[0]})"
                if strict:
                    raise InputError(f"{file}: line {n}: {problem}") from None
                result.skipped.append((n, problem))
    if not rows and result.skipped:
        raise InputError(f"{file}: no importable lines ({len(result.skipped)} bad, first at line {result.skipped[0][0]}: {result.skipped[0][1]})")
    store.prepare_store(Path(store_path))
    store.append_rows(store_path, rows)
    result.imported = len(rows)
    result.tasks = Counter(r["task"] for r in rows)
    result.unknown_models = sorted(prices.unknown)
    return result
