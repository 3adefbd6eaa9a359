"""LLM students: the `few-shot` and `optimized` kinds, and the LLM student and builder endpoint.py uses.

A cheaper model is prompted with the teacher's instructions and demonstrations
of the teacher's answers. The static part (instructions + demonstrations) is one
system block marked `cache_control: ephemeral`, so after the first call it is
read from the prompt cache at a tenth of the input price; per-call
nearest-neighbour demonstrations (optional) go in the messages, after the cached
prefix. For a closed set of outputs an answer outside the set is declined (the
teacher answers instead); inside it the confidence is 1.0. For open-ended
outputs the model's answer is taken with confidence 0.5: there is no calibrated
probability for free text, and the gate judges it.

`optimized` searches instruction variants x demonstration sets x neighbours on
the dev fold by agreement with the teacher (successive halving), stopping before
`--max-spend` would be exceeded, and keeps the best prompt.

API keys are read from the environment variable named in the spec at call time
(providers.py: a `*_API_KEY` variable); they are never written to the file, a log
line or an error message. Each answer retries under providers.py's one policy,
one request per attempt (no SDK retries underneath). The file names
the endpoint, so before a first call the endpoint must pass endpoints.py's rule:
a provider's API host or one the user allowed.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from distill_cli import canonical, endpoints, providers, stats
from distill_cli.economics import SpendCap, cheapest_haiku, expected_reduction
from distill_cli.errors import InputError, ProviderError
from distill_cli.prices import Usage, load_prices
from distill_cli.providers import KEY_ENV_RE, RetryPolicy
from distill_cli.students.base import Answer, Student, StudentError, StudentSpec, request_input
from distill_cli.students.training import BuildContext, base_spec

DEFAULT_OPEN_SHOTS = 16
MAX_CLOSED_SHOTS = 200
POOL_SIZE = 2000  # training examples kept for nearest-neighbour demonstrations
DEV_CALLS = {"few-shot": 20, "optimized": 64, "endpoint": 20}
CONCURRENCY = 4
STUDENT_ATTEMPTS = 3  # requests for one answer, retries included

VARIANTS = {
    "examples": "Below are examples of this task answered correctly. Answer the next input the same way: "
    "the answer only, in the same format as the examples.",
    "strict": "You will receive one input. Reply with exactly the answer these examples would give it: same "
    "format, same wording, nothing before or after it.",
    "label": "Reply with exactly one of the allowed answers listed at the end, copied character for character, "
    "and nothing else.",
}

ROWS_SCHEMA = pa.schema([("part", pa.string()), ("input", pa.string()), ("output", pa.string())])


# ---- the prompt ------------------------------------------------------------------------------------------------


@dataclass
class Prompt:
    instructions: str  # the teacher's own system prompt
    variant: str
    demos: list[tuple[str, str]]
    classes: list[str] | None  # the closed set, when there is one
    neighbours: int = 0
    max_tokens: int = 256

    def system_text(self) -> str:
        parts = [self.instructions.strip()] if self.instructions.strip() else []
        parts.append(VARIANTS.get(self.variant, VARIANTS["examples"]))
        for text, answer in self.demos:
            parts.append(f"<example>\n<input>\n{text}\n</input>\n<answer>\n{answer}\n</answer>\n</example>")
        if self.classes:
            parts.append("Allowed answers:\n" + "\n".join(self.classes))
        return "\n\n".join(parts)


def _loose(text: str) -> str:
    return " ".join(text.strip().strip("\"'`.").casefold().split())


# ---- the student -----------------------------------------------------------------------------------------------


class LLMStudent(Student):
    """A student that asks a model: Anthropic Messages (the SDK) or an OpenAI-compatible chat API (aiohttp)."""

    def __init__(
        self,
        spec: StudentSpec,
        prompt: Prompt,
        pool: list[tuple[str, str]] | None = None,
        prices=None,
        allowed_endpoints: tuple[str, ...] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(spec)
        self._allowed = tuple(allowed_endpoints)
        self._authorized = False
        self.prompt = prompt
        self.params = spec.params
        self.model = spec.student_model or self.params.get("model")
        self.api = self.params.get("api", "anthropic")
        self.pool = pool or []
        self.prices = prices
        self._system = prompt.system_text()
        self._classes = set(prompt.classes or [])
        self._loose = {_loose(c): c for c in prompt.classes or []}
        self._index = None
        self._lock = threading.Lock()
        # As many requests as the SDK's own two retries used to make; the gate does not retry on top.
        self.retry = retry or RetryPolicy(attempts=STUDENT_ATTEMPTS)
        self._clients = providers.Clients("anthropic", self._key, base_url=self._base_url(), who=f"student {self.id}")

    # -- building a request

    def _neighbour_demos(self, text: str) -> list[tuple[str, str]]:
        if not self.prompt.neighbours or not self.pool:
            return []
        with self._lock:
            if self._index is None:
                from distill_cli.students.classifier import Featurizer

                featurizer = Featurizer.fit([t for t, _ in self.pool])
                self._index = (featurizer, featurizer.matrix([t for t, _ in self.pool]).T.tocsr())
        featurizer, matrix_t = self._index
        cols, vals = featurizer.row(text)
        sims = vals @ matrix_t[cols].toarray() if len(cols) else np.zeros(len(self.pool))
        best = np.argsort(-sims, kind="stable")[: self.prompt.neighbours]
        return [self.pool[i] for i in best[::-1]]  # most similar last, nearest the question

    def body(self, text: str) -> dict:
        turns = []
        for demo_in, demo_out in self._neighbour_demos(text):
            turns += [{"role": "user", "content": demo_in}, {"role": "assistant", "content": demo_out}]
        turns.append({"role": "user", "content": text})
        if self.api == "openai":
            return {"model": self.model, "max_tokens": self.prompt.max_tokens, "temperature": 0,
                    "messages": [{"role": "system", "content": self._system}, *turns]}
        return {
            "model": self.model, "max_tokens": self.prompt.max_tokens,
            "system": [{"type": "text", "text": self._system, "cache_control": {"type": "ephemeral"}}],
            "messages": turns,
        }

    # -- credentials and clients

    @property
    def key_env(self) -> str | None:
        """The variable the key is read from (never the key)."""
        name = self.params.get("api_key_env")
        if name:
            # The spec comes from a file: it must not be able to send, say, GITHUB_TOKEN to its endpoint.
            return providers.check_key_env(name, who=f"student {self.id}")
        return "ANTHROPIC_API_KEY" if self.api == "anthropic" else None

    @property
    def endpoint(self) -> str:
        """Where the calls go: the file's base URL, else the SDK's variable, else the provider's API host."""
        if self.api == "openai":
            return self._base_url() or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return self._base_url() or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"

    def _sends_key(self) -> bool:
        name = self.key_env
        if name and os.environ.get(name):
            return True
        # With no key of its own the Anthropic SDK sends what it finds: ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN.
        return self.api == "anthropic" and providers.read_key("anthropic", None, who=f"student {self.id}") is not None

    def authorize(self, allowed: tuple[str, ...] = ()) -> None:
        endpoints.check_allowed(self.endpoint, sends_key=self._sends_key(), given=(*self._allowed, *allowed),
                                who=f"student {self.id}")
        self._allowed = (*self._allowed, *allowed)
        self._authorized = True

    def _key(self) -> str | None:
        if not self._authorized:
            self.authorize()
        name = self.key_env
        key = providers.read_key(self.api, name, who=f"student {self.id}") if name else None
        if not key and self.params.get("key_required", True):
            raise StudentError(f"student {self.id}: environment variable {name} (the API key) is not set")
        return key

    def _base_url(self) -> str | None:
        return self.params.get("base_url") or None

    # -- answering: one request per attempt, retried under `self.retry`

    def answer(self, request: dict) -> Answer:
        if self.api == "openai":
            return asyncio.run(self.answer_async(request))
        import anthropic

        text = request_input(request, self.spec.provider)
        started = time.perf_counter()
        body = self.body(text)
        try:
            message = providers.retrying_sync(lambda: self._clients.sync_client().messages.create(**body), self.retry)
        except providers.Stopped as stopped:
            raise _student_error(self, stopped.error, stopped) from None
        except anthropic.APIError as e:
            raise _student_error(self, e) from None
        return self._from_anthropic(message, started)

    async def answer_async(self, request: dict) -> Answer:
        text = request_input(request, self.spec.provider)
        started = time.perf_counter()
        if self.api == "openai":
            return await self._openai(text, started)
        import anthropic

        body = self.body(text)
        try:
            message = await providers.retrying(lambda: self._clients.async_client().messages.create(**body), self.retry)
        except providers.Stopped as stopped:
            raise _student_error(self, stopped.error, stopped) from None
        except anthropic.APIError as e:
            raise _student_error(self, e) from None
        return self._from_anthropic(message, started)

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _from_anthropic(self, message, started: float) -> Answer:
        text = "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", "") == "text")
        return self._interpret(text, providers.usage_of("anthropic", message.usage), started)

    async def _openai(self, text: str, started: float) -> Answer:
        import aiohttp

        key = self._key()
        url = self.endpoint.rstrip("/") + "/chat/completions"
        body = self.body(text)
        try:
            payload = await providers.retrying(lambda: providers.post_json(url, body, key=key), self.retry)
        except providers.Stopped as stopped:
            raise _endpoint_error(self, url, stopped.error, stopped) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            raise _endpoint_error(self, url, e) from None
        output = canonical.openai_output(payload) or ""
        return self._interpret(output, providers.usage_of("openai", payload.get("usage")), started)

    def _interpret(self, text: str, usage: Usage, started: float) -> Answer:
        if self.prices is None:
            self.prices = load_prices()
        cost = providers.cost_of(self.prices, self.model, usage)
        common = dict(
            cost_usd=cost, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens, cache_write_5m_tokens=usage.cache_write_5m_tokens,
            latency_ms=(time.perf_counter() - started) * 1000, model=self.model,
        )
        output = text.strip()
        if not self._classes:
            return Answer(output, confidence=0.5, **common)
        if output in self._classes:
            return Answer(output, confidence=1.0, **common)
        if _loose(output) in self._loose:
            return Answer(self._loose[_loose(output)], confidence=1.0, **common)
        return Answer(
            None, confidence=0.0, reason=f"answer {output[:60]!r} is not one of the teacher's {len(self._classes)} outputs",
            **common,
        )


