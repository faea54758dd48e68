"""Delivery: the only code that writes responses to the socket, pacing frames by the loop clock."""

from __future__ import annotations

import asyncio

from aiohttp import web

from foxmock.plan import Plan


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def deliver(request: web.Request, plan: Plan) -> web.StreamResponse:
    """Send ``plan``: wait its delay, then its body, or its frames each at its due time."""
    loop = asyncio.get_running_loop()
    if plan.delay > 0:
        await asyncio.sleep(plan.delay)
    if plan.frames is None:
        if plan.disconnect:
            _drop(request)
            return web.Response(status=204)
        return web.Response(status=plan.status, body=plan.body, headers=plan.headers)
    response = web.StreamResponse(status=plan.status, headers=plan.headers)
    await response.prepare(request)
    start = loop.time()
    frames, offsets = plan.frames, plan.offsets
    i = 0
    while i < len(frames):
        wait = start + offsets[i] - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        now = loop.time() - start
        j = i + 1
        while j < len(frames) and offsets[j] <= now:
            j += 1
        await response.write(b"".join(frames[i:j]))
        i = j
    if plan.disconnect:
        _drop(request)
        return response
    await response.write_eof()
    return response
