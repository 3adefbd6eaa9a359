"""`build-student --after`: the next tier of a chain learns what the earlier tiers decline.

    tiers = load_after(["intent.student"], task)         # the earlier tiers, in order
    selection = select(stores, ..., salt=tiers[0].spec.split["salt"])   # their split
    residue, before, notes = residue_of(tiers, selection)  # what they decline, and what they do with the rest

The new tier shares the earlier tiers' split (same salt and holdout), so the chain's
held-out calls are theirs and no tier trains on another's held-out rows. It learns
only from the training rows every earlier tier declines. What a tier declines is
decided as it would decide on a call it never saw, because that is what the chain
will do on the gate's held-out calls:

- classifier: its cross-fit is refitted on the rows it was built from (the same
  rows, salt and settings give the same folds and out-of-fold scores, checked by
  its id) and its dev threshold applied; asked directly it would be sure of every
  row it was fitted on;
- cache: it answers a row only when the same input appears on another training row
  (leave one out); it has seen every training input;
- other local kinds: asked as they are.

LLM tiers are not asked (that would spend on every training call): put them last.
This module never prints and never writes a file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from distill_cli import canonical
from distill_cli.errors import InputError
from distill_cli.students.base import Student
from distill_cli.students.training import Before, Example, Selection, normalise, student_id

LLM_KINDS = ("few-shot", "optimized", "endpoint")
RULE = ("the training rows every earlier tier declines, as it would on unseen calls: a classifier's out-of-fold "
        "decisions, a cache's leave-one-out hits, other local kinds asked as they are")


def load_after(paths: list[str | Path], task: str | None, needed_by: str = "build-student --after") -> list[Student]:
    """The earlier tiers, in order: one task, one split, no LLM tier. InputError (exit 3) otherwise."""
    from distill_cli.students.registry import load_student

    tiers = [load_student(p, needed_by) for p in paths]
    for path, tier in zip(paths, tiers):
        if task is not None and tier.spec.task != task:
            raise InputError(
                f"--after {path}: student {tier.id} is for task {tier.spec.task!r}, not {task!r}: a chain's tiers share one task"
            )
        task = tier.spec.task
        problem = tier.split_problem()
        if problem:
            raise InputError(f"--after {path}: {problem}")
        if tier.spec.kind in LLM_KINDS:
            raise InputError(
                f"--after {path}: student {tier.id} is an LLM ({tier.spec.kind}); finding what it declines would ask it "
                "about every training call: put LLM tiers last"
            )
    first = tiers[0].spec.split
    for path, tier in zip(paths[1:], tiers[1:]):
        split = tier.spec.split
        if (split["salt"], split["holdout"]) != (first["salt"], first["holdout"]):
            raise InputError(
                f"--after {path}: student {tier.id} was split with another salt or holdout than {tiers[0].id}: "
                "the tiers of a chain built with --after share one split"
            )
    return tiers


def identity(tier: Student) -> dict:
    return {"id": tier.id, "kind": tier.spec.kind, "digest": tier.spec.digest}


def residue_of(tiers: list[Student], selection: Selection, say=lambda _msg: None) -> tuple[list[Example], Before, list[str]]:
    """(the training rows every tier declines, what the tiers do on the others, notes)."""
    remaining = list(selection.train)
    answered_by, agreeing, notes = [], 0, []
    for i, tier in enumerate(tiers):
        say(f"finding what {tier.id} declines on {len(remaining)} training rows")
        answers, agrees, note = _decisions(tier, remaining, selection, [identity(t) for t in tiers[:i]])
        if note:
            notes.append(note)
        answered_by.append(sum(answers))
        agreeing += sum(1 for a, ok in zip(answers, agrees) if a and ok)
        remaining = [e for e, a in zip(remaining, answers) if not a]
    rows = len(selection.train)
    before = Before(
        tiers=[{**identity(t), "answered": n} for t, n in zip(tiers, answered_by)], rows=rows,
        answered=rows - len(remaining), agreeing=agreeing, cost_per_call=_cost_per_call(tiers),
    )
    return remaining, before, notes


def after_record(before: Before, declined: int) -> dict:
    """What the new tier's spec records of the tiers it follows (built_from["after"])."""
    return {"tiers": [{k: t[k] for k in ("id", "kind", "digest")} for t in before.tiers], "train_rows": before.rows,
            "answered": [t["answered"] for t in before.tiers], "declined": declined, "rule": RULE}


def _decisions(tier: Student, examples: list[Example], selection: Selection, earlier: list[dict]):
    """(answers, agrees, note) of one tier on `examples`, the training rows the tiers before it declined."""
    if not examples:
        return [], [], None
    if tier.spec.kind == "classifier":
        from distill_cli.students import classifier

        built_from = tier.spec.built_from.get("after")
        rows = selection.restricted(examples, built_from) if built_from else selection.restricted(examples, None)
        same_earlier = [[t["id"], t["digest"]] for t in (built_from or {}).get("tiers", [])] == [[t["id"], t["digest"]] for t in earlier]
        if same_earlier and student_id("classifier", rows, classifier.settings_of(tier.spec)) == tier.id:
            answers, agrees = classifier.out_of_fold(tier, examples, selection.salt)
            return [bool(a) for a in answers], [bool(a) for a in agrees], None
        note = (f"{tier.id} was not built from these training rows (another store, seed or earlier tiers): "
                "it was asked as it is, and a classifier is surer of rows it was fitted on than of unseen calls")
        return *_asked(tier, examples), note
    if tier.spec.kind == "cache":
        return *_leave_one_out(examples), None
    return *_asked(tier, examples), None


def _asked(tier: Student, examples: list[Example]) -> tuple[list[bool], list[bool]]:
    answers, agrees = [], []
    for e in examples:
        try:
            got = tier.answer(e.request() or tier.request_for(e.input))
        except Exception:  # noqa: BLE001 - a failing tier passes the call on, as the chain does
            answers.append(False)
            agrees.append(False)
            continue
        answers.append(not got.declined)
        agrees.append(not got.declined and normalise(got.output) == normalise(e.output))
    return answers, agrees


def _leave_one_out(examples: list[Example]) -> tuple[list[bool], list[bool]]:
    """A cache on a row it had not seen: answered when another row has the same input, with their most common answer."""
    by_hash: dict[str, Counter] = {}
    hashes = [canonical.input_hash(e.request()) for e in examples]
    for h, e in zip(hashes, examples):
        by_hash.setdefault(h, Counter())[e.output] += 1
    answers, agrees = [], []
    for h, e in zip(hashes, examples):
        others = by_hash[h].copy()
        others[e.output] -= 1
        others = +others
        answers.append(bool(others))
        agrees.append(bool(others) and others.most_common(1)[0][0] == e.output)
    return answers, agrees


def _cost_per_call(tiers: list[Student]) -> float | None:
    """The earlier tiers' spend per call: local kinds cost nothing; anything else unknown (None)."""
    return 0.0 if all(t.spec.kind in ("classifier", "cache") for t in tiers) else None
