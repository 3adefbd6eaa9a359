"""The student interface, the student file format and the train/holdout split.

Every kind implements `answer(request) -> Answer`; the gate, the router and drift
use nothing else. Kinds register a loader in `LOADERS`; `load_student` reads the
spec, checks the file's `distill.schema`, and hands the rows to the kind's loader.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli import canonical, schemas
from distill_cli.errors import DistillError, InputError
from distill_cli.files import write_atomically

SPEC_KEY = schemas.STUDENT_SPEC_KEY


class StudentError(DistillError):
    """A student failed to answer (an LLM student's provider error, a timeout). The router falls back."""


@dataclass
class Answer:
    """A student's answer to one request: `output` None means it declined."""

    output: str | None
    confidence: float | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    latency_ms: float = 0.0
    model: str | None = None  # the model that produced it (an LLM student's), else None
    reason: str | None = None  # why it declined, when it did

    @property
    def declined(self) -> bool:
        return self.output is None


@dataclass
class StudentSpec:
    """What a student is and how it was made; stored as JSON in the file's footer."""

    id: str
    kind: str
    task: str
    teacher_model: str | None
    provider: str = "anthropic"  # the request shape it was trained on
    student_model: str | None = None
    created: str = ""
    built_from: dict = field(default_factory=dict)  # store paths, row counts, newest ts
    split: dict = field(default_factory=dict)  # {"salt", "holdout", "rule"}
    threshold: float | None = None  # decline below this confidence
    metrics: dict = field(default_factory=dict)  # dev-split metrics
    params: dict = field(default_factory=dict)  # kind-specific settings (never credentials)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudentSpec:
        data = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Student:
    """Base of every kind. Subclasses implement `answer`; LLM kinds also override `answer_async`."""

    def __init__(self, spec: StudentSpec) -> None:
        self.spec = spec

    @property
    def id(self) -> str:
        return self.spec.id

    def answer(self, request: dict) -> Answer:
        raise NotImplementedError

    async def answer_async(self, request: dict) -> Answer:
        # Local students answer in microseconds: no thread hop.
        return self.answer(request)

    def answer_text(self, text: str) -> Answer:
        """Answer a bare input text, as the teacher's request would have carried it."""
        return self.answer(self.request_for(text))

    def request_for(self, text: str) -> dict:
        return {"messages": [{"role": "user", "content": text}]}


# A loader takes (spec, rows table, path) and returns a Student.
LOADERS: dict[str, Callable[[StudentSpec, pa.Table, Path], Student]] = {}


def in_holdout(salt: str, example_id: str, holdout: float) -> bool:
    """The split rule: an example is held out when sha256(salt:id), as a fraction of 2^64, is below `holdout`."""
    digest = hashlib.sha256(f"{salt}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def new_salt() -> str:
    return secrets.token_hex(8)


def request_input(request: dict, provider: str = "anthropic") -> str:
    """The canonical input text of a request body of the given provider's shape."""
    return canonical.openai_input(request) if provider == "openai" else canonical.anthropic_input(request)


def write_student_file(path: str | Path, spec: StudentSpec, rows: pa.Table) -> Path:
    """Write a student file atomically: a temporary name in the same directory, then rename."""
    meta = {schemas.SCHEMA_KEY: schemas.STUDENT, SPEC_KEY: spec.to_json()}
    table = rows.replace_schema_metadata({**(rows.schema.metadata or {}), **{k.encode(): v.encode() for k, v in meta.items()}})
    return write_atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))


def read_student_file(path: str | Path, needed_by: str = "this command") -> tuple[StudentSpec, pa.Table]:
    """The spec and rows of a student file, after checking it is one."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory; {needed_by} needs a student file")
    schemas.check_kind(p, schemas.read_kind(p), "student", needed_by)
    try:
        table = pq.read_table(p)
        spec = StudentSpec.from_json(table.schema.metadata[SPEC_KEY.encode()].decode())
    except (KeyError, ValueError, TypeError, pa.ArrowInvalid) as e:
        raise InputError(f"{path}: student file is damaged ({e})") from None
    return spec, table


def load_student(path: str | Path, needed_by: str = "this command") -> Student:
    """Load any kind of student; never executes code from the file."""
    started = time.perf_counter()
    spec, table = read_student_file(path, needed_by)
    _register_kinds()
    loader = LOADERS.get(spec.kind)
    if loader is None:
        raise InputError(f"{path}: unknown student kind {spec.kind!r}")
    student = loader(spec, table, Path(path))
    student.load_ms = (time.perf_counter() - started) * 1000
    return student


def _register_kinds() -> None:
    # Kinds register themselves on import; imported lazily so a classifier load never pays for the SDK.
    from distill_cli.students import cache, classifier, endpoint, few_shot  # noqa: F401

