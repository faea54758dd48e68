"""`MockServer`: foxmock in-process, for test suites (async context or background thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from foxmock.config import Config
from foxmock.journal import Journal
from foxmock.scenarios.store import ScenarioSource
from foxmock.server.app import create_app
from foxmock.server.runner import Runner
from foxmock.server.state import STATE, ServerState


class MockServer:
    """A foxmock server on a loopback port.

    ``async with MockServer(...)`` runs it on the running event loop; ``with MockServer(...)``
    runs it on a background thread, so sync clients such as ``openai.OpenAI()`` can call it.
    Scenarios come from ``scenarios`` (files or directories), ``yaml`` (YAML text) and ``data``
    (a dict or list of dicts); with none of them, the bundled defaults are served.
    """

    def __init__(
        self,
        scenarios: Sequence[str | Path] = (),
        *,
        yaml: str | None = None,
        data: Any = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        inline = yaml is not None or data is not None
        if config is None:
            config = Config(scenarios=list(scenarios), host=host, port=port, **options)
            config.bundled = not scenarios and not inline
        self.config = config
        self.app = create_app(config)
        for source in (yaml, data):
            if source is not None:
                self.state.store.add(source)
        self.state.store.mark_baseline()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def state(self) -> ServerState:
        return self.app[STATE]

    @property
    def journal(self) -> Journal:
        """Every chat request this server saw (bounded; see `Config.journal_size`)."""
        return self.state.journal

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def add(self, source: ScenarioSource, *, replace: bool = False) -> list[str]:
        """Add scenarios (a `Path`, YAML text, a dict or a list of dicts); returns their names."""
        return self.state.store.add(source, replace=replace)

    def remove(self, name: str) -> bool:
        """Remove a scenario by name."""
        return self.state.store.remove(name)

    def clear(self) -> None:
        """Serve no scenarios until the next `reset`."""
        self.state.store.clear()

    def reset(self) -> None:
        """Back to the scenarios the server started with, an empty journal, and every sequence
        counter and quota window at its start."""
        self.reset_state()  # first: a Redis that is down raises before anything changed
        self.state.store.reset()
        self.journal.clear()

    def reset_state(self) -> None:
        """Every sequence counter and quota window back at its start (the journal is kept).

        A Redis store is cleared on the server's thread (``with``); under ``async with`` use
        ``await server.reset_state_async()``."""
        counting = self.state.counting
        if counting is None:
            return
        if counting.store.url == "memory":
            counting.store.clear_now()
        elif self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(counting.store.clear(), self._loop).result(30)
        else:
            raise RuntimeError("with a Redis state store, await reset_state_async() here")

    async def reset_state_async(self) -> None:
        """`reset_state` on the running loop (any store)."""
        if self.state.counting is not None:
            await self.state.counting.store.clear()

    @property
    def test_id(self) -> str:
        """The key of the ``test`` scope: counters of that scope are this test's own."""
        return self.state.counting.test_id if self.state.counting is not None else ""

    @test_id.setter
    def test_id(self, value: str) -> None:
        if self.state.counting is not None:
            self.state.counting.test_id = value

    def reload(self) -> None:
        """Re-read the scenario files; raises `ScenarioError` and keeps serving on problems."""
        from foxmock._exceptions import ScenarioError

        problems = self.state.store.reload()
        if problems:
            raise ScenarioError(problems)

    async def start_async(self) -> None:
        """Start on the running event loop."""
        self._runner = Runner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop_async(self) -> None:
        """Stop and release the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockServer:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()

    def start(self) -> None:
        """Start on a background thread with its own event loop; returns once listening."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the starting thread below
                failure.append(exc)
                loop.run_until_complete(self.stop_async())
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="foxmock", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._loop = self._thread = None
            raise failure[0]

    def stop(self) -> None:
        """Stop the background thread started by `start`."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = self._thread = None

    def __enter__(self) -> MockServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
