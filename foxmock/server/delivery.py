"""Delivery: the only code that writes responses to the socket, pacing frames by the loop clock."""

from __future__ import annotations

import asyncio

from aiohttp import web

from foxmock.plan import Plan

WRITE_BYTES = 256 * 1024  # frames due together are joined into writes of about this size


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
    count = len(frames)
    i = 0
    while i < count:
        wait = start + offsets[i] - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        now = loop.time() - start
        # every frame already due goes in one write, up to WRITE_BYTES: a large stream is put
        # together piece by piece while the client reads it (each write waits for the drain)
        batch = [frames[i]]
        size = len(batch[0])
        i += 1
        while i < count and size < WRITE_BYTES and offsets[i] <= now:
            frame = frames[i]
            batch.append(frame)
            size += len(frame)
            i += 1
        await response.write(batch[0] if len(batch) == 1 else b"".join(batch))
    if plan.disconnect:
        _drop(request)
        return response
    await response.write_eof()
    return response
