"""What the recording proxy adds to a call: latency, throughput, rows lost.

The same load goes straight to a loopback upstream and through `distill record
--serve` (a real subprocess, journaling to a temporary store), interleaved in
rounds so both see the same machine noise. Scenarios: concurrency 1 and 32,
JSON and SSE calls of the APIs `--api` names (Messages by default; `chat` for
chat completions, `responses` for the Responses API). The upstream is a minimal
aiohttp server in its own process answering a fixed Anthropic message, chat
completion or Responses API `response` (or its event stream) at once, so what is
measured is the proxy and not a model.

    /tmp/v/bin/python bench/proxy_overhead.py [--calls 2000] [--rounds 5] [--api messages,chat,responses]

Prints, per scenario (concurrency, JSON or SSE, the upstream's own delay):
p50/p99 latency direct and through the proxy (beyond the upstream's own delay), the added p50/p99/mean, calls/s
on each path, the proxy process's CPU time per call (user + system: what bounds
its throughput, and the figure least disturbed by other load on the machine),
and rows recorded vs calls sent through the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUEST = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "system": "You classify customer messages for an online bank. Answer with one intent label.",
    "messages": [{"role": "user", "content": "I still have not received my new card, what should I do?"}],
}
MESSAGE = {
    "id": "msg_01bench",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "card_arrival"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 41, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 4},
}
HEADERS = {"x-api-key": "sk-ant-bench-not-a-key", "anthropic-version": "2023-06-01", "content-type": "application/json"}


OPENAI_HEADERS = {"authorization": "Bearer sk-bench-not-a-key", "content-type": "application/json"}
SYSTEM = REQUEST["system"]
QUESTION = REQUEST["messages"][0]["content"]
CHAT_REQUEST = {"model": "gpt-4o-mini", "max_completion_tokens": 64,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]}
CHAT_STREAM_OPTIONS = {"stream_options": {"include_usage": True}}  # asked by the load, so the proxy adds nothing
COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764979200, "model": "gpt-4o-mini",
    "system_fingerprint": "fp_bench", "service_tier": "default",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "card_arrival", "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 41, "completion_tokens": 4, "total_tokens": 45,
              "prompt_tokens_details": {"cached_tokens": 0}},
}
RESPONSES_REQUEST = {"model": "gpt-4o-mini", "max_output_tokens": 64, "instructions": SYSTEM, "input": QUESTION}
RESPONSE = {
    "id": "resp_bench", "object": "response", "created_at": 1764979200, "status": "completed", "error": None,
    "incomplete_details": None, "instructions": SYSTEM, "max_output_tokens": 64, "model": "gpt-4o-mini",
    "output": [{"id": "msg_bench", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "card_arrival", "annotations": [], "logprobs": []}]}],
    "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
    "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
    "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {},
    "usage": {"input_tokens": 41, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 45},
}
PIECES = ["card", "_", "arr", "ival", " ", "(", "confident", ")"]


def _chat_chunks() -> list[bytes]:
    base = {k: COMPLETION[k] for k in ("id", "created", "model", "system_fingerprint", "service_tier")}
    base["object"] = "chat.completion.chunk"

    def chunk(choices: list, usage=None) -> bytes:
        return f"data: {json.dumps({**base, 'choices': choices, 'usage': usage}, separators=(',', ':'))}\n\n".encode()

    out = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in PIECES]
    out.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    out.append(chunk([], COMPLETION["usage"]))
    out.append(b"data: [DONE]\n\n")
    return out


def _responses_events() -> list[bytes]:
    start = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    item = RESPONSE["output"][0]
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events = [{"type": "response.created", "response": start}, {"type": "response.in_progress", "response": start},
              {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
              {"type": "response.content_part.added", **at, "part": part}]
    events += [{"type": "response.output_text.delta", **at, "delta": p, "logprobs": []} for p in PIECES]
    events += [{"type": "response.output_text.done", **at, "text": "".join(PIECES), "logprobs": []},
               {"type": "response.content_part.done", **at, "part": {**part, "text": "".join(PIECES)}},
               {"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed", "response": RESPONSE}]
    return [f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n}, separators=(',', ':'))}\n\n".encode()
            for n, e in enumerate(events)]


def _sse_events() -> bytes:
    def ev(data: dict) -> bytes:
        return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {**MESSAGE["usage"], "output_tokens": 1}}
    events = [ev({"type": "message_start", "message": start})]
    events.append(ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
    events.append(ev({"type": "ping"}))
    for piece in ["card", "_", "arr", "ival", " ", "(", "confident", ")"]:
        events.append(ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
    events.append(ev({"type": "content_block_stop", "index": 0}))
    events.append(
        ev({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 8}})
    )
    events.append(ev({"type": "message_stop"}))
    return events


# ---------------------------------------------------------------------- the upstream (own process)


def run_upstream() -> None:
    from aiohttp import web

    answers = {  # path -> (JSON body, SSE events)
        "/v1/messages": (json.dumps(MESSAGE).encode(), _sse_events()),
        "/v1/chat/completions": (json.dumps(COMPLETION).encode(), _chat_chunks()),
        "/v1/responses": (json.dumps(RESPONSE).encode(), _responses_events()),
    }

    async def messages(request: web.Request) -> web.StreamResponse:
        req = await request.json()
        body, events = answers[request.path]
        delay = float(request.headers.get("x-bench-delay-ms", 0)) / 1000
        if delay:
            await asyncio.sleep(delay)  # a model that takes its time (the same on both paths)
        if not req.get("stream"):
            return web.Response(body=body, content_type="application/json", headers={"request-id": "req_bench"})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_bench"})
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        for path in answers:
            app.router.add_post(path, messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(iter(site._server.sockets)).getsockname()[1]
        print(f"http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------- the load


# --api: (path, request body, headers, what a stream adds to the request)
APIS = {
    "messages": ("/v1/messages", REQUEST, HEADERS, {}),
    "chat": ("/v1/chat/completions", CHAT_REQUEST, OPENAI_HEADERS, CHAT_STREAM_OPTIONS),
    "responses": ("/v1/responses", RESPONSES_REQUEST, OPENAI_HEADERS, {}),
}


async def one_call(session, url: str, body: bytes, stream: bool, headers: dict, path: str = "/v1/messages") -> float:
    start = time.perf_counter()
    async with session.post(url + path, data=body, headers=headers) as resp:
        if stream:
            async for _ in resp.content.iter_any():
                pass
        else:
            await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}")
    return (time.perf_counter() - start) * 1000


async def load(
    session, url: str, calls: int, concurrency: int, stream: bool, delay_ms: int = 0, api: str = "messages"
) -> tuple[list[float], float]:
    """`calls` calls from `concurrency` workers; (ms each call took beyond the upstream's delay, wall seconds).

    With a delay, call n asks the upstream to wait delay x (0.5 + frac(n x 0.618...)): spread over
    0.5-1.5 x delay, as a model's latency is, so the workers do not march in lock-step, and the same
    sequence on both paths, so subtracting each call's own delay leaves what the path added.
    """
    path, request, api_headers, stream_extra = APIS[api]
    body = json.dumps({**request, "stream": stream, **(stream_extra if stream else {})}).encode()
    latencies: list[float] = []
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < calls:
            n = sent
            sent += 1
            wait = delay_ms * (0.5 + (n * 0.6180339887) % 1.0) if delay_ms else 0.0
            headers = {**api_headers, "x-bench-delay-ms": f"{wait:.3f}"}
            latencies.append(await one_call(session, url, body, stream, headers, path) - wait)

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return latencies, time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# (concurrency, stream, upstream delay ms): no delay measures the proxy's own cost and the
# most it can carry; 32 calls in flight to an upstream taking 25-75 ms is a busy job's shape.
SCENARIOS = [(1, False, 0), (1, True, 0), (32, False, 0), (32, True, 0), (32, False, 50), (32, True, 50)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc), to measure cost per call independent of load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(upstream: str, proxy: str, calls: int, rounds: int, proxy_pid: int,
                apis: tuple[str, ...] = ("messages",)) -> tuple[list[dict], int]:
    """Every scenario for each API in `apis`, the APIs one after the other within a scenario (so that their
    figures share the machine's state), each direct and through the proxy, interleaved in rounds."""
    import aiohttp

    results = []
    sent = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for (concurrency, stream, delay), api in ((s, a) for s in SCENARIOS for a in apis):
            per_round = max(calls // rounds, concurrency)
            await load(session, upstream, 64, concurrency, stream, delay, api)  # warm both paths' connections
            await load(session, proxy, 64, concurrency, stream, delay, api)
            sent += 64
            direct: list[float] = []
            proxied: list[float] = []
            direct_wall = proxied_wall = proxy_cpu = 0.0
            for _ in range(rounds):
                d, d_wall = await load(session, upstream, per_round, concurrency, stream, delay, api)
                cpu = cpu_seconds(proxy_pid)
                p, p_wall = await load(session, proxy, per_round, concurrency, stream, delay, api)
                proxy_cpu += cpu_seconds(proxy_pid) - cpu
                direct += d
                proxied += p
                direct_wall += d_wall
                proxied_wall += p_wall
                sent += per_round
            results.append(
                {
                    "api": api,
                    "concurrency": concurrency,
                    "stream": stream,
                    "upstream_delay_ms": delay,
                    "calls": len(proxied),
                    "direct_p50": pct(direct, 0.5),
                    "direct_p99": pct(direct, 0.99),
                    "proxy_p50": pct(proxied, 0.5),
                    "proxy_p99": pct(proxied, 0.99),
                    "added_p50": pct(proxied, 0.5) - pct(direct, 0.5),
                    "added_p99": pct(proxied, 0.99) - pct(direct, 0.99),
                    "added_mean": statistics.fmean(proxied) - statistics.fmean(direct),
                    "direct_calls_per_s": len(direct) / direct_wall,
                    "calls_per_s": len(proxied) / proxied_wall,
                    "proxy_cpu_us_per_call": proxy_cpu / len(proxied) * 1e6,
                }
            )
    return results, sent


def count_rows(store: Path) -> int:
    from distill_cli import store as store_mod

    con = store_mod.connect()
    store_mod.examples_view(con, [store], "bench")
    return con.execute("SELECT count(*) FROM examples").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per scenario and path (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="direct/proxy alternations per scenario (default 5)")
    parser.add_argument("--api", default="messages",
                        help="comma-separated APIs to load: messages, chat (chat completions), responses "
                             "(the Responses API); default messages")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    apis = tuple(a.strip() for a in args.api.split(",") if a.strip())
    if not apis or set(apis) - set(APIS):
        parser.error(f"--api: one or more of {', '.join(APIS)}")
    if args.upstream:
        run_upstream()
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        upstream_proc = subprocess.Popen([sys.executable, __file__, "--upstream"], stdout=subprocess.PIPE, text=True)
        upstream = upstream_proc.stdout.readline().strip()
        env = {**os.environ, "NO_COLOR": "1"}
        proxy_proc = subprocess.Popen(
            [sys.executable, "-m", "distill_cli", "record", "--store", str(store), "--serve",
             "--anthropic-upstream", upstream, "--openai-upstream", upstream + "/v1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        proxy = proxy_proc.stdout.readline().strip().split("=", 1)[1]
        proxy_proc.stdout.readline()
        try:
            results, sent = asyncio.run(bench(upstream, proxy, args.calls, args.rounds, proxy_proc.pid, apis))
        finally:
            proxy_proc.send_signal(signal.SIGTERM)
            _, err = proxy_proc.communicate(timeout=120)
            upstream_proc.kill()
            upstream_proc.wait()
        if proxy_proc.returncode != 0:
            print(err, file=sys.stderr)
            return 1
        rows = count_rows(store)

    print(f"proxy overhead: {sys.platform}, {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{args.calls} calls per scenario and path, {args.rounds} rounds, API {', '.join(apis)}")
    print(f"{'scenario':<30} {'direct p50':>10} {'p99':>8} {'proxy p50':>10} {'p99':>8} {'added p50':>10} "
          f"{'p99':>8} {'mean':>8} {'calls/s direct':>15} {'proxy':>7} {'proxy CPU/call':>15}")
    for r in results:
        name = f"{r['api']} c={r['concurrency']:<2} {'sse' if r['stream'] else 'json'} +{r['upstream_delay_ms']}ms"
        print(
            f"{name:<30} {r['direct_p50']:>8.2f}ms {r['direct_p99']:>6.2f}ms {r['proxy_p50']:>8.2f}ms "
            f"{r['proxy_p99']:>6.2f}ms {r['added_p50']:>8.2f}ms {r['added_p99']:>6.2f}ms {r['added_mean']:>6.2f}ms "
            f"{r['direct_calls_per_s']:>15,.0f} {r['calls_per_s']:>7,.0f} {r['proxy_cpu_us_per_call']:>13,.0f}us"
        )
    print(f"rows recorded: {rows:,} of {sent:,} calls sent through the proxy ({sent - rows:,} lost)")
    return 0 if rows == sent else 1


if __name__ == "__main__":
    sys.exit(main())