def _student_error(student: LLMStudent, e, stopped: providers.Stopped | None = None) -> StudentError:
    status = getattr(e, "status_code", None)
    where = f"{student.model} at {student._base_url()}" if student._base_url() else student.model
    message = canonical.mask_secrets(getattr(e, "message", None) or str(e))
    return _with_status(StudentError(f"student {student.id}: {where}: {status or type(e).__name__}: {message}"), status, stopped)


def _endpoint_error(student: LLMStudent, url: str, e, stopped: providers.Stopped | None = None) -> StudentError:
    if isinstance(e, providers.HTTPFailure):
        error = StudentError(f"student {student.id}: {url} answered {e.status_code}: {e.message}")
        return _with_status(error, e.status_code, stopped)
    error = StudentError(f"student {student.id}: {url}: {type(e).__name__}: {canonical.mask_secrets(str(e))}")
    return _with_status(error, None, stopped)


def _with_status(error: StudentError, status: int | None, stopped: providers.Stopped | None) -> StudentError:
    """The HTTP status for the caller, and whether this student's retry policy already stopped (the gate must not
    retry on top of it: one policy, one request per attempt)."""
    error.status = status
    error.headers = stopped.failure.headers if stopped else {}
    error.stopped = stopped.reason if stopped else None
    error.attempts = stopped.attempts if stopped else 1
    error.wait = stopped.wait if stopped else None  # the wait asked for, when it was too long to sleep through
    return error


