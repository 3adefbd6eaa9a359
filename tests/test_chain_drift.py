"""drift on a chain's tiers: each tier's answers, shadow pairs and declines; its gate; its demotion stops the chain."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from drift_support import SAMPLE_END, TASK, _row, write_day, write_student  # queries, site: shared fixtures
from test_record_proxy import stored
from test_route import ToyStudent, ant, ask, routed, spec, write_verdicts

from distill_cli import schemas, serving, store
from distill_cli.drift import run_drift
from distill_cli.drift.queries import count_traffic
from distill_cli.errors import InputError
from distill_cli.recorder.router import Route, Router
from distill_cli.students.base import Answer, StudentError, read_student_file, request_input
from distill_cli.students.chain import Chain

CHAIN = "tier-a > tier-b"


def tiers(*attempts) -> str:
    """The router's metadata of a chain's row: (student_id, answered, error) per tier asked."""
    answered = [i for i, a in enumerate(attempts) if a[1]]
    return json.dumps({"chain": {"id": CHAIN, "tier": answered[0] if answered else None, "tiers": [
        {"tier": i, "student_id": s, "answered": ok, "cost_usd": None if e else 0.0, "error": e}
        for i, (s, ok, e) in enumerate(attempts)]}}, sort_keys=True)


A_YES, A_NO, A_ERR = ("tier-a", True, None), ("tier-a", False, None), ("tier-a", False, "tier-a: timed out upstream")
B_YES, B_NO = ("tier-b", True, None), ("tier-b", False, None)


def chain_day(path: Path, day: datetime, queries) -> Path:
    """A day of a chain's calls, cycling over 20: a answers 12 (every other one shadowed), a declines and b answers 5
    (the first 3 shadowed), both decline 2, a fails and b declines 1."""
    rows = []
    for i, q in enumerate(queries):
        ts = day + timedelta(seconds=60 * i + 1)
        k = i % 20
        if k < 17:
            student, meta = ("tier-a", tiers(A_YES)) if k < 12 else ("tier-b", tiers(A_NO, B_YES))
            served = _row(q, ts, served_by="student", student_id=student, provider="student", model=student,
                          confidence=0.9, cost_usd=0.0, metadata=meta)
            rows.append(served)
            if (k < 12 and k % 2 == 0) or 12 <= k < 15:  # the shadow copies its call's metadata
                rows.append(_row(q, ts + timedelta(seconds=1), served_by="shadow", student_id=student,
                                 pair_id=served["id"], metadata=meta))
        else:
            meta = tiers(A_NO, B_NO) if k < 19 else tiers(A_ERR, B_NO)
            rows.append(_row(q, ts, served_by="fallback", student_id="tier-b", metadata=meta))
    return write_day(path, rows)


@pytest.fixture
def chain_site(tmp_path, sample_store, queries):
    held, _ = queries
    traffic = chain_day(tmp_path / "traffic", SAMPLE_END, held[:200])  # 10 cycles of 20
    a = write_student(tmp_path / "a.student", student_id="tier-a", coverage=0.6)
    b = write_student(tmp_path / "b.student", student_id="tier-b", coverage=5 / 8)
    return a, b, [sample_store, traffic], SAMPLE_END + timedelta(days=1)


def test_each_tier_counts_its_answers_its_pairs_and_its_declines(chain_site):
    a, b, stores, now = chain_site
    first = run_drift(a, stores, now=now, since="24h", judge="exact")
    # a answered 12 in 20; it declined 7 (5 b answered, 2 both declined) and failed 1: all its declines.
    assert (first.answered, first.declined, first.pairs) == (120, 80, 60)
    assert not any("another student" in n for n in first.notes)
    second = run_drift(b, stores, now=now, since="24h", judge="exact")
    # b was asked 8 in 20: it answered 5 and declined 3; the 12 a answered never reached it.
    assert (second.answered, second.declined, second.pairs) == (50, 30, 30)
    assert f"120 calls in the window were answered by an earlier tier of chain {CHAIN} and never reached tier-b" in second.notes
    assert not any("another student" in n for n in second.notes)
    assert first.agreement == 1.0 and second.agreement == 1.0


def test_a_tier_gated_only_in_its_chain_is_checked_and_a_changed_one_refused(chain_site, tmp_path):
    a, b, stores, now = chain_site
    digests = [read_student_file(p)[0].digest for p in (a, b)]
    gate = chain_gate(tmp_path / "chain.parquet", digests)
    # No gate of tier-a's own, only the chain's: drift checks it.
    assert run_drift(a, stores, now=now, verdicts=[gate], judge="exact").answered == 120
    # The chain's gate certified other content of tier-a than its file holds now: refused, as a lone student's would be.
    changed = chain_gate(tmp_path / "changed.parquet", ["sha256:" + "0" * 64, digests[1]])
    with pytest.raises(InputError, match=r"student tier-a changed since it was gated in .*changed.parquet"):
        run_drift(a, stores, now=now, verdicts=[changed], judge="exact")
    # A failing chain gate certifies nothing, so there is nothing to compare.
    failed = chain_gate(tmp_path / "failed.parquet", ["sha256:" + "0" * 64, digests[1]], passed=False)
    assert run_drift(a, stores, now=now, verdicts=[failed], judge="exact").answered == 120


def chain_gate(path: Path, digests, *, passed: bool = True, chain: str = CHAIN) -> Path:
    ids = chain.split(" > ")
    summary = {"schema": "gate-summary/1", "student": chain, "student_kind": "chain", "task": TASK, "passed": passed,
               "reason": "passed" if passed else "failed", "student_digest": "sha256:" + "c" * 64,
               "gated_at": datetime.now(timezone.utc).isoformat(),
               "chain": [{"id": i, "kind": "cache", "digest": d} for i, d in zip(ids, digests)]}
    schema = schemas.tagged(schemas.VERDICTS_SCHEMA, schemas.VERDICTS, {schemas.SUMMARY_KEY: json.dumps(summary)})
    pq.write_table(schema.empty_table(), path)
    return path


# ---- the router: a chain's rows as drift reads them, and every tier's demotion ----------------------------------


class Tier(ToyStudent):
    """`easy` a answers; `hard` a declines, b answers; `harder` both decline; `error` both fail."""

    async def answer_async(self, request: dict) -> Answer:
        word = request_input(request).split()[0]
        first = self.spec.id == "toy-a"
        if word == "error":
            raise StudentError(f"{self.spec.id} upstream said 529")
        if word == "harder" or (word == "hard" and first):
            return Answer(None, confidence=0.2, cost_usd=0.0001, reason="unsure")
        return Answer(f"label-{self.spec.id}", confidence=0.9, cost_usd=0.0001)


def chain_route(tmp_path: Path) -> Route:
    paths = [tmp_path / "a.student", tmp_path / "b.student"]
    chain = Chain([Tier(spec("toy-a")), Tier(spec("toy-b"))])
    return Route(chain, paths[0], gate=None, tier_paths=paths)


def test_the_rows_a_chain_records_count_for_each_tier(tmp_path, fake_provider):
    route = chain_route(tmp_path)
    with routed(tmp_path, fake_provider, [route]) as (rec, _):
        client = ant(rec)
        for text in ("easy one", "hard two", "harder three", "error four"):
            client.messages.create(**ask(text))
    rows = {r["input"]: r for r in stored(tmp_path / "store")}
    failed = json.loads(rows["error four"]["metadata"])["chain"]
    # Every tier was asked and the last failed: the row still says what each did.
    assert rows["error four"]["served_by"] == "fallback" and rows["error four"]["student_id"] == "toy-b"
    assert [(t["student_id"], t["answered"], bool(t["error"])) for t in failed["tiers"]] == [("toy-a", False, True),
                                                                                           ("toy-b", False, True)]
    assert route.stats.errors == 1

    con = store.connect()
    store.examples_view(con, [tmp_path / "store"], "test")
    start, end = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)
    a = count_traffic(con, spec("toy-a"), start, end, start)
    assert (a.calls, a.answered, a.declined, a.other_students, a.earlier_tiers) == (4, 1, 3, {}, {})
    b = count_traffic(con, spec("toy-b"), start, end, start)
    assert (b.answered, b.declined, b.other_students, b.earlier_tiers) == (1, 2, {}, {"toy-a > toy-b": 1})


def demote(path: Path, student_id: str, when: datetime | None = None) -> None:
    serving.write_demotion(path, spec(student_id), when or datetime.now(timezone.utc), ["agreement fell"],
                           {"drifted": True})


@pytest.mark.parametrize("tier", ["toy-a", "toy-b"])
def test_a_demoted_tier_sends_the_whole_chain_to_the_teacher(tmp_path, fake_provider, tier):
    route = chain_route(tmp_path)
    demote(route.tier_paths[0 if tier == "toy-a" else 1], tier)
    warnings: list[str] = []
    with routed(tmp_path, fake_provider, [route], warn=warnings.append) as (rec, _):
        client = ant(rec)
        for text in ("easy one", "hard two"):
            client.messages.create(**ask(text))
    assert [r["served_by"] for r in stored(tmp_path / "store")] == ["teacher", "teacher"]
    assert route.stats.while_demoted == 2 and route.student.tiers[0].asked == [] and route.student.tiers[1].asked == []
    [warning] = warnings
    assert warning.startswith(f"Warning: student {tier} demoted at ")
    assert warning.endswith("The chain toy-a > toy-b does not serve; the teacher answers its calls.")


def test_only_a_newer_passing_gate_of_the_chain_lifts_a_tiers_demotion(tmp_path):
    route = chain_route(tmp_path)
    demote(route.tier_paths[1], "toy-b", when=datetime(2026, 1, 1, tzinfo=timezone.utc))
    router = Router([route])
    assert route.demotion is not None and route.demotion.student_id == "toy-b"
    # The tier's own passing gate does not license the chain again.
    route.verdicts.append(write_verdicts(tmp_path / "b.gate.parquet", "toy-b", passed=True))
    router.check_demotions()
    assert route.demotion is not None
    # A failing gate of the chain does not lift it; a passing one, newer than the demotion, does.
    route.verdicts.append(chain_gate(tmp_path / "chain1.parquet", [None, None], passed=False, chain="toy-a > toy-b"))
    router.check_demotions()
    assert route.demotion is not None
    route.verdicts.append(chain_gate(tmp_path / "chain2.parquet", [None, None], chain="toy-a > toy-b"))
    router.check_demotions()
    assert route.demotion is None
