"""`build-student` as a library verb: select the teacher's answers, split, pick a kind, build, write.

Selection and split are training.py's; each kind's module builds its own spec and
rows (registry.py lists the kinds). This module checks the options, chooses the
kind for `--kind auto` (classifier for a closed set of outputs, else few-shot),
and writes the file.

Nothing is written unless the whole build succeeds (`write_student_file` is atomic).
This module never prints.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from distill_cli import schemas
from distill_cli.errors import InputError, NotEnoughData
from distill_cli.files import check_output
from distill_cli.students.base import StudentSpec, write_student_file
from distill_cli.students.registry import BUILD_CHOICES, kind_module
from distill_cli.students.training import MIN_TRAINING, BuildContext, closed_set, select

TEACHER_SERVED = schemas.TEACHER_SERVED


@dataclass
class BuildResult:
    path: str
    kind: str
    why: str
    spec: StudentSpec
    seconds: float
    spent_usd: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "why": self.why, "seconds": round(self.seconds, 3),
            "spent_usd": self.spent_usd, "notes": self.notes, "spec": asdict(self.spec),
        }


def build_student(
    stores: Iterable[str | Path] | str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    kind: str = "auto",
    holdout: float = 0.2,
    min_agreement: float = 0.95,
    model: str | None = None,
    max_spend: float | None = None,
    seed: int = 0,
    embeddings: str = "auto",
    base_url: str | None = None,
    api_key_env: str | None = None,
    endpoint_api: str = "anthropic",
    shots: int | None = None,
    neighbours: int = 0,
    dev_calls: int | None = None,
    prices=None,
    progress: Callable[[str], None] | None = None,
    after: Iterable[str | Path] | str | Path | None = None,
) -> BuildResult:
    """Build one student from the teacher's answers in `stores` and write it to `out`.

    kind: auto | cache | classifier | few-shot | optimized | endpoint.
    embeddings (classifier): auto (use the extra when installed) | on | off.
    neighbours (few-shot, endpoint): nearest training examples added as demonstrations to each call.
    LLM kinds read their API key from the environment variable `api_key_env`
    (default ANTHROPIC_API_KEY, or OPENAI_API_KEY for an OpenAI endpoint) and never store it.
    after: student file(s), in chain order: build the next tier of that chain (students/after.py), on their
    split, from the training calls they all decline, its threshold certified for the whole chain;
    `holdout` and `seed` then give way to theirs.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    if kind not in BUILD_CHOICES:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(BUILD_CHOICES)}")
    if not 0 < min_agreement < 1:
        raise InputError(f"--min-agreement must be between 0 and 1 (exclusive), not {min_agreement}")
    if max_spend is not None and not 0 <= max_spend < math.inf:
        raise InputError(f"--max-spend must be a finite non-negative amount in USD, not {max_spend}")
    if kind == "optimized" and max_spend is None:
        raise InputError("--kind optimized needs --max-spend USD: the search stops there")
    if kind == "endpoint" and (not base_url or not model):
        raise InputError("--kind endpoint needs --base-url URL and --model NAME")
    check_output(out, "student", "build-student")
    if isinstance(stores, (str, Path)):
        stores = [stores]
    if isinstance(after, (str, Path)):
        after = [after]
    after = list(after or [])
    for earlier in after:
        if Path(earlier).exists() and Path(out).exists() and os.path.samefile(earlier, out):
            raise InputError(f"{out}: is the --after student {earlier}; the next tier needs a file of its own")
    notes: list[str] = []
    before = None
    if after:
        from distill_cli.students import after as chain_after

        tiers = chain_after.load_after(after, task)
        split = tiers[0].spec.split
        if (holdout, seed) != (split["holdout"], split.get("seed", seed)):
            notes.append(f"--after: the split is {tiers[0].id}'s (holdout {split['holdout']}, salt {split['salt']}), "
                         "not --holdout/--seed")
        say("reading the store")
        selection = select(stores, task=tiers[0].spec.task, holdout=split["holdout"], seed=split.get("seed", seed),
                           salt=split["salt"])
        residue, before, found = chain_after.residue_of(tiers, selection, say)
        notes += found
        if len(residue) < MIN_TRAINING:
            raise NotEnoughData(
                f"{', '.join(map(str, stores))}: collecting ({len(residue)}/{MIN_TRAINING}): the earlier tiers decline "
                f"{len(residue)} of {before.rows} training calls; the next tier needs at least {MIN_TRAINING}"
            )
        selection = selection.restricted(residue, chain_after.after_record(before, len(residue)))
        if len({e.output for e in residue}) < 2:
            raise NotEnoughData(f"every training call the earlier tiers decline has the same answer "
                                f"({residue[0].output[:60]!r}): nothing for a next tier to learn")
    else:
        say("reading the store")
        selection = select(stores, task=task, holdout=holdout, seed=seed)
    outputs = closed_set([e.output for e in selection.train])
    why = outputs.why
    if kind == "auto":
        kind = "classifier" if outputs.closed else "few-shot"
        why = f"{kind}: {outputs.why}"
    elif kind == "classifier" and not outputs.closed:
        raise InputError(f"--kind classifier needs a closed set of outputs, but {outputs.why}; try --kind few-shot")
    if prices is None:
        from distill_cli.prices import load_prices

        prices = load_prices()

    context = BuildContext(
        kind=kind, selection=selection, outputs=outputs, out=Path(out), min_agreement=min_agreement, model=model,
        max_spend=max_spend, embeddings=embeddings, base_url=base_url, api_key_env=api_key_env,
        endpoint_api=endpoint_api, shots=shots, neighbours=neighbours, dev_calls=dev_calls, prices=prices, say=say,
        before=before,
    )
    spec, rows, spent, built_notes = kind_module(kind).build(context)
    notes += built_notes
    if before is not None and "chain" not in spec.metrics:
        spec.metrics["chain"] = chain_estimate(spec, before, min_agreement)
    spec.metrics["build_seconds"] = round(time.perf_counter() - started, 2)
    say(f"writing {out}")
    write_student_file(out, spec, rows)
    return BuildResult(str(out), kind, why, spec, time.perf_counter() - started, spent, notes)


def chain_estimate(spec: StudentSpec, before, min_agreement: float) -> dict:
    """A tier with no threshold to choose (cache, LLM kinds): the chain's agreement on the dev rows, estimated.

    The earlier tiers' out-of-fold answers on every training row, plus this tier's measured agreement
    on the rows they decline (its dev sample) scaled to all of them.
    """
    from distill_cli import stats

    m = spec.metrics
    tiers = [*(t["id"] for t in before.tiers), spec.id]
    own = m.get("agreement")
    if own is None:  # a cache: it answers only repeats, exactly
        return {"tiers": tiers, "n_dev": before.rows, "answered_before": before.answered}
    k = before.agreeing + round(own * before.residue)
    return {
        "tiers": tiers, "n_dev": before.rows, "answered_before": before.answered,
        "agreement": round(k / before.rows, 4), "lower_bound": round(stats.wilson_lower(k, before.rows), 4),
        "min_agreement": min_agreement,
        "rule": "the earlier tiers' out-of-fold answers; this tier's dev agreement scaled to the rows they decline",
    }

