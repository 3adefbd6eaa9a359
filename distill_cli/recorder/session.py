"""A recording session: the proxy, the store it journals to, and the tally.

`Recorder` is asyncio-native (the CLI runs it on the main loop); `record_to` runs
one in a background thread for jobs that cannot be wrapped by `distill record`.

Rolling the journal into Parquet parts (every 10,000 rows or 60 s, and at the
end) must not stall the proxy: the StoreWriter hands a full journal segment to
a low-priority child process (roll.py) and the next call opens a new segment. A
recorder killed meanwhile leaves journals the next writer recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from distill_cli import canonical, remote
from distill_cli.errors import InputError
from distill_cli.prices import PriceTable, load_prices
from distill_cli.recorder.proxy import Call, Outcome, Proxy
from distill_cli.recorder.rows import Redactor, call_row
from distill_cli.recorder.summary import RecordSummary
from distill_cli.store import StoreWriter, new_id

if TYPE_CHECKING:
    from distill_cli.recorder.router import Router

ROLL_CHECK_SECONDS = 5.0  # how often a quiet recorder checks whether its journal is due to roll


def default_upstreams() -> tuple[str | None, str | None]:
    """Where the job's calls would have gone without distill: its environment's base URLs, if any."""
    return os.environ.get("ANTHROPIC_BASE_URL") or None, os.environ.get("OPENAI_BASE_URL") or None


class Recorder:
    """Records every call a job makes through its proxy into `store`.

    Upstreams default to ANTHROPIC_BASE_URL / OPENAI_BASE_URL as they are when the
    recorder is made (where the job would have gone), else the providers' own URLs.
    """

    def __init__(
        self,
        store: str | Path,
        *,
        prices: PriceTable | None = None,
        task: str | None = None,
        redact: Iterable[str] = (),
        anthropic_upstream: str | None = None,
        openai_upstream: str | None = None,
        port: int = 0,
        roll_rows: int = 10_000,
        roll_seconds: float = 60.0,
        clock=time.monotonic,
        router: Router | None = None,
    ) -> None:
        self.store = store if remote.is_remote(store) else Path(store)
        env_anthropic, env_openai = default_upstreams()
        self.prices = prices if prices is not None else load_prices()
        self.redactor = Redactor(redact)
        self.run_id = new_id()
        self.summary = RecordSummary(store=str(store), run_id=self.run_id)
        self.proxy = Proxy(
            on_call=self._record,
            anthropic_upstream=anthropic_upstream or env_anthropic,
            openai_upstream=openai_upstream or env_openai,
            task=task,
            port=port,
        )
        self.router = router.attach(self.proxy) if router is not None else None  # students and replay (router.py)
        self._roll_rows = roll_rows
        self._roll_seconds = roll_seconds
        self._clock = clock
        self.writer: StoreWriter | None = None
        self._roller: asyncio.Task | None = None

    @property
    def anthropic_base_url(self) -> str:
        return self.proxy.url

    @property
    def openai_base_url(self) -> str:
        return self.proxy.url + "/v1"

    def env(self) -> dict[str, str]:
        """The environment variables that point both SDKs at this recorder."""
        return {"ANTHROPIC_BASE_URL": self.anthropic_base_url, "OPENAI_BASE_URL": self.openai_base_url}

    async def start(self) -> Recorder:
        # Opening the writer recovers journals of recorders that died before.
        self.writer = StoreWriter(self.store, roll_rows=self._roll_rows, roll_seconds=self._roll_seconds, clock=self._clock,
                                  roll_in="process")  # a roll must not take the proxy's core or GIL (roll.py)
        self.summary.recovered += self.writer.recovered
        self.summary.quarantined += self.writer.quarantined
        try:
            await self.proxy.start()
        except OSError as e:
            await self.proxy.stop()
            self.writer.close()
            raise InputError(f"cannot listen on 127.0.0.1:{self.proxy.port}: {e.strerror or e}") from None
        self._roller = asyncio.get_running_loop().create_task(self._roll_periodically())
        return self

    async def stop(self) -> RecordSummary:
        """Stop accepting calls, let those in flight end, and turn the journal into parts."""
        if self._roller is not None:
            self._roller.cancel()
            self._roller = None
        await self.proxy.stop()
        if self.writer is not None:
            try:
                # The last segment's parts, and any roll still under way, off the event loop.
                await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            except Exception as e:  # noqa: BLE001 - its journal stays; the next writer of the store recovers it
                self._write_failed(e)
        return self.summary

    def _write_failed(self, e: BaseException) -> None:
        self.summary.write_error = canonical.mask_secrets(f"{type(e).__name__}: {e}")

    async def _roll_periodically(self) -> None:
        while True:
            await asyncio.sleep(ROLL_CHECK_SECONDS)
            self.roll_if_due()

    def roll_if_due(self) -> None:
        """Roll a journal that has held rows for roll_seconds (a quiet service's calls reach parts too)."""
        self.writer.maybe_roll()

    def _record(self, call: Call, outcome: Outcome) -> None:
        try:
            row = call_row(call, outcome, prices=self.prices, run_id=self.run_id, redactor=self.redactor)
            row = self.writer.append(row)
        except Exception as e:  # noqa: BLE001 - the job still gets its answer; the summary says what was lost
            self.summary.unrecorded += 1
            self._write_failed(e)
            return
        self.summary.add(row)


@contextlib.contextmanager
def record_to(
    store: str | Path,
    *,
    task: str | None = None,
    prices: PriceTable | None = None,
    redact: Iterable[str] = (),
    anthropic_upstream: str | None = None,
    openai_upstream: str | None = None,
    set_env: bool = True,
    router: Router | None = None,
) -> Iterator[Recorder]:
    """Record, from inside a Python program, every SDK call made in the `with` block.

        with record_to("runs/", task="intent") as rec:
            client = anthropic.Anthropic()      # picks up ANTHROPIC_BASE_URL
            client.messages.create(...)
        print(rec.summary.to_dict())

    The recorder runs in a background thread on a free 127.0.0.1 port. With
    `set_env` (default) it points ANTHROPIC_BASE_URL / OPENAI_BASE_URL at itself
    for the block (process-wide) and restores them after, so clients created in
    the block go through it; otherwise pass `rec.anthropic_base_url` /
    `rec.openai_base_url` as a client's `base_url`. Upstreams default to those
    variables' values before the block, else the providers' own URLs.
    A `router` (router.py) lets students answer and replays recorded answers.
    """
    recorder = Recorder(
        store,
        prices=prices,
        task=task,
        redact=redact,
        anthropic_upstream=anthropic_upstream,
        openai_upstream=openai_upstream,
        router=router,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="distill-recorder", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(recorder.start(), loop).result()
        saved = {name: os.environ.get(name) for name in recorder.env()}
        if set_env:
            os.environ.update(recorder.env())
        try:
            yield recorder
        finally:
            if set_env:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
            asyncio.run_coroutine_threadsafe(recorder.stop(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
