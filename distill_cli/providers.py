"""Provider clients: how distill itself calls a model provider's API.

The LLM student, the LLM judge and drift's live teacher all go through here for
the four things every call needs:

  * the API key: read from a `*_API_KEY` variable (a name that comes from a data
    file must match that rule, so a file cannot have another secret, say
    GITHUB_TOKEN, sent to its endpoint);
  * a client: one SDK client per running event loop (an SDK's async client is
    bound to the loop it was first used on), created with the SDK's own retries
    off (`max_retries=0`);
  * the price: usage to dollars through prices.py;
  * retries: the one `RetryPolicy`, which honours `retry-after` (and
    `retry-after-ms`) and `x-should-retry`. Because the SDKs never retry
    underneath it, one attempt is one request.

This module never prints, never logs or stores a key (nor puts one in an error
message), and never sleeps except through `RetryPolicy.sleep`. It is not
recorder/providers.py, which describes the wire formats the recording proxy sees.
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from distill_cli import canonical
from distill_cli.errors import InputError, ProviderError
from distill_cli.prices import PriceTable, Usage, usage_from_anthropic, usage_from_openai

T = TypeVar("T")

# ---- keys ------------------------------------------------------------------------------------------------------

# Variables a key may be read from when a file names them: a file must not be able to read any other secret.
KEY_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]*_API_KEY$")
KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
# The Anthropic SDK's other credential; read only when no key variable was named.
AUTH_TOKEN_ENV = "ANTHROPIC_AUTH_TOKEN"


def key_env_for(api: str) -> str:
    """The variable an API's SDK reads its key from."""
    return KEY_ENV["openai" if api == "openai" else "anthropic"]


def check_key_env(name: str, *, who: str) -> str:
    """`name` when it is a `*_API_KEY` variable; InputError naming it (never its value) otherwise."""
    if not KEY_ENV_RE.match(name or ""):
        raise InputError(f"{who}: its key variable {name!r} is not a *_API_KEY variable; refusing to read it")
    return name


