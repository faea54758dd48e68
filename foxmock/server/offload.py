"""Work too big for the event loop: one background thread, so a heavy request cannot stall it.

A request whose body is larger than `HEAVY_BODY_BYTES` is decoded, validated, matched and
rendered on this thread. The loop keeps serving meanwhile: pure-Python work on another thread
gives the interpreter lock back every few milliseconds. One thread, so heavy requests queue
behind each other instead of taking every core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

HEAVY_BODY_BYTES = 256 * 1024

_P = ParamSpec("_P")
_T = TypeVar("_T")


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="foxmock-heavy")


async def off_loop(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)`` on the heavy-work thread; its result or its exception."""
    call = functools.partial(_paused, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


def _paused(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    with collector_paused():
        return func(*args, **kwargs)


_GC_LOCK = threading.Lock()
_pauses = [0, False]  # blocks running with the collector paused; whether it was enabled


@contextlib.contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Run a block that makes many objects without full garbage-collector passes: each would
    hold the interpreter lock, and so the loop, for a scan of every object alive (0.7 s while
    15,000 scenarios compile). Blocks on several threads may overlap; the collector runs again
    when the last one ends. ``freeze`` then tells the collector to skip what is alive from now
    on (``gc.freeze``), for results that stay, such as compiled scenarios; what a block made is
    freed by reference counting either way."""
    with _GC_LOCK:
        if _pauses[0] == 0:
            _pauses[1] = gc.isenabled()
            gc.disable()
        _pauses[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _pauses[0] -= 1
            if freeze:
                gc.freeze()
            if _pauses[0] == 0 and _pauses[1]:
                gc.enable()
