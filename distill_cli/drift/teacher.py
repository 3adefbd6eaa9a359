"""The live teacher of `drift --live-teacher`: the student's teacher, asked again about recorded requests.

It never writes anything; what it costs is returned to the caller, which caps it.
"""

from __future__ import annotations

import json
import os

from distill_cli.errors import ProviderError
from distill_cli.judges import RetryPolicy, call_with_retries


class Teacher:
    """The student's teacher, asked again about recorded requests through the provider's SDK.

    The SDK reads ANTHROPIC_BASE_URL / OPENAI_BASE_URL, so a proxy or a fake server
    sits in between as it would for the job. Retries follow `RetryPolicy`.
    """

    def __init__(self, model: str, provider: str, prices, *, retry: RetryPolicy | None = None, timeout: float = 60.0) -> None:
        self.model, self.provider, self.prices = model, provider, prices
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        key_env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
        self._api_key = os.environ.get(key_env) or (os.environ.get("ANTHROPIC_AUTH_TOKEN") if provider != "openai" else None)
        if not self._api_key:
            raise ProviderError(f"--live-teacher asks the teacher ({model}) and needs an API key: set {key_env}")
        self._client = None

    def _async_client(self):
        if self._client is None:
            if self.provider == "openai":
                import openai

                self._client = openai.AsyncOpenAI(api_key=self._api_key, max_retries=0, timeout=self.timeout)
            else:
                import anthropic

                self._client = anthropic.AsyncAnthropic(api_key=self._api_key, max_retries=0, timeout=self.timeout)
        return self._client

    def request_for(self, request_json: str) -> dict:
        request = json.loads(request_json)
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
        request = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        request["model"] = self.model
        return request

    async def ask(self, request: dict) -> tuple[str | None, float | None]:
        """The teacher's answer text and what the call cost (None when the model has no known price)."""
        from distill_cli import calls

        client = self._async_client()
        if self.provider == "openai":
            reply = await call_with_retries(lambda: client.chat.completions.create(**request), self.retry, what=f"live teacher {self.model}")
            row = calls.openai_row(request, reply.model_dump(), prices=self.prices)
        else:
            reply = await call_with_retries(lambda: client.messages.create(**request), self.retry, what=f"live teacher {self.model}")
            row = calls.anthropic_row(request, reply.model_dump(), prices=self.prices)
        return row["output"], row["cost_usd"]

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
