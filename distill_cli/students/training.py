"""What every kind's builder starts from: the teacher's answers for one task, split, and the spec they share.

Selection: the task's rows the teacher answered (`served_by` teacher, fallback or
shadow) with status 200 and an output. Split: an example is held out when
sha256(salt:id) falls below `holdout` (`base.in_holdout`); the salt comes from
`seed`, so the same store and seed give the same split, the same student and the
same predictions, and the salt is stored in the spec for `gate` to recompute.
Holdout rows are counted, never read further.

Kind modules (cache.py, classifier.py, few_shot.py, endpoint.py) import this
module; it imports none of them. It never writes a file and never prints.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from distill_cli import canonical, schemas, store
from distill_cli.errors import InputError, NotEnoughData
from distill_cli.students.base import StudentSpec, in_holdout

MIN_TRAINING = 100
MIN_HOLDOUT = 100  # the gate's default --min-examples: the threshold is certified for at least this many

# The closed-set rule: outputs are normalised (surrounding whitespace dropped, inner runs collapsed);
# those seen at least CLOSED_SET_MIN_COUNT times are the candidate classes; the outputs form a closed set
# when there are at most CLOSED_SET_MAX of them and they cover at least CLOSED_SET_COVERAGE of the rows.
CLOSED_SET_MAX = 200
CLOSED_SET_COVERAGE = 0.98
CLOSED_SET_MIN_COUNT = 3
# `normalise` in SQL (DuckDB's RE2), for readers that count outputs in the store: every character
# Python's str.split() splits on, runs collapsed to one space, the ends trimmed.
_SPACE_CLASS = r"[\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"

SPLIT_RULE = "held out when int(sha256(f'{salt}:{id}')[:8 bytes]) / 2**64 < holdout"


@dataclass
class Example:
    id: str
    input: str
    output: str
    request_json: str
    cost_usd: float | None
    output_tokens: int

    def request(self) -> dict:
        try:
            return json.loads(self.request_json or "{}")
        except ValueError:
            return {}


@dataclass
class Selection:
    """The task's teacher answers, split: `train` in id order; the holdout only counted."""

    task: str
    stores: list[str]
    teacher_model: str | None
    provider: str
    salt: str
    seed: int
    holdout: float
    train: list[Example]
    n_holdout: int
    teacher_cost_per_call: float | None
    newest: str | None
    # Set when this tier is built after others (`build-student --after`): `train` holds only the training rows
    # every earlier tier declines; {"tiers": [{"id", "kind", "digest"}], "train_rows", "declined", "rule"}.
    after: dict | None = None

    @property
    def split(self) -> dict:
        return {"salt": self.salt, "holdout": self.holdout, "seed": self.seed, "rule": SPLIT_RULE}

    def restricted(self, train: list[Example], after: dict) -> Selection:
        """The same selection (split, task, teacher) with only `train` left to learn from: the residue of `after`."""
        return replace(self, train=train, after=after)

    @property
    def system(self) -> str:
        """The teacher's instructions: the most common system prompt of the training requests."""
        systems = Counter(system_of(e.request(), self.provider) for e in self.train[:500])
        return systems.most_common(1)[0][0] if systems else ""


@dataclass
class ClosedSet:
    closed: bool  # see `is_closed`
    classes: list[str]  # the raw output that stands for each normalised one (its most frequent spelling)
    distinct: int  # distinct normalised outputs
    coverage: float  # share of rows whose output is one of `classes`
    why: str


def salt_for(seed: int) -> str:
    """The split salt of a seed: the same seed always splits a store the same way."""
    return hashlib.sha256(f"distill-split:{seed}".encode()).hexdigest()[:16]


def normalise(output: str) -> str:
    return " ".join(output.split())


def normalise_sql(column: str) -> str:
    """The SQL expression of `normalise(column)`."""
    return f"trim(regexp_replace({column}, '{_SPACE_CLASS}', ' ', 'g'))"


def system_of(request: dict, provider: str) -> str:
    return canonical.openai_system(request) if provider == "openai" else canonical.anthropic_system(request)


# ---- selection -------------------------------------------------------------------------------------------------


