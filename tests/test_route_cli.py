"""`distill record --student / --replay` as a user runs them: exit statuses, messages, real jobs and --serve."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest
from test_record_cli import DISTILL, job_env, upstreams, write_job
from test_record_proxy import ANT_KEY, stored
from test_route import demote, write_cache_student, write_verdicts
from typer.testing import CliRunner

from distill_cli import canonical
from distill_cli.cli import app
from distill_cli.console import record as record_command
from distill_cli.recorder import record_to, router
from distill_cli.students import read_student_file

ROOT = Path(__file__).resolve().parent.parent
TASK = "support"


def job_request(text: str) -> dict:
    """The request write_job's `ask(text)` sends."""
    return {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}


def known_student(tmp_path: Path, *, gated: bool = True) -> Path:
    """A cache student of task `support` that knows the answer to "hello one" only."""
    path = write_cache_student(tmp_path / "intent.student", task=TASK,
                               answers={canonical.input_hash(job_request("hello one")): "greeting"})
    if gated:
        write_verdicts(Path(f"{path}.verdicts.parquet"), "cache-student", passed=True, student=path)
    return path


def run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*DISTILL, *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def test_an_ungated_student_is_refused_before_the_job_runs(tmp_path):
    student = known_student(tmp_path, gated=False)
    marker = tmp_path / "job-ran"
    command = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), "--student", str(student), *command])
    assert result.exit_code == 3 and not marker.exists()
    assert result.output == (
        f"Error: {student}: student cache-student has no passing gate (no verdicts for it in "
        f"{student}.verdicts.parquet (not found)); run `distill gate {student} STORE --verdicts "
        f"{student}.verdicts.parquet` first, or pass --allow-ungated\n"
    )
    failed = write_verdicts(tmp_path / "gate.parquet", "cache-student", passed=False, reason="collecting (40/100)")
    result = CliRunner().invoke(
        app, ["record", "--store", str(tmp_path / "s"), "--student", str(student), "--verdicts", str(failed), *command])
    assert result.exit_code == 3 and not marker.exists()
    assert result.output == (
        f"Error: {student}: student cache-student failed its gate in {failed} (collecting (40/100)); "
        "it may not serve (--allow-ungated overrides)\n"
    )
    result = CliRunner().invoke(
        app, ["record", "--store", str(tmp_path / "s"), "--student", str(student), "--allow-ungated", *command])
    assert result.exit_code == 0 and marker.exists()
    assert f"Warning: {student}: student cache-student has no passing gate; serving it anyway (--allow-ungated)" in result.output


def test_a_gated_student_answers_a_real_job(tmp_path, fake_provider):
    student = known_student(tmp_path)
    job = write_job(tmp_path, """
        print(ask("hello one"), flush=True)
        print(ask("hello two"), flush=True)
        print(ask("hello one", extra_headers={"x-distill-route": "teacher"}), flush=True)
        sys.exit(3)
        """)
    s = tmp_path / "store"
    result = run(["--store", s, *upstreams(fake_provider), "--task", TASK, "--student", student, "--shadow-rate", "1",
                  "--format", "json", "--", sys.executable, job], env=job_env())
    assert result.returncode == 3, result.stderr
    assert "greeting\necho: hello two\necho: hello one\n" in result.stderr  # --format json: job output on stderr
    summary = json.loads(result.stdout)
    [route] = summary["routing"]["students"]
    assert (route["student"], route["served"], route["declined"], route["forced_teacher"], route["shadows"]) == (
        "cache-student", 1, 1, 1, 1)
    assert route["gate"] == {"verdicts": f"{student}.verdicts.parquet", "passed": True, "reason": "9.0x cheaper at 89% coverage",
                             "digest": route["digest"]}
    assert route["digest"] == read_student_file(student)[0].digest
    assert (f"Student cache-student (cache, gate passed in {student}.verdicts.parquet) answers task support; "
            "shadow rate 1.") in result.stderr
    assert ("Student cache-student answered 1 of 3 calls (33.3%); the teacher answered 2 (declined 1, errors 0, "
            "timeouts 0, forced 1, demoted 0); 1 shadow calls.") in result.stderr
    assert "unknown" not in result.stderr.lower()  # the student's id is not an unpriced model
    served = sorted((r["input"], r["served_by"]) for r in stored(s))
    assert served == [("hello one", "shadow"), ("hello one", "student"), ("hello one", "teacher"), ("hello two", "fallback")]


