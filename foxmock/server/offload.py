"""Work too big for the event loop: one background thread, so a heavy request cannot stall it.

A request whose body is larger than `HEAVY_BODY_BYTES` is decoded, validated, matched and
rendered on this thread. The loop keeps serving meanwhile: pure-Python work on another thread
gives the interpreter lock back every few milliseconds. One thread, so heavy requests queue
behind each other instead of taking every core.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
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
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)
