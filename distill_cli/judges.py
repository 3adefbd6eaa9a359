"""Judges: does a student's answer say what the teacher's answer said?

One interface for every judge, used by `gate` and `drift` alike:

    judgement = judge.judge(teacher_output, student_output, input_text)
    judgement = await judge.judge_async(teacher_output, student_output, input_text)
    judgement.agree, judgement.score, judgement.reason

`exact`, `normalized`, `json` and `numeric` are pure functions of the two
texts. `llm` asks a model (by default the teacher's own) for a binary
same/different verdict with a fixed rubric (at temperature 0 where the API still
takes one: Anthropic's current Messages API refuses sampling parameters), caches each verdict
on disk by judge model, rubric hash and inputs (errors are never cached), and
counts what its calls cost. `choose_judge` picks one from the teacher's outputs
(`--judge auto`) and says why.

A judge raises `JudgeError` for a failure specific to one example (an
unparseable verdict, a request the provider rejects) and `ProviderError` for one
retries cannot cure (auth refused, upstream unreachable, still rate-limited):
the first counts as a disagreement, the second stops the run. Judges never print.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz.distance import Indel

from distill_cli import canonical
from distill_cli.errors import DistillError, InputError, ProviderError
from distill_cli.providers import Clients, RetryPolicy, call_with_retries, cost_of, key_env_for, read_key, usage_of
from distill_cli.students.training import closed_set

JUDGES = ("exact", "normalized", "json", "numeric", "llm")


class JudgeError(DistillError):
    """A judge could not judge one example; the gate counts it as a disagreement and reports it."""


@dataclass
class Judgement:
    agree: bool
    score: float  # 1.0 = same; lower = further apart (orders the worst disagreements)
    reason: str
    cost_usd: float = 0.0  # what judging this example cost (0 for rule judges and cache hits)
    cached: bool = False


class Judge:
    """Base of every judge: subclasses implement `judge`; the LLM judge implements `judge_async`."""

    name = "judge"

    def judge(self, teacher_output: str, student_output: str, input: str = "") -> Judgement:
        raise NotImplementedError

    async def judge_async(self, teacher_output: str, student_output: str, input: str = "") -> Judgement:
        return self.judge(teacher_output, student_output, input)

    async def aclose(self) -> None:
        """Release network clients; rule judges hold none."""


# ---- text normalisation --------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)\n?```$", re.DOTALL)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


def strip_wrapping(text: str) -> str:
    """`text` without surrounding whitespace, one Markdown code fence and matching surrounding quotes."""
    t = text.strip()
    m = _FENCE.match(t)
    if m:
        t = m.group(1).strip()
    while len(t) >= 2 and _QUOTES.get(t[0]) == t[-1]:
        t = t[1:-1].strip()
    return t


def normalize(text: str) -> str:
    """Case-folded, punctuation turned to spaces, whitespace collapsed, after `strip_wrapping`.

    Punctuation becomes a space rather than vanishing, so `3.14` and `314` stay different.
    """
    t = strip_wrapping(unicodedata.normalize("NFKC", text)).casefold()
    t = "".join(" " if unicodedata.category(c).startswith("P") else c for c in t)
    return " ".join(t.split())


def _similarity(a: str, b: str) -> float:
    # 2 x longest common subsequence / total length, computed exactly at any length (bit-parallel):
    # an upper bound for long texts (difflib's quick_ratio) scored unrelated prose about 0.97 and
    # hid the worst disagreements among the near misses.
    return Indel.normalized_similarity(a, b)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---- rule judges -----------------------------------------------------------------------------------------------


class ExactJudge(Judge):
    name = "exact"

    def judge(self, teacher_output, student_output, input=""):
        if teacher_output == student_output:
            return Judgement(True, 1.0, "identical")
        return Judgement(False, _similarity(teacher_output, student_output), "texts differ")


class NormalizedJudge(Judge):
    """Equal after ignoring case, whitespace, punctuation, surrounding quotes and code fences."""

    name = "normalized"

    def judge(self, teacher_output, student_output, input=""):
        t, s = normalize(teacher_output), normalize(student_output)
        if t == s:
            return Judgement(True, 1.0, "same after normalising" if teacher_output != student_output else "identical")
        return Judgement(False, _similarity(t, s), f"{_short(s)!r} is not {_short(t)!r}")


def parse_json(text: str):
    """The JSON value in `text` (code fence and surrounding whitespace allowed), else raise ValueError."""
    return json.loads(strip_wrapping(text) if text.lstrip().startswith("```") else text)


class JsonJudge(Judge):
    """Parsed JSON equal: key order ignored, list order kept, numbers within tolerance."""

    name = "json"

    def __init__(self, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> None:
        self.rel_tol, self.abs_tol = rel_tol, abs_tol

    def judge(self, teacher_output, student_output, input=""):
        try:
            want = parse_json(teacher_output)
        except ValueError:
            raise JudgeError(f"teacher output is not JSON: {_short(teacher_output)!r}") from None
        try:
            got = parse_json(student_output)
        except ValueError:
            return Judgement(False, 0.0, f"student output is not JSON: {_short(student_output)!r}")
        difference = self._first_difference(want, got, "$")
        if difference is None:
            return Judgement(True, 1.0, "same JSON")
        return Judgement(False, self._leaf_score(want, got), difference)

    def _same_number(self, a, b) -> bool:
        return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    def _first_difference(self, want, got, path: str) -> str | None:
        if _is_number(want) and _is_number(got):
            return None if self._same_number(want, got) else f"{path}: {got!r} is not {want!r}"
        if isinstance(want, dict) and isinstance(got, dict):
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            if missing:
                return f"{path}: missing key {missing[0]!r}"
            if extra:
                return f"{path}: unexpected key {extra[0]!r}"
            for key in sorted(want):
                found = self._first_difference(want[key], got[key], f"{path}.{key}")
                if found:
                    return found
            return None
        if isinstance(want, list) and isinstance(got, list):
            if len(want) != len(got):
                return f"{path}: {len(got)} items, not {len(want)}"
            for i, (w, g) in enumerate(zip(want, got)):
                found = self._first_difference(w, g, f"{path}[{i}]")
                if found:
                    return found
            return None
        if type(want) is not type(got) or want != got:
            return f"{path}: {_short(json.dumps(got, ensure_ascii=False))} is not {_short(json.dumps(want, ensure_ascii=False))}"
        return None

    def _leaf_score(self, want, got) -> float:
        """Share of leaves (by path) on which the two agree."""
        a, b = dict(_leaves(want)), dict(_leaves(got))
        same = sum(
            1
            for path, value in a.items()
            if path in b
            and (
                self._same_number(value, b[path])
                if _is_number(value) and _is_number(b[path])
                else type(value) is type(b[path]) and value == b[path]
            )
        )
        return same / max(len(a), len(b), 1)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaves(value, path="$"):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_GROUPED = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")


def parse_number(text: str) -> float | None:
    """The number an answer states: the whole text as a number (thousands commas, currency and % allowed),
    else the only number in it; None when there is none or more than one."""
    t = _GROUPED.sub("", strip_wrapping(text))
    bare = t.strip().lstrip("$\u20ac\u00a3\u00a5").rstrip("%").strip()
    try:
        value = float(bare)
    except ValueError:
        found = _NUMBER.findall(t)
        if len(found) != 1:
            return None
        value = float(found[0])
    return value if math.isfinite(value) else None


class NumericJudge(Judge):
    """The two answers state the same number, within a relative or absolute tolerance."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> None:
        self.rel_tol, self.abs_tol = rel_tol, abs_tol

    def judge(self, teacher_output, student_output, input=""):
        want = parse_number(teacher_output)
        if want is None:
            raise JudgeError(f"teacher output is not a number: {_short(teacher_output)!r}")
        got = parse_number(student_output)
        if got is None:
            return Judgement(False, 0.0, f"student output is not a number: {_short(student_output)!r}")
        if math.isclose(want, got, rel_tol=self.rel_tol, abs_tol=self.abs_tol):
            return Judgement(True, 1.0, f"{got:g} = {want:g}")
        gap = abs(want - got) / max(abs(want), abs(got), self.abs_tol)
        return Judgement(False, max(0.0, 1.0 - gap), f"{got:g} is not {want:g}")


