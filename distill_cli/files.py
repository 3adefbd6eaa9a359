"""Writing outputs: whole files that never replace an input.

Readers see the old file or the new one, never half of either; and a command
never overwrites a file of another kind or writes inside an example store.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable

from distill_cli import schemas
from distill_cli.errors import InputError


def write_atomically(path: str | Path, write: Callable) -> Path:
    """Call `write(binary file)` on a temporary name beside `path`, then rename it into place (or leave nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# What each kind of output is called in messages: the Parquet kinds, and the text files distill writes.
OUTPUT_NAMES = {
    **schemas.KIND_NAMES,
    "junit": "a JUnit XML report",
    "export": "a fine-tuning data file (JSONL)",
}
_HEAD = 1 << 16  # bytes read to recognise a text file's kind
_FIRST_LINE = 1 << 24  # longest first line of an export file read to recognise it


def check_output(path: str | Path, kind: str, who: str) -> Path:
    """Refuse (InputError) an output path whose writing would destroy an input; returns the path.

    `kind` is what the command writes (`student`, `verdicts`, `drift`, `junit`,
    `export`), `who` the command named in the message. Refused: a directory or
    other non-file; any path inside an example store directory (only writers of
    parts write there); an existing file of another kind (a store part, a student
    file, a text file). An empty file, or an earlier file of the same kind, may be
    replaced (atomically, by `write_atomically`).
    """
    path = Path(path)
    want = OUTPUT_NAMES[kind]
    found = enclosing_store(path)
    if found is not None:
        raise InputError(f"{path}: is inside the example store {found}; {who} never writes into a store")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; {who} needs a file name for {want}")
    if not path.exists():
        return path
    if not path.is_file():
        raise InputError(f"{path}: exists and is not a regular file; {who} will not overwrite it")
    if path.stat().st_size == 0:
        return path  # nothing to lose
    existing = file_kind(path)
    if existing == kind:
        return path
    what = OUTPUT_NAMES.get(existing) if existing else None
    if existing == "parquet":
        what = "a Parquet file distill did not write"
    if what:
        raise InputError(f"{path}: exists and is {what}, not {want}; {who} will not overwrite it")
    raise InputError(f"{path}: exists and is not {want}; {who} will not overwrite it")


def file_kind(path: str | Path) -> str | None:
    """What an existing file is: a `distill.schema` kind, `parquet` (untagged), `junit`, `export`, or None."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        if head.startswith(b"PAR1"):
            try:
                tag = schemas.read_kind(path)
            except InputError:
                return None  # a damaged Parquet file is still somebody's data
            return tag.partition("/")[0] if tag else "parquet"
        if b"<testsuites" in head and head.lstrip().startswith(b"<"):
            return "junit"
        f.seek(0)
        try:
            first = json.loads(f.readline(_FIRST_LINE))
        except ValueError:
            return None
    if isinstance(first, dict) and (isinstance(first.get("messages"), list) or {"prompt", "completion"} <= first.keys()):
        return "export"
    return None


def enclosing_store(path: str | Path) -> Path | None:
    """The example store directory `path` lies inside (following symlinks), or None."""
    from distill_cli.store import JOURNAL_DIR

    for parent in Path(path).resolve().parents:
        if (parent / JOURNAL_DIR).is_dir():
            return parent
        try:
            with os.scandir(parent) as entries:
                if any(e.name.startswith("date=") and e.is_dir() for e in entries):
                    return parent
        except OSError:
            continue
    return None
