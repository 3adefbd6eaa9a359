"""The recording proxy: an HTTP server on 127.0.0.1 between a job and its provider.

It passes the job's calls upstream and the answers back, byte for byte and as
they arrive (an SSE stream is written to the job chunk by chunk), and hands each
recorded call (`POST /v1/messages`, `POST /v1/chat/completions`, `POST
/v1/responses`) with its outcome to `on_call`, which journals the row *before*
the job sees the end of the response: a recorder killed after a call returned
has that call on disk.
Every other path (count_tokens, models, files, ...) is passed through unrecorded.

Hot path: read and parse the request body (the row needs it), forward, relay.
A parsed copy of a stream feeds an assembler (sse.py) as it goes by.

What it must never do:
  * accept a connection from anything but loopback (it binds 127.0.0.1, and
    answers 403 to any other peer as a second guard);
  * store, log or echo a credential: the job's auth headers go upstream
    untouched and nowhere else; rows are built from bodies only, credentials
    stripped (calls.py), and proxy error texts come from exceptions, masked;
  * change what the job receives, with one documented exception: an OpenAI
    stream without `stream_options.include_usage` is sent upstream with it,
    and the usage-only final chunk and the `"usage":null` members it adds are
    removed from what the job sees, so the job gets the stream it asked for
    and the row gets real token counts (providers.ProviderAPI.prepare); and an
    Anthropic Message Batch object's `results_url` names the proxy instead of
    the upstream (the SDK fetches that absolute URL), so the results come
    through the recorder (Proxy._batch).
  * Anthropic Message Batches: the create call's requests are kept by
    custom_id, in memory for this session; when the job fetches the results,
    one row per request/result pair is written (ts = the fetch, metadata
    batch_id / custom_id / service_tier batch, priced at batch rates), each
    pair once however often the results are fetched. A batch never fetched
    writes nothing.
  * OpenAI Batch, likewise and byte for byte: an upload with purpose=batch
    keeps its JSONL's requests by custom_id, a batch create/retrieve links
    the batch to its input and output files, and downloading the output file
    (`/v1/files/{id}/content`) writes one row per request/result pair.

Other decisions:
  * `x-distill-*` request headers are distill's and never go upstream:
    `x-distill-task` names the task, `x-distill-metadata` (a JSON object) tags
    the row; invalid metadata is refused with a 400 in the provider's error
    shape, not forwarded and not recorded, so a typo is seen at once rather
    than silently losing the tags.
  * Upstream is asked for uncompressed bodies (`accept-encoding: identity`),
    so the bytes the job gets are exactly the bytes upstream sent.
  * An upstream that cannot be reached gives the job a 502 in the provider's
    error shape (its SDK retries it like any 5xx), and a row with that error.
  * A stream cut before message_stop / [DONE] is recorded with whatever
    arrived and an error starting `incomplete`; when upstream dropped the
    connection, the job's connection is dropped too, so its SDK sees the cut.

The seam for routing (issue 7): every recorded call goes through one step,
`Proxy.answer(call, job_request) -> Outcome`, which by default is
`Proxy.forward` (ask upstream, relay the answer). A router replaces `answer`
with a coroutine that answers locally (a student, a replay from a store) and
calls `forward` when it declines; `Outcome.columns` carries the row columns
such an answer sets (`served_by`, `student_id`, `model`, `confidence`, ...),
and `Call.distill_headers` carries `x-distill-route` and friends. A shadow
call is a second `forward` whose outcome goes to `on_call` with a `pair_id`;
`Outcome.after` starts it once the job's answer is written (router.py).
"""

from __future__ import annotations

import asyncio
import email
import functools
import ipaddress
import json
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from distill_cli import canonical
from distill_cli.recorder.providers import ProviderAPI, anthropic_api, is_anthropic_request, openai_api, responses_api
from distill_cli.recorder.sse import EventSplitter

DISTILL_HEADER_PREFIX = "x-distill-"
MAX_BODY = 512 * 1024 * 1024  # the largest upload a provider accepts (Files API)
# Anthropic Message Batches: create (`/v1/messages/batches`), retrieve / cancel (`/{id}`), results (`/{id}/results`).
_BATCH_PATH = re.compile(r"^/v1/messages/batches(?:/([^/]+)(?:/(results|cancel))?)?/?$")
# OpenAI Batch: file upload (`/v1/files`), a file's content (`/v1/files/{id}/content`), batch create / retrieve.
_OPENAI_BATCH_PATH = re.compile(r"^/v1/(files|batches)(?:/([^/]+)(?:/(content|cancel))?)?/?$")

# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus those the
# HTTP client recomputes for the next hop.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",  # the proxy has read the body already
    }
)


@dataclass
class Call:
    """One recorded call as the job made it."""

    api: ProviderAPI
    method: str
    path: str
    query: str
    request: dict  # the body the job sent, parsed
    body: bytes  # the body to send upstream (equal to the job's but for OpenAI's added include_usage)
    headers: CIMultiDict  # headers to send upstream: the job's, minus hop-by-hop and x-distill-*
    task: str | None  # --task, else x-distill-task, else None (the row fingerprints it)
    metadata: dict
    distill_headers: dict[str, str]  # every x-distill-* header, lower-cased names
    added_usage: bool  # the proxy asked upstream for stream usage the job did not
    ts: float  # wall clock at arrival
    started: float  # monotonic clock at arrival
    service_tier: str | None = None  # the tier it was billed at when the answer does not say (a batch request)


@dataclass
class Outcome:
    """How a call was answered: what the job got, and what the row records."""

    response: web.StreamResponse  # already prepared and written to, for a stream
    status: int | None  # HTTP status the job got (None: it got none)
    body: dict | None = None  # the final response body, or the message a stream assembled
    error: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cut: bool = False  # end by dropping the job's connection, as upstream did
    cancelled: bool = False  # the proxy was stopped mid-call; re-raised once recorded
    columns: dict = field(default_factory=dict)  # row columns an answerer sets (routing, issue 7)
    # Work to start once the job has its whole answer (a shadow call): the proxy runs it in the
    # background and `stop()` waits for it before closing the upstream session.
    after: Callable[[], Awaitable[None]] | None = None


Answer = Callable[[Call, web.BaseRequest], Awaitable[Outcome]]


class BadDistillHeader(ValueError):
    pass


def is_loopback(peername) -> bool:
    """True for a TCP peer on the loopback network (127.0.0.0/8, ::1)."""
    if not peername:
        return False
    return _loopback_host(str(peername[0] if isinstance(peername, (tuple, list)) else peername))


@functools.lru_cache(maxsize=256)
def is_loopback_host_header(host: str | None) -> bool:
    """True for a Host header naming this machine's loopback (127.0.0.1:PORT, localhost:PORT, [::1]:PORT)."""
    if not host:
        return False
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
    return name.lower() == "localhost" or _loopback_host(name)


@functools.lru_cache(maxsize=256)
def _loopback_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def upstream_headers(headers) -> CIMultiDict:
    """The job's request headers as they go upstream (credentials included, untouched)."""
    dropped = set(_HOP_BY_HOP)
    for token in headers.getall("connection", []):
        dropped.update(t.strip().lower() for t in token.split(","))
    out = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in dropped or lower.startswith(DISTILL_HEADER_PREFIX) or lower == "accept-encoding":
            continue
        out.add(name, value)
    out["Accept-Encoding"] = "identity"
    return out


def job_headers(headers) -> CIMultiDict:
    """Upstream's response headers as they go to the job."""
    dropped = set(_HOP_BY_HOP)
    for token in headers.getall("connection", []):
        dropped.update(t.strip().lower() for t in token.split(","))
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def distill_headers(headers) -> tuple[dict[str, str], str | None, dict]:
    """(all x-distill-* headers, the task it names, the metadata it carries)."""
    found = {k.lower(): v for k, v in headers.items() if k.lower().startswith(DISTILL_HEADER_PREFIX)}
    task = found.get("x-distill-task", "").strip() or None
    metadata: dict = {}
    if "x-distill-metadata" in found:
        try:
            metadata = json.loads(found["x-distill-metadata"])
        except ValueError as e:
            raise BadDistillHeader(f"distill: header x-distill-metadata is not valid JSON ({e})") from None
        if not isinstance(metadata, dict):
            raise BadDistillHeader("distill: header x-distill-metadata must be a JSON object")
    return found, task, metadata