# ---- choosing a judge ------------------------------------------------------------------------------------------

SHORT_WORDS = 8  # an answer of at most this many words is a label, a name, a short fact


def choose_judge(outputs: list[str]) -> tuple[str, str]:
    """`--judge auto`: the judge that fits the teacher's outputs, and why.

    json when every output parses as a JSON object or array; numeric when every
    output is a number; normalized when they are short (98% at most 8 words) or
    a closed set (`build-student`'s rule, one repeated answer included); llm for
    free text, where no rule can tell a paraphrase from a different answer.
    """
    outputs = [o for o in outputs if o is not None]
    if not outputs:
        return "normalized", "no teacher outputs to look at"
    if all(isinstance(_try_json(o), (dict, list)) for o in outputs):
        return "json", "teacher outputs are JSON"
    if all(_is_plain_number(o) for o in outputs):
        return "numeric", "teacher outputs are numbers"
    short = sum(1 for o in outputs if len(o.split()) <= SHORT_WORDS)
    distinct = len({normalize(o) for o in outputs})
    if short >= 0.98 * len(outputs):
        return "normalized", f"teacher outputs are short ({distinct} distinct)"
    labels = closed_set(outputs, min_classes=1)
    if labels.closed:
        return "normalized", f"teacher outputs form a closed set ({labels.distinct} distinct)"
    return "llm", "teacher outputs are free text"


