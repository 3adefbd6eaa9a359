"""The student interface, the student file format and the train/holdout split.

Every kind implements `answer(request) -> Answer`; the gate, the router and drift
use nothing else. `read_student_file` reads the spec and rows after checking the
file's `distill.schema`; `registry.load_student` hands them to the kind's loader.

A student file carries the digest of its content (`content_digest`: the spec and
every row), written when it is built and checked whenever it is read, so a file
edited after it was built is refused. The gate records the digest it certified;
the router, drift and report compare it with the file they are given.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    digest: str | None = None  # "sha256:<hex>" of the content (`content_digest`), set when the file is written

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudentSpec:
        """The spec in a file's footer; ValueError naming the field when one has the wrong type."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the spec is not a JSON object")
        for name in ("id", "kind", "task"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ValueError(f"spec field {name!r} must be a non-empty string")
        for name in ("teacher_model", "student_model", "digest"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ValueError(f"spec field {name!r} must be a string")
        for name in ("built_from", "split", "metrics", "params"):
            if not isinstance(data.get(name, {}), dict):
                raise ValueError(f"spec field {name!r} must be an object")
        threshold = data.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
        ):
            raise ValueError(f"spec field 'threshold' must be a finite number, not {threshold!r}")
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

    @property
    def endpoint(self) -> str | None:
        """The URL this student sends its inputs (and a key) to; None for a local student."""
        return None

    def split_problem(self) -> str | None:
        """Why the spec's train/holdout split cannot be used, or None."""
        split = self.spec.split or {}
        fraction = split.get("holdout")
        if not split.get("salt") or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            return (
                f"student {self.id}: its spec records no train/holdout split, so gate cannot tell its training rows "
                "from held-out ones and will not risk scoring it on rows it learned from; rebuild it with build-student"
            )
        return None

    def holds_out(self, example_id: str) -> bool:
        """Whether the student's split held this example out of its training (a chain: every tier did)."""
        return in_holdout(self.spec.split["salt"], example_id, self.spec.split["holdout"])

    def authorize(self, allowed: tuple[str, ...] = ()) -> None:
        """Refuse (InputError) an endpoint the user did not allow; local students have none."""


def in_holdout(salt: str, example_id: str, holdout: float) -> bool:
    """The split rule: an example is held out when sha256(salt:id), as a fraction of 2^64, is below `holdout`."""
    digest = hashlib.sha256(f"{salt}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def request_input(request: dict, provider: str = "anthropic") -> str:
    """The canonical input text of a request body of the given provider's shape."""
    if provider == "responses":
        return canonical.responses_input(request)
    return canonical.openai_input(request) if provider == "openai" else canonical.anthropic_input(request)


def write_student_file(path: str | Path, spec: StudentSpec, rows: pa.Table) -> Path:
    """Write a student file atomically, its content digest in the spec (`spec.digest` is set)."""
    spec.digest = content_digest(spec, rows)
    meta = {schemas.SCHEMA_KEY: schemas.STUDENT, SPEC_KEY: spec.to_json()}
    table = rows.replace_schema_metadata({**(rows.schema.metadata or {}), **{k.encode(): v.encode() for k, v in meta.items()}})
    return write_atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))


def read_student_file(path: str | Path, needed_by: str = "this command", *, verify: bool = True) -> tuple[StudentSpec, pa.Table]:
    """The spec and rows of a student file, after checking it is one and that its content matches its digest.

    `spec.digest` is the digest of the content read. A file written before content
    digests has none to check and is read as it is. `verify=False` skips the check
    (report names a mismatch instead of refusing).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory; {needed_by} needs a student file")
    schemas.check_kind(p, schemas.read_kind(p), "student", needed_by)
    try:
        table = pq.read_table(p)
        raw = json.loads(table.schema.metadata[SPEC_KEY.encode()].decode())
        spec = StudentSpec.from_json(json.dumps(raw))
    except (KeyError, ValueError, TypeError, pa.ArrowException) as e:
        raise InputError(f"{path}: student file is damaged ({e})") from None
    rows = table.replace_schema_metadata(None)
    digest = _digest(raw, rows)
    if verify and spec.digest is not None and spec.digest != digest:
        raise InputError(
            f"{path}: student file was changed after it was built (its content is {short_digest(digest)}, "
            f"built as {short_digest(spec.digest)}); rebuild it with distill build-student and gate it again"
        )
    spec.digest = digest
    return spec, rows


def content_digest(spec: StudentSpec, rows: pa.Table) -> str:
    """"sha256:<hex>" of a student's content: its spec (less the digest) and every value of every row.

    Computed from values, not file bytes, so it is the same however Parquet encodes
    them; any change to a setting, a threshold, a weight or a row changes it.
    """
    return _digest(json.loads(spec.to_json()), rows)


def short_digest(digest: str | None) -> str:
    return digest[:19] if digest else "no digest"


def _digest(spec_data: dict, rows: pa.Table) -> str:
    h = hashlib.sha256(b"distill student content 1\0")
    h.update(json.dumps({k: v for k, v in spec_data.items() if k != "digest"}, sort_keys=True).encode())
    h.update(f"\0{rows.num_rows}\0".encode())
    for name, column in zip(rows.column_names, rows.columns):
        h.update(f"{name}\0{_type_key(column.type)}\0".encode())
        _hash_values(h, column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    return "sha256:" + h.hexdigest()


def _type_key(t: pa.DataType) -> str:
    # Parquet renames a list's item field ("item" -> "element"): the digest names only what the values are.
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_type_key(t.value_type)}>"
    if pa.types.is_large_string(t):
        return "string"
    return str(t)


def _hash_values(h, array: pa.Array) -> None:
    import numpy as np  # here, not at the top: the recording proxy imports this module and never hashes
    import pyarrow.compute as pc

    t = array.type
    h.update(np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_).tobytes())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        h.update(np.asarray(pc.list_value_length(array).fill_null(0).to_numpy(), dtype="<i8").tobytes())
        _hash_values(h, pc.list_flatten(array))
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        values = array.fill_null(False if pa.types.is_boolean(t) else 0).to_numpy(zero_copy_only=False)
        h.update(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes())
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        # The lengths, then the bytes, read off the array's buffers (a Python loop costs 10x on a classifier's terms).
        filled = array.fill_null(b"" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else "")
        width = 8 if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else 4
        _, offsets, data = filled.buffers()
        bounds = np.frombuffer(offsets, dtype=f"<i{width}", count=len(filled) + 1, offset=filled.offset * width)
        h.update(np.diff(bounds).astype("<i8").tobytes())
        if data is not None:
            h.update(memoryview(data)[bounds[0] : bounds[-1]])
    else:
        h.update(json.dumps(array.to_pylist(), default=str).encode())
