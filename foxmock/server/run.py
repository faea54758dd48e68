"""Run an application until SIGINT or SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from foxmock.server.runner import Runner

log = logging.getLogger("foxmock")
BACKLOG = 4096  # bursts of thousands of new connections must not wait for the kernel to retry


class PathAccessLogger(AbstractAccessLogger):
    """One line per request: peer, method, path (never the query: keys travel there), status."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


def free_port(host: str) -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_workers(workers: int, serve_one: Callable[[int], None]) -> int:
    """Fork ``workers`` processes running ``serve_one(index)``; forward SIGINT/SIGTERM; wait.

    The workers share one port through SO_REUSEPORT; the kernel spreads connections.
    """
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the child never returns into the caller's code
            code = 1
            try:
                serve_one(index)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


async def serve_forever(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: logging.Logger | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
) -> None:
    """Listen on ``host:port`` (0 picks a free port) until a stop signal arrives."""
    runner = Runner(
        app,
        access_log=access_log,
        access_log_class=PathAccessLogger,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=True,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_port=reuse_port or None)
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
