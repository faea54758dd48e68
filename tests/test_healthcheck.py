"""``foxmock healthcheck`` finds the server however its port was set (real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

FOXMOCK = [sys.executable, "-m", "foxmock"]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FOXMOCK, "healthcheck", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_healthcheck_reads_the_url_serve_left_in_the_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "FOXMOCK_READY_FILE": str(ready), "FOXMOCK_PORT": str(_unused_port())}
    assert _healthcheck(env).returncode == 1  # nothing serving yet, no ready file
    server = subprocess.Popen(
        [*FOXMOCK, "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "serve never wrote its ready file"
            time.sleep(0.05)
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/healthz")
        assert int(url.rsplit(":", 1)[1].split("/")[0]) != int(env["FOXMOCK_PORT"])
        checked = _healthcheck(env)
        assert checked.returncode == 0, checked.stderr
        # an explicit --url still wins
        wrong = _healthcheck(env, "--url", f"http://127.0.0.1:{_unused_port()}/healthz")
        assert wrong.returncode == 1 and "unhealthy" in wrong.stderr
    finally:
        server.terminate()
        server.wait(30)
    assert not list(tmp_path.glob("ready.*.tmp"))  # written whole, no temporary left
