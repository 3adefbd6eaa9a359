"""build-student: selection, split, the classifier and cache kinds, export, errors (library and CLI)."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distill_cli import schemas, store
from distill_cli.cli import app
from distill_cli.errors import InputError, NotEnoughData
from distill_cli.students import classifier, embeddings
from distill_cli.students.base import in_holdout
from distill_cli.students.build import build_student
from distill_cli.students.registry import load_student
from distill_cli.students.training import closed_set, salt_for, select

SAMPLE_INTENTS = 12  # a slice of banking77 keeps each build to a couple of seconds


def teacher_row(task: str, text: str, output: str, **extra) -> dict:
    request = {"model": "claude-sonnet-5-5", "max_tokens": 16, "system": "Classify.", "messages": [{"role": "user", "content": text}]}
    row = {
        "task": task, "provider": "anthropic", "source": "import", "endpoint": "/v1/messages", "model": "claude-sonnet-5-5",
        "served_by": "teacher", "input": text, "output": output, "request_json": json.dumps(request), "status": 200,
        "cost_usd": 0.001, "input_tokens": 100, "output_tokens": 3,
    }
    row.update(extra)
    return store.complete_row(row)


def make_store(path, rows: list[dict]):
    store.prepare_store(path)
    store.append_rows(path, rows)
    return path


def sample_rows(sample_store, intents: int = SAMPLE_INTENTS) -> list[dict]:
    con = store.connect()
    store.examples_view(con, [sample_store], "test")
    chosen = [r[0] for r in con.execute("SELECT output FROM examples GROUP BY output ORDER BY output LIMIT ?", [intents]).fetchall()]
    cols = ", ".join(store.COLUMNS)
    rows = con.execute(f"SELECT {cols} FROM examples WHERE list_contains(?, output) ORDER BY id", [chosen]).fetchall()
    out = []
    for r in rows:
        d = dict(zip(store.COLUMNS, r))
        d["ts"] = store.to_micros(d["ts"])
        out.append(d)
    return out


@pytest.fixture(scope="module")
def small_store(sample_store, tmp_path_factory):
    """The first SAMPLE_INTENTS intents of the banking77 sample store (about 2,000 calls)."""
    return make_store(tmp_path_factory.mktemp("small") / "store", sample_rows(sample_store))


@pytest.fixture(scope="module")
def built(small_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "intent.student"
    result = build_student(small_store, out, embeddings="off")
    return result, out


# ---- the classifier ----------------------------------------------------------------------------------------------


def test_auto_picks_the_classifier_and_writes_a_student_file(built, small_store):
    result, out = built
    assert result.kind == "classifier"
    assert result.why.startswith("classifier: the teacher's outputs form a closed set: 12 distinct answers")
    assert schemas.read_kind(out) == schemas.STUDENT
    spec = result.spec
    assert spec.task == "support-intent" and spec.teacher_model == "claude-sonnet-5-5"
    assert spec.split["salt"] == salt_for(0) and spec.split["holdout"] == 0.2
    m = spec.metrics
    for key in ("coverage", "agreement_answered", "agreement", "lower_bound", "threshold", "n_train", "n_dev",
                "expected_cost_reduction", "build_seconds"):
        assert key in m, key
    assert m["n_dev"] == spec.built_from["train"] and 0 < m["coverage"] <= 1
    assert m["agreement"] >= 0.95 and spec.threshold == pytest.approx(m["threshold"], abs=1e-3)
    # No pickle anywhere: the rows are plain columns.
    table = pq.read_table(out)
    assert set(table.column_names) == {"part", "term", "value", "weights"}
    assert set(table["part"].to_pylist()) == {"class", "word", "char"}


def test_the_loaded_student_answers_like_the_built_one_and_fast(built, small_store):
    _, out = built
    started = time.perf_counter()
    student = load_student(out)
    assert time.perf_counter() - started < 5  # sanity only; the benchmark measures load time
    request = {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "I still haven't received my new card"}]}
    answer = student.answer(request)
    assert answer.output is None or answer.output in student.model.classes
    assert answer.cost_usd == 0.0 and 0 < answer.confidence <= 1
    # Agreement on the held-out rows, scored as the gate does, clears the bar the threshold was certified for.
    rows = sample_rows_from(small_store)
    salt, frac = student.spec.split["salt"], student.spec.split["holdout"]
    held = [r for r in rows if in_holdout(salt, r[0], frac)]
    answers = [student.answer_text(text) for _, text, _ in held]
    agree = sum(1 for a, (_, _, out_) in zip(answers, held) if a.declined or a.output == out_)
    assert agree / len(held) >= 0.95
    # OpenAI-shaped requests work through spec.provider-independent answer_text as well.
    assert student.answer_text("I still haven't received my new card").output == answer.output


def sample_rows_from(path) -> list[tuple]:
    con = store.connect()
    store.examples_view(con, [path], "test")
    return con.execute("SELECT id, input, output FROM examples ORDER BY id").fetchall()


def test_same_store_and_seed_give_the_same_student(built, small_store, tmp_path):
    result, out = built
    again = build_student(small_store, tmp_path / "again.student", embeddings="off")
    assert again.spec.id == result.spec.id and again.spec.threshold == result.spec.threshold
    a, b = load_student(out), load_student(tmp_path / "again.student")
    texts = [t for _, t, _ in sample_rows_from(small_store)[:300]]
    pa_, pb = a.predict(texts), b.predict(texts)
    assert pa_[0] == pb[0] and np.array_equal(pa_[1], pb[1])
    assert [a.answer_text(t).output for t in texts[:50]] == [b.answer_text(t).output for t in texts[:50]]
    other = build_student(small_store, tmp_path / "seed1.student", embeddings="off", seed=1)
    assert other.spec.split["salt"] != result.spec.split["salt"] and other.spec.id != result.spec.id


def test_holdout_rows_are_never_learned_from(sample_store, tmp_path):
    rows = sample_rows(sample_store, intents=6)
    salt = salt_for(0)
    poisoned = 0
    for r in rows:
        if in_holdout(salt, r["id"], 0.2):
            r["output"] = "POISON"
            poisoned += 1
    assert poisoned > 50
    path = make_store(tmp_path / "store", rows)
    selection = select([path], task=None, holdout=0.2, seed=0)
    assert selection.n_holdout == poisoned
    assert not any(in_holdout(salt, e.id, 0.2) for e in selection.train)
    assert "POISON" not in {e.output for e in selection.train}
    build_student(path, tmp_path / "s.student", embeddings="off")
    assert "POISON" not in load_student(tmp_path / "s.student").model.classes


def test_choose_threshold_answers_most_while_the_gate_rule_holds():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 5000)
    agrees = rng.uniform(0, 1, 5000) < 0.7 + 0.3 * conf  # more confident -> more often right
    t = classifier.choose_threshold(conf, agrees, 0.95, 1000)
    answered = conf >= t.value
    k = int((answered & agrees).sum() + (~answered).sum())
    assert t.coverage == pytest.approx(answered.mean())
    assert t.agreement == pytest.approx(k / 5000) and t.predicted_gate_bound >= 0.95
    # One more answered row would break the rule or the threshold is already the lowest confidence.
    assert 0 < t.coverage < 1
    hopeless = classifier.choose_threshold(conf, np.zeros(5000, bool), 0.999, 1000)
    assert hopeless.value == classifier.NEVER and hopeless.coverage == 0


def test_the_embedding_path_with_a_tiny_bert(tmp_path, small_store):
    """The numpy encoder and the classifier's embedding block, on a 2-layer random BERT written here."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "card", "my", "is", "lost", "##s", "top", "up", "?", "!"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 2, "num_hidden_layers": 2, "layer_norm_eps": 1e-12}))
    rng = np.random.default_rng(1)
    d, ff = 8, 16

    def r(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(len(vocab), d), "embeddings.position_embeddings.weight": r(32, d),
         "embeddings.token_type_embeddings.weight": r(2, d), "embeddings.LayerNorm.weight": np.ones(d, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(d, np.float32)}
    for i in range(2):
        p = f"encoder.layer.{i}."
        for m in ("query", "key", "value"):
            w[p + f"attention.self.{m}.weight"], w[p + f"attention.self.{m}.bias"] = r(d, d), r(d)
        w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"] = r(d, d), r(d)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = np.ones(d, np.float32), r(d)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(ff, d), r(ff)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(d, ff), r(d)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = np.ones(d, np.float32), r(d)
    embeddings.write_safetensors(tmp_path / "model.safetensors", w)
    encoder = embeddings.BertEncoder("tiny", tmp_path)
    assert encoder.tokenizer.encode("My cards, LOST!") == [2, 5, 4, 8, 1, 7, 12, 3]
    vectors = encoder.encode(["my card is lost", "top up?", "my card is lost"])
    assert vectors.shape == (3, d) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)
    # Padding in a batch does not change a text's vector.
    assert np.allclose(encoder.encode(["top up?"])[0], vectors[1], atol=1e-5)
    # The classifier learns with the embedding block appended.
    con = store.connect()
    store.examples_view(con, [small_store], "test")
    rows = con.execute("SELECT id, input, output FROM examples ORDER BY id LIMIT 600").fetchall()
    ids, texts, outs = zip(*rows)
    classes = sorted(set(outs))
    trained = classifier.train(ids, texts, outs, classes, salt="s", min_agreement=0.9, expected_holdout=150, encoder=encoder)
    assert trained.featurizer.width == sum(len(b.idf) for b in trained.featurizer.blocks) + d
    cols, vals = trained.featurizer.row(texts[0])
    assert cols[-d:].tolist() == list(range(trained.featurizer.width - d, trained.featurizer.width))


