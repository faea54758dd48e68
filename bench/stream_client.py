"""Streaming load generator: raw asyncio HTTP/1.1 connections, arrival time of every SSE event.

Two modes, each printing one JSON object on stdout:

``loop``   closed loop: ``--connections`` keep-alive connections each stream again and again
           for ``--duration`` seconds, reading every stream to ``data: [DONE]``; reports
           completed streams per second.
``burst``  ``--streams`` streams opened at once (one connection each); reports how many
           completed, time to first byte, and the inter-chunk gaps between consecutive
           content deltas of each stream, as |gap - nominal|.

Pinned to its own core by run.py. It raises RLIMIT_NOFILE to the hard limit. It uses
asyncio protocols rather than aiohttp's client because the client must not be the bottleneck:
it only looks for event boundaries and ``"delta":{"content":"`` in the bytes (no JSON parse),
so one core can follow many more events per second than the Python servers can send.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import CHUNK_DELAY_MS, CONTENT_CHUNKS, chat_body

CONTENT = b'"delta":{"content":"'
DONE = b"data: [DONE]"
END = b"0\r\n\r\n"  # last chunk of a chunked body
EXPECTED_CONTENT = len(CONTENT_CHUNKS)
now = time.monotonic


class Stream:
    """What one request saw."""

    __slots__ = ("done", "first_byte", "start", "status", "times")

    def __init__(self) -> None:
        self.start = now()
        self.first_byte = 0.0
        self.status = 0
        self.times = array("d")  # arrival of each content delta
        self.done = 0.0  # arrival of [DONE]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done > 0 and len(self.times) == EXPECTED_CONTENT


class Conn(asyncio.Protocol):
    """One keep-alive connection; `request` sends and resolves when the response has ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[bool] | None = None
        self.stream: Stream | None = None
        self.head = False
        self.chunked = False
        self.scan = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, payload: bytes, stream: Stream) -> asyncio.Future[bool]:
        """Send ``payload``; the future says whether the connection can be reused."""
        self.buf.clear()
        self.head = False
        self.scan = 0
        self.stream = stream
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return self.waiter

    def _finish(self, reusable: bool) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(reusable)

    def data_received(self, data: bytes) -> None:
        t = now()
        stream = self.stream
        if stream is None:
            return
        if not stream.first_byte:
            stream.first_byte = t
        buf = self.buf
        buf += data
        if not self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            stream.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head
            self.head = True
            self.scan = end + 4
        scan = self.scan
        while True:
            j = buf.find(b"\n\n", scan)
            if j < 0:
                break
            if buf.find(CONTENT, scan, j) >= 0:
                stream.times.append(t)
            elif buf.find(DONE, scan, j) >= 0:
                stream.done = t
            scan = j + 2
        self.scan = scan
        if stream.done and (not self.chunked or buf.endswith(END)):
            self._finish(self.chunked)
        elif stream.status != 200 and (not self.chunked or buf.endswith(END)):
            self._finish(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._finish(False)


def _request(host: str, port: int, text: str) -> bytes:
    body = chat_body(text, stream=True)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer bench\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pct(values: list[float] | array, q: float) -> float | None:
    if not len(values):
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def loop_mode(host: str, port: int, text: str, connections: int, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    payload = _request(host, port, text)
    completed = failed = reconnects = 0
    deadline = now() + duration

    async def worker() -> None:
        nonlocal completed, failed, reconnects
        conn: Conn | None = None
        while now() < deadline:
            if conn is None or conn.lost:
                _, conn = await loop.create_connection(Conn, host, port)
            stream = Stream()
            try:
                reusable = await asyncio.wait_for(conn.request(payload, stream), 30)
            except asyncio.TimeoutError:
                reusable = False
            if stream.ok:
                completed += 1
            else:
                failed += 1
            if not reusable:
                assert conn.transport is not None
                conn.transport.close()
                conn = None
                reconnects += 1
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    cpu0, t0 = _cpu(), now()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = now() - t0
    return {
        "mode": "loop",
        "connections": connections,
        "elapsed_s": elapsed,
        "completed": completed,
        "failed": failed,
        "reconnects": reconnects,
        "streams_per_s": completed / elapsed,
        "client_cpu": (_cpu() - cpu0) / elapsed,
    }


async def burst_mode(host: str, port: int, text: str, count: int, deadline_s: float) -> dict:
    """Connect ``count`` connections (all at once), then send every request in one go."""
    loop = asyncio.get_running_loop()
    payload = _request(host, port, text)
    nominal = CHUNK_DELAY_MS / 1000
    deadline = now() + deadline_s
    errors: dict[str, int] = {}
    connect_times: list[float] = []

    async def connect() -> Conn | None:
        t0 = now()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(Conn, host, port), max(deadline - now(), 0.01)
            )
        except (OSError, asyncio.TimeoutError) as exc:
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
            return None
        connect_times.append(now() - t0)
        return conn

    cpu0, t0 = _cpu(), now()
    conns = [c for c in await asyncio.gather(*(connect() for _ in range(count))) if c]
    connected = now()
    # every request leaves in this one loop iteration; each stream's clock starts at its send
    sent = [(conn, Stream()) for conn in conns]
    waits = [conn.request(payload, stream) for conn, stream in sent]
    if waits:
        await asyncio.wait(waits, timeout=max(deadline - now(), 0.01))
    elapsed = now() - t0
    outcome = {"ok": 0, "bad_status": 0, "short": 0, "timeout": 0}
    gap_errors = array("d")
    ttfb: list[float] = []
    for (conn, stream), waiter in zip(sent, waits, strict=True):
        if conn.transport is not None:
            conn.transport.close()
        if stream.first_byte:
            ttfb.append(stream.first_byte - stream.start)
        if not waiter.done():
            outcome["timeout"] += 1
        elif stream.status != 200:
            outcome["bad_status"] += 1
        elif not stream.ok:
            outcome["short"] += 1
        else:
            outcome["ok"] += 1
        times = stream.times
        for k in range(1, len(times)):
            gap_errors.append(abs(times[k] - times[k - 1] - nominal))
    ms = 1000.0

    def p(values: list[float] | array, q: float) -> float | None:
        v = _pct(values, q)
        return None if v is None else v * ms

    return {
        "mode": "burst",
        "streams": count,
        "connected": len(conns),
        "completed": outcome["ok"],
        "outcome": outcome,
        "errors": errors,
        "connect_s": connected - t0,
        "elapsed_s": elapsed,
        "gaps": len(gap_errors),
        "gap_error_p50_ms": p(gap_errors, 0.50),
        "gap_error_p99_ms": p(gap_errors, 0.99),
        "gap_error_max_ms": p(gap_errors, 1.0),
        "ttfb_p50_ms": p(ttfb, 0.50),
        "ttfb_p99_ms": p(ttfb, 0.99),
        "ttfb_max_ms": p(ttfb, 1.0),
        "connect_p99_ms": p(connect_times, 0.99),
        "connect_max_ms": p(connect_times, 1.0),
        "client_cpu": (_cpu() - cpu0) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="streaming load generator")
    parser.add_argument("mode", choices=["loop", "burst"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--text", required=True, help="the last user message to send")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=60.0, help="burst: give up after")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if args.mode == "loop":
        coro = loop_mode(args.host, args.port, args.text, args.connections, args.duration)
    else:
        coro = burst_mode(args.host, args.port, args.text, args.streams, args.deadline)
    print(json.dumps(asyncio.run(coro)))


if __name__ == "__main__":
    main()