async def _nobody(data: bytes) -> None:
    """Where a shadow call's stream goes."""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return canonical.mask_secrets(f"{type(exc).__name__}: {text}")


def _decode_body(body: bytes, encoding: str) -> tuple[dict | None, str | None]:
    """(a JSON response body, None), decompressing a copy if upstream compressed it anyway; or (None, why the
    proxy could not read it). An empty body is no answer but nothing unreadable either."""
    encoding = encoding.lower().strip()
    try:
        if encoding in ("gzip", "deflate"):
            body = zlib.decompress(body, 47)  # 47: zlib or gzip header, detected
        elif encoding not in ("", "identity"):
            return None, f"unreadable answer: content-encoding {encoding!r}"
        if not body.strip():
            return None, None
        parsed = json.loads(body)
    except zlib.error as e:
        return None, f"unreadable answer: not {encoding} ({e})"
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer too long to read
        return None, f"unreadable answer: not JSON ({str(e).splitlines()[0][:200]})"
    except RecursionError:
        return None, "unreadable answer: JSON nested too deeply"
    if not isinstance(parsed, dict):
        return None, f"unreadable answer: JSON {type(parsed).__name__}, not an object"
    return parsed, None


_OPENAI_BATCH_CALLS = frozenset({("POST", "files", None), ("GET", "files", "content"), ("POST", "batches", None),
                                 ("GET", "batches", None)})


