"""`distill drift` on the command line: exit statuses, what the terminal says, exact error text."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pyarrow.parquet as pq
import pytest
from drift_support import SAMPLE_END, STUDENT_ID, other_domain
from typer.testing import CliRunner

from distill_cli.cli import app
from distill_cli.serving import is_demoted, marker_path

runner = CliRunner()


def site_end(days: int) -> datetime:
    return SAMPLE_END + timedelta(days=days)


def drift(site, now, *args):
    stores = [str(s) for s in site.stores]
    return runner.invoke(app, ["drift", str(site.student), *stores, "--now", now.isoformat(), *args])


def test_help_has_an_example():
    result = runner.invoke(app, ["drift", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout and "distill drift intent.student runs/ --log drift.parquet" in result.stdout


def test_stable_day_exits_0(site, queries):
    rng = random.Random(1)
    now = site.day(rng.sample(queries[0], 120), 0, rng)
    result = drift(site, now, "--log", str(site.log))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"distill drift: {STUDENT_ID} (cache) on support-intent: OK\n")
    for label in ("window", "agreement", "inputs", "declines", "answers", "spent"):
        assert f"\n  {label} " in result.stdout
    assert result.stderr == f"Log: {site.log} (1 row)\n"


def test_drifted_day_exits_1_and_says_what_changed(site, queries):
    rng = random.Random(2)
    now = site.day(other_domain(150, rng), 0, rng)
    result = drift(site, now, "--log", str(site.log))
    assert result.exit_code == 1
    assert ": DRIFTED\n" in result.stdout.splitlines()[0] + "\n"
    assert "DRIFTED" in result.stdout and "recent inputs differ from the training inputs" in " ".join(result.stdout.split())
    assert "Not demoted: the student still serves (add --demote" in result.stderr
    assert pq.read_table(site.log)["drifted"].to_pylist() == [True]
    assert is_demoted(site.student) is None


def test_demote_exits_1_and_writes_the_marker(site, queries):
    rng = random.Random(3)
    now = site.day(rng.sample(queries[0], 200), 0, rng, wrong_shadow=0.3)
    result = drift(site, now, "--demote")
    assert result.exit_code == 1
    assert f"Demoted: wrote {marker_path(site.student)}; the router sends every call to the teacher" in result.stderr
    assert "No --log: the sequential agreement check saw this run alone." in result.stderr
    assert is_demoted(site.student).student_id == STUDENT_ID


def test_json_is_the_result_object(site, queries):
    rng = random.Random(4)
    now = site.day(rng.sample(queries[0], 100), 0, rng)
    result = drift(site, now, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "drift-result/1" and data["status"] == "ok" and data["student"] == STUDENT_ID
    assert {c["name"]: c["status"] for c in data["checks"]} == {"agreement": "ok", "input": "ok", "decline": "ok", "output": "ok"}


def test_no_calls_in_the_window_exits_5(site):
    result = drift(site, site_end(30))
    assert result.exit_code == 5
    assert result.stderr.startswith(f"Error: {site.stores[0]}, {site.stores[1]}: no calls of task 'support-intent' between ")
    assert result.stderr.endswith("nothing to check: is the job running, and recording to this store?\n")


def test_missing_student_exits_3(site, tmp_path):
    result = runner.invoke(app, ["drift", str(tmp_path / "nope.student"), str(site.traffic)])
    assert result.exit_code == 3 and result.stderr == f"Error: {tmp_path / 'nope.student'}: no such file\n"


def test_a_store_given_as_student_exits_3(site, sample_store):
    part = next(sample_store.glob("date=*/*.parquet"))
    result = runner.invoke(app, ["drift", str(part), str(site.traffic)])
    assert result.exit_code == 3 and result.stderr == f"Error: {part.name} is an example store; drift needs a student file\n"


def test_a_log_of_another_kind_exits_3(site, queries, sample_store):
    rng = random.Random(5)
    now = site.day(rng.sample(queries[0], 60), 0, rng)
    result = drift(site, now, "--log", str(next(sample_store.glob("date=*/*.parquet"))))
    assert result.exit_code == 3
    assert result.stderr.endswith(" is an example store; drift --log needs a drift log\n")


def test_live_teacher_without_a_key_exits_4(site, queries):
    rng = random.Random(6)
    now = site.day(rng.sample(queries[0], 60), 0, rng, shadow_rate=0.0)
    result = drift(site, now, "--live-teacher", "--log", str(site.log))
    assert result.exit_code == 4
    assert result.stderr == "Error: --live-teacher asks the teacher (claude-sonnet-5-5) and needs an API key: set ANTHROPIC_API_KEY\n"
    assert not site.log.exists()


@pytest.mark.parametrize("args", [["--max-spend", "0"], ["--min-agreement", "1.5"], ["--sample", "0"], ["--now", "yesterday"],
                                  ["--judge", "vibes"]])  # --judge is the gate's choice, not a string exit 3 refuses
def test_bad_options_exit_2(site, args):
    result = runner.invoke(app, ["drift", str(site.student), str(site.traffic), *args])
    assert result.exit_code == 2


def test_bad_since_is_a_usage_error_as_in_report(site):
    result = drift(site, site_end(1), "--since", "a while")
    assert result.exit_code == 2
    assert "--since" in result.stderr and "not a duration (24h, 90m, 7d, 2w) or an ISO-8601" in result.stderr
    report = runner.invoke(app, ["report", str(site.traffic), "--since", "a while"])
    assert report.exit_code == 2


def test_github_actions_gets_a_summary_and_an_annotation(site, queries, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rng = random.Random(7)
    now = site.day(other_domain(120, rng), 0, rng)
    result = drift(site, now)
    assert result.exit_code == 1
    assert summary.read_text().startswith(f"### \u274c distill drift drifted: `{STUDENT_ID}` on `support-intent`")
    errors = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    assert errors and errors[0].startswith(f"::error title=distill drift%3A {STUDENT_ID}::inputs: recent inputs differ")
