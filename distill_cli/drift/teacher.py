"""The live teacher of `drift --live-teacher`: the student's teacher, asked again about recorded requests.

It never writes anything; what it costs is returned to the caller, which caps it.
"""

from __future__ import annotations

import json

from distill_cli.errors import ProviderError
from distill_cli.judges import JudgeError
from distill_cli.providers import Clients, RetryPolicy, call_with_retries, key_env_for, read_key


class Teacher:
    """The student's teacher, asked again about recorded requests through the provider's SDK.

    The SDK reads ANTHROPIC_BASE_URL / OPENAI_BASE_URL, so a proxy or a fake server
    sits in between as it would for the job. Key, client and retries come from providers.py; the
    answer and its price are read as calls.py reads a recorded teacher row.
    """

    def __init__(
        self,
        model: str,
        provider: str,
        prices,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        key_env: str | None = None,
    ) -> None:
        self.model, self.provider, self.prices = model, provider, prices
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._api_key = read_key(provider, key_env, who=f"live teacher {model}")
        if not self._api_key:
            raise ProviderError(f"--live-teacher asks the teacher ({model}) and needs an API key: "
                                f"set {key_env or key_env_for(provider)}")
        self._clients = Clients(provider, lambda: self._api_key, timeout=timeout, who=f"live teacher {model}")

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

        client = self._clients.async_client()
        what = f"live teacher {self.model}"
        if self.provider == "openai":
            reply = await call_with_retries(lambda: client.chat.completions.create(**request), self.retry, what=what,
                                            rejected=JudgeError)
            row = calls.openai_row(request, reply.model_dump(), prices=self.prices)
        else:
            reply = await call_with_retries(lambda: client.messages.create(**request), self.retry, what=what,
                                            rejected=JudgeError)
            row = calls.anthropic_row(request, reply.model_dump(), prices=self.prices)
        return row["output"], row["cost_usd"]

    async def aclose(self) -> None:
        await self._clients.aclose()
