"""The router: students answer the calls of their task, the teacher answers the rest.

    routes = load_routes(["intent.student"], verdicts=["gate.parquet"])
    router = Router(routes, shadow_rate=0.05)
    Recorder("runs/", router=router)          # or router.attach(proxy)

It is the proxy's `answer` step (proxy.py). For each recorded call:

  1. the task: `--task`, else header `x-distill-task`, else the request's fingerprint
     (as the row will say); no student for it, or header `x-distill-route: teacher`:
     the teacher answers (`served_by=teacher`);
  2. a demoted student (serving.py's marker; re-read at most every `recheck_seconds`)
     does not answer: the teacher does, and `warn` is told once. In a chain every
     tier's marker counts, and one demoted tier sends the whole chain's calls to the
     teacher: the gate certified the chain in its order, and the chain without that
     tier is another chain no gate certified. A passing gate of the chain newer than
     the demotion lifts it for the chain (the tier's own gate does not);
  3. the student answers within `student_timeout` seconds: a confident answer is
     written back as the provider's own response (responses.py) with `model` = the
     student's id and the student's real token counts, and recorded with
     `served_by=student`, `provider=student`, its confidence and cost; a decline, a
     StudentError (or any exception) or a timeout lets the teacher answer
     (`served_by=fallback`, `student_id` set). A chain (several students of one task, students/chain.py) is asked tier by
     tier, each tier within `student_timeout`; its rows name the tier that answered
     (`student_id`) and, in metadata `chain`, every tier asked and what it cost;
  4. a fraction `shadow_rate` of student answers (drawn from `rng`) is also sent
     to the teacher once the job has its answer (`Outcome.after`); that row is
     `served_by=shadow` with `pair_id` = the student row's id, for drift.

"The teacher" is upstream, or a store's recorded answers with `replay` (replay.py).

Gating (`load_routes`): a student serves only with a passing gate that certified
the content the file holds now (serving.py). The verdicts files looked at are those
given (`--verdicts`) and `<student file>.verdicts.parquet` when it exists; of those
naming the student's id, the newest file (by modification time) decides: a later
failing gate overrides an earlier pass. No such file, a failed gate, or a file whose
content changed since its gate: InputError (exit 3), unless `allow_ungated`. An LLM
student's endpoint must be a provider's or one in `allowed_endpoints` (endpoints.py).

This module never prints (warnings go to `warn`) and never exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from distill_cli import canonical
from distill_cli.errors import InputError
from distill_cli.recorder.proxy import Call, Outcome, Proxy
from distill_cli.recorder.replay import Replay
from distill_cli.recorder.responses import anthropic_message, openai_completion, response_for, responses_object
from distill_cli.serving import (
    VERDICTS_SUFFIX,
    DemotionInfo,
    GateRecord,
    content_problem,
    gate_files,
    is_demoted,
    latest_gate,
    read_summary,
)
from distill_cli.store import new_id
from distill_cli.students.base import Answer, Student, request_input
from distill_cli.students.chain import CHAIN_KEY, SEPARATOR, Chain, ChainAnswer
from distill_cli.students.registry import load_student

ROUTE_HEADER = "x-distill-route"
ROUTE_VALUES = ("auto", "teacher")
DEFAULT_SHADOW_RATE = 0.05
DEFAULT_STUDENT_TIMEOUT = 5.0  # seconds: an LLM student slower than this costs the job more than it saves
DEFAULT_RECHECK_SECONDS = 30.0  # how often demotion markers are re-read (a demotion is honoured within a minute)
NEEDED_BY = "record --student"


@dataclass
class TierStats:
    """What one tier of a chain did with the calls it was asked (a tier is asked only what earlier tiers left)."""

    student: str
    asked: int = 0
    answered: int = 0
    declined: int = 0
    errors: int = 0
    timeouts: int = 0


@dataclass
class RouteStats:
    """What one student (or chain) did in a session. A chain's `declined` counts calls every tier declined, its
    `errors` and `timeouts` calls whose last tier failed; `tiers` says what each tier did (empty for one student)."""

    served: int = 0
    declined: int = 0
    errors: int = 0
    timeouts: int = 0
    forced_teacher: int = 0  # x-distill-route: teacher
    while_demoted: int = 0  # calls the teacher answered because the student was demoted
    shadows: int = 0
    last_error: str | None = None
    tiers: list[TierStats] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return self.served + self.declined + self.errors + self.timeouts + self.forced_teacher + self.while_demoted


@dataclass
class Route:
    """A student serving one task."""

    student: Student
    path: Path
    gate: GateRecord | None  # None: serving ungated (--allow-ungated)
    verdicts: list[Path] = field(default_factory=list)  # what may lift a demotion
    demotion: DemotionInfo | None = None
    stats: RouteStats = field(default_factory=RouteStats)
    tier_paths: list[Path] = field(default_factory=list)  # a chain's: each tier's file, in order (demotion markers)

    def __post_init__(self) -> None:
        if isinstance(self.student, Chain) and not self.stats.tiers:
            self.stats.tiers = [TierStats(tier.id) for tier in self.student.tiers]

    @property
    def task(self) -> str:
        return self.student.spec.task

    async def ask(self, call: Call, tier_timeout: float | None = None) -> Answer:
        """The student's answer to a call, in the request shape it was trained on (a chain: each tier within
        `tier_timeout` seconds)."""
        student = self.student
        request = call.request
        if call.api.shape != student.spec.provider:  # a Responses call is no student's provider shape
            request = student.request_for(request_input(request, call.api.shape))
        if isinstance(student, Chain):
            return await student.answer_async(request, tier_timeout=tier_timeout)
        return await student.answer_async(request)

    def to_dict(self) -> dict:
        data = {
            "student": self.student.id,
            "file": str(self.path),
            "task": self.task,
            "gate": {k: v for k, v in dataclasses.asdict(self.gate).items() if k not in ("mtime", "gated_at")} if self.gate else None,
            "digest": self.student.spec.digest,
            "demoted": self.demotion.message if self.demotion else None,
            **dataclasses.asdict(self.stats),
        }
        if not isinstance(self.student, Chain):
            del data["tiers"]
        return data


def load_routes(
    student_paths: Iterable[str | Path],
    *,
    verdicts: Iterable[str | Path] = (),
    allow_ungated: bool = False,
    allowed_endpoints: tuple[str, ...] | list[str] = (),
    warn: Callable[[str], None] = lambda message: None,
) -> list[Route]:
    """Load the students and check each task's student (or chain) has a passing gate of its content.

    Several students of one task form a chain in the order given (students/chain.py): it
    serves only under a passing gate of that exact chain, in that order. InputError
    (exit 3) otherwise, unless `allow_ungated`.
    """
    verdicts = [Path(v) for v in verdicts]
    by_task: dict[str, list[tuple[Path, Student]]] = {}
    for path in map(Path, student_paths):
        student = load_student(path, NEEDED_BY, allowed_endpoints=allowed_endpoints)
        by_task.setdefault(student.spec.task, []).append((path, student))
    routes: list[Route] = []
    for members in by_task.values():
        paths = [p for p, _ in members]
        if len(paths) != len(set(paths)):
            raise InputError(f"{paths[0]}: given twice as --student; a chain names each student once")
        student = members[0][1] if len(members) == 1 else Chain([s for _, s in members])
        gate, considered = _gate_of(student, paths, verdicts, allow_ungated, warn)
        routes.append(Route(student, paths[0], gate, considered, tier_paths=paths if len(paths) > 1 else []))
    return routes


def _gate_of(student: Student, paths: list[Path], verdicts: list[Path], allow_ungated: bool, warn) -> tuple:
    """(the passing gate that certifies `student`'s content, or None when serving ungated; the verdicts looked at)."""
    path = paths[0]
    named = " ".join(map(str, paths))
    considered = gate_files(path, verdicts)
    gate = latest_gate(student.id, considered)
    changed = content_problem(named, student.id, student.spec.digest, gate) if gate and gate.passed else None
    if changed is not None:
        if not allow_ungated:
            raise InputError(f"{changed} (--allow-ungated overrides)")
        warn(f"Warning: {changed.split('; ')[0]}; serving it anyway (--allow-ungated)")
        return None, considered
    if gate is not None and gate.passed:
        return gate, considered
    if gate is None:
        beside = f"{path}{VERDICTS_SUFFIX}"
        where = ", ".join(map(str, considered)) or f"{beside} (not found)"
        short = f"{named}: student {student.id} has no passing gate"
        if len(paths) == 1:
            run = f"run `distill gate {named} STORE --verdicts {beside}` first"
        else:  # not beside the first file: that one holds the first student's own gate
            own = path.parent / ("+".join(p.name for p in paths) + VERDICTS_SUFFIX)
            run = f"run `distill gate {named} STORE --verdicts {own}` first and give it with --verdicts"
        problem = (
            f"{short} (no verdicts for it in {where}){_other_order(student, considered)}; {run}, or pass --allow-ungated"
        )
    else:
        short = f"{named}: student {student.id} failed its gate in {gate.verdicts}"
        problem = f"{short} ({gate.reason}); it may not serve (--allow-ungated overrides)"
    if not allow_ungated:
        raise InputError(problem)
    warn(f"Warning: {short}; serving it anyway (--allow-ungated)")
    return None, considered


def _other_order(student: Student, considered: list[Path]) -> str:
    """For a chain without a gate: "; FILE gates the same students in another order" when one does, else ""."""
    if not isinstance(student, Chain):
        return ""
    members = sorted(tier.id for tier in student.tiers)
    for path in considered:
        other = str(read_summary(path, "record --verdicts").get("student") or "")
        if other != student.id and sorted(other.split(SEPARATOR)) == members:
            return f"; {path} gates the same students in another order, {other}: a chain serves in the order its gate certified"
    return ""


# ---- routing -----------------------------------------------------------------------------------------------------


class Router:
    """The proxy's `answer` step: students first, the teacher (upstream or a replay) otherwise."""

    def __init__(
        self,
        routes: Iterable[Route] = (),
        *,
        replay: Replay | None = None,
        shadow_rate: float = DEFAULT_SHADOW_RATE,
        rng: random.Random | None = None,
        student_timeout: float = DEFAULT_STUDENT_TIMEOUT,
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        if not 0.0 <= shadow_rate <= 1.0:
            raise InputError(f"the shadow rate must be between 0 and 1, not {shadow_rate}")
        if not 0.0 < student_timeout < math.inf:
            raise InputError(f"the student timeout must be a finite number of seconds above 0, not {student_timeout}")
        if not 0.0 <= recheck_seconds < math.inf:
            raise InputError(f"the recheck interval must be a finite number of seconds, not {recheck_seconds}")
        self.routes = {route.task: route for route in routes}
        self.replay = replay
        self.shadow_rate = shadow_rate
        self.rng = rng or random.Random()
        self.student_timeout = student_timeout
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self.warn = warn
        self.proxy: Proxy | None = None
        self._next_check = clock() + recheck_seconds
        self.check_demotions()

    def attach(self, proxy: Proxy) -> Router:
        proxy.answer = self.answer
        self.proxy = proxy
        return self

    @property
    def student_ids(self) -> set[str]:
        """Every id a row's `model` may carry: each student's, and each tier's of a chain."""
        ids = {route.student.id for route in self.routes.values()}
        for route in self.routes.values():
            if isinstance(route.student, Chain):
                ids.update(tier.id for tier in route.student.tiers)
        return ids

    def to_dict(self) -> dict:
        data: dict = {"students": [route.to_dict() for route in self.routes.values()]}
        if self.replay is not None:
            data["replay"] = {"store": self.replay.source, "hits": self.replay.hits, "misses": self.replay.misses,
                              "miss": self.replay.miss}
        return data

    # -- demotion

    def check_demotions(self) -> None:
        """Re-read every student's demotion marker; tell `warn` what changed.

        A chain is demoted when any tier's marker (beside that tier's file, naming the tier) stands: the gate
        certified the chain whole, so it serves whole or not at all (`_demotion`).
        """
        for route in self.routes.values():
            demotion = _demotion(route)
            tiers = route.student.tiers if isinstance(route.student, Chain) else []
            if demotion is not None and route.demotion is None:
                who = f"The chain {route.student.id} does not serve; the teacher" if tiers else "The teacher"
                self.warn(f"Warning: {demotion.message}. {who} answers its calls.")
            elif demotion is None and route.demotion is not None:
                who = "Chain" if tiers else "Student"
                self.warn(f"{who} {route.student.id} is no longer demoted; it answers again.")
            route.demotion = demotion

    def _recheck_if_due(self) -> None:
        now = self.clock()
        if now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            self.check_demotions()

    # -- answering

    async def answer(self, call: Call, job) -> Outcome:
        asked = call.distill_headers.get(ROUTE_HEADER, "auto").strip().lower() or "auto"
        if asked not in ROUTE_VALUES:
            message = f"distill: header {ROUTE_HEADER} must be one of {', '.join(ROUTE_VALUES)}, not {asked!r}"
            return Outcome(response=call.api.error_response(400, "invalid_request_error", message), status=400,
                           error=f"invalid_request_error: {message}")
        route = self.routes.get(call.task or canonical.task_fingerprint(call.request, call.api.shape)) if self.routes else None
        if route is None:
            return await self.teacher(call, job)
        if asked == "teacher":
            route.stats.forced_teacher += 1
            return await self.teacher(call, job)
        self._recheck_if_due()
        if route.demotion is not None:
            route.stats.while_demoted += 1
            return await self.teacher(call, job)
        answer = await self._ask(route, call)
        if answer is None or answer.declined:
            _note_tiers(call, route, answer)
            outcome = await self.teacher(call, job)
            outcome.columns = {**outcome.columns, "served_by": "fallback", "student_id": _answering(route, answer),
                               "confidence": _declined_confidence(answer)}
            return outcome
        route.stats.served += 1
        return self._served(route, call, answer)

    async def _ask(self, route: Route, call: Call) -> Answer | None:
        """The student's answer; None when it failed or ran out of time (counted, and the teacher answers).

        A chain is given the timeout per tier (a slow tier passes the call on like a failed one); when its last
        tier failed, the answer is a declined ChainAnswer holding every attempt, so the row still names them.
        """
        stats = route.stats
        chain = isinstance(route.student, Chain)
        try:
            if chain:
                answer = await route.ask(call, tier_timeout=self.student_timeout)
            else:
                answer = await asyncio.wait_for(route.ask(call), self.student_timeout)
        except asyncio.TimeoutError:
            stats.timeouts += 1
            stats.last_error = f"no answer within {self.student_timeout * 1000:.0f} ms"
            return None
        except Exception as e:  # noqa: BLE001 - whatever a student does wrong, the job gets the teacher's answer
            attempts = getattr(e, "attempts", None) if chain else None
            if attempts:  # every tier declined or failed, the last one failed
                _count_tiers(stats, attempts)
                if attempts[-1].timed_out:
                    stats.timeouts += 1
                else:
                    stats.errors += 1
                return ChainAnswer(None, confidence=None, cost_usd=None, attempts=attempts)
            stats.errors += 1
            stats.last_error = canonical.mask_secrets(f"{type(e).__name__}: {e}")
            return None
        if isinstance(answer, ChainAnswer):
            _count_tiers(stats, answer.attempts)
        if answer.declined:
            stats.declined += 1
        return answer

    def _served(self, route: Route, call: Call, answer: Answer) -> Outcome:
        student_id = _answering(route, answer)
        _note_tiers(call, route, answer)
        build = {"anthropic": anthropic_message, "responses": responses_object}.get(call.api.shape, openai_completion)
        body = build(call.request, answer, student_id)
        latency = (time.monotonic() - call.started) * 1000
        row_id = new_id()
        outcome = Outcome(
            response=response_for(call.api.shape, call.request, body),
            status=200,
            body=body,
            latency_ms=latency,
            ttft_ms=latency if call.request.get("stream") else None,
            columns={"id": row_id, "served_by": "student", "student_id": student_id, "provider": "student",
                     "confidence": answer.confidence, "cost_usd": answer.cost_usd},
        )
        if self.shadow_rate and self.rng.random() < self.shadow_rate:
            outcome.after = lambda: self._shadow(route, call, row_id, student_id)
        return outcome

    async def teacher(self, call: Call, job) -> Outcome:
        """The teacher's answer: a replayed one, else (or on a live miss) upstream's. `job` None: nobody's."""
        if self.replay is not None:
            outcome = self.replay.answer(call)
            if outcome is not None:
                return outcome
            if self.replay.miss != "live":
                return self.replay.miss_outcome(call)
        return await self.proxy.forward(call, job)  # type: ignore[union-attr]

    async def _shadow(self, route: Route, call: Call, pair_id: str, student_id: str) -> None:
        """Ask the teacher the call a student answered, for nobody; record it paired with the student's row."""
        call = dataclasses.replace(call, ts=time.time(), started=time.monotonic(), metadata=_shadow_metadata(route, call.metadata))
        outcome = await self.teacher(call, None)
        outcome.columns = {**outcome.columns, "served_by": "shadow", "pair_id": pair_id, "student_id": student_id}
        route.stats.shadows += 1
        self.proxy.on_call(call, outcome)  # type: ignore[union-attr]


def _demotion(route: Route) -> DemotionInfo | None:
    """The demotion that stops a route: its student's, or in a chain the first demoted tier's (the whole chain stops)."""
    student = route.student
    if not isinstance(student, Chain):
        return is_demoted(route.path, student_id=student.id, verdicts=route.verdicts, digest=student.spec.digest)
    for path, tier in zip(route.tier_paths or [route.path], student.tiers):
        demotion = is_demoted(path, student_id=tier.id, verdicts=route.verdicts, digest=student.spec.digest,
                              gate_id=student.id)
        if demotion is not None:
            return demotion
    return None


def _answering(route: Route, answer: Answer | None) -> str:
    """The student a row names: a chain's tier that answered (or, when every tier declined, the last one asked)."""
    if isinstance(answer, ChainAnswer):
        if answer.student_id is not None:
            return answer.student_id
        if answer.attempts:
            return answer.attempts[-1].student_id
    if isinstance(route.student, Chain):
        return route.student.tiers[-1].id
    return route.student.id


def _declined_confidence(answer: Answer | None) -> float | None:
    """A fallback row's confidence: the declining student's; a chain's, that of the tier the row names (the last)."""
    if answer is None:
        return None
    if isinstance(answer, ChainAnswer):
        return answer.attempts[-1].confidence if answer.attempts else None
    return answer.confidence


def _count_tiers(stats: RouteStats, attempts: list) -> None:
    """Count what each tier of a chain did with one call; a tier's failure is the route's last error."""
    for attempt in attempts:
        tier = stats.tiers[attempt.tier]
        tier.asked += 1
        if attempt.error is not None:
            if attempt.timed_out:
                tier.timeouts += 1
            else:
                tier.errors += 1
            stats.last_error = canonical.mask_secrets(attempt.error)
        elif attempt.output is None:
            tier.declined += 1
        else:
            tier.answered += 1


def _shadow_metadata(route: Route, metadata: dict) -> dict:
    """A shadow row of a chain names the chain and the tier it checks; the tiers' attempts and costs stay on the
    row it pairs with (so summing them over rows counts each once)."""
    chain = metadata.get(CHAIN_KEY)
    if not isinstance(route.student, Chain) or not isinstance(chain, dict):
        return metadata
    return {**metadata, CHAIN_KEY: {"id": chain.get("id"), "tier": chain.get("tier")}}


def _note_tiers(call: Call, route: Route, answer: Answer | None) -> None:
    """A chain's row says in its metadata which tier answered and what every tier asked cost."""
    if not isinstance(route.student, Chain):
        return
    attempts = answer.attempts if isinstance(answer, ChainAnswer) else []
    tier = answer.tier if isinstance(answer, ChainAnswer) else None
    call.metadata = {**call.metadata, CHAIN_KEY: {"id": route.student.id, "tier": tier,
                                                  "tiers": [a.to_dict() for a in attempts]}}

