"""Values in an upstream answer that are no token counts, and answers the proxy cannot read: every call is a row,
bad counts are null with the reason in `metadata`, and the store stays readable by the next writer."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import anthropic
import pytest

from distill_cli import calls, store
from distill_cli.prices import Usage, load_prices, usage_from_anthropic, usage_from_openai
from distill_cli.recorder import record_to

MODEL = "claude-haiku-4-5"
REQUEST = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
RANGE = "(a whole number from 0 to 2**53-1)"


def message(input_tokens) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": input_tokens, "output_tokens": 3}}


class _Canned(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = self.server.body
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if body.startswith(b"event:") else "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def upstream(body: bytes):
    """A provider on 127.0.0.1 (`.url`) that answers every POST with 200 and `.body`, as it is."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.body = body
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def post(rec, request: dict = REQUEST) -> tuple[int, bytes]:
    req = urllib.request.Request(
        rec.anthropic_base_url + "/v1/messages", data=json.dumps(request).encode(), method="POST",
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": "k"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stored(path: Path) -> list[dict]:
    con = store.connect()
    store.examples_view(con, [path], "test")
    cur = con.execute("SELECT * FROM examples ORDER BY ts, id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def record_one(tmp_path: Path, body: bytes):
    with upstream(body) as provider, record_to(tmp_path / "store", anthropic_upstream=provider.url, set_env=False) as rec:
        status, answer = post(rec)
    return rec, status, answer


# ---------------------------------------------------------------------- counts that are no token counts


def test_sdk_call_with_a_count_of_10_to_the_25_is_recorded_with_the_count_null(tmp_path):
    with upstream(json.dumps(message(10**25)).encode()) as provider, \
            record_to(tmp_path / "store", anthropic_upstream=provider.url, set_env=False) as rec:
        client = anthropic.Anthropic(base_url=rec.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
        reply = client.messages.create(**REQUEST)
    assert reply.content[0].text == "ok" and reply.usage.input_tokens == 10**25  # the job gets what upstream said
    assert rec.summary.unrecorded == 0 and rec.summary.total.errors == 0 and rec.summary.total.unpriced == 1
    [row] = stored(tmp_path / "store")
    assert (row["status"], row["error"], row["output"], row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (
        200, None, "ok", None, 3, None)
    assert json.loads(row["metadata"]) == {
        "usage_error": f"usage.input_tokens is 10000000000000000000000000: not a token count {RANGE}"}


@pytest.mark.parametrize("value, shown", [
    (10**25, "10000000000000000000000000"), (2**63, "9223372036854775808"), (2**53, "9007199254740992"),
    (-1, "-1"), (1.5, "1.5"), (1e300, "1e+300"), (float("nan"), "NaN"), (float("inf"), "Infinity"),
    (True, "true"), ("12", '"12"'), ([1], "[1]"),
])
def test_a_count_that_is_no_token_count_is_null_with_the_reason(tmp_path, value, shown):
    rec, status, answer = record_one(tmp_path, json.dumps(message(value)).encode())
    assert status == 200 and json.loads(answer)["content"][0]["text"] == "ok"
    assert rec.summary.unrecorded == 0, rec.summary.write_error  # a NaN used to make "answered but not recorded"
    [row] = stored(tmp_path / "store")
    assert row["input_tokens"] is None and row["output_tokens"] == 3 and row["cost_usd"] is None
    assert row["error"] is None and row["status"] == 200 and row["output"] == "ok"
    assert json.loads(row["metadata"])["usage_error"] == f"usage.input_tokens is {shown}: not a token count {RANGE}"


def test_a_journal_holding_such_a_row_is_recovered_by_the_next_writer(tmp_path):
    """The issue's reproduction: a count beyond int64 reached the journal, and recovering it failed every
    later `distill record` on the store (exit 70). Now the row that reaches the journal has the count null."""
    row = calls.anthropic_row(REQUEST, message(10**25), prices=load_prices(), metadata='{"team": "ops"}')
    journal = store.journal_dir(tmp_path / "store")
    journal.mkdir(parents=True)
    (journal / "01DEADWRITER.jsonl").write_text(store._journal_line(store.complete_row(row)) + "\n")
    with store.StoreWriter(tmp_path / "store") as writer:
        assert writer.recovered == 1
    [kept] = stored(tmp_path / "store")
    assert kept["input_tokens"] is None and kept["output_tokens"] == 3 and kept["output"] == "ok"
    assert json.loads(kept["metadata"])["team"] == "ops"


def test_good_counts_are_kept_and_priced():
    row = calls.anthropic_row(REQUEST, message(7.0), prices=load_prices())
    assert row["input_tokens"] == 7 and row["cost_usd"] is not None and "metadata" not in row


def test_usage_counts_worked_out_from_a_bad_one_are_unknown_too():
    u = usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": -5}})
    assert u.columns() == {"input_tokens": None, "output_tokens": 2, "cache_read_tokens": None,
                           "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0}
    assert u.problem == f"usage.prompt_tokens_details.cached_tokens is -5: not a token count {RANGE}"
    assert load_prices().cost("gpt-4o", u) is None
    u = usage_from_anthropic({"input_tokens": 1, "output_tokens": "x", "cache_creation_input_tokens": 2.5})
    assert u.unknown == {"output_tokens", "cache_write_5m_tokens"}
    assert u.problem == f'usage.cache_creation_input_tokens is 2.5, usage.output_tokens is "x": not token counts {RANGE}'
    assert usage_from_anthropic("lots").unknown == set(Usage().columns())
    assert usage_from_anthropic({"input_tokens": None}) == Usage()  # a missing or null count is 0, as before


def test_a_stream_whose_usage_is_no_token_count_is_recorded_with_the_count_null(tmp_path):
    start = {**message(None), "content": [], "usage": {"input_tokens": 10**25, "output_tokens": 1}}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": float("nan")}},
        {"type": "message_stop"},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    with upstream(body) as provider, record_to(tmp_path / "store", anthropic_upstream=provider.url, set_env=False) as rec:
        status, answer = post(rec, {**REQUEST, "stream": True})
    assert (status, answer) == (200, body) and rec.summary.unrecorded == 0
    [row] = stored(tmp_path / "store")
    assert (row["error"], row["output"], row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (
        None, "ok", None, None, None)
    assert json.loads(row["metadata"])["usage_error"] == (
        f"usage.input_tokens is 10000000000000000000000000, usage.output_tokens is NaN: not token counts {RANGE}")


# ---------------------------------------------------------------------- answers the proxy cannot read


def test_a_200_answer_that_is_not_json_is_an_error_row(tmp_path):
    rec, status, answer = record_one(tmp_path, b"<html>gateway says hi</html>")
    assert (status, answer) == (200, b"<html>gateway says hi</html>")  # the job gets the bytes as they came
    assert rec.summary.total.errors == 1 and rec.summary.unrecorded == 0
    [row] = stored(tmp_path / "store")
    assert row["status"] == 200 and row["output"] is None and row["response_json"] is None
    assert row["error"] == "unreadable answer: not JSON (Expecting value: line 1 column 1 (char 0))"


@pytest.mark.parametrize("body, error", [
    (b"[1, 2]", "unreadable answer: JSON list, not an object"),
    (b"", "unreadable answer: no body"),
    (b'{"hello": "world"}', "unreadable answer: a JSON object that is no message"),
    (b'{"type": "message", "content": [7]}', "unreadable answer: AttributeError: 'int' object has no attribute 'get'"),
    (b'{"type": "message", "content": [], "model": 5, "stop_reason": {}}', None),
    (b"\x80abc", "unreadable answer: not JSON ('utf-8' codec can't decode byte 0x80 in position 0: invalid start byte)"),
])
def test_every_answer_is_one_row_and_an_unreadable_one_says_so(tmp_path, body, error):
    rec, status, _ = record_one(tmp_path, body)
    assert status == 200 and rec.summary.unrecorded == 0, rec.summary.write_error
    [row] = stored(tmp_path / "store")
    assert row["status"] == 200 and row["error"] == error
    if error is None:  # odd but readable: a model id or stop reason that is no string is left out, not a crash
        assert row["model"] == MODEL and row["stop_reason"] is None


def test_report_never_reprices_a_call_whose_counts_are_unknown(tmp_path):
    from distill_cli.report import build_report

    for count in (10**25, 12):
        with upstream(json.dumps(message(count)).encode()) as provider, \
                record_to(tmp_path / "store", anthropic_upstream=provider.url, set_env=False) as rec:
            post(rec)
    recorded = build_report([tmp_path / "store"]).totals
    repriced = build_report([tmp_path / "store"], prices=load_prices()).totals
    price = load_prices().lookup(MODEL)
    for totals in (recorded, repriced):  # the bad call's cost is unknown either way, not the cost of its other counts
        assert totals["unknown_cost_calls"] == 1 and totals["calls"] == 2
        assert totals["cost_usd"] == pytest.approx((12 * price.input + 3 * price.output) / 1e6)


def test_record_cli_says_which_calls_had_counts_that_are_no_token_counts(tmp_path):
    import subprocess
    import sys

    job = tmp_path / "job.py"
    job.write_text(
        "import json, os, urllib.request\n"
        f"body = json.dumps({REQUEST!r}).encode()\n"
        "req = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', data=body,\n"
        "    headers={'x-api-key': 'k', 'anthropic-version': '2023-06-01', 'content-type': 'application/json'})\n"
        "print(json.loads(urllib.request.urlopen(req).read())['content'][0]['text'])\n"
    )
    with upstream(json.dumps(message(float("nan"))).encode()) as provider:
        result = subprocess.run([sys.executable, "-m", "distill_cli", "record", "--store", str(tmp_path / "store"),
                                 "--anthropic-upstream", provider.url, "--", sys.executable, str(job)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert "answered but not recorded" not in result.stderr
    assert ("Warning: 1 calls had usage counts that are no token counts; those counts and the calls' cost are null "
            "(each row's metadata usage_error says which).") in result.stderr.replace("\n", " ")
    assert len(stored(tmp_path / "store")) == 1
