"""`distill record -- CMD` and `--serve` as a user runs them: real subprocesses, a job using the SDKs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anthropic
import pytest
from test_record_proxy import every_byte, stored
from typer.testing import CliRunner

from distill_cli.cli import app

ANT_KEY = "sk-ant-api03-" + "Hj3_kP" * 15 + "AA"
OAI_KEY = "sk-proj-" + "Vb8nQr" * 10
DISTILL = [sys.executable, "-m", "distill_cli", "record"]


def write_job(tmp_path: Path, body: str, sdk: bool = True) -> Path:
    """A job whose `ask(text)` calls Messages through the anthropic SDK (or plain urllib: it starts faster)."""
    if sdk:
        ask = (
            "import anthropic\nant = anthropic.Anthropic(max_retries=0)\n"
            "def ask(text, **kw):\n"
            "    m = ant.messages.create(model='claude-haiku-4-5', max_tokens=50, messages=[{'role': 'user', 'content': text}], **kw)\n"
            "    return m.content[0].text\n"
        )
    else:
        ask = (
            "import json, urllib.request\n"
            "def ask(text):\n"
            "    body = json.dumps({'model': 'claude-haiku-4-5', 'max_tokens': 50, 'messages': [{'role': 'user', 'content': text}]})\n"
            "    req = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', data=body.encode(),\n"
            "        headers={'x-api-key': os.environ['ANTHROPIC_API_KEY'], 'anthropic-version': '2023-06-01'})\n"
            "    return json.loads(urllib.request.urlopen(req).read())['content'][0]['text']\n"
        )
    path = tmp_path / "job.py"
    path.write_text("import os, signal, sys, time\n" + ask + textwrap.dedent(body))
    return path


def job_env() -> dict:
    return {**os.environ, "ANTHROPIC_API_KEY": ANT_KEY, "OPENAI_API_KEY": OAI_KEY}


def upstreams(fake) -> list[str]:
    return ["--anthropic-upstream", fake.url, "--openai-upstream", fake.url + "/v1"]


def test_job_exit_status_summary_rows_and_no_key_anywhere(tmp_path, fake_provider):
    job = write_job(
        tmp_path,
        """
        import openai
        oai = openai.OpenAI(max_retries=0)
        print(ask("hello one"), flush=True)
        ask("hello two, card 1234-5678", extra_headers={"x-distill-task": "greeting"})
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
        sys.exit(7)
        """,
    )
    s = tmp_path / "store"
    result = subprocess.run(
        [*DISTILL, "--store", str(s), *upstreams(fake_provider), "--redact", r"\d{4}-\d{4}", "--format", "json",
         "--", sys.executable, str(job)],
        capture_output=True, text=True, env=job_env(), timeout=60,
    )
    assert result.returncode == 7, result.stderr
    assert result.stderr.startswith("echo: hello one\n")  # --format json: the job's output goes to stderr
    summary = json.loads(result.stdout)
    assert (summary["calls"], summary["errors"], summary["exit_status"]) == (3, 0, 7)
    assert len(summary["tasks"]) == 3
    assert summary["tasks"]["greeting"]["calls"] == 1 and summary["cost_usd"] > 0
    assert f"Recorded 3 calls into {s} (0 errors):" in result.stderr
    assert "greeting" in result.stderr and "tokens in" in result.stderr
    rows = stored(s)
    assert [r["provider"] for r in rows] == ["anthropic", "anthropic", "openai"]
    assert rows[1]["input"] == "hello two, card [REDACTED]" and rows[2]["output_tokens"] > 0
    for text in (result.stdout, result.stderr):
        assert ANT_KEY not in text and OAI_KEY not in text
    assert ANT_KEY.encode() not in every_byte(s) and OAI_KEY.encode() not in every_byte(s)


def test_job_that_cannot_start(tmp_path):
    result = subprocess.run(
        [*DISTILL, "--store", str(tmp_path / "s"), "--", "no-such-command-xyz", "--flag"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 127
    assert result.stderr == "Error: no-such-command-xyz: command not found\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_and_late_calls_recorded(tmp_path, fake_provider, sig):
    job = write_job(
        tmp_path,
        """
        def stop(signum, frame):
            ask("goodbye")
            sys.exit(40 + signum)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        ask("hello")
        print("ready", flush=True)
        time.sleep(30)
        sys.exit(1)
        """,
        sdk=False,
    )
    s = tmp_path / "store"
    proc = subprocess.Popen(
        [*DISTILL, "--store", str(s), *upstreams(fake_provider), "--", sys.executable, str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=job_env(),
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 40 + sig, err
    assert [r["input"] for r in stored(s)] == ["hello", "goodbye"]
    assert "Recorded 2 calls" in err


def _alive(pid: int) -> bool:
    """Whether a process (not yet reaped: the job is not our child) is running, zombies counted dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_recorder_loses_nothing_the_job_got(tmp_path, fake_provider):
    job = write_job(
        tmp_path,
        """
        for i in range(5):
            ask(f"call {i}")
        with ant.messages.stream(model="claude-haiku-4-5", max_tokens=9, messages=[{"role": "user", "content": "s"}]) as s:
            s.get_final_message()
        print(os.getpid(), flush=True)
        time.sleep(30)
        """,
    )
    s = tmp_path / "store"
    proc = subprocess.Popen(
        [*DISTILL, "--store", str(s), *upstreams(fake_provider), "--", sys.executable, str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=job_env(),
    )
    job_pid = int(proc.stdout.readline())
    proc.kill()  # SIGKILL: no flush, no cleanup
    proc.wait(timeout=10)
    # The job is not left running orphaned, its calls going nowhere: the kernel sends it SIGTERM.
    deadline = time.monotonic() + 10
    while _alive(job_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = _alive(job_pid)
    if orphaned:
        os.kill(job_pid, signal.SIGKILL)
    assert not orphaned
    proc.stdout.close()
    proc.stderr.close()
    assert list(s.glob("date=*/*.parquet")) == []  # nothing rolled: it is all in the journal
    again = subprocess.run(
        [*DISTILL, "--store", str(s), "--", sys.executable, "-c", "pass"], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert "Recovered 6 calls a previous recorder had journaled." in again.stderr
    rows = stored(s)
    assert sorted(r["input"] for r in rows) == ["call 0", "call 1", "call 2", "call 3", "call 4", "s"]
    assert len({r["run_id"] for r in rows}) == 1 and all(r["error"] is None for r in rows)


def test_serve_prints_exports_records_and_exits_0_on_sigterm(tmp_path, fake_provider):
    s = tmp_path / "store"
    proc = subprocess.Popen(
        [*DISTILL, "--store", str(s), "--serve", *upstreams(fake_provider)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    assert lines[0].startswith("export ANTHROPIC_BASE_URL=http://127.0.0.1:")
    base = lines[0].strip().split("=", 1)[1]
    assert lines[1] == f"export OPENAI_BASE_URL={base}/v1\n"
    client = anthropic.Anthropic(base_url=base, api_key=ANT_KEY, max_retries=0)
    for text in ("one", "two"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": text}])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Recorded 2 calls" in err and ANT_KEY not in err
    assert [r["input"] for r in stored(s)] == ["one", "two"]
    assert list((s / "_journal").glob("*.jsonl")) == []  # flushed into parts


@pytest.mark.parametrize(
    "args, message",
    [
        (["--serve", "--", "true"], "give either --serve or a command after --, not both"),
        ([], "nothing to record: give a command after --"),
        (["--redact", "a(", "--", "true"], "Invalid value for --redact: 'a(' is not a regular expression"),
        (["--openai-upstream", "api.openai.com", "--", "true"], "'api.openai.com' is not an http:// or https:// URL"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_busy_port_and_bad_store_are_input_errors(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "s"), "--serve", "--port", str(port)])
    assert result.exit_code == 3
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["record", "--store", str(tmp_path / "file"), "--", "true"])
    assert result.exit_code == 3
    assert result.output == f"Error: {tmp_path / 'file'}: is a file; a store to write to must be a directory\n"


def test_format_json_keeps_stdout_for_the_summary(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "distill_cli", "record", "--store", str(tmp_path / "s"), "--format", "json", "--",
         sys.executable, "-c", "print('job output line')"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["calls"] == 0  # nothing but the JSON on stdout
    assert "job output line" in result.stderr


def test_a_journal_segment_that_cannot_be_recovered_is_quarantined_and_the_job_runs(tmp_path):
    from test_store import BAD_SEGMENT, write_bad_segment

    s = tmp_path / "store"
    write_bad_segment(s)
    result = subprocess.run([*DISTILL, "--store", str(s), "--format", "json", "--", sys.executable, "-c", "print('ran')"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # was 70, before the job started
    moved = s / "_quarantine" / BAD_SEGMENT
    assert (f"Warning: journal segment {BAD_SEGMENT} could not be turned into parts (ArrowInvalid: Failed to convert "
            f"JSON to int64, couldn't parse:{10**25}); moved to {moved}\n") in result.stderr
    assert result.stderr.startswith("ran\n") and moved.exists()
    assert json.loads(result.stdout)["quarantined"] == [
        {"segment": BAD_SEGMENT, "path": str(moved), "reason": f"ArrowInvalid: Failed to convert JSON to int64, "
                                                               f"couldn't parse:{10**25}"}]
