"""Hot reload: poll the scenario files and swap in a new set when they change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from foxmock.server.state import STATE

log = logging.getLogger("foxmock")


async def _poll(app: web.Application) -> None:
    state = app[STATE]
    interval = state.config.watch_interval
    while True:
        await asyncio.sleep(interval)
        try:
            changed = await asyncio.to_thread(state.store.changed)
        except OSError as exc:  # a directory vanished mid-scan; try again next tick
            log.warning("watch: cannot scan scenario files: %s", exc)
            continue
        if not changed:
            continue
        try:  # reading and compiling a big file must not stall serving
            loaded = await asyncio.to_thread(state.store.read)
        except Exception:  # keep watching whatever went wrong
            log.exception("watch: reloading the scenario files failed; still serving the last set")
            continue
        state.store.reloaded(loaded)


async def watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` that runs the poller for the application's lifetime."""
    task = asyncio.create_task(_poll(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
