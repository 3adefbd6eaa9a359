"""What the recorder knows about each provider API: which calls it records,
where a path goes upstream, the error shape a job's SDK understands, how a
stream is assembled, and how a call becomes a row.

One proxy port serves both providers: Anthropic's SDK always sends `anthropic-version`
(and its paths start with /v1/messages), so anything else is OpenAI's. OpenAI has two
recorded APIs, chat completions and the Responses API (`POST /v1/responses`): each is
a `ProviderAPI` of its own (`shape` says which), with the same upstream and provider.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from distill_cli import calls
from distill_cli.recorder.sse import AnthropicStream, OpenAIStream, ResponsesStream

DEFAULT_ANTHROPIC_UPSTREAM = "https://api.anthropic.com"
DEFAULT_OPENAI_UPSTREAM = "https://api.openai.com/v1"

# The `"usage":null` member every chunk carries once `include_usage` is on; removed
# from what the job sees when the job had not asked for usage (see OpenAI.prepare).
_USAGE_NULL = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*\}\s*(?:\r\n|\n|\r|$))')


@dataclass(frozen=True)
class ProviderAPI:
    name: str  # the row's `provider`
    upstream: str  # base URL, as the provider's SDK takes it
    recorded: frozenset[tuple[str, str]]  # (method, path) pairs that become rows
    row: Callable[..., dict]  # calls.anthropic_row / calls.openai_row
    new_stream: Callable[[], AnthropicStream | OpenAIStream | ResponsesStream]
    proxy: str | None = None  # an HTTP(S)_PROXY from the environment for this upstream, as the SDK would use
    shape: str = ""  # the request/response shape: `anthropic`, `openai` (chat completions) or `responses`

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", self.name)

    def records(self, method: str, path: str) -> bool:
        return (method, path) in self.recorded

    def upstream_url(self, path: str, query: str = "") -> str:
        """The upstream URL of a path the job asked the proxy for."""
        if self.name == "openai" and (path == "/v1" or path.startswith("/v1/")):
            path = path[3:]  # the job's base URL ends in /v1, and so does the upstream's
        return self.upstream + path + (f"?{query}" if query else "")

    def error_response(self, status: int, kind: str, message: str) -> web.Response:
        """An error the proxy itself answers, in the shape the job's SDK parses."""
        if self.name == "anthropic":
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return web.json_response(body, status=status)

    def prepare(self, request: dict, body: bytes) -> tuple[bytes, bool]:
        """The body to send upstream, and whether the proxy added stream usage the job did not ask for.

        An OpenAI stream reports token usage only with `stream_options.include_usage`;
        without it a row would have no tokens and no cost. So the proxy asks for it,
        and hides the extra usage chunk (and the `"usage":null` members) from the job.
        """
        if self.shape != "openai" or not request.get("stream"):  # a Responses stream always ends with its usage
            return body, False
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return body, False
        options = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        return json.dumps({**request, "stream_options": options}, ensure_ascii=False).encode(), True

    @staticmethod
    def without_added_usage(raw_event: bytes) -> bytes:
        """A stream event as it would have been without `include_usage`."""
        return _USAGE_NULL.sub(b"", raw_event) if b'"usage"' in raw_event else raw_event


def env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY, ...) names for `url`, looked up once, not per call."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _api(name: str, upstream: str, recorded: str, row, new_stream, shape: str = "") -> ProviderAPI:
    upstream = upstream.rstrip("/")
    return ProviderAPI(
        name=name,
        upstream=upstream,
        recorded=frozenset({("POST", recorded)}),
        row=row,
        new_stream=new_stream,
        proxy=env_proxy(upstream),
        shape=shape,
    )


def anthropic_api(upstream: str | None = None) -> ProviderAPI:
    return _api("anthropic", upstream or DEFAULT_ANTHROPIC_UPSTREAM, "/v1/messages", calls.anthropic_row, AnthropicStream)


def openai_api(upstream: str | None = None) -> ProviderAPI:
    return _api("openai", upstream or DEFAULT_OPENAI_UPSTREAM, "/v1/chat/completions", calls.openai_row, OpenAIStream)


def responses_api(upstream: str | None = None) -> ProviderAPI:
    """OpenAI's Responses API: rows with provider `openai`, endpoint `/v1/responses`."""
    return _api("openai", upstream or DEFAULT_OPENAI_UPSTREAM, "/v1/responses", calls.responses_row, ResponsesStream,
                shape="responses")


def is_anthropic_request(path: str, headers) -> bool:
    """Whose API a request to the shared port is for."""
    return path.startswith(("/v1/messages", "/v1/complete")) or "anthropic-version" in headers or "x-api-key" in headers