def read_key(api: str, key_env: str | None = None, *, who: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The key for `api` from `key_env` (checked against the `*_API_KEY` rule), else from the SDK's own variable
    (and, for Anthropic, ANTHROPIC_AUTH_TOKEN); None when it is not set."""
    env = os.environ if environ is None else environ
    if key_env:
        return env.get(check_key_env(key_env, who=who)) or None
    key = env.get(key_env_for(api))
    if not key and api != "openai":
        key = env.get(AUTH_TOKEN_ENV)
    return key or None


# ---- clients ---------------------------------------------------------------------------------------------------


class Clients:
    """SDK clients for one API, endpoint and key: one async client per running event loop, one sync client.

    `key` is called whenever a client is made, so a key is read when a call needs
    it (after any endpoint check) and only the SDK client holds it. The SDKs'
    retries are off: `RetryPolicy` retries.
    """

    def __init__(
        self,
        api: str,
        key: Callable[[], str | None],
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        who: str = "distill",
    ) -> None:
        self.api = "openai" if api == "openai" else "anthropic"
        self._key = key
        self.base_url = base_url
        self.timeout = timeout
        self.who = who
        self._async = None
        self._loop = None
        self._sync = None

    def _options(self) -> dict:
        options: dict[str, Any] = {"api_key": self._key(), "base_url": self.base_url, "max_retries": 0}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options

    def _sdk(self):
        if self.api == "anthropic":
            import anthropic

            return anthropic
        try:
            import openai
        except ImportError:
            raise InputError(f"{self.who} needs the openai package: pip install openai") from None
        return openai

    def async_client(self):
        """The async client for the running loop (a new one when the loop changed: the old one's loop is gone)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            sdk = self._sdk()
            make = sdk.AsyncAnthropic if self.api == "anthropic" else sdk.AsyncOpenAI
            self._async, self._loop = make(**self._options()), loop
        return self._async

    def sync_client(self):
        if self._sync is None:
            sdk = self._sdk()
            self._sync = (sdk.Anthropic if self.api == "anthropic" else sdk.OpenAI)(**self._options())
        return self._sync

    async def aclose(self) -> None:
        """Close the async client (call it on the loop that used it)."""
        if self._async is not None:
            client, self._async, self._loop = self._async, None, None
            await client.close()


class HTTPFailure(Exception):
    """An HTTP error answer from an endpoint called without an SDK (`post_json`)."""

    def __init__(self, status: int, headers: Mapping[str, str], message: str) -> None:
        super().__init__(message)
        self.status_code, self.headers, self.message = status, headers, message


async def post_json(url: str, body: dict, *, key: str | None, timeout: float = 120.0) -> dict:
    """POST `body` to an OpenAI-compatible endpoint (a local vLLM or Ollama needs no SDK, and maybe no key).

    The parsed answer; HTTPFailure for an error status; aiohttp's errors, TimeoutError
    or ValueError (not JSON) as raised.
    """
    import aiohttp

    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(url, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            if response.status != 200:
                error = payload.get("error") if isinstance(payload, dict) else None
                detail = error.get("message") if isinstance(error, dict) else str(payload)[:200]
                raise HTTPFailure(response.status, response.headers.copy(), canonical.mask_secrets(str(detail)))
    return payload


# ---- prices ----------------------------------------------------------------------------------------------------


def usage_of(api: str, usage: Any) -> Usage:
    """A reply's usage (SDK object or dict) in the price table's terms."""
    return usage_from_openai(usage) if api == "openai" else usage_from_anthropic(usage)


def cost_of(prices: PriceTable, model: str | None, usage: Usage) -> float | None:
    """Dollars for one call, None when there is no model or no price for it."""
    return prices.cost(model, usage) if model else None


# ---- retries ---------------------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
FATAL_STATUSES = {401: "authentication refused", 403: "permission denied", 404: "model or endpoint not found"}


class Stop(enum.Enum):
    """Why retrying stopped."""

    FATAL = "fatal"  # 401/403/404: no retry can cure it
    REJECTED = "rejected"  # a status that is not transient (400, 413, 422): this request is refused
    TOLD = "told"  # the provider said `x-should-retry: false`
    EXHAUSTED = "exhausted"  # still failing after the policy's attempts
    TOO_LONG = "too long"  # asked to wait longer than the policy's max_wait


@dataclass(frozen=True)
class Failure:
    """A provider failure as the policy sees it: no status means the provider could not be reached."""

    status: int | None
    headers: Mapping[str, str]
    message: str


def failure_of(e: BaseException) -> Failure | None:
    """The Failure an SDK error, an HTTPFailure or a connection error stands for; None for anything else."""
    status = getattr(e, "status_code", None)
    response = getattr(e, "response", None)
    if isinstance(e, HTTPFailure):
        return Failure(e.status_code, e.headers, e.message)
    if isinstance(status, int) and response is not None:
        body = getattr(e, "body", None)
        message = None
        if isinstance(body, dict):
            inner = body.get("error") if isinstance(body.get("error"), dict) else body
            message = inner.get("message")
        return Failure(status, response.headers, canonical.mask_secrets(str(message or e)))
    module = type(e).__module__.split(".")[0]
    if module in ("anthropic", "openai") and type(e).__name__ in ("APIConnectionError", "APITimeoutError"):
        return Failure(None, {}, canonical.mask_secrets(str(e) or type(e).__name__))
    # aiohttp (post_json): a connection that failed or timed out; its other errors say the answer was bad.
    connection = module == "aiohttp" and any(c.__name__ == "ClientConnectionError" for c in type(e).__mro__)
    if connection or isinstance(e, asyncio.TimeoutError):
        return Failure(None, {}, canonical.mask_secrets(str(e) or type(e).__name__))
    return None


def retry_after_seconds(headers) -> float | None:
    """Seconds the provider asked us to wait (`retry-after-ms`, `retry-after` as seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def should_retry_header(headers) -> bool | None:
    """The provider's `x-should-retry` (true/false), None when it sent none."""
    value = (headers.get("x-should-retry") if headers is not None else None) or ""
    return {"true": True, "false": False}.get(value.strip().lower())


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter that honours `retry-after` and `x-should-retry`.

    The provider SDKs' own retries are switched off (`max_retries=0`) so that this
    one policy decides: a `retry-after` of 0 is honoured as 0 (the SDKs fall back to
    their own backoff), a wait longer than `max_wait` is not slept through but
    reported, `x-should-retry` overrides the status (except that a refused key or a
    missing model is never retried), and the sleeps are injectable so tests take no time.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    blocking_sleep: Callable[[float], None] = time.sleep  # for a blocking call (`retrying_sync`)

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.75 + 0.25 * random.random())

    def decide(self, failure: Failure, attempts: int) -> tuple[float | None, Stop | None]:
        """(seconds to wait before the next attempt, None) or (None, why to stop), after `attempts` failed ones."""
        if failure.status in FATAL_STATUSES:
            return None, Stop.FATAL
        told = should_retry_header(failure.headers)
        if told is False:
            return None, Stop.TOLD
        transient = failure.status is None or failure.status in RETRY_STATUSES or failure.status >= 500
        if not transient and told is not True:
            return None, Stop.REJECTED
        if attempts >= self.attempts:
            return None, Stop.EXHAUSTED
        wait = retry_after_seconds(failure.headers)
        if wait is not None and wait > self.max_wait:
            return wait, Stop.TOO_LONG
        return (self.backoff(attempts - 1) if wait is None else wait), None


class Stopped(Exception):
    """Retrying stopped: the last error, its Failure, why, after how many attempts (and the wait asked for)."""

    def __init__(self, error: BaseException, failure: Failure, reason: Stop, attempts: int, wait: float | None) -> None:
        super().__init__(f"{reason.value} after {attempts} attempts: {failure.message}")
        self.error, self.failure, self.reason, self.attempts, self.wait = error, failure, reason, attempts, wait


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    failure: Callable[[BaseException], Failure | None] = failure_of,
) -> T:
    """Await `call()` (one request), again while `policy` says so; Stopped when it says stop.

    An exception `failure` does not recognise is re-raised at once.
    """
    attempts = 0
    while True:
        try:
            return await call()
        except Exception as e:  # noqa: BLE001 - classified by `failure`; anything unknown is re-raised
            found = failure(e)
            if found is None:
                raise
            attempts += 1
            wait, stop = policy.decide(found, attempts)
            if stop is not None:
                raise Stopped(e, found, stop, attempts, wait) from e
            await policy.sleep(wait)


def retrying_sync(call: Callable[[], T], policy: RetryPolicy) -> T:
    """`retrying` for a blocking call (the sync SDK client), waiting with `policy.blocking_sleep`."""
    attempts = 0
    while True:
        try:
            return call()
        except Exception as e:  # noqa: BLE001
            found = failure_of(e)
            if found is None:
                raise
            attempts += 1
            wait, stop = policy.decide(found, attempts)
            if stop is not None:
                raise Stopped(e, found, stop, attempts, wait) from e
            policy.blocking_sleep(wait)


async def call_with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, *, what: str, rejected: type[Exception] = ProviderError
) -> T:
    """Await `call()`, retrying transient provider failures under `policy`.

    Raises ProviderError when retries cannot cure it (auth refused, unreachable,
    still failing after `policy.attempts`, told not to retry), `rejected` for a
    request the provider refuses outright (400, 413, 422: specific to this input).
    """
    try:
        return await retrying(call, policy)
    except Stopped as s:
        status, message = s.failure.status, s.failure.message
        problem = f"HTTP {status}: {message}" if status else f"unreachable: {message}"
        if s.reason is Stop.FATAL:
            raise ProviderError(f"{what}: {FATAL_STATUSES[status]} (HTTP {status}): {message}") from None
        if s.reason is Stop.REJECTED:
            raise rejected(f"{what}: HTTP {status}: {message}") from None
        if s.reason is Stop.TOLD:
            raise ProviderError(f"{what}: {problem} (the provider said not to retry)") from None
        if s.reason is Stop.TOO_LONG:
            raise ProviderError(
                f"{what}: {problem}; asked to retry after {s.wait:.0f} s, more than {policy.max_wait:.0f} s"
            ) from None
        raise ProviderError(f"{what}: {problem} (gave up after {s.attempts} attempts)") from None
