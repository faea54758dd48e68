"""The reference: the least an aiohttp app on this CPython can do to answer the same requests.

It parses the JSON body and answers with a fixed ChatCompletion, or with 50 fixed
``chat.completion.chunk`` events and ``data: [DONE]``, one ``await response.write`` per event
(what a straightforward handler does). When the last user message is `scenarios.PACED_TEXT` the
events follow foxmock's schedule for ``latency: {chunk_delay: 20ms}``: the role and the first
content delta at once, then one event every 20 ms, due times taken from the loop clock so the
pacing does not drift.

    python bench/bare_app.py --port 0 [--backlog 8192]

prints ``bare: serving on http://127.0.0.1:PORT/v1`` once listening; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import (
    CHUNK_DELAY_MS,
    CONTENT_CHUNKS,
    MODEL,
    PACED_TEXT,
    TARGET_TEXT,
)

_BASE = {
    "id": "cmpl_bare0000000000000000000",
    "created": 1700000000,
    "model": MODEL,
    "system_fingerprint": "fp_bare",
}
COMPLETION = json.dumps(
    {
        **_BASE,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"Hello {TARGET_TEXT}",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26},
    }
).encode()


def _event(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {
        **_BASE,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


FRAMES = [
    _event({"role": "assistant", "content": "", "refusal": None}),
    *(_event({"content": c}) for c in CONTENT_CHUNKS),
    _event({}, "stop"),
]
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.Response(body=COMPLETION, content_type="application/json")
    paced = body["messages"][-1]["content"] == PACED_TEXT
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    start = loop.time()
    delay = CHUNK_DELAY_MS / 1000
    for i, frame in enumerate(FRAMES):
        if paced and i >= 2:  # role and first content at 0, then every 20 ms
            wait = start + (i - 1) * delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        await response.write(frame)
    await response.write(DONE)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def main(host: str, port: int, backlog: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"bare: serving on http://{host}:{bound}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=8192)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port, args.backlog))