def select(stores: Iterable[str | Path], *, task: str | None, holdout: float, seed: int, salt: str | None = None) -> Selection:
    """The teacher's answers for one task, split into train and holdout; raises on anything unusable.

    `salt` (default: the seed's) reuses another student's split, as `build-student --after` does.
    """
    if not 0 < holdout < 1:
        raise InputError(f"--holdout must be between 0 and 1 (exclusive), not {holdout}")
    stores = [str(s) for s in stores]
    where = ", ".join(stores)
    con = store.connect()
    store.examples_view(con, stores, "build-student")
    teacher = schemas.teacher_answer_sql()
    tasks = store.store_tasks(con, stores, when_empty=f"collecting (0/{MIN_TRAINING})", teacher_answers=True)
    if task is None:
        if len(tasks) > 1:
            listed = store.task_listing(tasks, teacher_answers=True, limit=20)
            raise InputError(f"{where} holds several tasks; choose one with --task: {listed}")
        task = tasks[0].task
    else:
        store.check_task(task, tasks, stores, teacher_answers=True, limit=20)
    rows = con.execute(
        f"SELECT id, input, output, request_json, cost_usd, output_tokens, model, provider, ts "
        f"FROM examples WHERE task = ? AND {teacher} ORDER BY id",
        [task],
    ).fetchall()
    salt = salt or salt_for(seed)
    train, n_holdout, seen = [], 0, set()
    models, providers, costs, newest = Counter(), Counter(), [], None
    for id_, text, output, request_json, cost, out_tokens, model, provider, ts in rows:
        if id_ in seen:  # the same row in two stores given together
            continue
        seen.add(id_)
        models[model] += 1
        providers[provider] += 1
        if cost is not None:
            costs.append(cost)
        newest = ts if newest is None or (ts is not None and ts > newest) else newest
        if in_holdout(salt, id_, holdout):
            n_holdout += 1
        else:
            train.append(Example(id_, text or "", output, request_json or "", cost, int(out_tokens or 0)))
    if len(train) < MIN_TRAINING:
        raise NotEnoughData(
            f"{where}: collecting ({len(train)}/{MIN_TRAINING}): task {task!r} has {len(train)} teacher answers "
            f"outside the {holdout:.0%} holdout; a student needs at least {MIN_TRAINING}"
        )
    if not any(e.input.strip() for e in train):
        raise InputError(
            f"{where}: every input of task {task!r} is empty (no user text in the requests); nothing to learn from"
        )
    outputs = {e.output for e in train}
    if len(outputs) == 1:
        raise NotEnoughData(
            f"{where}: every one of the {len(train)} teacher answers of task {task!r} is the same "
            f"({next(iter(outputs))[:60]!r}); nothing to learn yet: record calls with different answers"
        )
    provider = providers.most_common(1)[0][0]
    return Selection(
        task=task, stores=stores, teacher_model=models.most_common(1)[0][0] if models else None,
        provider=provider if provider in ("anthropic", "openai") else "anthropic",
        salt=salt, seed=seed, holdout=holdout, train=train, n_holdout=n_holdout,
        teacher_cost_per_call=sum(costs) / len(costs) if costs else None,
        newest=newest.isoformat() if hasattr(newest, "isoformat") else None,
    )


def is_closed(frequent: int, coverage: float, *, min_classes: int = 2) -> bool:
    """The closed-set rule on counts: `frequent` outputs seen >= CLOSED_SET_MIN_COUNT times, covering `coverage` of the rows.

    A classifier needs two classes to tell apart; `min_classes=1` also takes one answer repeated throughout
    (a set exact matching can judge).
    """
    return min_classes <= frequent <= CLOSED_SET_MAX and coverage >= CLOSED_SET_COVERAGE


