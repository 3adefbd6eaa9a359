"""Test data for drift: a student over the banking77 sample store, and the rows a router would write.

`traffic(...)` makes one simulated day of routed calls: student rows
(`served_by='student'`, `student_id`, `confidence`), fallback rows for declines
(`served_by='fallback'`), and shadow rows (`served_by='shadow'`, `pair_id` = the
student row's id) carrying the teacher's answer, optionally corrupted.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from distill_cli import canonical, store
from distill_cli.students import cache
from distill_cli.students.base import StudentSpec, in_holdout, write_student_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "samples"))

from support_job import build_request  # noqa: E402

TASK = "support-intent"
TEACHER = "claude-sonnet-5-5"
SALT = "d71f7d71f7d71f70"
HOLDOUT = 0.2
STUDENT_ID = "support-intent-test-student"
SAMPLE_END = datetime(2026, 11, 20, tzinfo=timezone.utc)  # the sample store's last day ends here
DEV_COVERAGE = 0.9

# Another domain's queries: what a support-intent student never saw.
_OTHER_DOMAIN = [
    "how long should I roast a {x} in the oven at {n} degrees",
    "what wine goes well with {x} for a dinner party of {n}",
    "can you suggest a {x} recipe that takes less than {n} minutes",
    "which hiking trail near the {x} is best for {n} year old kids",
    "is it safe to swim at the {x} beach when the water is {n} degrees",
    "my {x} plant has yellow leaves after {n} days what am I doing wrong",
    "what is the best way to train a {x} puppy that is {n} weeks old",
    "how many {x} seeds should I plant per {n} square feet of garden",
]
_OTHER_WORDS = ["chicken", "salmon", "tomato", "basil", "lake", "mountain", "fern", "labrador", "pumpkin", "lavender"]


@dataclass
class Query:
    text: str
    label: str


def holdout_queries(sample_store: Path, salt: str = SALT) -> tuple[list[Query], list[Query]]:
    """(held-out, training) queries of the sample store under the test student's split."""
    con = store.connect()
    store.examples_view(con, [sample_store], "test")
    held, train = [], []
    for id_, text, label in con.execute("SELECT id, input, output FROM examples ORDER BY id").fetchall():
        (held if in_holdout(salt, id_, HOLDOUT) else train).append(Query(text, label))
    return held, train


def other_domain(n: int, rng: random.Random) -> list[Query]:
    return [
        Query(rng.choice(_OTHER_DOMAIN).format(x=rng.choice(_OTHER_WORDS), n=rng.randint(2, 400)), "other")
        for _ in range(n)
    ]


def scrambled(queries: list[Query], rng: random.Random) -> list[Query]:
    """The same queries with the letters of every word shuffled."""
    def scramble(word: str) -> str:
        letters = list(word)
        rng.shuffle(letters)
        return "".join(letters)

    return [Query(" ".join(scramble(w) for w in q.text.split()), q.label) for q in queries]


def write_student(path: Path, *, student_id: str = STUDENT_ID, coverage: float | None = DEV_COVERAGE, **fields) -> Path:
    """A cache-kind student file of the support-intent task with the test split (drift reads only its spec)."""
    spec = StudentSpec(
        id=student_id,
        kind="cache",
        task=TASK,
        teacher_model=TEACHER,
        created=SAMPLE_END.isoformat(),
        built_from={"newest": SAMPLE_END.isoformat(), "stores": ["sample"]},
        split={"salt": SALT, "holdout": HOLDOUT, "rule": "sha256(salt:id) < holdout"},
        threshold=0.5,
        metrics={"coverage": coverage, "n_dev": 10_000} if coverage is not None else {},
    )
    for key, value in fields.items():
        setattr(spec, key, value)
    return write_student_file(path, spec, cache.rows_for({}))


def _row(query: Query, ts: datetime, **columns) -> dict:
    request = build_request(query.text)
    row = {
        "ts": ts,
        "task": TASK,
        "provider": "anthropic",
        "source": "proxy",
        "endpoint": "/v1/messages",
        "model": TEACHER,
        "input": query.text,
        "output": query.label,
        "request_json": canonical.dumps(request),
        "status": 200,
        "input_hash": canonical.input_hash(request),
        "cost_usd": 0.0021,
    }
    row.update(columns)
    return store.complete_row(row)


def traffic(
    day: datetime,
    queries: list[Query],
    rng: random.Random,
    *,
    student_id: str = STUDENT_ID,
    decline_rate: float = 1 - DEV_COVERAGE,
    shadow_rate: float = 0.5,
    wrong_shadow: float = 0.0,
    wrong_student: float = 0.0,
) -> list[dict]:
    """One day of routed calls over `queries`, as the router would record them."""
    rows = []
    for q in queries:
        ts = day + timedelta(seconds=rng.uniform(1, 86_399))
        if rng.random() < decline_rate:
            rows.append(_row(q, ts, served_by="fallback", student_id=student_id))
            continue
        answer = "wrong_intent" if rng.random() < wrong_student else q.label
        student_row = _row(q, ts, served_by="student", student_id=student_id, provider="student", model=student_id,
                           output=answer, confidence=round(rng.uniform(0.6, 1.0), 3), cost_usd=0.0, source="proxy")
        rows.append(student_row)
        if rng.random() < shadow_rate:
            teacher = "corrupted_intent" if rng.random() < wrong_shadow else q.label
            rows.append(_row(q, ts + timedelta(milliseconds=900), served_by="shadow", student_id=student_id,
                             pair_id=student_row["id"], output=teacher))
    return rows


def write_day(path: Path, rows: list[dict]) -> Path:
    store.prepare_store(path)
    store.append_rows(path, rows)
    return path


class Site:
    """A student file, the sample store plus a traffic store the router records to, and a drift log path."""

    def __init__(self, tmp_path: Path, sample_store: Path) -> None:
        self.student = write_student(tmp_path / "intent.student")
        self.traffic = tmp_path / "traffic"
        store.prepare_store(self.traffic)
        self.stores = [sample_store, self.traffic]
        self.log = tmp_path / "drift.parquet"

    def day(self, queries: list[Query], day: int, rng: random.Random, **kw) -> datetime:
        """Record simulated day `day` (0 = the day after the sample store ends); returns its end, when drift runs."""
        start = SAMPLE_END + timedelta(days=day)
        write_day(self.traffic, traffic(start, queries, rng, **kw))
        return start + timedelta(days=1)


# ---- fixtures shared by the drift test modules (a plugin of conftest.py) -----------------------------------


@pytest.fixture(scope="module")
def queries(sample_store):
    return holdout_queries(sample_store)


@pytest.fixture
def site(tmp_path, sample_store):
    return Site(tmp_path, sample_store)


def set_gated_at(path: Path, when: datetime) -> Path:
    """Rewrite a verdicts file's summary to say the gate ran at `when` (what orders gates and lifts demotions)."""
    import json

    import pyarrow.parquet as pq

    from distill_cli import schemas

    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    summary = json.loads(meta[schemas.SUMMARY_KEY.encode()])
    summary["gated_at"] = when.isoformat()
    meta[schemas.SUMMARY_KEY.encode()] = json.dumps(summary).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path

