"""Anthropic Message Batches under `distill record`: the real `anthropic` SDK creates a batch, polls it and fetches its
results through the proxy, against the fake provider on loopback; one row per request/result pair, at batch rates."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from test_record_proxy import ANT_KEY, ant, oai, raw, recording, stored

from distill_cli.report import build_report

MODEL = "claude-haiku-4-5"  # $1 input, $5 output per million tokens; batch: $0.50 input, $2.50 output (data/prices.json)


def params(text: str, max_tokens: int = 64) -> dict:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


REQUESTS = [
    {"custom_id": "a", "params": params("where is my card")},
    {"custom_id": "b", "params": params("please cancel my order now")},
]


def batch_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * 0.50 + output_tokens * 2.50) / 1_000_000


def run_batch(rec, requests, fetches: int = 1):
    client = ant(rec)
    batch = client.messages.batches.create(requests=requests)
    polled = client.messages.batches.retrieve(batch.id)
    results = [list(client.messages.batches.results(batch.id)) for _ in range(fetches)]
    return batch, polled, results


def test_each_request_result_pair_is_a_row_at_batch_rates(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        before = datetime.now(timezone.utc)
        batch, polled, [results] = run_batch(rec, REQUESTS)
    assert polled.processing_status == "ended" and polled.results_url.startswith(rec.anthropic_base_url)
    by_id = {r.custom_id: r.result for r in results}
    assert by_id["a"].type == "succeeded" and by_id["a"].message.content[0].text == "echo: where is my card"
    rows = {json.loads(r["metadata"])["custom_id"]: r for r in stored(tmp_path / "store")}
    assert sorted(rows) == ["a", "b"]
    a, b = rows["a"], rows["b"]
    for row, custom_id in ((a, "a"), (b, "b")):
        assert json.loads(row["metadata"]) == {"batch_id": batch.id, "custom_id": custom_id, "service_tier": "batch"}
        assert (row["provider"], row["endpoint"], row["model"]) == ("anthropic", "/v1/messages/batches", MODEL)
        assert (row["status"], row["error"], row["source"]) == (200, None, "proxy")
        assert row["ts"] >= before  # when the results were fetched, not when the batch was made
        assert ANT_KEY not in json.dumps(row, default=str)
    assert a["input"] == "where is my card" and a["output"] == "echo: where is my card"
    assert json.loads(a["request_json"]) == REQUESTS[0]["params"]
    assert json.loads(a["response_json"])["id"] == by_id["a"].message.id
    # By hand: "where is my card" is 4 input tokens in the fake, "echo: where is my card" 5 output tokens;
    # at Haiku 4.5's batch rates 4 x $0.50 + 5 x $2.50 per million = $0.0000145 (standard would be $0.000029).
    assert (a["input_tokens"], a["output_tokens"]) == (4, 5)
    assert a["cost_usd"] == pytest.approx(batch_cost(4, 5)) == pytest.approx(0.0000145)
    assert (b["input_tokens"], b["output_tokens"]) == (5, 6)
    assert b["cost_usd"] == pytest.approx(batch_cost(5, 6)) == pytest.approx(0.0000175)
    # report: the whole spend is batch spend
    report = build_report([tmp_path / "store"])
    assert report.totals["batch_calls"] == 2
    assert report.totals["batch_cost_usd"] == pytest.approx(0.0000145 + 0.0000175)
    assert report.totals["cost_usd"] == pytest.approx(0.0000145 + 0.0000175)


def test_results_fetched_twice_are_recorded_once(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        _, _, (first, second) = run_batch(rec, REQUESTS, fetches=2)
    assert [r.custom_id for r in first] == [r.custom_id for r in second] == ["a", "b"]
    assert len(stored(tmp_path / "store")) == 2


def test_a_batch_whose_results_are_never_fetched_writes_nothing(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        client = ant(rec)
        batch = client.messages.batches.create(requests=REQUESTS)
        client.messages.batches.retrieve(batch.id)
    assert not (tmp_path / "store").exists() or stored(tmp_path / "store") == []


def test_errored_canceled_and_expired_results_are_error_rows_without_cost(tmp_path, fake_provider):
    requests = [{"custom_id": "errored-1", "params": params("hi there")},
                {"custom_id": "canceled-1", "params": params("hi again")},
                {"custom_id": "expired-1", "params": params("hi once more")},
                {"custom_id": "ok", "params": params("hi")}]
    with recording(tmp_path, fake_provider) as rec:
        batch, _, [results] = run_batch(rec, requests)
    assert [r.result.type for r in results] == ["errored", "canceled", "expired", "succeeded"]
    rows = {json.loads(r["metadata"])["custom_id"]: r for r in stored(tmp_path / "store")}
    assert rows["errored-1"]["error"] == "batch result errored: invalid_request_error: max_tokens: Field required"
    assert rows["canceled-1"]["error"] == "batch result canceled"
    assert rows["expired-1"]["error"] == "batch result expired"
    for custom_id in ("errored-1", "canceled-1", "expired-1"):
        row = rows[custom_id]
        assert row["cost_usd"] is None and row["output"] is None and row["status"] == 200
        assert json.loads(row["metadata"])["batch_id"] == batch.id
    assert rows["ok"]["error"] is None and rows["ok"]["cost_usd"] == pytest.approx(batch_cost(1, 2))


def test_every_byte_the_job_sees_is_the_upstreams_but_the_results_url(tmp_path, fake_provider):
    headers = {"x-api-key": ANT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    body = json.dumps({"requests": REQUESTS}, indent=1).encode()
    with recording(tmp_path, fake_provider) as rec:
        status, _, created = raw(rec.anthropic_base_url + "/v1/messages/batches", body, headers)
        batch_id = json.loads(created)["id"]
        got = raw(rec.anthropic_base_url + f"/v1/messages/batches/{batch_id}", headers=headers, method="GET")
        results = raw(rec.anthropic_base_url + f"/v1/messages/batches/{batch_id}/results", headers=headers, method="GET")
        listed = raw(rec.anthropic_base_url + "/v1/messages/batches", headers=headers, method="GET")
    direct = raw(fake_provider.url + f"/v1/messages/batches/{batch_id}", headers=headers, method="GET")
    assert status == 200 and fake_provider.requests[0].body == body  # what the job sent reaches upstream unchanged
    # the batch object: byte for byte, but for results_url's prefix, which names the proxy so the SDK fetches there
    assert got[0] == direct[0] == 200
    assert got[2] == direct[2].replace(fake_provider.url.encode(), rec.anthropic_base_url.encode())
    assert got[2] != direct[2] and json.loads(created)["results_url"].startswith(rec.anthropic_base_url)
    # the results: byte for byte (the fake answers them anew, so compare with the upstream's answer to the proxy)
    upstream_results = [r for r in fake_provider.requests if r.path.endswith("/results")]
    assert len(upstream_results) == 1 and results[0] == 200 and results[2].count(b"\n") == 2
    assert listed[0] == 404  # a path the fake does not serve passes through as the fake answered
    assert len(stored(tmp_path / "store")) == 2


# ---------------------------------------------------------------------- OpenAI Batch

OAI_MODEL = "gpt-4o"  # $2.50 input, $10 output per million tokens; batch: $1.25 input, $5 output (data/prices.json)


def oai_batch_input(*lines: tuple[str, str]) -> bytes:
    return b"".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": OAI_MODEL, "messages": [{"role": "user", "content": text}]}}).encode()
                    + b"\n" for cid, text in lines)


def run_openai_batch(rec, content: bytes, fetches: int = 1):
    client = oai(rec)
    uploaded = client.files.create(file=("batch.jsonl", content), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    polled = client.batches.retrieve(batch.id)
    outputs = [client.files.content(polled.output_file_id).content for _ in range(fetches)]
    return batch, polled, outputs


def oai_batch_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * 1.25 + output_tokens * 5.00) / 1_000_000


def test_openai_batch_pairs_are_rows_at_batch_rates_once(tmp_path, fake_provider):
    content = oai_batch_input(("x", "where is my card"), ("y", "please cancel my order now"))
    with recording(tmp_path, fake_provider) as rec:
        batch, polled, (output, again) = run_openai_batch(rec, content, fetches=2)
        plain = oai(rec).files.create(file=("notes.jsonl", content), purpose="assistants")  # not a batch's: unrecorded
        oai(rec).files.content(plain.id)
    assert polled.status == "completed" and output == again
    assert fake_provider.requests[0].body.count(content) == 1  # the upload reached upstream as the job sent it
    answers = {json.loads(line)["custom_id"]: json.loads(line) for line in output.splitlines()}
    rows = {json.loads(r["metadata"])["custom_id"]: r for r in stored(tmp_path / "store")}
    assert sorted(rows) == ["x", "y"]
    x, y = rows["x"], rows["y"]
    for row, custom_id in ((x, "x"), (y, "y")):
        assert json.loads(row["metadata"]) == {"batch_id": batch.id, "custom_id": custom_id, "service_tier": "batch"}
        assert (row["provider"], row["endpoint"], row["model"]) == ("openai", "/v1/chat/completions", OAI_MODEL)
        assert (row["status"], row["error"]) == (200, None)
    assert x["output"] == "echo: where is my card"
    assert json.loads(x["response_json"])["id"] == answers["x"]["response"]["body"]["id"]
    # By hand: 4 prompt words, 5 completion words; gpt-4o batch $1.25 / $5 per million = $0.00003
    assert (x["input_tokens"], x["output_tokens"]) == (4, 5)
    assert x["cost_usd"] == pytest.approx(oai_batch_cost(4, 5)) == pytest.approx(0.00003)
    assert (y["input_tokens"], y["output_tokens"]) == (5, 6)
    assert y["cost_usd"] == pytest.approx(oai_batch_cost(5, 6)) == pytest.approx(0.00003625)
    report = build_report([tmp_path / "store"])
    # the report rounds dollars to 6 places (round_usd)
    assert report.totals["batch_calls"] == 2 and report.totals["batch_cost_usd"] == pytest.approx(0.00006625, abs=5e-7)


def test_an_openai_batch_never_downloaded_writes_nothing(tmp_path, fake_provider):
    with recording(tmp_path, fake_provider) as rec:
        client = oai(rec)
        uploaded = client.files.create(file=("batch.jsonl", oai_batch_input(("x", "hi"))), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        client.batches.retrieve(batch.id)
    assert not (tmp_path / "store").exists() or stored(tmp_path / "store") == []


def test_an_openai_batch_request_upstream_refused_is_an_error_row_without_cost(tmp_path, fake_provider):
    bad = json.dumps({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": OAI_MODEL, "messages": []}}).encode() + b"\n"
    with recording(tmp_path, fake_provider) as rec:
        run_openai_batch(rec, bad + oai_batch_input(("ok", "hi")))
    rows = {json.loads(r["metadata"])["custom_id"]: r for r in stored(tmp_path / "store")}
    assert rows["bad"]["status"] == 400 and rows["bad"]["cost_usd"] is None
    assert rows["bad"]["error"].startswith("invalid_request_error: ")
    assert rows["ok"]["error"] is None and rows["ok"]["cost_usd"] == pytest.approx(oai_batch_cost(1, 2))
