"""The gate's certificate binds the content that serves, and a student file cannot choose where a key goes.

Each test plays a careless user or an attacker with write access to a committed
student file: an edit after the gate, a file that names another endpoint, a file
whose settings do not fit its kind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gate_support import Row, write_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from distill_cli import endpoints, schemas, store
from distill_cli.cli import app
from distill_cli.drift import run_drift
from distill_cli.errors import InputError
from distill_cli.gate import run_gate
from distill_cli.recorder.router import load_routes
from distill_cli.report import build_report
from distill_cli.serving import read_summary
from distill_cli.students import cache, few_shot
from distill_cli.students.base import StudentSpec, content_digest, read_student_file, write_student_file
from distill_cli.students.build import build_student
from distill_cli.students.registry import load_student

TEXTS = [f"customer question {i}" for i in range(12)]
KEY = "sk-ant-certificate-test-key-0000000000"


@pytest.fixture
def gated(tmp_path):
    """A cache student built from repeated questions, and its passing gate beside it."""
    rows = [
        Row(store.new_id_from_int((1_760_000_000_000 + i) << 80 | i), TEXTS[i % len(TEXTS)], f"answer {i % len(TEXTS)}", False)
        for i in range(400)
    ]
    runs = write_store(tmp_path / "runs", rows)
    student = tmp_path / "intent.student"
    build_student(runs, student, kind="cache")
    verdicts = Path(f"{student}.verdicts.parquet")
    summary = run_gate(student, runs, min_examples=20, verdicts=verdicts)
    assert summary.passed and summary.answered > 0
    return runs, student, verdicts


def rewrite(path: Path, **changes) -> None:
    """An edit that keeps the student's id and recomputes its digest, as a careful attacker would."""
    spec, rows = read_student_file(path)
    answers = dict(zip(rows["input_hash"].to_pylist(), rows["output"].to_pylist()))
    answers = {h: changes.pop("answer", a) for h, a in answers.items()}
    for key, value in changes.items():
        setattr(spec, key, value)
    write_student_file(path, spec, cache.rows_for(answers))


