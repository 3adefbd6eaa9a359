"""A fake Anthropic + OpenAI HTTP server on loopback, for tests and benchmarks.

It speaks the real wire formats (JSON and SSE) closely enough that the real
``anthropic`` and ``openai`` SDKs parse its answers, and it is deterministic:
the same requests give the same answers, ids and token counts.

    with FakeProvider() as fake:
        client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test-fake")
        client.messages.create(model="claude-x", max_tokens=64,
                               messages=[{"role": "user", "content": "hi"}])
        # OpenAI: openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test-fake")
        assert fake.requests[-1].path == "/v1/messages"

The server runs its own asyncio loop in a daemon thread, so sync tests can use
it directly; every request (unknown paths too) is appended to ``.requests``.

Steering:
  * ``responder(request_json, provider)`` returns the answer text (``str``), a
    tool call (``{"tool": name, "input": {...}, "text": optional preamble}``) or
    ``None`` for the default (``"echo: " + last user text``). It may be async.
  * ``fail_next(status, n, retry_after=, body=, path_prefix=, headers=)``: the
    next n matching requests get that error in the provider's real error shape
    (with extra response headers, e.g. ``x-should-retry``).
  * ``cut_next(after_events, n)``: the next n streaming responses drop the
    connection after that many SSE events (no message_stop / [DONE]).
  * ``delay`` (seconds before each answer) and ``event_delay`` (seconds between
    SSE events) are plain attributes.
  * per-request headers: ``x-fake-status`` (+ ``x-fake-retry-after``),
    ``x-fake-cut-after``, ``x-fake-delay-ms``, ``x-fake-event-delay-ms``.

Token counts: input tokens are the whitespace-separated words of the system
prompt and message texts (text blocks, tool results, tool-use inputs as JSON;
images and documents count 0; tool definitions count 0); output tokens are the
words of the answer (thinking + text + tool input JSON), at least 1. Anthropic
prompt caching: each block carrying ``cache_control`` (or the top-level
``cache_control``, which marks the last block) is a breakpoint; the longest
breakpoint prefix already seen (same model) is reported as
``cache_read_input_tokens``, the rest up to the last breakpoint as
``cache_creation_input_tokens`` (split by ``ttl`` into ``cache_creation``), and
``input_tokens`` excludes both. There is no minimum cacheable length and no
expiry. OpenAI ``cached_tokens`` is always 0. ``max_tokens`` (Anthropic) and
``max_tokens`` / ``max_completion_tokens`` (OpenAI) truncate a text answer to
that many words with stop reason ``max_tokens`` / ``length``.

The Responses API (``POST /v1/responses``, JSON or its event stream) answers the
same way: input tokens are the words of ``instructions`` and the input items,
``max_output_tokens`` truncates (status ``incomplete``), a ``previous_response_id``
must name a response this fake gave, and the request headers
``x-fake-cached-tokens`` / ``x-fake-reasoning-tokens`` add that many cached input
and reasoning output tokens.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import inspect
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

__all__ = ["FakeProvider", "RecordedRequest", "count_words"]

MAX_BODY = 64 * 1024 * 1024

ANTHROPIC_MODELS = [
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
]
OPENAI_MODELS = [
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("gpt-4.1", 1744316542, "system"),
]

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# status -> (type, code) of OpenAI's error object
OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error.",
    503: "Service unavailable.",
    529: "Overloaded",
}

_WORD = re.compile(r"\S+")
_PIECE = re.compile(r"\s*\S+\s*|\s+")


def count_words(text: str) -> int:
    """Whitespace-separated words of `text`: the fake's notion of a token."""
    return len(_WORD.findall(text or ""))


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed JSON body, or None (no body / not JSON)
    provider: str  # "anthropic" or "openai": whose API the path/headers name
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: str | None
    body: dict | None
    path_prefix: str
    headers: dict[str, str] = field(default_factory=dict)


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.get_payload()}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _chunks(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split `text` into pieces of a few words that concatenate back to it exactly."""
    pieces = _PIECE.findall(text)
    return ["".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)]


def _split_fixed(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeProvider:
    def __init__(
        self,
        *,
        responder: Callable[[dict, str], Any] | None = None,
        delay: float = 0.0,
        event_delay: float = 0.0,
        require_auth: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder
        self.delay = delay
        self.event_delay = event_delay
        self.require_auth = require_auth
        self.host = host
        self.port = port
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._cuts: list[list[int]] = []  # [after_events, remaining]
        self._cache: set[str] = set()
        self._responses: dict[str, dict] = {}  # Responses API objects by id, for previous_response_id
        self._batches: dict[str, dict] = {}  # Message Batches by id: {"batch": object, "requests": [...]}
        self._files: dict[str, bytes] = {}  # OpenAI files by id (batch input and output JSONL)
        self._openai_batches: dict[str, dict] = {}  # OpenAI Batch objects by id
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-provider", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake provider did not start within 10 s")
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._start_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _astart(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            try:
                fut.result(timeout=10)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ steering

    @property
    def anthropic_url(self) -> str:
        return self.url

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def fail_next(
        self,
        status: int,
        n: int = 1,
        *,
        retry_after: str | None = None,
        body: dict | None = None,
        path_prefix: str = "/",
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `n` requests whose path starts with `path_prefix` get error `status`."""
        with self._lock:
            self._failures.append(_Failure(status, n, retry_after, body, path_prefix, dict(headers or {})))

    def cut_next(self, after_events: int, n: int = 1) -> None:
        """The next `n` streaming responses close the connection after `after_events` SSE events."""
        with self._lock:
            self._cuts.append([after_events, n])

    def reset(self) -> None:
        """Forget recorded requests, pending failures and cuts, and the prompt cache."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._cuts.clear()
            self._cache.clear()
            self._responses.clear()

    def wait_for(self, n: int, *, timeout: float = 5.0, path: str | None = None) -> list[RecordedRequest]:
        """Block until at least `n` requests (to `path`, if given) have arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [r for r in self.requests if path is None or r.path == path]
            if len(got) >= n or time.monotonic() >= deadline:
                return got
            time.sleep(0.005)

    # ------------------------------------------------------------------ helpers

    def _new_id(self, prefix: str, length: int = 24) -> str:
        with self._lock:
            self._counter += 1
            n = self._counter
        return prefix + hashlib.sha256(f"{prefix}{n}".encode()).hexdigest()[:length]

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if f.remaining > 0 and path.startswith(f.path_prefix):
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._failures.remove(f)
                    return f
        return None

    def _take_cut(self) -> int | None:
        with self._lock:
            for c in self._cuts:
                if c[1] > 0:
                    c[1] -= 1
                    if c[1] == 0:
                        self._cuts.remove(c)
                    return c[0]
        return None

    @staticmethod
    def _provider_for(path: str, headers: dict[str, str]) -> str:
        if path.startswith("/v1/messages") or path.startswith("/v1/complete"):
            return "anthropic"
        if path.startswith(("/v1/chat/", "/v1/responses", "/v1/embeddings", "/v1/completions")):
            return "openai"
        if "anthropic-version" in headers or "x-api-key" in headers:
            return "anthropic"
        return "openai"

    def _error(
        self,
        provider: str,
        status: int,
        message: str | None = None,
        *,
        retry_after: str | None = None,
        body: dict | None = None,
        etype: str | None = None,
        code: str | None = None,
        param: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        message = message or DEFAULT_MESSAGES.get(status, f"Error {status}")
        headers: dict[str, str] = dict(extra_headers or {})
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if provider == "anthropic":
            rid = self._new_id("req_011")
            headers["request-id"] = rid
            if body is None:
                kind = etype or ANTHROPIC_ERROR_TYPES.get(
                    status, "api_error" if status >= 500 else "invalid_request_error"
                )
                body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": rid}
        else:
            headers["x-request-id"] = self._new_id("req_", 32)
            if body is None:
                default_type, default_code = OPENAI_ERROR_TYPES.get(
                    status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
                )
                body = {
                    "error": {
                        "message": message,
                        "type": etype or default_type,
                        "param": param,
                        "code": code if code is not None else default_code,
                    }
                }
        return web.json_response(body, status=status, headers=headers, dumps=_dumps)

    async def _answer(self, req: dict, provider: str) -> Any:
        answer = None
        if self.responder is not None:
            answer = self.responder(req, provider)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer is None:
            answer = "echo: " + _last_user_text(req, provider)
        return answer

    # ------------------------------------------------------------------ dispatch

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        parsed: Any = None
        bad_json = False
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                bad_json = True
        provider = self._provider_for(request.path, headers)
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            body=body,
            json=parsed,
            provider=provider,
        )
        with self._lock:
            self.requests.append(rec)

        delay = self.delay
        if "x-fake-delay-ms" in headers:
            delay = float(headers["x-fake-delay-ms"]) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

        if "x-fake-status" in headers:
            return self._error(provider, int(headers["x-fake-status"]), retry_after=headers.get("x-fake-retry-after"))
        failure = self._take_failure(request.path)
        if failure is not None:
            return self._error(provider, failure.status, retry_after=failure.retry_after, body=failure.body,
                               extra_headers=failure.headers)

        if self.require_auth and not _has_credentials(headers, provider):
            if provider == "anthropic":
                return self._error(provider, 401, "x-api-key header is required")
            return self._error(
                provider,
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )

        route = (request.method, request.path)
        if provider == "openai" and request.path.startswith(("/v1/files", "/v1/batches")):
            served = await self._openai_batch_api(request, body, parsed)
            if served is not None:
                return served
        if bad_json and request.method == "POST":
            return self._error(provider, 400, "There was an error parsing the body of your request as JSON.")
        try:
            if route == ("POST", "/v1/messages"):
                return await self._anthropic_messages(request, parsed, headers)
            if route == ("POST", "/v1/messages/count_tokens"):
                return self._anthropic_count_tokens(parsed)
            if request.path.startswith("/v1/messages/batches"):
                batch = await self._anthropic_batches(request, parsed)
                if batch is not None:
                    return batch
            if route == ("POST", "/v1/chat/completions"):
                return await self._openai_chat(request, parsed, headers)
            if route == ("POST", "/v1/responses"):
                return await self._openai_responses(request, parsed, headers)
            if request.method == "GET" and request.path.rstrip("/") == "/v1/models":
                return self._models(provider, None)
            if request.method == "GET" and request.path.startswith("/v1/models/"):
                return self._models(provider, request.path[len("/v1/models/") :])
        except _BadRequest as exc:
            return self._error(provider, 400, str(exc), param=exc.param)
        except ConnectionResetError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing responder is a 500, as a real upstream bug would be
            return self._error(provider, 500, f"fake provider error: {type(exc).__name__}: {exc}")
        if provider == "anthropic":
            return self._error(provider, 404, f"Not found: {request.method} {request.path}")
        return self._error(provider, 404, f"Invalid URL ({request.method} {request.path})", code=None)

    def _models(self, provider: str, model_id: str | None) -> web.Response:
        if provider == "anthropic":
            data = [
                {"type": "model", "id": mid, "display_name": name, "created_at": created, "lifecycle": "active"}
                for mid, name, created in ANTHROPIC_MODELS
            ]
            headers = {"request-id": self._new_id("req_011")}
            if model_id is not None:
                found = [m for m in data if m["id"] == model_id]
                if not found:
                    return self._error(provider, 404, f"model: {model_id}")
                return web.json_response(found[0], headers=headers, dumps=_dumps)
            body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
            return web.json_response(body, headers=headers, dumps=_dumps)
        data = [
            {"id": mid, "object": "model", "created": created, "owned_by": owner}
            for mid, created, owner in OPENAI_MODELS
        ]
        headers = {"x-request-id": self._new_id("req_", 32)}
        if model_id is not None:
            found = [m for m in data if m["id"] == model_id]
            if not found:
                return self._error(
                    provider, 404, f"The model '{model_id}' does not exist", code="model_not_found", param="model"
                )
            return web.json_response(found[0], headers=headers, dumps=_dumps)
        return web.json_response({"object": "list", "data": data}, headers=headers, dumps=_dumps)

    # ------------------------------------------------------------------ streaming

    async def _stream(
        self, request: web.Request, headers: dict[str, str], extra_headers: dict[str, str], events: list[bytes]
    ) -> web.StreamResponse:
        cut_after: int | None
        if "x-fake-cut-after" in headers:
            cut_after = int(headers["x-fake-cut-after"])
        else:
            cut_after = self._take_cut()
        event_delay = self.event_delay
        if "x-fake-event-delay-ms" in headers:
            event_delay = float(headers["x-fake-event-delay-ms"]) / 1000
        resp = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **extra_headers,
            },
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for i, event in enumerate(events):
                if cut_after is not None and i >= cut_after:
                    # Drop the connection mid-body: the client sees an incomplete chunked read.
                    resp.force_close()
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if i and event_delay > 0:
                    await asyncio.sleep(event_delay)
                await resp.write(event)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away; nothing to do
        return resp

    # ------------------------------------------------------------------ Anthropic

    def _anthropic_usage_in(self, req: dict) -> dict[str, Any]:
        segments = _anthropic_segments(req)
        total = sum(words for _, words, _ in segments)
        breakpoints = [i for i, (_, _, cc) in enumerate(segments) if cc is not None]
        if req.get("cache_control") and segments and segments[-1][2] is None:
            segments[-1] = (segments[-1][0], segments[-1][1], req["cache_control"])
            breakpoints.append(len(segments) - 1)
        cum: list[int] = []
        running = 0
        for _, words, _ in segments:
            running += words
            cum.append(running)
        model = req.get("model")

        def key(i: int) -> str:
            return hashlib.sha256(_dumps([model, [s[0] for s in segments[: i + 1]]]).encode()).hexdigest()

        read_upto = -1
        with self._lock:
            for bp in reversed(breakpoints):
                if key(bp) in self._cache:
                    read_upto = bp
                    break
            read = cum[read_upto] if read_upto >= 0 else 0
            created = {"5m": 0, "1h": 0}
            prev = read_upto
            for bp in breakpoints:
                if bp <= read_upto:
                    continue
                cc = segments[bp][2]
                ttl = "1h" if isinstance(cc, dict) and cc.get("ttl") == "1h" else "5m"
                created[ttl] += cum[bp] - (cum[prev] if prev >= 0 else 0)
                prev = bp
                self._cache.add(key(bp))
        creation = created["5m"] + created["1h"]
        return {
            "input_tokens": total - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": created["5m"], "ephemeral_1h_input_tokens": created["1h"]},
        }

    def _anthropic_count_tokens(self, req: Any) -> web.Response:
        _require(req, ("model", "messages"))
        total = sum(words for _, words, _ in _anthropic_segments(req))
        return web.json_response(
            {"input_tokens": max(total, 1)}, headers={"request-id": self._new_id("req_011")}, dumps=_dumps
        )

    async def _anthropic_plan(self, req: dict) -> tuple[list[dict], str]:
        """The content blocks of the answer and the stop reason."""
        answer = await self._answer(req, "anthropic")
        blocks: list[dict] = []
        thinking = req.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
            text = (
                "" if thinking.get("display") == "omitted" else "Thinking about: " + _last_user_text(req, "anthropic")
            )
            sig = "EqQBCkYIBxgCKkD" + hashlib.sha256(text.encode()).hexdigest()
            blocks.append({"type": "thinking", "thinking": text, "signature": sig})
        tools = req.get("tools") or []
        choice = req.get("tool_choice") or {}
        forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool") and tools
        if isinstance(answer, dict) and "tool" in answer and tools and choice.get("type") != "none":
            if answer.get("text"):
                blocks.append({"type": "text", "text": str(answer["text"])})
            inp = answer.get("input") or {}
            blocks.append({"type": "tool_use", "id": self._new_id("toolu_01"), "name": answer["tool"], "input": inp})
            return blocks, "tool_use"
        if isinstance(answer, dict):
            answer = str(answer.get("text") or _dumps(answer.get("input", answer)))
        if forced:
            name = choice.get("name") if choice.get("type") == "tool" else None
            tool = next((t for t in tools if t.get("name") == name), None) if name else tools[0]
            if tool is None:
                raise _BadRequest(f"tool_choice: tool '{name}' not found in tools", "tool_choice")
            inp = _fake_input(tool.get("input_schema") or {}, str(answer))
            blocks.append({"type": "tool_use", "id": self._new_id("toolu_01"), "name": tool["name"], "input": inp})
            return blocks, "tool_use"
        text, truncated = _truncate(str(answer), req.get("max_tokens"))
        blocks.append({"type": "text", "text": text})
        return blocks, "max_tokens" if truncated else "end_turn"

    async def _anthropic_messages(self, request: web.Request, req: Any, headers: dict[str, str]) -> web.StreamResponse:
        _require(req, ("model", "max_tokens", "messages"))
        if not isinstance(req["messages"], list) or not req["messages"]:
            raise _BadRequest("messages: at least one message is required", "messages")
        blocks, stop_reason = await self._anthropic_plan(req)
        usage = self._anthropic_usage_in(req)
        output_tokens = max(1, sum(_block_words(b) for b in blocks))
        msg_id = self._new_id("msg_01")
        extra = {"request-id": self._new_id("req_011")}
        if not req.get("stream"):
            message = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": req["model"],
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": output_tokens, "service_tier": "standard"},
            }
            return web.json_response(message, headers=extra, dumps=_dumps)

        def ev(data: dict) -> bytes:
            return f"event: {data['type']}\ndata: {_dumps(data)}\n\n".encode()

        events = [
            ev(
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": req["model"],
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**usage, "output_tokens": 1, "service_tier": "standard"},
                    },
                }
            )
        ]
        for index, block in enumerate(blocks):
            if block["type"] == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": c} for c in _chunks(block["thinking"])]
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            elif block["type"] == "tool_use":
                start = {**block, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": ""}]
                deltas += [
                    {"type": "input_json_delta", "partial_json": c} for c in _split_fixed(_dumps(block["input"]), 12)
                ]
            else:
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"])]
            events.append(ev({"type": "content_block_start", "index": index, "content_block": start}))
            if index == 0:
                events.append(ev({"type": "ping"}))
            events += [ev({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
            events.append(ev({"type": "content_block_stop", "index": index}))
        events.append(
            ev(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {
                        "input_tokens": usage["input_tokens"],
                        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                        "cache_read_input_tokens": usage["cache_read_input_tokens"],
                        "output_tokens": output_tokens,
                    },
                }
            )
        )
        events.append(ev({"type": "message_stop"}))
        return await self._stream(request, headers, extra, events)

    # ------------------------------------------------------------------ Anthropic Message Batches

    async def _anthropic_batches(self, request: web.Request, req: Any) -> web.StreamResponse | None:
        """Create, retrieve and results of a Message Batch. A batch ends at once; a request whose custom_id starts
        with `errored`, `canceled` or `expired` gets that result type instead of a message."""
        parts = request.path[len("/v1/messages/batches"):].strip("/").split("/")
        if request.method == "POST" and parts == [""]:
            _require(req, ("requests",))
            batch_id = self._new_id("msgbatch_01")
            counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            for r in req["requests"]:
                kind = next((k for k in ("errored", "canceled", "expired") if r["custom_id"].startswith(k)), "succeeded")
                counts[kind] += 1
            batch = {
                "id": batch_id, "type": "message_batch", "processing_status": "ended", "request_counts": counts,
                "created_at": "2026-12-05T10:00:00Z", "ended_at": "2026-12-05T10:05:00Z",
                "expires_at": "2026-12-06T10:00:00Z", "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results",
            }
            self._batches[batch_id] = {"batch": batch, "requests": req["requests"]}
            return web.json_response(batch, dumps=_dumps)
        found = self._batches.get(parts[0]) if request.method == "GET" else None
        if found is None:
            return None
        if len(parts) == 1:
            return web.json_response(found["batch"], dumps=_dumps)
        if parts[1:] != ["results"]:
            return None
        lines = []
        for r in found["requests"]:
            cid, params = r["custom_id"], r["params"]
            kind = next((k for k in ("errored", "canceled", "expired") if cid.startswith(k)), "succeeded")
            if kind == "errored":
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "max_tokens: Field required"}}}
            elif kind != "succeeded":
                result = {"type": kind}
            else:
                blocks, stop_reason = await self._anthropic_plan(params)
                usage = self._anthropic_usage_in(params)
                result = {"type": "succeeded", "message": {
                    "id": self._new_id("msg_01"), "type": "message", "role": "assistant", "model": params["model"],
                    "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                    "usage": {**usage, "output_tokens": max(1, sum(_block_words(b) for b in blocks)),
                              "service_tier": "batch"}}}
            lines.append(_dumps({"custom_id": cid, "result": result}))
        return web.Response(body=("\n".join(lines) + "\n").encode(), content_type="application/binary")

    # ------------------------------------------------------------------ OpenAI Batch

    async def _openai_batch_api(self, request: web.Request, body: bytes, req: Any) -> web.StreamResponse | None:
        """Files upload / content and Batch create / retrieve. A batch completes at once; its output file answers
        each chat-completions line as `/v1/chat/completions` would."""
        parts = request.path.strip("/").split("/")[1:]
        if request.method == "POST" and parts == ["files"]:
            fields = multipart_fields(request.headers.get("content-type", ""), body)
            file_id = self._new_id("file-", 22)
            self._files[file_id] = fields["file"]
            return web.json_response({"id": file_id, "object": "file", "bytes": len(fields["file"]),
                                      "created_at": 1764900000, "filename": "batch.jsonl",
                                      "purpose": fields.get("purpose", b"").decode(), "status": "processed",
                                      "expires_at": None, "status_details": None}, dumps=_dumps)
        if request.method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            content = self._files.get(parts[1])
            return None if content is None else web.Response(body=content, content_type="application/octet-stream")
        if request.method == "POST" and parts == ["batches"]:
            _require(req, ("input_file_id", "endpoint", "completion_window"))
            lines = [json.loads(line) for line in self._files[req["input_file_id"]].splitlines() if line.strip()]
            out = []
            for line in lines:
                try:
                    answer = await self._openai_chat(request, line["body"], {})
                except _BadRequest as exc:
                    answer = self._error("openai", 400, str(exc), param=exc.param)
                out.append(_dumps({"id": self._new_id("batch_req_", 32), "custom_id": line["custom_id"],
                                   "response": {"status_code": answer.status, "request_id": self._new_id("req_", 32),
                                                "body": json.loads(answer.body)}, "error": None}))
            output_id = self._new_id("file-", 22)
            self._files[output_id] = ("\n".join(out) + "\n").encode()
            batch_id = self._new_id("batch_", 32)
            batch = {"id": batch_id, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                     "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                     "status": "completed", "output_file_id": output_id, "error_file_id": None,
                     "created_at": 1764900000, "completed_at": 1764900300,
                     "request_counts": {"total": len(lines), "completed": len(lines), "failed": 0}, "metadata": None}
            self._openai_batches[batch_id] = batch
            return web.json_response(batch, dumps=_dumps)
        if request.method == "GET" and len(parts) == 2 and parts[0] == "batches":
            batch = self._openai_batches.get(parts[1])
            return None if batch is None else web.json_response(batch, dumps=_dumps)
        return None

    # ------------------------------------------------------------------ OpenAI

    async def _openai_chat(self, request: web.Request, req: Any, headers: dict[str, str]) -> web.StreamResponse:
        _require(req, ("model", "messages"))
        if not isinstance(req["messages"], list) or not req["messages"]:
            raise _BadRequest("[] is too short - 'messages'", "messages")
        answer = await self._answer(req, "openai")
        tools = req.get("tools") or []
        choice = req.get("tool_choice")
        tool_call: dict | None = None
        text: str | None = None
        finish = "stop"
        if isinstance(answer, dict) and "tool" in answer and tools and choice != "none":
            tool_call = {"name": answer["tool"], "input": answer.get("input") or {}}
        else:
            if isinstance(answer, dict):
                answer = str(answer.get("text") or _dumps(answer.get("input", answer)))
            forced_name = None
            if isinstance(choice, dict):
                forced_name = (choice.get("function") or {}).get("name")
            if tools and (choice == "required" or forced_name):
                fns = [t.get("function") or {} for t in tools]
                fn = next((f for f in fns if f.get("name") == forced_name), None) if forced_name else fns[0]
                if fn is None:
                    raise _BadRequest(f"tool_choice: no function named '{forced_name}' in tools", "tool_choice")
                tool_call = {"name": fn.get("name"), "input": _fake_input(fn.get("parameters") or {}, str(answer))}
            else:
                limit = req.get("max_completion_tokens") or req.get("max_tokens")
                text, truncated = _truncate(str(answer), limit)
                finish = "length" if truncated else "stop"
        call_id = self._new_id("call_", 24) if tool_call else None
        if tool_call:
            finish = "tool_calls"
            arguments = _dumps(tool_call["input"])
            completion_tokens = max(1, count_words(arguments))
        else:
            completion_tokens = max(1, count_words(text or ""))
        prompt_tokens = sum(_openai_message_words(m) for m in req["messages"] if isinstance(m, dict))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        cid = self._new_id("chatcmpl-", 29)
        created = int(time.time())
        extra = {"x-request-id": self._new_id("req_", 32), "openai-processing-ms": "1"}
        base = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": req["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }
        if not req.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if tool_call:
                message["tool_calls"] = [
                    {"id": call_id, "type": "function", "function": {"name": tool_call["name"], "arguments": arguments}}
                ]
            body = {
                **base,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            }
            return web.json_response(body, headers=extra, dumps=_dumps)

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict | None, finish_reason: str | None = None, *, final_usage: bool = False) -> bytes:
            data: dict[str, Any] = dict(base)
            if final_usage:
                data["choices"] = []
                data["usage"] = usage
            else:
                data["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
                if include_usage:
                    data["usage"] = None
            return f"data: {_dumps(data)}\n\n".encode()

        events: list[bytes] = []
        if tool_call:
            events.append(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": tool_call["name"], "arguments": ""},
                            }
                        ],
                        "refusal": None,
                    }
                )
            )
            for piece in _split_fixed(arguments, 12):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in _chunks(text or ""):
                events.append(chunk({"content": piece}))
        events.append(chunk({}, finish))
        if include_usage:
            events.append(chunk(None, final_usage=True))
        events.append(b"data: [DONE]\n\n")
        return await self._stream(request, headers, extra, events)


    async def _openai_responses(self, request: web.Request, req: Any, headers: dict[str, str]) -> web.StreamResponse:
        """The Responses API: a `response` object, or its event stream (response.created ... response.completed).

        Responses are kept by id, so `previous_response_id` must name one this fake gave (else a 400, as the API
        answers). Usage: input words of instructions and input; `x-fake-cached-tokens` and
        `x-fake-reasoning-tokens` request headers add cached input and reasoning output tokens to the counts.
        """
        _require(req, ("model", "input"))
        previous = req.get("previous_response_id")
        if previous is not None and previous not in self._responses:
            raise _BadRequest(f"Previous response with id '{previous}' not found.", "previous_response_id")
        answer = await self._answer(req, "openai")
        tools = [t for t in req.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        call: dict | None = None
        text = ""
        status, incomplete = "completed", None
        if isinstance(answer, dict) and "tool" in answer and tools and req.get("tool_choice") != "none":
            call = {"name": answer["tool"], "arguments": _dumps(answer.get("input") or {})}
        else:
            if isinstance(answer, dict):
                answer = str(answer.get("text") or _dumps(answer.get("input", answer)))
            if tools and req.get("tool_choice") == "required":
                fn = tools[0]
                call = {"name": fn.get("name"), "arguments": _dumps(_fake_input(fn.get("parameters") or {}, str(answer)))}
            else:
                text, truncated = _truncate(str(answer), req.get("max_output_tokens"))
                if truncated:
                    status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        raw_input = req["input"]
        items = [raw_input] if isinstance(raw_input, str) else raw_input if isinstance(raw_input, list) else []
        words = count_words(str(req.get("instructions") or "")) + sum(
            count_words(i) if isinstance(i, str) else count_words(_content_text(i.get("content")))
            + count_words(str(i.get("output") or i.get("arguments") or ""))
            for i in items if isinstance(i, (str, dict))
        )
        cached = int(headers.get("x-fake-cached-tokens", "0"))
        reasoning = int(headers.get("x-fake-reasoning-tokens", "0"))
        output_tokens = max(1, count_words(call["arguments"] if call else text)) + reasoning
        output: list[dict] = []
        if reasoning:
            output.append({"id": self._new_id("rs_", 48), "type": "reasoning", "summary": []})
        if call:
            output.append({"id": self._new_id("fc_", 48), "type": "function_call", "status": "completed",
                           "arguments": call["arguments"], "call_id": self._new_id("call_", 24), "name": call["name"]})
        else:
            output.append({"id": self._new_id("msg_", 48), "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
        rid = self._new_id("resp_", 48)
        response = {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": status, "background": False,
            "error": None, "incomplete_details": incomplete, "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"), "model": req["model"], "output": output,
            "parallel_tool_calls": req.get("parallel_tool_calls", True), "previous_response_id": previous,
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": req.get("store", True),
            "temperature": req.get("temperature", 1.0), "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools") or [],
            "top_p": req.get("top_p", 1.0), "truncation": "disabled",
            "usage": {"input_tokens": words + cached, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
                      "total_tokens": words + cached + output_tokens},
            "user": None, "metadata": req.get("metadata") or {},
        }
        self._responses[rid] = response
        extra = {"x-request-id": self._new_id("req_", 32), "openai-processing-ms": "1"}
        if not req.get("stream"):
            return web.json_response(response, headers=extra, dumps=_dumps)

        start = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
        events: list[dict] = [{"type": "response.created", "response": start},
                              {"type": "response.in_progress", "response": start}]
        for index, item in enumerate(output):
            at = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": {**item, "status": "in_progress", "content": []}})
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                events.append({"type": "response.content_part.added", **at, "content_index": 0, "part": part})
                for piece in _chunks(text):
                    events.append({"type": "response.output_text.delta", **at, "content_index": 0, "delta": piece,
                                   "logprobs": []})
                events.append({"type": "response.output_text.done", **at, "content_index": 0, "text": text,
                               "logprobs": []})
                events.append({"type": "response.content_part.done", **at, "content_index": 0,
                               "part": {**part, "text": text}})
            elif item["type"] == "function_call":
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": {**item, "status": "in_progress", "arguments": ""}})
                for piece in _split_fixed(item["arguments"], 12):
                    events.append({"type": "response.function_call_arguments.delta", **at, "delta": piece})
                events.append({"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]})
            else:
                events.append({"type": "response.output_item.added", "output_index": index, "item": item})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        terminal = "response.incomplete" if status == "incomplete" else "response.completed"
        events.append({"type": terminal, "response": response})
        raw = [f"event: {e['type']}\ndata: {_dumps({**e, 'sequence_number': n})}\n\n".encode()
               for n, e in enumerate(events)]
        return await self._stream(request, headers, extra, raw)


# ---------------------------------------------------------------------- request helpers


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _require(req: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(req, dict):
        raise _BadRequest("The request body must be a JSON object.")
    for k in keys:
        if k not in req:
            raise _BadRequest(f"{k}: Field required", k)


def _has_credentials(headers: dict[str, str], provider: str) -> bool:
    auth = headers.get("authorization", "")
    bearer = auth.lower().startswith("bearer ") and auth[7:].strip() != ""
    if provider == "anthropic":
        return bool(headers.get("x-api-key")) or bearer
    return bearer


def _content_text(content: Any) -> str:
    """The text of an Anthropic or OpenAI message content (string or list of blocks/parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return " ".join(t for t in (_block_text(b) for b in content) if t)


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind in ("text", "input_text", "output_text"):
        return str(block.get("text") or "")
    if kind == "tool_result":
        return _content_text(block.get("content"))
    if kind in ("tool_use", "server_tool_use"):
        return _dumps(block.get("input") or {})
    if kind == "thinking":
        return str(block.get("thinking") or "")
    return ""


def _block_words(block: dict) -> int:
    return count_words(_block_text(block))


def _strip_cc(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_cc(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [_strip_cc(v) for v in obj]
    return obj


def _anthropic_segments(req: dict) -> list[tuple[Any, int, Any]]:
    """(cache-key part, words, cache_control or None) for tools, system blocks, then message blocks."""
    segs: list[tuple[Any, int, Any]] = []
    for tool in req.get("tools") or []:
        if isinstance(tool, dict):
            segs.append((["tool", _strip_cc(tool)], 0, tool.get("cache_control")))
    system = req.get("system")
    if isinstance(system, str) and system:
        segs.append((["system", system], count_words(system), None))
    elif isinstance(system, list):
        for b in system:
            if isinstance(b, dict):
                segs.append((["system", _strip_cc(b)], _block_words(b), b.get("cache_control")))
    for m in req.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        content = m.get("content")
        if isinstance(content, str):
            segs.append(([role, content], count_words(content), None))
        elif isinstance(content, list):
            for b in content:
                if isinstance(b, dict):
                    segs.append(([role, _strip_cc(b)], _block_words(b), b.get("cache_control")))
    return segs


def _openai_message_words(m: dict) -> int:
    n = count_words(_content_text(m.get("content")))
    for call in m.get("tool_calls") or []:
        n += count_words(str((call.get("function") or {}).get("arguments") or ""))
    return n


def _last_user_text(req: dict, provider: str) -> str:
    if "messages" not in req and "input" in req:  # the Responses API: a string, or a list of input items
        items = req["input"]
        if isinstance(items, str):
            return items
        for item in reversed(items if isinstance(items, list) else []):
            if isinstance(item, dict) and item.get("role") == "user":
                return _content_text(item.get("content"))
        return ""
    for m in reversed(req.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


def _truncate(text: str, limit: Any) -> tuple[str, bool]:
    if not isinstance(limit, int) or limit <= 0 or count_words(text) <= limit:
        return text, False
    pieces = _PIECE.findall(text)
    out: list[str] = []
    words = 0
    for p in pieces:
        if p.strip():
            if words == limit:
                break
            words += 1
        out.append(p)
    return "".join(out).rstrip(), True


def _fake_input(schema: dict, text: str) -> dict:
    """A deterministic tool input satisfying the required properties of a JSON schema."""
    props = schema.get("properties") or {}
    required = schema.get("required") or list(props)
    out: dict[str, Any] = {}
    for name in required:
        spec = props.get(name) or {}
        kind = spec.get("type")
        if "enum" in spec and spec["enum"]:
            out[name] = spec["enum"][0]
        elif kind == "integer":
            out[name] = 1
        elif kind == "number":
            out[name] = 1.0
        elif kind == "boolean":
            out[name] = True
        elif kind == "array":
            out[name] = []
        elif kind == "object":
            out[name] = _fake_input(spec, text)
        else:
            out[name] = text
    return out