def _try_json(text: str):
    try:
        return parse_json(text)
    except ValueError:
        return None


def _is_plain_number(text: str) -> bool:
    t = _GROUPED.sub("", strip_wrapping(text)).lstrip("$\u20ac\u00a3\u00a5").rstrip("%").strip()
    try:
        return math.isfinite(float(t))
    except ValueError:
        return False


def make_judge(
    name: str,
    *,
    outputs: list[str] | None = None,
    model: str | None = None,
    prices=None,
    cache_dir: str | Path | None = None,
    retry: RetryPolicy | None = None,
) -> tuple[Judge, str]:
    """The judge called `name` ("auto" chooses from `outputs`), and a sentence saying why it was chosen.

    `model` is the LLM judge's model (the gate passes the teacher's model).
    """
    reason = "asked for"
    if name == "auto":
        name, why = choose_judge(outputs or [])
        reason = f"auto: {why}"
    if name == "exact":
        return ExactJudge(), reason
    if name == "normalized":
        return NormalizedJudge(), reason
    if name == "json":
        return JsonJudge(), reason
    if name == "numeric":
        return NumericJudge(), reason
    if name == "llm":
        if not model:
            raise InputError("the llm judge needs a model: the student names no teacher model; pass --judge-model")
        return LLMJudge(model, prices=prices, cache_dir=cache_dir, retry=retry), reason
    raise InputError(f"unknown judge {name!r}; choose one of auto, {', '.join(JUDGES)}")


# ---- the LLM judge ---------------------------------------------------------------------------------------------

RUBRIC = """You compare two answers to the same request and decide whether they are the same answer.

The REFERENCE is a trusted model's answer. The CANDIDATE is another model's answer to the same request.
Say SAME when the candidate gives the same answer as the reference: the same facts, label, decision, values
or code behaviour, even if worded, formatted or ordered differently. Say DIFFERENT when it gives another
answer, leaves out or adds something that changes the answer, contradicts the reference, or refuses.
Judge only whether the answers match; do not judge which one is better or whether the reference is right.

Reply with exactly one word on the first line, SAME or DIFFERENT, then one short sentence saying why."""

RUBRIC_HASH = hashlib.sha256(RUBRIC.encode()).hexdigest()[:16]
_VERDICT = re.compile(r"^\W*(SAME|DIFFERENT)\b\W*(.*)", re.IGNORECASE | re.DOTALL)
# OpenAI reasoning models accept only their default temperature.
_NO_TEMPERATURE = ("o1", "o3", "o4", "gpt-5")
MAX_FIELD_CHARS = 20_000  # longer inputs/answers are cut for the judge (the cache key uses the full texts)


def judge_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "distill" / "judge"


def judge_prompt(teacher_output: str, student_output: str, input: str) -> str:
    return (
        f"<request>\n{input[:MAX_FIELD_CHARS]}\n</request>\n\n"
        f"<reference>\n{teacher_output[:MAX_FIELD_CHARS]}\n</reference>\n\n"
        f"<candidate>\n{student_output[:MAX_FIELD_CHARS]}\n</candidate>"
    )


def parse_verdict(text: str) -> tuple[bool, str]:
    """(same, why) from the judge model's reply; JudgeError when it says neither."""
    m = _VERDICT.match(text or "")
    if not m:
        raise JudgeError(f"the judge answered neither SAME nor DIFFERENT: {_short(text or '')!r}")
    why = " ".join(m.group(2).split()) or m.group(1).upper()
    return m.group(1).upper() == "SAME", why