class Proxy:
    """The aiohttp application; `start()` binds it, `stop()` lets calls in flight finish."""

    def __init__(
        self,
        *,
        on_call: Callable[[Call, Outcome], None],
        anthropic_upstream: str | None = None,
        openai_upstream: str | None = None,
        task: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.anthropic = anthropic_api(anthropic_upstream)
        self.openai = openai_api(openai_upstream)
        self.responses = responses_api(openai_upstream)
        self.task = task
        self.on_call = on_call
        self.answer: Answer = self.forward
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task] = set()
        # Message Batches created through this proxy, by id: the requests by custom_id, the task and tags of the
        # create call. In memory for this session only: a batch created under another recorder is not recorded.
        self._batches: dict[str, dict] = {}
        self._batch_recorded: set[tuple[str, str]] = set()  # (batch id, custom_id) already written
        # OpenAI Batch, in memory for this session too: uploaded batch input files (requests by custom_id, task,
        # tags), batches by id (their input file), output files by id (their batch).
        self._openai_inputs: dict[str, dict] = {}
        self._openai_batches: dict[str, str] = {}
        self._openai_outputs: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            auto_decompress=False,
            # No netrc credentials, no cookies kept between calls: the job's headers are the whole request.
            # (Environment proxies are looked up once per upstream: providers.env_proxy.)
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
        )
        # aiohttp's low-level server: every path comes to one handler, so no application, router or
        # middleware runs per call (a few % of the proxy's CPU).
        loop = asyncio.get_running_loop()
        server = web.Server(
            self._handle,
            request_factory=lambda message, payload, protocol, writer, task: web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY
            ),
            access_log=None,
        )
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=False)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._background:  # shadow calls still out: they need the session, and their rows the recorder
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- one request -------------------------------------------------------------

    async def _handle(self, job: web.BaseRequest) -> web.StreamResponse:
        transport = job.transport
        if not is_loopback(transport.get_extra_info("peername") if transport else None):
            return web.json_response({"error": "distill proxy: only loopback connections are accepted"}, status=403)
        if not is_loopback_host_header(job.host) or "origin" in job.headers:
            # A web page can reach 127.0.0.1 too (cross-origin POSTs, DNS rebinding): SDKs send neither
            # a foreign Host nor an Origin, browsers always do.
            return web.json_response({"error": "distill proxy: only local programs, not web pages, may call it"}, status=403)
        if is_anthropic_request(job.path, job.headers):
            api = self.anthropic
        else:
            api = self.responses if job.path == "/v1/responses" else self.openai
        if api is self.anthropic and job.path.startswith("/v1/messages/batches"):
            batch = _BATCH_PATH.match(job.path)
            if batch is not None:
                return await self._batch(api, job, batch.group(1), batch.group(2))
        if api is self.openai and job.path.startswith(("/v1/files", "/v1/batches")):
            batch = _OPENAI_BATCH_PATH.match(job.path)
            if batch is not None and (job.method, batch.group(1), batch.group(3)) in _OPENAI_BATCH_CALLS:
                return await self._openai_batch(api, job, *batch.groups())
        if not api.records(job.method, job.path):
            return await self._passthrough(api, job)
        started, ts = self._clock(), self._wall_clock()
        raw = await job.read()
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return await self._passthrough(api, job, raw)  # upstream says what is wrong with it
        try:
            found, header_task, metadata = distill_headers(job.headers)
        except BadDistillHeader as e:
            return api.error_response(400, "invalid_request_error", str(e))
        body, added_usage = api.prepare(request, raw)
        call = Call(
            api=api,
            method=job.method,
            path=job.path,
            query=job.query_string,
            request=request,
            body=body,
            headers=upstream_headers(job.headers),
            task=self.task or header_task,
            metadata=metadata,
            distill_headers=found,
            added_usage=added_usage,
            ts=ts,
            started=started,
        )
        outcome = await self.answer(call, job)
        if outcome.error is None and (job.transport is None or job.transport.is_closing()):
            # e.g. the job's SDK timed out while upstream was still answering: billed, never seen
            outcome.error = "incomplete: the job closed the connection before the answer arrived"
        self.on_call(call, outcome)
        if outcome.cancelled:
            raise asyncio.CancelledError
        response = await self._finish(job, outcome)
        if outcome.after is not None:
            if not response.prepared:  # send it now, so that what comes after comes after the answer
                try:
                    await response.prepare(job)
                    await response.write_eof()
                except ConnectionError:
                    pass
            task = asyncio.get_running_loop().create_task(outcome.after())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return response

    async def _finish(self, job: web.BaseRequest, outcome: Outcome) -> web.StreamResponse:
        response = outcome.response
        if outcome.cut:
            response.force_close()
            if job.transport is not None:
                job.transport.abort()
            return response
        if response.prepared:
            try:
                await response.write_eof()
            except ConnectionError:
                pass  # the job went away; its row already says so
        return response

    # ---- the default answer: ask upstream ----------------------------------------

    async def forward(self, call: Call, job: web.BaseRequest | None) -> Outcome:
        """Send a call upstream and relay the answer to the job, keeping a parsed copy.

        With `job` None the answer goes to nobody (a shadow call): it is only parsed
        into the outcome, for `on_call` to record.
        """
        api = call.api
        url = api.upstream_url(call.path, call.query)
        try:
            upstream = await self._session.request(  # type: ignore[union-attr]
                call.method, url, data=call.body, headers=call.headers, allow_redirects=False, proxy=api.proxy
            )
        except asyncio.CancelledError:
            return self._stopped(call, job, None)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            message = f"distill proxy: upstream {canonical.public_url(api.upstream)} unreachable: {_describe(e)}"
            return Outcome(
                response=api.error_response(502, "api_error" if api.name == "anthropic" else "server_error", message),
                status=502,
                error=f"upstream_unreachable: {message}",
                latency_ms=(self._clock() - call.started) * 1000,
            )
        try:
            if upstream.content_type == "text/event-stream":
                return await self._relay_stream(call, job, upstream)
            return await self._relay_body(call, job, upstream)
        finally:
            upstream.release()

    def _stopped(self, call: Call, job: web.BaseRequest | None, status: int | None) -> Outcome:
        return Outcome(
            response=web.StreamResponse(status=502),
            status=status,
            error="incomplete: the recorder stopped before the call ended",
            latency_ms=(self._clock() - call.started) * 1000,
            cut=True,
            cancelled=True,
        )

    async def _relay_body(self, call: Call, job: web.BaseRequest | None, upstream: aiohttp.ClientResponse) -> Outcome:
        try:
            body = await upstream.read()
        except asyncio.CancelledError:
            return self._stopped(call, job, upstream.status)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=job_headers(upstream.headers))
            if job is not None:
                await response.prepare(job)
            return Outcome(
                response=response,
                status=upstream.status,
                error=f"incomplete: upstream closed the connection mid-body ({_describe(e)})",
                latency_ms=(self._clock() - call.started) * 1000,
                cut=True,
            )
        response = web.Response(
            body=body, status=upstream.status, reason=upstream.reason, headers=job_headers(upstream.headers)
        )
        parsed, unreadable = _decode_body(body, upstream.headers.get("content-encoding", ""))
        return Outcome(
            response=response,
            status=upstream.status,
            body=parsed,
            error=unreadable,  # the job gets the bytes as they came; the row says the proxy could not read them
            latency_ms=(self._clock() - call.started) * 1000,
        )

    async def _relay_stream(self, call: Call, job: web.BaseRequest | None, upstream: aiohttp.ClientResponse) -> Outcome:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=job_headers(upstream.headers))
        if job is not None:
            await response.prepare(job)
        send = response.write if job is not None else _nobody
        stream = call.api.new_stream()
        splitter = EventSplitter()
        hide_usage = call.added_usage
        ttft = None
        error = None
        cut = cancelled = False

        writing = False  # which side an exception came from: the job (writing) or upstream
        try:
            async for chunk in upstream.content.iter_any():
                if ttft is None:
                    ttft = (self._clock() - call.started) * 1000
                if hide_usage:
                    out = []
                    for raw in splitter.feed(chunk):
                        if not stream.is_usage_only(stream.feed(raw)):
                            out.append(call.api.without_added_usage(raw))
                    if out:
                        writing = True
                        await send(b"".join(out))
                        writing = False
                else:
                    writing = True
                    await send(chunk)
                    writing = False
                    for raw in splitter.feed(chunk):
                        stream.feed(raw)
            if splitter.pending:  # an unterminated last event: passed on as it came
                if hide_usage:
                    writing = True
                    await send(splitter.pending)
                    writing = False
                stream.feed(splitter.pending + b"\n\n")
        except asyncio.CancelledError:
            error, cut, cancelled = "incomplete: the recorder stopped before the stream ended", True, True
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            if writing:  # aiohttp's "cannot write to closing transport" is a ConnectionError
                error = "incomplete: the job closed the connection before the stream ended"
            else:
                error, cut = f"incomplete: upstream stream cut ({_describe(e)})", True
        if error is None:
            if stream.error is not None:
                error = stream.error
            elif not stream.complete:
                error = "incomplete: the stream ended before its final event"
        return Outcome(
            response=response,
            status=upstream.status,
            body=stream.result(),
            error=error,
            latency_ms=(self._clock() - call.started) * 1000,
            ttft_ms=ttft,
            cut=cut,
            cancelled=cancelled,
        )

    # ---- Anthropic Message Batches -------------------------------------------------------

    async def _batch(self, api: ProviderAPI, job: web.BaseRequest, batch_id: str | None, sub: str | None) -> web.StreamResponse:
        """Pass a Message Batches call through, keeping what a row needs.

        Create: the requests are kept by custom_id. Results: one row per request/result pair of a kept batch, written
        before the job gets the results (a pair fetched again is not written again). The one change to what the job
        gets: a batch object's `results_url` names the upstream, and the SDK fetches that absolute URL, so its
        upstream prefix is replaced by the proxy's (else the results would bypass the recorder).
        """
        body = await job.read() if job.body_exists else None
        create = job.method == "POST" and batch_id is None
        try:
            found, header_task, metadata = distill_headers(job.headers)
        except BadDistillHeader as e:
            return api.error_response(400, "invalid_request_error", str(e))
        fetched = self._wall_clock()
        got = await self._ask_whole(api, job, body, "api_error")
        if not isinstance(got, tuple):
            return got
        status, reason, headers, data = got
        ok = status == 200 and headers.get("content-encoding", "") in ("", "identity")
        if ok and sub == "results" and job.method == "GET":
            self._batch_results(api, batch_id, data, fetched)
        elif ok:
            if create:
                self._batch_created(body, data, self.task or header_task, metadata)
            data = self._local_results_url(api, data)
        return web.Response(body=data, status=status, reason=reason, headers=job_headers(headers))

    def _local_results_url(self, api: ProviderAPI, data: bytes) -> bytes:
        upstream = api.upstream.rstrip("/").encode()
        pattern = rb'("results_url"\s*:\s*")' + re.escape(upstream) + rb"(?=/)"
        return re.sub(pattern, lambda m: m.group(1) + self.url.encode(), data)

    def _batch_created(self, body: bytes | None, data: bytes, task: str | None, metadata: dict) -> None:
        try:
            request, batch = json.loads(body or b""), json.loads(data)
            requests = {r["custom_id"]: r["params"] for r in request["requests"]
                        if isinstance(r, dict) and isinstance(r.get("custom_id"), str) and isinstance(r.get("params"), dict)}
            batch_id = batch["id"]
        except (ValueError, TypeError, KeyError):
            return  # upstream accepted what we cannot read: nothing to record against it
        if isinstance(batch_id, str) and requests:
            self._batches[batch_id] = {"requests": requests, "task": task, "metadata": metadata}

    def _batch_results(self, api: ProviderAPI, batch_id: str, data: bytes, fetched: float) -> None:
        kept = self._batches.get(batch_id)
        if kept is None:
            return
        for line in data.splitlines():
            try:
                item = json.loads(line)
                custom_id, result = item["custom_id"], item["result"]
                kind = result["type"]
            except (ValueError, TypeError, KeyError):
                continue
            params = kept["requests"].get(custom_id) if isinstance(custom_id, str) else None
            if params is None or (batch_id, custom_id) in self._batch_recorded:
                continue
            self._batch_recorded.add((batch_id, custom_id))
            message = result.get("message") if kind == "succeeded" else None
            error = None
            if kind != "succeeded" or not isinstance(message, dict):
                detail = result.get("error") if isinstance(result.get("error"), dict) else {}
                inner = detail.get("error") if isinstance(detail.get("error"), dict) else detail
                error = canonical.mask_secrets(
                    f"batch result {kind}" + (f": {inner.get('type')}: {inner.get('message', '')}" if inner else ""))
                message = None
            call = Call(
                api=api, method="POST", path="/v1/messages/batches", query="", request=params,
                body=b"", headers=CIMultiDict(), task=kept["task"],
                metadata={**kept["metadata"], "batch_id": batch_id, "custom_id": custom_id, "service_tier": "batch"},
                distill_headers={}, added_usage=False, ts=fetched, started=self._clock(), service_tier="batch",
            )
            self.on_call(call, Outcome(response=web.Response(status=200), status=200, body=message, error=error))

    # ---- OpenAI Batch ----------------------------------------------------------------------

    async def _openai_batch(self, api: ProviderAPI, job: web.BaseRequest, kind: str, object_id: str | None,
                            sub: str | None) -> web.StreamResponse:
        """Pass an OpenAI Batch call through byte for byte, keeping what a row needs.

        Upload (purpose=batch): the JSONL's requests by custom_id. Create: which input file a batch has. Retrieve:
        which output file is the batch's. Output file content: one row per request/result pair, written before the
        job gets the content (once per pair). Files that are not batch files pass through unrecorded.
        """
        body = await job.read() if job.body_exists else None
        try:
            found, header_task, metadata = distill_headers(job.headers)
        except BadDistillHeader as e:
            return api.error_response(400, "invalid_request_error", str(e))
        fetched = self._wall_clock()
        if kind == "files" and object_id is not None and self._openai_outputs.get(object_id) is None:
            return await self._passthrough(api, job, body)  # not a batch's output: nothing to keep
        got = await self._ask_whole(api, job, body, "server_error")
        if not isinstance(got, tuple):
            return got
        status, reason, headers, data = got
        if status == 200 and headers.get("content-encoding", "") in ("", "identity"):
            try:
                self._openai_batch_seen(api, job, kind, object_id, body, data, fetched, self.task or header_task,
                                        metadata)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError):
                pass  # a body we cannot read: passed on, nothing kept
        return web.Response(body=data, status=status, reason=reason, headers=job_headers(headers))

    async def _ask_whole(self, api, job: web.BaseRequest, body: bytes | None, error_type: str):
        """Send a batch or file call upstream and read its whole answer: (status, reason, headers, body), or the
        response the job gets when upstream could not be reached (a 502) or dropped the answer (the job's too)."""
        try:
            upstream = await self._session.request(  # type: ignore[union-attr]
                job.method, api.upstream_url(job.path, job.query_string), data=body, headers=upstream_headers(job.headers),
                allow_redirects=False, proxy=api.proxy,
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            message = f"distill proxy: upstream {canonical.public_url(api.upstream)} unreachable: {_describe(e)}"
            return api.error_response(502, error_type, message)
        try:
            try:
                data = await upstream.read()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.force_close()
                if job.transport is not None:
                    job.transport.abort()
                return response
            return upstream.status, upstream.reason, upstream.headers, data
        finally:
            upstream.release()

    def _openai_batch_seen(self, api: ProviderAPI, job: web.BaseRequest, kind: str, object_id: str | None,
                           body: bytes | None, data: bytes, fetched: float, task: str | None, metadata: dict) -> None:
        if kind == "files" and object_id is None:  # an upload
            message = email.message_from_bytes(
                f"Content-Type: {job.headers.get('content-type', '')}\r\n\r\n".encode() + (body or b""))
            if not message.is_multipart():
                return
            fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                      for part in message.get_payload()}
            if fields.get("purpose") != b"batch" or not isinstance(fields.get("file"), bytes):
                return
            requests = {}
            for line in fields["file"].splitlines():
                if line.strip():
                    item = json.loads(line)
                    if isinstance(item.get("custom_id"), str) and isinstance(item.get("body"), dict):
                        requests[item["custom_id"]] = item
            self._openai_inputs[json.loads(data)["id"]] = {"requests": requests, "task": task, "metadata": metadata}
        elif kind == "batches":  # create or retrieve: the batch object
            batch = json.loads(data)
            if object_id is None:
                if batch.get("input_file_id") in self._openai_inputs:
                    self._openai_batches[batch["id"]] = batch["input_file_id"]
            elif batch.get("id") in self._openai_batches and isinstance(batch.get("output_file_id"), str):
                self._openai_outputs[batch["output_file_id"]] = batch["id"]
        elif kind == "files" and object_id in self._openai_outputs:  # a batch's output file
            batch_id = self._openai_outputs[object_id]
            kept = self._openai_inputs[self._openai_batches[batch_id]]
            for line in data.splitlines():
                try:
                    item = json.loads(line)
                    custom_id = item["custom_id"]
                except (ValueError, TypeError, KeyError):
                    continue
                sent = kept["requests"].get(custom_id) if isinstance(custom_id, str) else None
                if sent is None or (batch_id, custom_id) in self._batch_recorded:
                    continue
                self._batch_recorded.add((batch_id, custom_id))
                response = item.get("response") if isinstance(item.get("response"), dict) else {}
                answer = response.get("body") if isinstance(response.get("body"), dict) else None
                status = response.get("status_code") if isinstance(response.get("status_code"), int) else None
                error = None
                if isinstance(item.get("error"), dict):
                    err = item["error"]
                    error = canonical.mask_secrets(f"batch result error: {err.get('code')}: {err.get('message', '')}")
                path = sent.get("url") if isinstance(sent.get("url"), str) else "/v1/chat/completions"
                row_api = self.responses if path == "/v1/responses" else self.openai
                call = Call(
                    api=row_api, method="POST", path=path, query="", request=sent["body"], body=b"",
                    headers=CIMultiDict(), task=kept["task"],
                    metadata={**kept["metadata"], "batch_id": batch_id, "custom_id": custom_id, "service_tier": "batch"},
                    distill_headers={}, added_usage=False, ts=fetched, started=self._clock(), service_tier="batch",
                )
                self.on_call(call, Outcome(response=web.Response(status=200), status=status, body=answer, error=error))

    # ---- everything not recorded -----------------------------------------------------

    async def _passthrough(self, api: ProviderAPI, job: web.BaseRequest, body: bytes | None = None) -> web.StreamResponse:
        headers = upstream_headers(job.headers)
        if body is None and job.body_exists:
            body = await job.read()
        try:
            upstream = await self._session.request(  # type: ignore[union-attr]
                job.method, api.upstream_url(job.path, job.query_string), data=body, headers=headers,
                allow_redirects=False, proxy=api.proxy,
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            message = f"distill proxy: upstream {canonical.public_url(api.upstream)} unreachable: {_describe(e)}"
            return api.error_response(502, "api_error" if api.name == "anthropic" else "server_error", message)
        try:
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=job_headers(upstream.headers)
            )
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(job)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                response.force_close()
                if job.transport is not None:
                    job.transport.abort()
                return response
            await response.write_eof()
            return response
        finally:
            upstream.release()
