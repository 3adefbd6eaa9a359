"""`build-student --export FORMAT`: fine-tuning data from the training split.

Only training rows are written (the split is the one a student built with the
same `--holdout` and `--seed` would use), so a model fine-tuned on the export and
served as an `endpoint` student can still be gated on the held-out rows. One JSON
object per line; the system prompt is each call's own.

- `openai`: chat fine-tuning, `{"messages": [system, user, assistant]}`.
- `anthropic`: Claude fine-tuning on Amazon Bedrock, `{"system": ..., "messages": [user, assistant]}`.
- `hf`: Hugging Face TRL conversational prompt-completion,
  `{"prompt": [system, user], "completion": [assistant]}`.

The file is written to a temporary name and renamed: nothing is left half-written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from distill_cli.errors import InputError
from distill_cli.files import check_output, write_atomically
from distill_cli.students.training import select, system_of

FORMATS = ("openai", "anthropic", "hf")


@dataclass
class ExportResult:
    path: str
    format: str
    task: str
    rows: int
    held_out: int
    split: dict

    def to_dict(self) -> dict:
        return asdict(self)


def record(fmt: str, system: str, text: str, output: str) -> dict:
    user = {"role": "user", "content": text}
    assistant = {"role": "assistant", "content": output}
    system_turn = [{"role": "system", "content": system}] if system else []
    if fmt == "openai":
        return {"messages": [*system_turn, user, assistant]}
    if fmt == "anthropic":
        return {**({"system": system} if system else {}), "messages": [user, assistant]}
    return {"prompt": [*system_turn, user], "completion": [assistant]}


def export_training(
    stores: Iterable[str | Path] | str | Path,
    out: str | Path,
    *,
    fmt: str,
    task: str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
) -> ExportResult:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    check_output(out, "export", "build-student --export")
    if isinstance(stores, (str, Path)):
        stores = [stores]
    selection = select(stores, task=task, holdout=holdout, seed=seed)
    def write(f) -> None:
        for e in selection.train:
            line = record(fmt, system_of(e.request(), selection.provider), e.input, e.output)
            f.write((json.dumps(line, ensure_ascii=False) + "\n").encode())

    write_atomically(out, write)
    return ExportResult(str(out), fmt, selection.task, len(selection.train), selection.n_holdout, selection.split)