class LLMJudge(Judge):
    """A model asked, with a fixed rubric and a one-word verdict, whether the student's answer is the teacher's.

    Its stability comes from the rubric, the binary verdict and the cache rather than
    from sampling settings: Anthropic's API no longer takes a temperature, and OpenAI's
    reasoning models take only their default (others get temperature 0).
    """

    name = "llm"

    def __init__(
        self,
        model: str,
        *,
        provider: str | None = None,
        prices=None,
        cache_dir: str | Path | None = None,
        retry: RetryPolicy | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        key_env: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 100,
    ) -> None:
        from distill_cli.calls import provider_of_model
        from distill_cli.prices import load_prices

        self.model = model
        self.prices = prices if prices is not None else load_prices()
        self.provider = provider or provider_of_model(model, self.prices)
        self.cache_dir = Path(cache_dir) if cache_dir else judge_cache_dir()
        self.retry = retry or RetryPolicy()
        self.base_url = base_url
        self.timeout = timeout
        self.max_tokens = max_tokens
        self._api_key = api_key or read_key(self.provider, key_env, who=f"llm judge {model}")
        if not self._api_key:
            raise ProviderError(f"the llm judge ({model}) needs an API key: set {key_env or key_env_for(self.provider)}")
        self._clients = Clients(self.provider, lambda: self._api_key, base_url=base_url, timeout=timeout,
                                who=f"the llm judge for {model}")
        # What this judge did, for the gate's summary.
        self.calls = 0
        self.cache_hits = 0
        self.cost_usd = 0.0

    # -- the cache: one small JSON file per verdict, written atomically ---------------------------------------

    def cache_key(self, teacher_output: str, student_output: str, input: str) -> str:
        material = canonical.dumps(
            {"model": self.model, "rubric": RUBRIC_HASH, "input": input, "reference": teacher_output, "candidate": student_output}
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> Judgement | None:
        try:
            data = json.loads(self._cache_path(key).read_text(encoding="utf-8"))
            return Judgement(bool(data["agree"]), float(data["score"]), str(data["reason"]), 0.0, cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or damaged: ask again

    def _store(self, key: str, judgement: Judgement) -> None:
        path = self._cache_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
            record = {"agree": judgement.agree, "score": judgement.score, "reason": judgement.reason,
                      "model": self.model, "rubric": RUBRIC_HASH, "cost_usd": judgement.cost_usd}
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a repeat call

    # -- asking the model ------------------------------------------------------------------------------------

    async def _ask(self, prompt: str) -> tuple[str, float | None]:
        """One request (the SDK does not retry it): the verdict text and what it cost."""
        client = self._clients.async_client()
        if self.provider == "anthropic":
            # No temperature: the Messages API (2026-10-21 on, SDK 2.x) refuses sampling parameters outright.
            reply = await client.messages.create(
                model=self.model, max_tokens=self.max_tokens, system=RUBRIC,
                messages=[{"role": "user", "content": prompt}],
            )
            text = "".join(b.text for b in reply.content if getattr(b, "type", "") == "text")
        else:
            sampling = {} if self.model.startswith(_NO_TEMPERATURE) else {"temperature": 0}
            reply = await client.chat.completions.create(
                model=self.model, max_completion_tokens=self.max_tokens,
                messages=[{"role": "system", "content": RUBRIC}, {"role": "user", "content": prompt}],
                **sampling,
            )
            text = reply.choices[0].message.content or "" if reply.choices else ""
        return text, cost_of(self.prices, self.model, usage_of(self.provider, reply.usage))

    async def judge_async(self, teacher_output, student_output, input=""):
        if teacher_output == student_output:
            return Judgement(True, 1.0, "identical")  # no model needed to see that
        key = self.cache_key(teacher_output, student_output, input)
        hit = self._cached(key)
        if hit is not None:
            self.cache_hits += 1
            return hit
        prompt = judge_prompt(teacher_output, student_output, input)
        text, cost = await call_with_retries(lambda: self._ask(prompt), self.retry, what=f"llm judge {self.model}",
                                             rejected=JudgeError)
        self.calls += 1
        self.cost_usd += cost or 0.0
        same, why = parse_verdict(text)  # an unparseable reply raises and is never cached
        judgement = Judgement(same, 1.0 if same else 0.0, why, cost or 0.0)
        self._store(key, judgement)
        return judgement

    def judge(self, teacher_output, student_output, input=""):
        async def once():
            try:
                return await self.judge_async(teacher_output, student_output, input)
            finally:
                await self.aclose()

        return asyncio.run(once())

    async def aclose(self) -> None:
        await self._clients.aclose()