# ---- files -----------------------------------------------------------------------------------------------------


def rows_for(prompt: Prompt, pool: Sequence[tuple[str, str]]) -> pa.Table:
    rows = [("instructions", prompt.instructions, None)]
    rows += [("demo", i, o) for i, o in prompt.demos]
    rows += [("class", None, c) for c in prompt.classes or []]
    rows += [("pool", i, o) for i, o in pool]
    return pa.table(
        {"part": [r[0] for r in rows], "input": [r[1] for r in rows], "output": [r[2] for r in rows]}, schema=ROWS_SCHEMA
    )


def prompt_from(spec: StudentSpec, table: pa.Table) -> tuple[Prompt, list[tuple[str, str]]]:
    instructions, demos, classes, pool = "", [], [], []
    for part, text, output in zip(table["part"].to_pylist(), table["input"].to_pylist(), table["output"].to_pylist()):
        if part == "instructions":
            instructions = text or ""
        elif part == "demo":
            demos.append((text, output))
        elif part == "class":
            classes.append(output)
        elif part == "pool":
            pool.append((text, output))
    p = spec.params
    prompt = Prompt(instructions, p.get("variant", "examples"), demos, classes or None, int(p.get("neighbours", 0)),
                    int(p.get("max_tokens", 256)))
    return prompt, pool


