"""Run an application until SIGINT or SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from foxmock.server.runner import Runner

log = logging.getLogger("foxmock")
BACKLOG = 4096  # bursts of thousands of new connections must not wait for the kernel to retry
ACCEPT_LOG_INTERVAL = 10.0  # "out of descriptors" is logged at most once per this many seconds
RESTARTS_PER_MINUTE = 5  # a worker slot restarted more often than this in a minute gives up


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


def _fork(index: int, serve_one: Callable[[int], None]) -> int:
    """Start one worker process running ``serve_one(index)``; return its pid."""
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's forwarding handler
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            serve_one(index)
            code = 0
        finally:
            os._exit(code)
    return pid


def describe_exit(status: int) -> str:
    """How a process ended, from its wait status: an exit code or a signal's name."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code}"


def may_restart(starts: list[float], now: float, limit: int = RESTARTS_PER_MINUTE) -> bool:
    """Whether a slot whose restarts happened at ``starts`` may restart again at ``now``."""
    recent = [t for t in starts if now - t < 60.0]
    starts[:] = recent
    return len(recent) < limit


def run_workers(workers: int, serve_one: Callable[[int], None]) -> int:
    """Fork ``workers`` processes running ``serve_one(index)``; forward SIGINT/SIGTERM; wait.

    The workers share one port through SO_REUSEPORT; the kernel spreads connections. A worker
    that dies before a stop signal is restarted, at most RESTARTS_PER_MINUTE times a minute per
    slot; a slot over that budget is given up with a log line.
    """
    slots = {_fork(index, serve_one): index for index in range(workers)}
    restarts: dict[int, list[float]] = {index: [] for index in range(workers)}
    stopping = False
    failed = 0

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(slots):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while slots:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = slots.pop(pid, None)
        if index is None:
            continue
        how = describe_exit(status)
        if stopping:
            failed += os.waitstatus_to_exitcode(status) != 0
            continue
        if not may_restart(restarts[index], time.monotonic()):
            log.error("worker %d (pid %d) %s; restarted too often, giving up", index, pid, how)
            print(f"foxmock: worker {index} {how}; restarted too often, giving up", flush=True)
            failed += 1
            continue
        restarts[index].append(time.monotonic())
        new = _fork(index, serve_one)
        slots[new] = index
        print(f"foxmock: worker {index} (pid {pid}) {how}; restarted as pid {new}", flush=True)
    return 1 if failed else 0


class AcceptFailureLog:
    """A loop exception handler that reports failed accept() calls once per interval.

    When descriptors run out, asyncio reports every failed accept (thousands a second); this
    handler counts them and logs one line per ``interval`` instead. Other errors pass through.
    """

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.suppressed = 0
        self._last = -interval - 1.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and "accept" in str(context.get("message", ""))):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return
        log.error(
            "cannot accept connections: %s (%d more failures since the last report); "
            "retrying, new connections wait in the backlog",
            exc.strerror or exc,
            self.suppressed,
        )
        self._last = now
        self.suppressed = 0


async def serve_forever(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: logging.Logger | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
    head_timeout: float = 0.0,
    keepalive_timeout: float = 75.0,
) -> None:
    """Listen on ``host:port`` (0 picks a free port) until a stop signal arrives."""
    asyncio.get_running_loop().set_exception_handler(AcceptFailureLog())
    runner = Runner(
        app,
        access_log=access_log,
        access_log_class=PathAccessLogger,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=True,
        head_timeout=head_timeout,
        keepalive_timeout=keepalive_timeout,
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
