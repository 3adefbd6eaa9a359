"""Test data for the gate: stores with a known held-out split, and students whose answers are scripted.

`ScriptedStudent` (kind `scripted`, registered here for tests only) answers from a
table of input text -> action: `answer:<text>` (with confidence), `decline`,
`error` (StudentError), `crash` (ValueError), `provider` (ProviderError).
`LLMTestStudent` (kind `llm-test`) asks a fake upstream through the real
`anthropic.AsyncAnthropic` client, as an LLM student would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from distill_cli import canonical, store
from distill_cli.errors import ProviderError
from distill_cli.students.base import (
    Answer,
    Student,
    StudentError,
    StudentSpec,
    in_holdout,
    request_input,
    write_student_file,
)
from distill_cli.students.registry import LOADERS

SALT = "5a1t5a1t"
HOLDOUT = 0.2
TASK = "ticket-intent"
TEACHER = "claude-sonnet-5-5"
STUDENT_MODEL = "claude-haiku-4-5"
FAKE_KEY = "sk-ant-test-fake-key-000000"


@dataclass
class Row:
    id: str
    text: str
    output: str
    held_out: bool


def request_for(text: str, model: str = TEACHER) -> dict:
    return {"model": model, "max_tokens": 16, "system": "Classify the ticket.", "messages": [{"role": "user", "content": text}]}


def make_rows(n_held_out: int, n_train: int = 0, *, salt: str = SALT, holdout: float = HOLDOUT, label=None) -> list[Row]:
    """Rows with fresh ULIDs, exactly `n_held_out` held out and `n_train` in training under (salt, holdout)."""
    label = label or (lambda i: f"label_{i % 7}")
    rows: list[Row] = []
    held = train = 0
    i = 0
    while held < n_held_out or train < n_train:
        example_id = store.new_id()
        is_held = in_holdout(salt, example_id, holdout)
        if (is_held and held >= n_held_out) or (not is_held and train >= n_train):
            continue
        held += is_held
        train += not is_held
        rows.append(Row(example_id, f"ticket number {i}: my card does not work", label(i), is_held))
        i += 1
    # In id order, the order gate scores them in (ids made within one millisecond are not monotonic).
    return sorted(rows, key=lambda r: r.id)


def write_store(path: Path, rows: list[Row], *, task: str = TASK, cost: float | None = 0.002, **columns) -> Path:
    """The rows as teacher calls (status 200) in a store at `path`."""
    completed = []
    for r in rows:
        request = request_for(r.text)
        row = {
            "id": r.id,
            "task": task,
            "provider": "anthropic",
            "source": "import",
            "endpoint": "/v1/messages",
            "model": TEACHER,
            "served_by": "teacher",
            "input": r.text,
            "output": r.output,
            "request_json": canonical.dumps(request),
            "status": 200,
            "cost_usd": cost,
            "input_hash": canonical.input_hash(request),
        }
        row.update(columns)
        completed.append(store.complete_row(row))
    store.prepare_store(path)
    store.append_rows(path, completed)
    return path


def spec(kind: str = "scripted", *, split: dict | None = None, **fields) -> StudentSpec:
    values = {
        "id": f"{kind}-student",
        "kind": kind,
        "task": TASK,
        "teacher_model": TEACHER,
        "split": {"salt": SALT, "holdout": HOLDOUT, "rule": "sha256(salt:id) < holdout"} if split is None else split,
    }
    values.update(fields)
    return StudentSpec(**values)


class ScriptedStudent(Student):
    def __init__(self, spec: StudentSpec, script: dict[str, str]) -> None:
        super().__init__(spec)
        self.script = script
        self.asked: list[str] = []

    def answer(self, request: dict) -> Answer:
        text = request_input(request)
        self.asked.append(text)
        action = self.script.get(text, "decline")
        cost = float(self.spec.params.get("cost", 0.0))
        if action == "decline":
            return Answer(None, confidence=0.2, cost_usd=cost, reason="unsure")
        if action == "error":
            raise StudentError("upstream said no")
        if action == "crash":
            raise ValueError("bug in student")
        if action == "provider":
            raise ProviderError("student upstream: authentication refused (HTTP 401)")
        output = action.split(":", 1)[1]
        return Answer(output, confidence=float(self.spec.params.get("confidence", 0.9)), cost_usd=cost)


def _load_scripted(spec: StudentSpec, table: pa.Table, path) -> ScriptedStudent:
    return ScriptedStudent(spec, dict(zip(table["input"].to_pylist(), table["action"].to_pylist())))


def write_scripted(path: Path, script: dict[str, str], **spec_fields) -> Path:
    table = pa.table({"input": list(script), "action": list(script.values())})
    return write_student_file(path, spec("scripted", **spec_fields), table)


def script_for(rows: list[Row], *, disagree: int = 0, decline: int = 0, error: int = 0, train: str | None = "crash") -> dict:
    """A script over `rows`: held-out rows answered right except the first `disagree` wrong, then `decline`
    declined, then `error` erroring; training rows get `train` (a crash by default, so scoring one shows)."""
    script: dict[str, str] = {}
    held = [r for r in rows if r.held_out]
    for i, r in enumerate(held):
        if i < disagree:
            script[r.text] = f"answer:wrong_{i}"
        elif i < disagree + decline:
            script[r.text] = "decline"
        elif i < disagree + decline + error:
            script[r.text] = "error"
        else:
            script[r.text] = f"answer:{r.output}"
    if train is not None:
        for r in rows:
            if not r.held_out:
                script[r.text] = train
    return script


class LLMTestStudent(Student):
    """A stand-in LLM student: the row's request re-sent to `params.base_url` with a cheaper model."""

    def __init__(self, spec: StudentSpec) -> None:
        from distill_cli.prices import load_prices

        super().__init__(spec)
        self._client = None
        self.prices = load_prices()

    def answer(self, request: dict) -> Answer:
        raise NotImplementedError("async only")

    async def answer_async(self, request: dict) -> Answer:
        import anthropic

        from distill_cli.prices import usage_from_anthropic

        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                base_url=self.spec.params["base_url"], api_key=FAKE_KEY, max_retries=self.spec.params.get("max_retries", 2)
            )
        try:
            reply = await self._client.messages.create(
                model=self.spec.student_model, max_tokens=16, system=request.get("system", ""), messages=request["messages"]
            )
        except anthropic.APIStatusError as e:
            error = StudentError(f"HTTP {e.status_code}")
            error.status = e.status_code  # as the few-shot kind does: the gate retries transient ones
            error.headers = e.response.headers  # and honours their retry-after and x-should-retry
            raise error from None
        text = "".join(b.text for b in reply.content if b.type == "text")
        cost = self.prices.cost(self.spec.student_model, usage_from_anthropic(reply.usage))
        return Answer(text, confidence=1.0, cost_usd=cost, model=self.spec.student_model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def write_llm_student(path: Path, base_url: str, **params) -> Path:
    s = spec("llm-test", student_model=STUDENT_MODEL, params={"base_url": base_url, **params})
    return write_student_file(path, s, pa.table({"unused": pa.array([], pa.string())}))


def label_responder(rows: list[Row], *, wrong: set[str] = frozenset()):
    """A fake-upstream responder answering a student request with the row's label (or a wrong one),
    and a judge request with SAME/DIFFERENT by comparing reference and candidate."""
    by_text = {r.text: r.output for r in rows}

    def respond(body: dict, provider: str):
        text = json.dumps(body)
        if "<reference>" in text:
            user = body["messages"][-1]["content"]
            ref = user.split("<reference>\n", 1)[1].split("\n</reference>", 1)[0]
            cand = user.split("<candidate>\n", 1)[1].split("\n</candidate>", 1)[0]
            if cand.strip().lower() == ref.strip().lower():
                return "SAME\nBoth give the same label."
            return "DIFFERENT\nThe labels differ."
        question = body["messages"][-1]["content"]
        if question in wrong:
            return "Label_X"
        return by_text.get(question, "unknown")

    return respond


LOADERS["scripted"] = _load_scripted
LOADERS["llm-test"] = lambda spec, table, path: LLMTestStudent(spec)