def test_the_installed_embedding_extra_is_found_or_reported(monkeypatch):
    monkeypatch.setattr(embeddings, "installed_model_dir", lambda: None)
    assert embeddings.default_encoder() is None
    with pytest.raises(InputError, match=r"--embeddings on needs the embeddings extra"):
        embeddings.default_encoder(required=True)
    with pytest.raises(InputError, match=r"x.student: this classifier uses all-MiniLM-L6-v2 sentence embeddings"):
        embeddings.load_encoder("all-MiniLM-L6-v2", "x.student")


# ---- other kinds and export -------------------------------------------------------------------------------------


def test_cache_student_answers_seen_inputs(small_store, tmp_path):
    result = build_student(small_store, tmp_path / "c.student", kind="cache")
    student = load_student(tmp_path / "c.student")
    selection = select([small_store], task=None, holdout=0.2, seed=0)
    seen = selection.train[0]
    assert student.answer(seen.request()).output == seen.output
    assert student.answer_text("never seen before, surely").declined
    assert result.spec.metrics["entries"] > 0


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "hf"])
def test_export_writes_the_training_split_in_each_format(small_store, tmp_path, fmt):
    out = tmp_path / f"train-{fmt}.jsonl"
    result = CliRunner().invoke(app, ["build-student", str(small_store), "--export", fmt, "-o", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    selection = select([small_store], task=None, holdout=0.2, seed=0)
    assert len(lines) == len(selection.train)
    first = selection.train[0]
    if fmt == "openai":
        assert lines[0]["messages"] == [{"role": "system", "content": "You classify customer messages for an online bank. "
                                         + lines[0]["messages"][0]["content"].split("bank. ", 1)[1]},
                                        {"role": "user", "content": first.input}, {"role": "assistant", "content": first.output}]
    elif fmt == "anthropic":
        assert lines[0]["system"].startswith("You classify customer messages")
        assert lines[0]["messages"] == [{"role": "user", "content": first.input}, {"role": "assistant", "content": first.output}]
    else:
        assert lines[0]["prompt"][-1] == {"role": "user", "content": first.input}
        assert lines[0]["completion"] == [{"role": "assistant", "content": first.output}]
    assert result.stdout and json.loads(result.stdout)["rows"] == len(lines)


# ---- rules and errors --------------------------------------------------------------------------------------------


def test_closed_set_rule():
    labels = ["yes"] * 60 + ["no"] * 39 + ["maybe"]
    cs = closed_set(labels)
    assert cs.closed and cs.classes == ["no", "yes"] and cs.coverage == 0.99
    assert closed_set([" yes", "yes ", "yes"] * 10 + ["no"] * 30).classes == ["no", "yes"]
    open_ = closed_set([f"answer {i}" for i in range(300)])
    assert not open_.closed and "open-ended" in open_.why


def run(args):
    return CliRunner().invoke(app, ["build-student", *map(str, args)])


def test_several_tasks_need_task(tmp_path):
    rows = [teacher_row("a", f"text {i}", "x" if i % 2 else "y") for i in range(120)]
    rows += [teacher_row("b", f"text {i}", "z") for i in range(30)]
    path = make_store(tmp_path / "s", rows)
    result = run([path, "-o", tmp_path / "x.student"])
    assert result.exit_code == 3
    assert f"Error: {path} holds several tasks; choose one with --task: a (120 teacher answers), b (30 teacher answers)" in result.output
    result = run([path, "-o", tmp_path / "x.student", "--task", "nope"])
    assert result.exit_code == 3
    assert f"Error: {path}: no calls of task 'nope'; tasks there: a (120 teacher answers), b (30 teacher answers)" in result.output
    assert not (tmp_path / "x.student").exists()


def test_too_few_examples_is_collecting(tmp_path):
    path = make_store(tmp_path / "s", [teacher_row("t", f"text {i}", "x" if i % 2 else "y") for i in range(60)])
    result = run([path, "-o", tmp_path / "x.student"])
    assert result.exit_code == 5
    assert "collecting (" in result.output and "/100): task 't' has" in result.output
    assert not (tmp_path / "x.student").exists()


def test_only_failed_or_student_rows_count_as_no_teacher_answers(tmp_path):
    rows = [teacher_row("t", f"text {i}", None, status=500) for i in range(150)]
    rows += [teacher_row("t", f"q {i}", "y", served_by="student") for i in range(150)]
    path = make_store(tmp_path / "s", rows)
    with pytest.raises(NotEnoughData, match=r"collecting \(0/100\)"):
        select([path], task=None, holdout=0.2, seed=0)


def test_identical_outputs_and_empty_inputs(tmp_path):
    same = make_store(tmp_path / "same", [teacher_row("t", f"text {i}", "always") for i in range(200)])
    result = run([same, "-o", tmp_path / "x.student"])
    assert result.exit_code == 5
    assert "is the same ('always'); nothing to learn yet" in result.output
    empty = make_store(tmp_path / "empty", [teacher_row("t", "", "x" if i % 2 else "y") for i in range(200)])
    result = run([empty, "-o", tmp_path / "x.student"])
    assert result.exit_code == 3
    assert "every input of task 't' is empty" in result.output
    assert not (tmp_path / "x.student").exists()


def test_empty_store_and_wrong_files(tmp_path):
    empty = tmp_path / "empty"
    store.prepare_store(empty)
    result = run([empty, "-o", tmp_path / "x.student"])
    assert result.exit_code == 5 and "no calls recorded yet; collecting (0/100)" in result.output
    result = run([tmp_path / "missing", "-o", tmp_path / "x.student"])
    assert result.exit_code == 3 and "missing: no such file or directory" in result.output


def test_bad_settings(small_store, tmp_path):
    result = run([small_store, "-o", tmp_path / "x.student", "--holdout", "1.5"])
    assert result.exit_code == 3 and "--holdout must be between 0 and 1" in result.output
    result = run([small_store, "-o", tmp_path / "x.student", "--kind", "optimized"])
    assert result.exit_code == 3 and "Error: --kind optimized needs --max-spend USD" in result.output
    result = run([small_store, "-o", tmp_path / "x.student", "--kind", "endpoint"])
    assert result.exit_code == 3 and "--kind endpoint needs --base-url URL and --model NAME" in result.output
    open_store = make_store(tmp_path / "open", [teacher_row("t", f"text {i}", f"answer {i}") for i in range(200)])
    result = run([open_store, "-o", tmp_path / "x.student", "--kind", "classifier"])
    assert result.exit_code == 3 and "--kind classifier needs a closed set of outputs" in result.output


def test_few_shot_without_a_key_is_exit_4(tmp_path):
    open_store = make_store(tmp_path / "open", [teacher_row("t", f"text {i}", f"answer {i}") for i in range(200)])
    result = run([open_store, "-o", tmp_path / "x.student"])
    assert result.exit_code == 4
    assert "Error: --kind few-shot calls claude-haiku-5-5 and needs an API key: set ANTHROPIC_API_KEY (or name another variable with --api-key-env)" in result.output
    assert not (tmp_path / "x.student").exists()


def test_cli_builds_and_reports_why(small_store, tmp_path):
    out = tmp_path / "cli.student"
    result = CliRunner().invoke(app, ["build-student", str(small_store), "-o", str(out), "--embeddings", "off", "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["kind"] == "classifier" and payload["spec"]["kind"] == "classifier"
    assert "Kind: classifier: the teacher's outputs form a closed set" in result.stderr
    assert load_student(out).spec.id == payload["spec"]["id"]


def test_help_has_an_example():
    result = CliRunner().invoke(app, ["build-student", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
