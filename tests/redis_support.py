"""A real ``redis-server`` on a loopback port, for the shared-state tests.

Debian's ``redis-server`` runs as a child process with no persistence, in a temporary folder.
Without the binary the tests that need it skip, or fail under FOXMOCK_REQUIRE_REDIS=1 (set by
``.ci/run``, which installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foxmock.server.run import free_port


def require_redis() -> str:
    """The redis-server binary, or skip (fail when FOXMOCK_REQUIRE_REDIS=1)."""
    binary = shutil.which("redis-server")
    if binary is None:
        problem = "redis-server is not installed"
        if os.environ.get("FOXMOCK_REQUIRE_REDIS") == "1":
            pytest.fail(f"FOXMOCK_REQUIRE_REDIS=1 but {problem}")
        pytest.skip(f"{problem} (.ci/run installs it; FOXMOCK_REQUIRE_REDIS=1 makes this fail)")
    return binary


class RedisServer:
    """One redis-server process; `stop` and `start` again on the same port (an outage)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port = free_port("127.0.0.1")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the session (per xdist worker); the fixture using it flushes it."""
    server = RedisServer(require_redis(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """An empty Redis database's URL (restarted if a test stopped it)."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def state_url(request: pytest.FixtureRequest) -> str | None:
    """Each state test runs twice: counters in memory (None), and in a real Redis."""
    if request.param == "memory":
        return None
    return str(request.getfixturevalue("redis_url"))
