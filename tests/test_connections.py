"""Connection hygiene of a real ``foxmock serve``: late heads, idle keep-alive, no descriptors."""

from __future__ import annotations

import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

BODY = json.dumps({"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


@dataclass
class Served:
    """A running ``foxmock serve`` and the lines it has printed so far."""

    process: subprocess.Popen[str]
    port: int = 0
    lines: list[str] = field(default_factory=list)


def _read(served: Served, ready: threading.Event) -> None:
    assert served.process.stdout is not None
    for line in served.process.stdout:
        served.lines.append(line)
        found = re.search(r"serving on http://[^:]+:(\d+)/v1", line)
        if found:
            served.port = int(found.group(1))
            ready.set()
    ready.set()


@contextmanager
def serve(*options: str, preexec: Callable[[], None] | None = None) -> Iterator[Served]:
    """Run ``foxmock serve --port 0 OPTIONS`` until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "foxmock", "serve", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )
    served = Served(process)
    ready = threading.Event()
    threading.Thread(target=_read, args=(served, ready), daemon=True).start()
    try:
        assert ready.wait(60) and served.port, "".join(served.lines)
        yield served
    finally:
        process.terminate()
        process.wait(30)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def _closed_after(sock: socket.socket, limit: float = 30.0) -> float:
    """Seconds until the server closes ``sock`` (reading and discarding what it sends)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def _answer(sock: socket.socket) -> bytes:
    """One complete HTTP answer read from ``sock`` (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_silent_connections_are_closed_after_the_head_timeout() -> None:
    with serve("--head-timeout", "0.5", "--keepalive-timeout", "60") as served:
        socks = [_connect(served.port) for _ in range(50)]
        start = time.monotonic()
        for sock in socks:
            _closed_after(sock)
            sock.close()
        assert time.monotonic() - start < 20  # keep-alive (60 s) did not do it
        with _connect(served.port) as fresh:  # still serving
            fresh.sendall(HEAD + BODY)
            assert _answer(fresh).startswith(b"HTTP/1.1 200")


def test_a_slow_loris_head_is_closed_although_bytes_keep_coming() -> None:
    with serve("--head-timeout", "1", "--keepalive-timeout", "60") as served:
        sock = _connect(served.port)
        start = time.monotonic()
        sock.settimeout(0.3)
        closed = False
        for byte in HEAD:  # one byte every 0.2 s would take ~30 s
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed
        assert time.monotonic() - start < 20
        assert any("head not complete" in line for line in served.lines)


def test_idle_keepalive_is_closed_after_keepalive_timeout_not_head_timeout() -> None:
    with serve("--head-timeout", "0.3", "--keepalive-timeout", "2") as served:
        sock = _connect(served.port)
        sock.sendall(HEAD + BODY)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # idle longer than the head timeout: keep-alive still holds
        sock.sendall(HEAD + BODY)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        idle = _closed_after(sock)
        sock.close()
        assert 1.5 < idle < 20


def test_a_slow_body_is_governed_by_body_timeout_not_head_timeout() -> None:
    with serve("--head-timeout", "0.3", "--body-timeout", "60") as served:
        sock = _connect(served.port)
        sock.sendall(HEAD)
        for i in range(0, len(BODY), len(BODY) // 4 + 1):  # the body over ~1.5 s
            time.sleep(0.4)
            sock.sendall(BODY[i : i + len(BODY) // 4 + 1])
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        sock.close()


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_descriptor_exhaustion_logs_little_and_recovers() -> None:
    with serve("--head-timeout", "30", preexec=_low_descriptor_limit) as served:
        before = len(served.lines)
        socks = []
        for _ in range(150):  # far more than the server's 64 descriptors
            try:
                socks.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
            except OSError:
                break
        time.sleep(3)  # the server retries accept() about once a second meanwhile
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 30
        answer = b""
        while time.monotonic() < deadline:
            try:
                with _connect(served.port) as sock:
                    sock.settimeout(5)
                    sock.sendall(HEAD + BODY)
                    answer = _answer(sock)
                    break
            except (OSError, AssertionError):
                time.sleep(0.5)
        assert answer.startswith(b"HTTP/1.1 200")
        logged = served.lines[before:]
        assert any("cannot accept connections" in line for line in logged), logged[-5:]
        assert len(logged) < 50, f"{len(logged)} lines, e.g. {logged[:3]}"