def edit_footer(path: Path, change) -> None:
    """An edit of the spec in the file's footer that leaves the recorded digest alone."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    spec = json.loads(meta[schemas.STUDENT_SPEC_KEY.encode()])
    change(spec)
    meta[schemas.STUDENT_SPEC_KEY.encode()] = json.dumps(spec).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


# ---- the digest ----------------------------------------------------------------------------------------------


def test_the_gate_records_the_digest_the_build_wrote(gated):
    _, student, verdicts = gated
    spec, rows = read_student_file(student)
    assert spec.digest.startswith("sha256:") and len(spec.digest) == 71
    assert spec.digest == content_digest(spec, rows)
    assert read_summary(verdicts)["student_digest"] == spec.digest


def test_an_edit_after_the_build_is_refused_everywhere(gated, tmp_path):
    runs, student, _ = gated
    edit_footer(student, lambda spec: spec.update(threshold=0.0))
    message = "student file was changed after it was built"
    with pytest.raises(InputError, match=message):
        load_student(student)
    result = CliRunner().invoke(app, ["gate", str(student), str(runs)])
    assert result.exit_code == 3
    assert result.output.startswith(f"Error: {student}: student file was changed after it was built (its content is sha256:")
    assert result.output.endswith("; rebuild it with distill build-student and gate it again\n")
    assert result.output.count("\n") == 1


def test_the_same_content_written_again_keeps_its_digest(gated, tmp_path):
    _, student, _ = gated
    spec, rows = read_student_file(student)
    table = pq.read_table(student)
    pq.write_table(table, tmp_path / "copy.student", compression="gzip", row_group_size=3)
    assert read_student_file(tmp_path / "copy.student")[0].digest == spec.digest


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6),
       other=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6),
       threshold=st.one_of(st.none(), st.floats(0, 1)))
def test_the_digest_changes_exactly_when_the_content_does(answers, other, threshold):
    spec = StudentSpec(id="s", kind="cache", task="t", teacher_model=None, threshold=threshold)
    a = content_digest(spec, cache.rows_for(answers))
    assert (a == content_digest(spec, cache.rows_for(other))) == (list(answers.items()) == list(other.items()))
    moved = StudentSpec(id="s", kind="cache", task="t", teacher_model=None, threshold=0.5 if threshold != 0.5 else 0.25)
    assert content_digest(moved, cache.rows_for(answers)) != a


# ---- a changed student does not serve ------------------------------------------------------------------------


def test_a_student_changed_since_its_gate_does_not_serve(gated):
    _, student, verdicts = gated
    [route] = load_routes([student])
    assert route.gate.digest == read_student_file(student)[0].digest
    rewrite(student, answer="refund", threshold=0.0)
    with pytest.raises(InputError) as e:
        load_routes([student])
    new = read_student_file(student)[0].digest
    certified = read_summary(verdicts)["student_digest"]
    assert str(e.value) == (
        f"{student}: student {route.student.id} changed since it was gated in {verdicts} (the gate certified content "
        f"{certified[:19]}, the file now holds {new[:19]}); gate it again (--allow-ungated overrides)"
    )
    warnings: list[str] = []
    [route] = load_routes([student], allow_ungated=True, warn=warnings.append)
    assert route.gate is None and warnings == [
        f"Warning: {student}: student {route.student.id} changed since it was gated in {verdicts} (the gate certified "
        f"content {certified[:19]}, the file now holds {new[:19]}); serving it anyway (--allow-ungated)"
    ]


def test_the_cli_refuses_a_changed_student_before_the_job_runs(gated, tmp_path):
    _, student, _ = gated
    rewrite(student, answer="refund")
    marker = tmp_path / "job-ran"
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), "--student", str(student), "--",
                                      sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    assert result.exit_code == 3 and not marker.exists()
    assert "changed since it was gated" in result.output and result.output.count("\n") == 1


def test_a_gate_made_before_digests_certifies_nothing(gated):
    _, student, verdicts = gated
    table = pq.read_table(verdicts)
    meta = dict(table.schema.metadata)
    summary = json.loads(meta[schemas.SUMMARY_KEY.encode()])
    del summary["student_digest"]
    meta[schemas.SUMMARY_KEY.encode()] = json.dumps(summary).encode()
    pq.write_table(table.replace_schema_metadata(meta), verdicts)
    with pytest.raises(InputError, match="made before content digests, so it cannot say what content it certified; gate it again"):
        load_routes([student])


def test_drift_refuses_a_student_changed_since_its_gate(gated):
    runs, student, verdicts = gated
    rewrite(student, answer="refund")
    with pytest.raises(InputError, match="changed since it was gated"):
        run_drift(student, runs, verdicts=[verdicts])
    # The next gate measures the new content, and drift checks the student again.
    run_gate(student, runs, min_examples=20, verdicts=verdicts)
    assert read_summary(verdicts)["student_digest"] == read_student_file(student)[0].digest
    assert run_drift(student, runs, verdicts=[verdicts]).student == read_student_file(student)[0].id


def test_report_says_the_gate_does_not_cover_a_changed_student(gated):
    runs, student, verdicts = gated
    before = build_report([runs, verdicts, student])
    assert before.tasks[0]["recommendation"].endswith("(gate passed)")
    rewrite(student, answer="refund")
    after = build_report([runs, verdicts, student])
    task = after.tasks[0]
    assert task["recommendation"] == "keep teacher: the gate does not cover the student file"
    assert task["gate"]["changed_since"] is True
    assert any(n.startswith(f"student {task['gate']['student']} ({student}) changed since (gate: sha256:") for n in after.notes)


# ---- damaged and mismatched files ----------------------------------------------------------------------------


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.update(kind="classifier"), "its rows or settings do not fit kind 'classifier'"),
    (lambda s: s.update(threshold="high"), "spec field 'threshold' must be a finite number"),
    (lambda s: s.update(threshold=float("nan")), "spec field 'threshold' must be a finite number"),
    (lambda s: s.update(id=None), "spec field 'id' must be a non-empty string"),
    (lambda s: s.update(params=[1]), "spec field 'params' must be an object"),
])
def test_a_damaged_student_file_is_exit_3_with_one_line(gated, change, problem):
    runs, student, _ = gated

    def damage(spec):
        change(spec)
        spec["digest"] = None  # as a file written before digests: nothing to catch the edit but the checks

    edit_footer(student, damage)
    with pytest.raises(InputError, match=problem):
        load_student(student)
    result = CliRunner().invoke(app, ["gate", str(student), str(runs)])
    assert result.exit_code == 3 and result.output.count("\n") == 1 and "student file is damaged" in result.output


def test_a_classifier_with_a_null_temperature_is_damaged_not_a_crash(tmp_path):
    from gate_support import make_rows

    runs = write_store(tmp_path / "runs", make_rows(0, 200, label=lambda i: ["a", "b"][i % 2]))
    path = tmp_path / "c.student"
    build_student(runs, path, kind="classifier", embeddings="off", min_agreement=0.5)
    edit_footer(path, lambda spec: spec["params"].update(temperature=None) or spec.update(digest=None))
    with pytest.raises(InputError, match=r"do not fit kind 'classifier' \(TypeError"):
        load_student(path)


# ---- where a key may go --------------------------------------------------------------------------------------


def llm_student(path: Path, base_url: str | None, api: str = "anthropic", split: dict | None = None) -> Path:
    spec = StudentSpec(id="llm-student", kind="endpoint", task="ticket-intent", teacher_model="claude-sonnet-5-5",
                       student_model="claude-haiku-4-5", split=split or {},
                       params={"api": api, "base_url": base_url, "api_key_env": "ANTHROPIC_API_KEY"})
    prompt = few_shot.Prompt("Classify.", "examples", [("hello", "greeting")], None)
    return write_student_file(path, spec, few_shot.rows_for(prompt, []))


ANTHROPIC_HOST, OPENAI_HOST = endpoints.PROVIDER_HOSTS  # checked as strings: nothing here connects


@pytest.mark.parametrize("url, allowed", [
    (f"https://{ANTHROPIC_HOST}", True),
    (f"https://{OPENAI_HOST}/v1", True),
    (f"https://{ANTHROPIC_HOST}:8443", False),
    (f"http://{ANTHROPIC_HOST}", False),
    (f"https://{ANTHROPIC_HOST}.evil.example", False),
    ("https://evil.example/v1", False),
    (f"https://user:pw@{ANTHROPIC_HOST}", False),
    (f"ftp://{ANTHROPIC_HOST}", False),
    ("http://127.0.0.1:8000/v1", False),  # a key to loopback still needs allowing: another local user may listen
])
def test_only_a_providers_host_gets_a_key_by_default(url, allowed):
    if allowed:
        endpoints.check_allowed(url, sends_key=True, who="student s", environ={})
    else:
        with pytest.raises(InputError, match="student s: its endpoint"):
            endpoints.check_allowed(url, sends_key=True, who="student s", environ={})


def test_allowed_endpoints_cover_their_own_path_only():
    given = ["https://models.example.com/team-a"]
    endpoints.check_allowed("https://models.example.com/team-a/v1", sends_key=True, given=given, who="s", environ={})
    for other in ("https://models.example.com/team-ab", "https://models.example.com/", "http://models.example.com/team-a",
                  "https://models.example.com:444/team-a"):
        with pytest.raises(InputError):
            endpoints.check_allowed(other, sends_key=True, given=given, who="s", environ={})
    env = {"DISTILL_ALLOWED_ENDPOINTS": "https://a.example, https://b.example/v1", "OPENAI_BASE_URL": "http://10.0.0.5:8000/v1"}
    for url in ("https://a.example/v1", "https://b.example/v1", "http://10.0.0.5:8000/v1"):
        endpoints.check_allowed(url, sends_key=True, who="s", environ=env)
    endpoints.check_allowed("http://localhost:11434/v1", sends_key=False, who="s", environ={})  # no key: local is fine


@settings(max_examples=200, deadline=None)
@given(url=st.one_of(st.text(max_size=60), st.from_regex(r"https?://[a-z0-9.:@\[\]-]{1,40}(/[a-z0-9./-]{0,20})?", fullmatch=True)))
def test_no_url_but_a_providers_gets_a_key_unless_allowed(url):
    try:
        endpoints.check_allowed(url, sends_key=True, who="s", environ={})
    except InputError:
        return
    assert url.startswith("https://") and endpoints._parts(url)[1] in endpoints.PROVIDER_HOSTS


def test_a_pull_request_cannot_send_the_key_to_its_own_endpoint(gated, tmp_path, fake_provider, monkeypatch):
    """The student file names a server that is not allowed: gate refuses before any call, and says why."""
    runs, _, _ = gated
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("DISTILL_ALLOWED_ENDPOINTS", raising=False)
    path = llm_student(tmp_path / "pr.student", fake_provider.url)
    result = CliRunner().invoke(app, ["gate", str(path), str(runs), "--min-examples", "1"])
    assert result.exit_code == 3 and fake_provider.requests == []
    assert result.output == (
        f"Error: student llm-student: its endpoint {fake_provider.url} is not a provider's API host nor an endpoint you "
        f"allowed; distill sends no key or input there unless you pass --allow-endpoint {fake_provider.url} (or list it "
        "in DISTILL_ALLOWED_ENDPOINTS)\n"
    )
    assert KEY not in result.output
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), "--student", str(path), "--allow-ungated",
                                      "--", sys.executable, "-c", "pass"])
    assert result.exit_code == 3 and fake_provider.requests == []


def test_gate_names_the_endpoint_it_talks_to(gated, tmp_path, fake_provider, monkeypatch):
    runs, cached, _ = gated
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    fake_provider.responder = lambda body, provider: "answer 1"
    path = llm_student(tmp_path / "ok.student", fake_provider.url, split=read_student_file(cached)[0].split)
    result = CliRunner().invoke(app, ["gate", str(path), str(runs), "--min-examples", "1", "--limit", "3",
                                      "--allow-endpoint", fake_provider.url, "--verdicts", str(tmp_path / "v.parquet")])
    assert result.exit_code in (0, 1), result.output
    assert f"Student llm-student calls {fake_provider.url} (key from ANTHROPIC_API_KEY)" in result.output
    assert len(fake_provider.requests) == 3 and KEY not in result.output
    assert read_summary(tmp_path / "v.parquet")["student_endpoint"] == fake_provider.url


def test_a_loopback_endpoint_with_no_key_of_its_own_still_counts_the_sdks_fallback_token(tmp_path, monkeypatch):
    """The Anthropic SDK sends ANTHROPIC_AUTH_TOKEN when given no key: loopback is keyless only when nothing is sent."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISTILL_ALLOWED_ENDPOINTS", "NOPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-secret-token-never-sent")
    spec = StudentSpec(id="local", kind="endpoint", task="t", teacher_model=None, student_model="m",
                       params={"api": "anthropic", "base_url": "http://127.0.0.1:9/", "api_key_env": "NOPE_API_KEY",
                               "key_required": False})
    prompt = few_shot.Prompt("Classify.", "examples", [], None)
    path = write_student_file(tmp_path / "local.student", spec, few_shot.rows_for(prompt, []))
    with pytest.raises(InputError, match="distill sends no key or input there"):
        load_student(path)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN")
    assert load_student(path).endpoint == "http://127.0.0.1:9/"  # nothing to send: a local server is fine