def closed_set(outputs: Sequence[str], *, min_classes: int = 2) -> ClosedSet:
    """Whether outputs form a small closed set (labels, routes, yes/no): the rule is at the top of this module."""
    counts = Counter(normalise(o) for o in outputs)
    spelling: dict[str, Counter] = {}
    for o in outputs:
        spelling.setdefault(normalise(o), Counter())[o] += 1
    frequent = [(norm, c) for norm, c in counts.most_common() if c >= CLOSED_SET_MIN_COUNT]
    covered = sum(c for _, c in frequent) / max(len(outputs), 1)
    # Each class answers with its most frequent spelling; on a tie, one without surrounding whitespace.
    classes = sorted(min(spelling[norm].items(), key=lambda kv: (-kv[1], kv[0] != kv[0].strip(), kv[0]))[0] for norm, _ in frequent)
    closed = is_closed(len(frequent), covered, min_classes=min_classes)
    if closed:
        why = (
            f"the teacher's outputs form a closed set: {len(frequent)} distinct answers cover {covered:.1%} of "
            f"{len(outputs)} training rows (rule: <= {CLOSED_SET_MAX} answers seen >= {CLOSED_SET_MIN_COUNT} times "
            f"covering >= {CLOSED_SET_COVERAGE:.0%})"
        )
    else:
        why = (
            f"the teacher's outputs are open-ended: {len(counts)} distinct answers, the {len(frequent)} seen "
            f">= {CLOSED_SET_MIN_COUNT} times cover {covered:.1%} of {len(outputs)} training rows (a closed set needs "
            f"<= {CLOSED_SET_MAX} covering >= {CLOSED_SET_COVERAGE:.0%})"
        )
    return ClosedSet(closed, classes, len(counts), covered, why)


# ---- building --------------------------------------------------------------------------------------------------


def student_id(kind: str, selection: Selection, settings: dict) -> str:
    """Deterministic: the same store, seed and settings give the same id."""
    h = hashlib.sha256()
    h.update(canonical.dumps([kind, selection.task, selection.salt, selection.holdout, settings]).encode())
    if selection.after:  # the tiers it follows: another chain, another student
        h.update(canonical.dumps([[t["id"], t["digest"]] for t in selection.after["tiers"]]).encode())
    for e in selection.train:
        h.update(f"{e.id}\0{e.output}\0".encode())
    return f"{selection.task}-{kind}-{h.hexdigest()[:10]}"


def base_spec(kind: str, selection: Selection, settings: dict) -> StudentSpec:
    built_from = {
        "stores": selection.stores,
        "teacher_rows": (selection.after["train_rows"] if selection.after else len(selection.train)) + selection.n_holdout,
        "train": len(selection.train),
        "holdout": selection.n_holdout,
        "newest": selection.newest,
        "teacher_cost_per_call": selection.teacher_cost_per_call,
    }
    if selection.after:
        built_from["after"] = selection.after
    return StudentSpec(
        id=student_id(kind, selection, settings),
        kind=kind,
        task=selection.task,
        teacher_model=selection.teacher_model,
        provider=selection.provider,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        built_from=built_from,
        split=selection.split,
    )


@dataclass
class Before:
    """What the earlier tiers of a chain do on the training split (their out-of-fold decisions where they have them).

    Of `rows` training rows they answer `answered`, `agreeing` of them as the teacher did; the rest
    (`rows - answered`, the selection's `train`) is what the new tier sees. `cost_per_call`: what they
    spend per call, on average over every call (None: unknown).
    """

    tiers: list[dict]  # {"id", "kind", "digest", "answered"}
    rows: int
    answered: int
    agreeing: int
    cost_per_call: float | None = 0.0

    @property
    def residue(self) -> int:
        return self.rows - self.answered


@dataclass
class BuildContext:
    """Everything a kind's `build(ctx)` needs: the options of `build_student` and the selection they apply to."""

    kind: str
    selection: Selection
    outputs: ClosedSet
    out: Path
    min_agreement: float
    model: str | None
    max_spend: float | None
    embeddings: str
    base_url: str | None
    api_key_env: str | None
    endpoint_api: str
    shots: int | None
    neighbours: int
    dev_calls: int | None
    prices: object
    say: Callable[[str], None]
    before: Before | None = None  # built after other tiers: what they do on the training rows

    @property
    def expected_holdout(self) -> int:
        return max(self.selection.n_holdout, MIN_HOLDOUT)