def test_a_demoted_student_warns_and_the_job_goes_on(tmp_path, fake_provider):
    student = known_student(tmp_path)
    demote(student, student_id="cache-student")
    job = write_job(tmp_path, 'print(ask("hello one"))\n', sdk=False)
    s = tmp_path / "store"
    result = run(["--store", s, *upstreams(fake_provider), "--task", TASK, "--student", student, "--", sys.executable, job],
                 env=job_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello one\n"
    assert "Warning: student cache-student demoted at " in result.stderr
    assert "; the teacher answers until a new gate passes. The teacher answers its calls." in result.stderr
    assert [(r["served_by"], r["student_id"]) for r in stored(s)] == [("teacher", None)]


def test_serve_notices_a_demotion_within_the_recheck_interval(tmp_path, fake_provider):
    student = known_student(tmp_path)
    s = tmp_path / "store"
    proc = subprocess.Popen(
        [*DISTILL, "--store", str(s), "--serve", *upstreams(fake_provider), "--task", TASK, "--student", str(student),
         "--recheck", "0.2", "--shadow-rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = proc.stdout.readline().strip().split("=", 1)[1]
        client = anthropic.Anthropic(base_url=base, api_key=ANT_KEY, max_retries=0)
        before = client.messages.create(**job_request("hello one"))
        demote(student, student_id="cache-student")
        time.sleep(0.3)
        after = client.messages.create(**job_request("hello one"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (before.model, before.content[0].text) == ("cache-student", "greeting")
    assert (after.model, after.content[0].text) == ("claude-haiku-4-5", "echo: hello one")
    assert "Warning: student cache-student demoted at " in err
    assert [r["served_by"] for r in stored(s)] == ["student", "teacher"]


def test_replay_runs_a_job_offline(tmp_path, fake_provider):
    recorded = tmp_path / "recorded"
    job = write_job(tmp_path, """
        print(ask("hello one"), flush=True)
        print(ask("never recorded"), flush=True)
        """)
    with record_to(recorded, anthropic_upstream=fake_provider.url, set_env=False) as rec:
        anthropic.Anthropic(base_url=rec.anthropic_base_url, api_key=ANT_KEY).messages.create(**job_request("hello one"))
    nowhere = ["--anthropic-upstream", "http://127.0.0.1:9", "--openai-upstream", "http://127.0.0.1:9/v1"]
    s = tmp_path / "replayed"
    result = run(["--store", s, *nowhere, "--replay", recorded, "--", sys.executable, job],
                 env={**job_env(), "ANTHROPIC_API_KEY": "replay-no-key"})
    assert result.returncode == 1  # the job's SDK raised on the miss
    assert result.stdout == "echo: hello one\n"
    # The SDK's wording of the error varies by version ("Error code: 404 ..." or "404 ..."): the class and status do not.
    assert re.search(r"anthropic\.NotFoundError: (Error code: )?404", result.stderr)
    assert "distill replay: no recorded answer to this request in" in result.stderr
    assert f"Replaying 1 recorded answers from {recorded} (a call it never saw: error)." in result.stderr
    assert f"Replay: 1 answers from {recorded}, 1 misses." in result.stderr
    assert [(r["input"], r["source"], r["status"]) for r in stored(s)] == [
        ("hello one", "replay", 200), ("never recorded", "replay", 404)]
    assert len(fake_provider.requests) == 1  # the recording run's call only


def test_demo_messages_replay_hit_the_sample_store(tmp_path, sample_store):
    from distill_cli.students.build import build_student

    student = tmp_path / "cache.student"
    build_student(sample_store, student, task="support-intent", kind="cache")
    sys.path.insert(0, str(ROOT / "samples"))
    import demo_messages

    messages = tmp_path / "messages.txt"
    assert demo_messages.main([str(student), str(sample_store), "-n", "40", "-o", str(messages)]) == 0
    assert len(messages.read_text().splitlines()) == 40
    s = tmp_path / "runs"
    result = run(["--store", s, "--task", "support-intent", "--student", student, "--allow-ungated", "--replay", sample_store,
                  "--anthropic-upstream", "http://127.0.0.1:9", "--", sys.executable, ROOT / "samples" / "support_job.py",
                  messages], env={**job_env(), "ANTHROPIC_API_KEY": "replay-no-key"})
    assert result.returncode == 0, result.stderr
    assert "classified 40 messages" in result.stderr
    rows = stored(s)
    # held-out messages: the cache student has seen none of them, and the replay answers every one
    assert len(rows) == 40 and {(r["served_by"], r["source"], r["status"]) for r in rows} == {("fallback", "replay", 200)}


@pytest.mark.parametrize("args, message", [
    (["--student", "x.student", "--import", "calls.jsonl"], "--student and --replay answer a job's calls"),
    (["--shadow-rate", "1.5", "--", "true"], "Invalid value for '--shadow-rate'"),
    (["--replay-miss", "maybe", "--", "true"], "Invalid value for '--replay-miss'"),
])
def test_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_the_command_defaults_are_the_routers():
    assert record_command.DEFAULT_SHADOW_RATE == router.DEFAULT_SHADOW_RATE
    assert record_command.DEFAULT_STUDENT_TIMEOUT_MS == router.DEFAULT_STUDENT_TIMEOUT * 1000
    assert record_command.DEFAULT_RECHECK_SECONDS == router.DEFAULT_RECHECK_SECONDS
