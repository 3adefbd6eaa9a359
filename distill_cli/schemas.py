"""Every Parquet schema distill writes, each tagged with its `distill.schema` version.

A file's kind is read from its footer (`distill.schema` = `<kind>/<version>`), never
guessed from its name or columns. Every kind is at version 1; a file of an older
version than this distill writes is refused, so a version bump that must keep old
files readable brings the code that upgrades them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distill_cli.errors import InputError

SCHEMA_KEY = "distill.schema"
# Footer keys carrying JSON beside the rows.
SUMMARY_KEY = "distill.summary"  # verdicts: the gate's summary object
STUDENT_SPEC_KEY = "distill.student"  # student files: the spec

EXAMPLES = "examples/1"
VERDICTS = "verdicts/1"
DRIFT = "drift/1"
STUDENT = "student/1"

# What each kind is called in messages: "gate.parquet is a verdicts file; ..."
KIND_NAMES = {
    "examples": "an example store",
    "verdicts": "a verdicts file",
    "drift": "a drift log",
    "student": "a student file",
}

# Example rows whose output is the teacher's own answer: what students learn from and are judged against.
TEACHER_SERVED = ("teacher", "fallback", "shadow")


def complete_answer_sql(alias: str | None = None) -> str:
    """SQL that holds for an example row carrying a whole answer: HTTP 200, an output, and no error.

    A stream cut mid-answer, or a call the job abandoned, keeps its partial output
    but records an error ("incomplete: ..."): such a row is never an answer.
    `alias` qualifies the columns (`complete_answer_sql("st")` -> `st.status = 200 ...`).
    """
    c = f"{alias}." if alias else ""
    return f"({c}status = 200 AND {c}output IS NOT NULL AND {c}error IS NULL)"


def teacher_answer_sql(alias: str | None = None) -> str:
    """SQL that holds for a teacher answer: a complete answer (see above) the teacher gave.

    The one definition of what a student learns from (build-student, --export), what
    a gate and drift judge it against, and what report sizes a task by.
    """
    c = f"{alias}." if alias else ""
    served = ", ".join(f"'{s}'" for s in TEACHER_SERVED)
    return f"({c}served_by IN ({served}) AND {complete_answer_sql(alias)})"

CURRENT = {s.split("/")[0]: int(s.split("/")[1]) for s in (EXAMPLES, VERDICTS, DRIFT, STUDENT)}

_ts = pa.timestamp("us", tz="UTC")

EXAMPLES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("ts", _ts),
        ("run_id", pa.string()),
        ("task", pa.string()),
        ("provider", pa.string()),
        ("source", pa.string()),
        ("endpoint", pa.string()),
        ("model", pa.string()),
        ("served_by", pa.string()),
        ("student_id", pa.string()),
        ("pair_id", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("request_json", pa.string()),
        ("response_json", pa.string()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("stream", pa.bool_()),
        ("stop_reason", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cache_read_tokens", pa.int64()),
        ("cache_write_5m_tokens", pa.int64()),
        ("cache_write_1h_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("price_version", pa.string()),
        ("latency_ms", pa.float64()),
        ("ttft_ms", pa.float64()),
        ("input_hash", pa.string()),
        ("confidence", pa.float64()),
        ("metadata", pa.string()),
    ],
    metadata={SCHEMA_KEY: EXAMPLES},
)

VERDICTS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("task", pa.string()),
        ("student_id", pa.string()),
        ("input", pa.string()),
        ("teacher_output", pa.string()),
        ("student_output", pa.string()),
        ("answered", pa.bool_()),
        ("agree", pa.bool_()),
        ("score", pa.float64()),
        ("judge", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("student_cost_usd", pa.float64()),
        ("latency_ms", pa.float64()),
        ("confidence", pa.float64()),
        ("tier", pa.int64()),  # a chain's tier that answered (0 = first); null for one student or a decline
    ],
    metadata={SCHEMA_KEY: VERDICTS},
)

DRIFT_SCHEMA = pa.schema(
    [
        ("ts", _ts),
        ("student_id", pa.string()),
        ("task", pa.string()),
        ("window_start", _ts),
        ("window_end", _ts),
        ("pairs", pa.int64()),
        ("agreeing", pa.int64()),
        ("agreement", pa.float64()),
        ("lower_bound", pa.float64()),
        ("upper_bound", pa.float64()),
        ("served", pa.int64()),
        ("decline_rate", pa.float64()),
        ("input_shift", pa.float64()),
        ("input_shift_threshold", pa.float64()),
        ("output_shift", pa.float64()),
        ("drifted", pa.bool_()),
        ("demoted", pa.bool_()),
        ("reasons", pa.string()),
    ],
    metadata={SCHEMA_KEY: DRIFT},
)


def tagged(schema: pa.Schema, kind: str, extra: dict[str, str] | None = None) -> pa.Schema:
    """`schema` with the `distill.schema` tag (and any extra key-value metadata)."""
    meta = dict(schema.metadata or {})
    meta[SCHEMA_KEY.encode()] = kind.encode()
    for k, v in (extra or {}).items():
        meta[k.encode()] = v.encode()
    return schema.with_metadata(meta)


def read_schema(path: str | Path, filesystem=None) -> pa.Schema:
    """The Arrow schema (with footer metadata) of one Parquet file; reads only the footer.

    Raises InputError naming the file when it is missing, truncated or not Parquet.
    """
    try:
        return pq.read_schema(str(path), filesystem=filesystem)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None


def kind_of(schema: pa.Schema) -> str | None:
    """The `distill.schema` tag in a file's footer, None when it has none."""
    tag = (schema.metadata or {}).get(SCHEMA_KEY.encode())
    return tag.decode() if tag else None


def read_kind(path: str | Path, filesystem=None) -> str | None:
    """The `distill.schema` tag of one Parquet file, None when it has none."""
    return kind_of(read_schema(path, filesystem))


def check_columns(path: str | Path, schema: pa.Schema, expected: pa.Schema) -> None:
    """Raise InputError naming the file and the columns it lacks."""
    missing = [n for n in expected.names if n not in schema.names]
    if missing:
        cols = ", ".join(repr(n) for n in missing)
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {cols} ({kind_of(expected)})")


def check_kind(path: str | Path, tag: str | None, wanted: str, needed_by: str) -> None:
    """Raise InputError unless `tag` is a readable version of kind `wanted`.

    `needed_by` names the command in the message: "gate.parquet is a verdicts
    file; build-student needs an example store".
    """
    name = Path(str(path)).name
    if tag is None:
        raise InputError(f"{name}: not a distill file (no {SCHEMA_KEY} tag); {needed_by} needs {KIND_NAMES[wanted]}")
    kind, _, version = tag.partition("/")
    if kind != wanted:
        what = KIND_NAMES.get(kind, f"a {kind!r} file")
        raise InputError(f"{name} is {what}; {needed_by} needs {KIND_NAMES[wanted]}")
    if not version.isdigit() or int(version) > CURRENT[kind]:
        raise InputError(
            f"{name}: {tag} is newer than this distill understands ({kind}/{CURRENT[kind]}); upgrade distill-cli"
        )
    if int(version) < CURRENT[kind]:
        raise InputError(f"{name}: {tag} has no upgrade path to {kind}/{CURRENT[kind]}")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