def load(spec: StudentSpec, table: pa.Table, path) -> LLMStudent:
    prompt, pool = prompt_from(spec, table)
    if spec.params.get("api", "anthropic") not in ("anthropic", "openai"):
        raise ValueError(f"api {spec.params.get('api')!r} is neither anthropic nor openai")
    return LLMStudent(spec, prompt, pool)



# ---- choosing demonstrations -----------------------------------------------------------------------------------


def choose_demos(examples: Sequence, classes: list[str] | None, shots: int | None, rng: random.Random) -> list[tuple[str, str]]:
    """Closed set: one example of every output (then diverse extras up to `shots`); open: `shots` diverse inputs."""
    usable = [e for e in examples if e.input.strip()]
    picked: list = []
    if classes:
        by_output: dict[str, list] = {}
        for e in usable:
            by_output.setdefault(e.output, []).append(e)
        for c in classes[:MAX_CLOSED_SHOTS]:
            if by_output.get(c):
                picked.append(rng.choice(by_output[c]))
        extra = max((shots or 0) - len(picked), 0)
    else:
        extra = shots or DEFAULT_OPEN_SHOTS
    if extra:
        chosen = {id(e) for e in picked}
        picked += diverse([e for e in usable if id(e) not in chosen], extra, rng)
    if shots is not None and len(picked) > shots:
        picked = picked[:shots]
    rng.shuffle(picked)
    return [(e.input, e.output) for e in picked]


def diverse(examples: Sequence, k: int, rng: random.Random) -> list:
    """k examples far apart in TF-IDF space (greedy farthest point from a random start)."""
    if len(examples) <= k:
        return list(examples)
    from distill_cli.students.classifier import Featurizer

    sample = rng.sample(list(examples), min(len(examples), POOL_SIZE))
    texts = [e.input for e in sample]
    x = Featurizer.fit(texts).matrix(texts)
    first = rng.randrange(len(sample))
    chosen = [first]
    nearest = np.asarray((x @ x[first].T).todense()).ravel()
    for _ in range(k - 1):
        nxt = int(np.argmin(nearest + np.isin(np.arange(len(sample)), chosen) * 10))
        chosen.append(nxt)
        nearest = np.maximum(nearest, np.asarray((x @ x[nxt].T).todense()).ravel())
    return [sample[i] for i in chosen]


# ---- measuring on the dev fold, within a spend cap --------------------------------------------------------------


def worst_case_cost(student: LLMStudent, text: str, prices) -> float | None:
    """An upper estimate of one call: every prompt token a cache write (3 chars a token), max_tokens out."""
    price = prices.lookup(student.model)
    if price is None:
        return None
    prompt_chars = len(student._system) + len(text) + sum(len(a) + len(b) for a, b in student._neighbour_demos(text))
    tokens_in = prompt_chars / 3 + 50
    return (tokens_in * max(price.cache_write_5m, price.input) + student.prompt.max_tokens * price.output) / 1e6


@dataclass
class Score:
    n: int = 0
    answered: int = 0
    agreeing: int = 0
    errors: int = 0
    cost: float = 0.0
    tokens: dict = field(default_factory=lambda: {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0})

    @property
    def agreement(self) -> float:
        """End to end: declined calls count as agreeing (the teacher answers them)."""
        return (self.agreeing + self.n - self.answered - self.errors) / self.n if self.n else 0.0

    def metrics(self, teacher_cost: float | None) -> dict:
        coverage = self.answered / self.n if self.n else 0.0
        k = self.agreeing + self.n - self.answered - self.errors
        cost_per_call = self.cost / self.n if self.n else None
        return {
            "n_dev": self.n,
            "coverage": round(coverage, 4),
            "agreement_answered": round(self.agreeing / self.answered, 4) if self.answered else None,
            "agreement": round(self.agreement, 4) if self.n else None,
            "lower_bound": round(stats.wilson_lower(k, self.n), 4) if self.n else None,
            "errors": self.errors,
            "student_cost_per_call": cost_per_call,
            "expected_cost_reduction": expected_reduction(coverage, cost_per_call, teacher_cost) if cost_per_call is not None else None,
            "dev_tokens": self.tokens,
        }


