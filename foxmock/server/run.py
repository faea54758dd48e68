"""Run an application until SIGINT or SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("foxmock")


async def serve_forever(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: logging.Logger | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    shutdown_timeout: float = 10.0,
) -> None:
    """Listen on ``host:port`` (0 picks a free port) until a stop signal arrives."""
    runner = web.AppRunner(
        app, access_log=access_log, shutdown_timeout=shutdown_timeout, handler_cancellation=True
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        if on_ready is not None:
            on_ready(str(bound_host), int(bound_port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        await runner.cleanup()
