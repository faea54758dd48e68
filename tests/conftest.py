"""Shared fixtures: live foxmock servers on 127.0.0.1 and the OpenAPI validator."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from foxmock import Config, create_app
from foxmock.server.runner import Runner
from tests.support import ThreadServer, openapi_spec, validate_schema, write_scenarios


class LiveServer:
    """A running foxmock app: its URLs and the app object."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"


StartServer = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Factory: ``await start_server(yaml_text=None, **config)`` runs foxmock on a free port."""
    runners: list[web.AppRunner] = []

    async def start(yaml_text: str | None = None, **config: Any) -> LiveServer:
        if yaml_text is not None:
            path = write_scenarios(tmp_path, yaml_text, f"scenarios{len(runners)}.yaml")
            config.setdefault("scenarios", [path])
        app = create_app(Config(**config))
        runner = Runner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        return LiveServer(app, runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def thread_server(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Factory for a server in a background thread (for sync clients)."""
    servers: list[ThreadServer] = []

    def start(yaml_text: str | None = None, **config: Any) -> ThreadServer:
        if yaml_text is not None:
            path = write_scenarios(tmp_path, yaml_text, f"thread{len(servers)}.yaml")
            config.setdefault("scenarios", [path])
        server = ThreadServer(Config(**config)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def quiet_gc() -> Iterator[None]:
    """No garbage collection while the test runs (collected once before it starts).

    Tests that time a server through a client in the same process must not measure the test
    process's own pauses: late in a long run a full collection of the worker's heap (the
    parsed spec, Hypothesis data) takes ~0.1 s and delays every timer that is due meanwhile.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def openapi() -> Callable[[str, Any], None]:
    """``openapi(schema_name, instance)`` asserts the instance is valid per OpenAI's spec.

    The spec is parsed here, before the test runs: parsed lazily, its ~0.5 s would stall the
    event loop the test's server shares, in the middle of timing-sensitive tests.
    """
    openapi_spec()
    return validate_schema


from tests.redis_support import redis_server, redis_url, state_url  # noqa: E402,F401