async def score(student: LLMStudent, examples: Sequence, budget: SpendCap, prices) -> Score:
    """Ask the student about each example (CONCURRENCY at a time) until the budget refuses a call."""
    result = Score()
    gate = asyncio.Semaphore(CONCURRENCY)
    stop = asyncio.Event()

    async def one(example) -> None:
        async with gate:
            if stop.is_set():
                return
            estimate = worst_case_cost(student, example.input, prices)
            if estimate is None and budget.cap is None:
                estimate = 0.0  # no cap to keep: an unpriced model is measured all the same
            elif estimate is None:
                raise InputError(f"no price known for model {student.model!r}: the spend cap cannot be kept; add it with --prices")
            if not budget.reserve(estimate):
                stop.set()
                return
            try:
                answer = await student.answer_async(student.request_for(example.input))
            except StudentError as e:
                budget.settle(estimate, 0.0)
                if getattr(e, "status", None) in (401, 403):
                    stop.set()
                    raise ProviderError(str(e)) from None
                result.n += 1
                result.errors += 1
                return
            budget.settle(estimate, answer.cost_usd)
            result.n += 1
            result.cost += answer.cost_usd or 0.0
            result.tokens["input"] += answer.input_tokens
            result.tokens["output"] += answer.output_tokens
            result.tokens["cache_read"] += answer.cache_read_tokens
            result.tokens["cache_write"] += answer.cache_write_5m_tokens
            if not answer.declined:
                result.answered += 1
                result.agreeing += answer.output.strip() == example.output.strip()

    # The first call writes the prompt cache; the rest read it.
    if examples:
        await one(examples[0])
    await asyncio.gather(*(one(e) for e in examples[1:]))
    return result


# ---- building --------------------------------------------------------------------------------------------------


def api_key_env(ctx: BuildContext, default: str) -> str:
    """The variable named by --api-key-env (a *_API_KEY one), else `default`."""
    if ctx.api_key_env:
        if not KEY_ENV_RE.match(ctx.api_key_env):
            raise InputError(f"--api-key-env {ctx.api_key_env}: name a *_API_KEY variable (e.g. VLLM_API_KEY)")
        return ctx.api_key_env
    return default


def _split(ctx: BuildContext):
    """Demonstrations come from folds 1..4 of the training split; fold 0 is the dev set they are scored on."""
    from distill_cli.students.classifier import fold_of

    sel = ctx.selection
    dev, rest = [], []
    for e in sel.train:
        (dev if fold_of(sel.salt, e.id) == 0 else rest).append(e)
    return dev, rest


def build(ctx: BuildContext):
    """few-shot | optimized: a Claude model through the Messages API: (spec, rows, spent, notes)."""
    return build_llm(ctx, api="anthropic", default_key_env="ANTHROPIC_API_KEY", key_required=True, default_shots=None)


def build_llm(ctx: BuildContext, *, api: str, default_key_env: str, key_required: bool, default_shots: int | None):
    """An LLM student of kind `ctx.kind` asking `api` (anthropic | openai).

    Its key is in --api-key-env, else `default_key_env`; `key_required` False lets it
    call without one. `default_shots`: demonstrations when --shots is not given
    (None: one per output, or 16).
    """
    kind = ctx.kind
    sel, prices = ctx.selection, ctx.prices
    model = ctx.model or cheapest_haiku(prices)
    env = api_key_env(ctx, default_key_env)
    if key_required and not os.environ.get(env):
        raise ProviderError(
            f"--kind {kind} calls {model} and needs an API key: set {env}"
            + ("" if ctx.api_key_env else " (or name another variable with --api-key-env)")
        )
    if ctx.shots is not None and ctx.shots < 0:
        raise InputError(f"--shots must be 0 or more, not {ctx.shots}")
    rng = random.Random(sel.salt)
    classes = ctx.outputs.classes if ctx.outputs.closed else None
    dev, rest = _split(ctx)
    max_out = max((e.output_tokens for e in sel.train), default=64)
    max_tokens = min(max(16, 2 * max_out + 16), 4096)
    pool = [(e.input, e.output) for e in rng.sample(rest, min(len(rest), POOL_SIZE))]
    params = {
        "api": api,
        "model": model,
        "base_url": ctx.base_url,
        "api_key_env": env,
        "key_required": key_required,
        "max_tokens": max_tokens,
    }
    allowed = (ctx.base_url,) if ctx.base_url else ()  # the user named it on the command line
    n_dev = ctx.dev_calls if ctx.dev_calls is not None else DEV_CALLS[kind]
    dev = dev[: max(n_dev, 0)]
    budget = SpendCap(ctx.max_spend)

    def student_for(prompt: Prompt, spec: StudentSpec) -> LLMStudent:
        spec.params = {**params, "variant": prompt.variant, "neighbours": prompt.neighbours, "shots": len(prompt.demos),
                       "classes": len(classes) if classes else None}
        return LLMStudent(spec, prompt, pool, prices, allowed)

    notes: list[str] = []
    settings = {"model": model, "shots": ctx.shots, "base_url": ctx.base_url, "api": params["api"]}
    spec = base_spec(kind, sel, settings)
    spec.student_model = model
    if kind == "optimized":
        prompt, search, measured = asyncio.run(_search(ctx, sel, classes, rest, dev, max_tokens, budget, student_for, spec))
        notes += search.pop("notes")
    else:
        shots = ctx.shots if ctx.shots is not None else default_shots
        demos = choose_demos(rest, classes, shots, rng) if shots != 0 else []
        variant = "label" if classes else "examples"
        prompt = Prompt(sel.system, variant, demos, classes, max(ctx.neighbours, 0), max_tokens)
        search = {}
    student_for(prompt, spec)  # the spec's params now describe the chosen prompt
    if kind != "optimized":
        ctx.say(f"measuring {model} on {len(dev)} dev examples")
        measured = asyncio.run(score(LLMStudent(spec, prompt, pool, prices, allowed), dev, budget, prices)) if dev else Score()
    if budget.refused and measured.n < len(dev):
        notes.append(f"--max-spend ${ctx.max_spend} reached: measured on {measured.n} of {len(dev)} dev examples")
    spec.metrics = {
        **measured.metrics(sel.teacher_cost_per_call),
        "dev": f"the first {len(dev)} training rows of fold 0 (by hash of salt and id); demonstrations come from the other folds",
        "n_train": len(sel.train),
        "shots": len(prompt.demos),
        "spent_usd": round(budget.spent, 6),
        "max_spend_usd": ctx.max_spend,
        **({"search": search} if search else {}),
    }
    spec.threshold = None
    return spec, rows_for(prompt, pool if prompt.neighbours else []), budget.spent, notes


