"""LLM students (few-shot, optimized, endpoint) against the fake provider, with the real SDK as client."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_build_student import make_store, teacher_row

from distill_cli.errors import InputError, ProviderError
from distill_cli.students.base import StudentError
from distill_cli.students.build import build_student
from distill_cli.students.few_shot import cheapest_haiku
from distill_cli.students.registry import load_student
from distill_cli.students.training import select

LABELS = ["card_lost", "top_up", "refund"]
KEY = "sk-ant-test-key-never-stored-0123456789"


def label_of(text: str) -> str:
    return LABELS[int(text.split()[-1]) % 3]


@pytest.fixture
def label_store(tmp_path):
    rows = [teacher_row("intent", f"customer message number {i}", label_of(f"x {i}")) for i in range(240)]
    return make_store(tmp_path / "store", rows)


def knows_labels(wrong_every: int = 0):
    """A responder that answers the label of the last user text (wrong for every `wrong_every`-th number)."""

    def respond(body, provider):
        messages = body["messages"]
        text = messages[-1]["content"] if isinstance(messages[-1]["content"], str) else messages[-1]["content"][0]["text"]
        n = int(text.split()[-1])
        if wrong_every and n % wrong_every == 0:
            return "something else entirely"
        return label_of(text)

    return respond


def test_few_shot_build_caches_the_prefix_and_accounts_spend(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    fake_provider.responder = knows_labels(wrong_every=7)
    out = tmp_path / "fs.student"
    result = build_student(label_store, out, kind="few-shot", dev_calls=12)
    spec = result.spec
    assert result.kind == "few-shot" and spec.student_model == "claude-haiku-5-5" == cheapest_haiku_model()
    calls = [r for r in fake_provider.requests if r.path == "/v1/messages"]
    assert len(calls) == 12
    for call in calls:
        system = call.json["system"]
        assert system[-1]["cache_control"] == {"type": "ephemeral"}
        text = system[-1]["text"]
        assert "Allowed answers:\ncard_lost\nrefund\ntop_up" in text
        assert text.count("<example>") == 3  # one demonstration per output
        assert call.json["model"] == "claude-haiku-5-5"
        assert KEY in (call.header("x-api-key") or "") + (call.header("authorization") or "")  # the SDK sends it
    # Spend: every call priced from its real usage; the later ones read the cached prefix.
    m = spec.metrics
    assert m["dev_tokens"]["cache_read"] > 0 and m["dev_tokens"]["cache_write"] > 0
    assert result.spent_usd == pytest.approx(m["spent_usd"], abs=1e-6) and result.spent_usd > 0
    assert m["n_dev"] == 12 and m["agreement_answered"] == 1.0
    # The key is never in the file.
    assert KEY.encode() not in out.read_bytes()
    assert spec.params["api_key_env"] == "ANTHROPIC_API_KEY"


def cheapest_haiku_model() -> str:
    from distill_cli.prices import load_prices

    return cheapest_haiku(load_prices())


def test_the_default_haiku_is_the_cheapest_current_one(tmp_path):
    from distill_cli.prices import load_prices

    packaged = load_prices()
    assert cheapest_haiku(packaged) == "claude-haiku-5-5"
    assert packaged.retired_on("claude-haiku-5-5") is None and packaged.lookup("claude-haiku-5-5") is not None
    # A cheaper Haiku that is retired (or only announced to be) is never the default; nor is one left unpriced.
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({
        "models": {
            "claude-haiku-3": {"effective": "2024-03-13", "input": 0.01, "output": 0.05, "retired": "2026-01-05"},
            "claude-haiku-5-6": {"effective": "2026-11-01", "input": 0.02, "output": 0.1, "retired": "2099-01-01"},
        },
        "unpriced": {"claude-haiku-0": {"provider": "anthropic", "reason": "no published price"}},
    }))
    assert cheapest_haiku(load_prices(prices)) == "claude-haiku-5-5"
    # Once the only Haiku left is retired, nothing is chosen silently: the user names the model.
    prices.write_text(json.dumps({"models": {"claude-haiku-5-5": {"retired": "2026-12-01"},
                                             "claude-haiku-4-5": {"retired": "2026-12-01"}}}))
    with pytest.raises(InputError, match="no current Claude Haiku.*--model"):
        cheapest_haiku(load_prices(prices))


def test_few_shot_student_answers_declines_and_errors(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    fake_provider.responder = knows_labels(wrong_every=5)
    build_student(label_store, tmp_path / "fs.student", kind="few-shot", dev_calls=0)
    assert not fake_provider.requests
    student = load_student(tmp_path / "fs.student")
    good = student.answer({"messages": [{"role": "user", "content": "customer message number 3"}]})
    assert good.output == "card_lost" and good.confidence == 1.0
    assert good.cost_usd > 0 and good.input_tokens + good.cache_read_tokens + good.cache_write_5m_tokens > 0
    assert good.model == "claude-haiku-5-5"
    bad = asyncio.run(student.answer_async({"messages": [{"role": "user", "content": "customer message number 5"}]}))
    assert bad.declined and "is not one of the teacher's 3 outputs" in bad.reason and bad.cost_usd > 0
    fake_provider.fail_next(529, 3)
    with pytest.raises(StudentError, match="529"):
        student.answer({"messages": [{"role": "user", "content": "customer message number 4"}]})
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(StudentError, match="ANTHROPIC_API_KEY"):
        load_student(tmp_path / "fs.student").answer_text("customer message number 4")


def test_a_refused_key_is_exit_4(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    fake_provider.fail_next(401, 10)
    with pytest.raises(ProviderError, match="401"):
        build_student(label_store, tmp_path / "x.student", kind="few-shot", api_key_env="MY_API_KEY", dev_calls=4)
    assert not (tmp_path / "x.student").exists()


def test_optimized_search_stops_at_the_spend_cap(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)

    def respond(body, provider):
        # Only prompts using the "strict" framing get the labels right.
        system = body["system"][0]["text"]
        text = body["messages"][-1]["content"]
        return label_of(text) if "same wording" in system else "refund"

    fake_provider.responder = respond
    cap = 0.004
    result = build_student(label_store, tmp_path / "opt.student", kind="optimized", max_spend=cap, dev_calls=40)
    search = result.spec.metrics["search"]
    assert result.spent_usd <= cap and result.spent_usd > 0
    assert search["spent_usd"] == pytest.approx(result.spent_usd, abs=1e-6)
    assert search["candidates"] == 12 and search["best"]["variant"] == "strict"
    assert result.spec.params["variant"] == "strict"
    # What the fake was asked for was paid for and counted: every call priced, none past the cap.
    assert len([r for r in fake_provider.requests if r.path == "/v1/messages"]) == sum(t["n"] for t in search["tried"])
    student = load_student(tmp_path / "opt.student")
    assert student.prompt.variant == "strict"
    # A cap too small for one call: nothing asked, the build still writes the first candidate and says so.
    fake_provider.reset()
    tiny = build_student(label_store, tmp_path / "tiny.student", kind="optimized", max_spend=0.0, dev_calls=8)
    assert tiny.spent_usd == 0 and not fake_provider.requests
    assert any("too small to score any candidate" in n for n in tiny.notes)


def test_endpoint_openai_compatible(label_store, tmp_path, fake_provider, monkeypatch):
    fake_provider.responder = knows_labels()
    monkeypatch.setenv("LOCAL_API_KEY", "sk-local-test-key-0000000000000000")
    result = build_student(
        label_store, tmp_path / "ep.student", kind="endpoint", base_url=fake_provider.openai_url, model="gpt-4o-mini",
        endpoint_api="openai", api_key_env="LOCAL_API_KEY", dev_calls=6,
    )
    assert result.spec.params["api"] == "openai" and result.spec.params["base_url"] == fake_provider.openai_url
    calls = [r for r in fake_provider.requests if r.path == "/v1/chat/completions"]
    assert len(calls) == 6
    assert calls[0].json["messages"][0]["role"] == "system" and calls[0].json["model"] == "gpt-4o-mini"
    assert calls[0].header("authorization") == "Bearer sk-local-test-key-0000000000000000"
    assert result.spec.metrics["agreement_answered"] == 1.0
    assert b"sk-local-test-key" not in (tmp_path / "ep.student").read_bytes()
    student = load_student(tmp_path / "ep.student", allowed_endpoints=[fake_provider.openai_url])
    answer = student.answer({"messages": [{"role": "user", "content": "customer message number 2"}]})
    assert answer.output == "refund" and answer.cost_usd > 0 and answer.model == "gpt-4o-mini"


def test_endpoint_anthropic_compatible_without_demonstrations(label_store, tmp_path, fake_provider, monkeypatch):
    fake_provider.responder = knows_labels()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    build_student(label_store, tmp_path / "ep.student", kind="endpoint", base_url=fake_provider.url,
                  model="my-finetune", dev_calls=2)
    call = [r for r in fake_provider.requests if r.path == "/v1/messages"][0]
    assert call.json["model"] == "my-finetune" and "<example>" not in call.json["system"][0]["text"]
    answer = load_student(tmp_path / "ep.student", allowed_endpoints=[fake_provider.url]).answer_text(
        "customer message number 1"
    )
    assert answer.output == "top_up" and answer.cost_usd is None  # no price known: null, never 0


def test_unknown_model_cannot_keep_a_spend_cap(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    with pytest.raises(InputError, match="no price known for model 'mystery-model'"):
        build_student(label_store, tmp_path / "x.student", kind="optimized", model="mystery-model", max_spend=1.0)


def test_open_ended_outputs_get_diverse_demonstrations(tmp_path, fake_provider, monkeypatch):
    rows = [teacher_row("summ", f"please summarise document {i} about topic {i % 40}", f"summary {i}") for i in range(200)]
    path = make_store(tmp_path / "open", rows)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    result = build_student(path, tmp_path / "o.student", dev_calls=3)
    assert result.kind == "few-shot" and result.why.startswith("few-shot: the teacher's outputs are open-ended")
    system = fake_provider.requests[0].json["system"][0]["text"]
    assert system.count("<example>") == 16 and "Allowed answers" not in system
    answer = load_student(tmp_path / "o.student").answer_text("please summarise document 7 about topic 7")
    assert answer.confidence == 0.5 and answer.output.startswith("echo: ")
    assert json.loads(json.dumps(result.to_dict()))["spec"]["kind"] == "few-shot"
    assert len(select([path], task=None, holdout=0.2, seed=0).train) > 100


def test_nearest_neighbour_demonstrations_follow_the_cached_prefix(label_store, tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.url)
    fake_provider.responder = knows_labels()
    build_student(label_store, tmp_path / "nn.student", kind="few-shot", neighbours=2, dev_calls=0)
    student = load_student(tmp_path / "nn.student")
    assert student.prompt.neighbours == 2 and len(student.pool) > 100
    answer = student.answer_text("customer message number 17")
    assert answer.output == label_of("x 17")
    body = fake_provider.requests[-1].json
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[-1]["content"] == "customer message number 17"
    # The nearest training messages, with the teacher's answers; the static prefix keeps its cache marker.
    pairs = list(zip(turns[:-1:2], turns[1:-1:2]))
    assert all(u["content"].startswith("customer message number") and a["content"] == label_of(u["content"])
               for u, a in pairs)
    assert all(u["content"] in {e for e, _ in student.pool} for u, _ in pairs)
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}


def test_a_student_file_cannot_name_another_secret_for_its_key(label_store, tmp_path, fake_provider, monkeypatch):
    """A student file from an untrusted change must not be able to send e.g. GITHUB_TOKEN to its endpoint."""
    import json

    import pyarrow.parquet as pq

    from distill_cli import schemas
    from distill_cli.errors import InputError

    fake_provider.responder = knows_labels()
    monkeypatch.setenv("LOCAL_API_KEY", "sk-local-test-key-0000000000000000")
    build_student(label_store, tmp_path / "ep.student", kind="endpoint", base_url=fake_provider.openai_url,
                  model="gpt-4o-mini", endpoint_api="openai", api_key_env="LOCAL_API_KEY", dev_calls=2)
    table = pq.read_table(tmp_path / "ep.student")
    meta = dict(table.schema.metadata)
    spec = json.loads(meta[schemas.STUDENT_SPEC_KEY.encode()])
    spec["params"]["api_key_env"] = "GITHUB_TOKEN"
    meta[schemas.STUDENT_SPEC_KEY.encode()] = json.dumps(spec).encode()
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "evil.student")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_never_sent")
    before = len(fake_provider.requests)
    with pytest.raises(InputError, match="student file was changed after it was built"):
        load_student(tmp_path / "evil.student", allowed_endpoints=[fake_provider.openai_url])
    # Even a file with no digest to check (as written before digests) cannot name another secret.
    spec["digest"] = None
    meta[schemas.STUDENT_SPEC_KEY.encode()] = json.dumps(spec).encode()
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "evil.student")
    with pytest.raises(InputError, match="'GITHUB_TOKEN' is not a \\*_API_KEY variable"):
        load_student(tmp_path / "evil.student", allowed_endpoints=[fake_provider.openai_url]).answer_text(
            "customer message number 4"
        )
    assert all("ghp_secret" not in str(r.headers) for r in fake_provider.requests[before:])
    with pytest.raises(InputError, match="--api-key-env GITHUB_TOKEN: name a \\*_API_KEY variable"):
        build_student(label_store, tmp_path / "x.student", kind="endpoint", base_url=fake_provider.openai_url,
                      model="gpt-4o-mini", endpoint_api="openai", api_key_env="GITHUB_TOKEN", dev_calls=2)
