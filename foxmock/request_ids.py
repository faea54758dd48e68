"""Request ids as OpenAI sends them in ``x-request-id``: ``req_`` and 32 hex digits.

A random prefix drawn when the first id is made (per process) and a counter: unique across
worker processes, cheap (no system call per request), and never drawn from the server's seeded
RNG, whose sequence templates and the replay cache depend on.
"""

from __future__ import annotations

import itertools
import os

from aiohttp import web

HEADER = "x-request-id"
REQUEST_KEY = web.RequestKey("request_id", str)  # a handler's id for its response
_state: list[tuple[str, itertools.count[int]]] = []


def next_request_id() -> str:
    """A fresh ``req_...`` id."""
    if not _state:
        _state.append((os.urandom(10).hex(), itertools.count(1)))
    prefix, counter = _state[0]
    return f"req_{prefix}{next(counter):012x}"


async def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response carries an ``x-request-id``, the handler's own
    (the one its journal entry records) when it left one."""
    if HEADER not in response.headers:
        response.headers[HEADER] = request.get(REQUEST_KEY) or next_request_id()