async def _search(ctx, sel, classes, rest, dev, max_tokens, budget, student_for, spec):
    """Successive halving over prompt candidates on the dev fold, within the budget; the best prompt wins."""
    variants = ["label", "strict", "examples"] if classes else ["examples", "strict"]
    demo_sets = [choose_demos(rest, classes, ctx.shots, random.Random(f"{sel.salt}:{i}")) for i in range(2)]
    candidates = [Prompt(sel.system, v, d, classes, n, max_tokens) for d in demo_sets for v in variants for n in (0, 4)]
    scores = {i: Score() for i in range(len(candidates))}
    alive = list(range(len(candidates)))
    start, size, rounds = 0, max(4, min(8, len(dev))), 0
    while len(alive) > 1 and start < len(dev) and not budget.refused:
        batch = dev[start : start + size]
        for i in alive:
            student = student_for(candidates[i], StudentSpec(**{**spec.__dict__}))
            got = await score(student, batch, budget, ctx.prices)
            s = scores[i]
            s.n, s.answered, s.agreeing, s.errors, s.cost = (s.n + got.n, s.answered + got.answered,
                                                           s.agreeing + got.agreeing, s.errors + got.errors, s.cost + got.cost)
            if budget.refused:
                break
        ctx.say(f"search round {rounds + 1}: {len(alive)} candidates, ${budget.spent:.4f} spent")
        measured = [i for i in alive if scores[i].n]
        measured.sort(key=lambda i: (-scores[i].agreement, scores[i].cost / max(scores[i].n, 1), i))
        alive = measured[: max(1, math.ceil(len(measured) / 2))] if measured else alive[:1]
        start += size
        size *= 2
        rounds += 1
    best = alive[0]
    notes = []
    if not any(s.n for s in scores.values()):
        notes.append(f"--max-spend ${ctx.max_spend} was too small to score any candidate; kept the first one")
    summary = {
        "candidates": len(candidates),
        "rounds": rounds,
        "spent_usd": round(budget.spent, 6),
        "best": {"variant": candidates[best].variant, "demo_set": best // (len(variants) * 2),
                 "neighbours": candidates[best].neighbours, "agreement": round(scores[best].agreement, 4),
                 "n": scores[best].n},
        "tried": [{"variant": c.variant, "demo_set": i // (len(variants) * 2), "neighbours": c.neighbours,
                   "n": scores[i].n, "agreement": round(scores[i].agreement, 4) if scores[i].n else None}
                  for i, c in enumerate(candidates)],
        "notes": notes,
    }
    return candidates[best], summary, scores[best]
