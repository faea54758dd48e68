"""Counters shared through Redis: several servers, worker processes, and a Redis outage."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from foxmock.testing import MockServer
from tests.redis_support import RedisServer
from tests.support import ROOT, run_cli, validate_schema, write_scenarios

THREE = """\
version: 1
scenarios:
  - name: three
    match: {last_user: {contains: go}}
    sequence:
      - respond: {content: "step one"}
      - respond: {content: "step two"}
      - respond: {content: "step three"}
"""

TRIO_PASS = """\
version: 1
scenarios:
  - name: trio
    match: {last_user: {contains: hammer}}
    sequence:
      - fault: {status: 500, message: "first fails"}
      - fault: {status: 503, message: "second fails"}
      - respond: {content: "third answers"}
    after: pass
  - name: catch-all
    match: {}
    respond: {content: "caught"}
"""

MIXED = """\
version: 1
scenarios:
  - name: counted
    match: {last_user: {contains: go}}
    sequence:
      - respond: {content: "step one"}
      - respond: {content: "step two"}
  - name: stateless
    match: {}
    respond: {content: "no state needed"}
"""


def post(base_url: str, text: str, api_key: str = "sk-test") -> tuple[int, Any]:
    """A chat request with the standard library: status and JSON body (schema-checked)."""
    body = {"model": "foxora-1", "messages": [{"role": "user", "content": text}]}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, data = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        status, data = exc.code, json.loads(exc.read())
    validate_schema("CreateChatCompletionResponse" if status == 200 else "ErrorResponse", data)
    return status, data


def answer(base_url: str, text: str) -> str:
    status, data = post(base_url, text)
    assert status == 200, data
    return str(data["choices"][0]["message"]["content"])


class Served:
    """A ``foxmock serve`` subprocess; its output is drained on a thread once it is ready."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "foxmock", "serve", "--port", "0", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self.output: list[str] = []
        assert self.process.stdout is not None
        self.base_url = ""
        for line in self.process.stdout:
            self.output.append(line)
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                self.base_url = found.group(1)
                break
        assert self.base_url, "".join(self.output)
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def served() -> Iterator[Any]:
    started: list[Served] = []

    def start(*args: str | Path) -> Served:
        server = Served(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_two_in_process_servers_walk_one_sequence(redis_url: str) -> None:
    with (
        MockServer(yaml=THREE, state=redis_url) as one,
        MockServer(yaml=THREE, state=redis_url) as two,
    ):
        assert answer(one.base_url, "go") == "step one"
        assert answer(two.base_url, "go") == "step two"
        assert answer(one.base_url, "go") == "step three"
        assert answer(two.base_url, "go") == "step three"  # the last step repeats
        assert [e.step for e in one.journal.entries()] == [1, 3]
        assert [e.step for e in two.journal.entries()] == [2, 3]
        # clearing through one server restarts the sequence for both
        one.reset_state()
        assert answer(two.base_url, "go") == "step one"


def test_two_serve_processes_share_redis(redis_url: str, served: Any, tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, THREE)
    first = served("--scenarios", path, "--state", redis_url)
    second = served("--scenarios", path, "--state", redis_url)
    assert first.base_url != second.base_url
    got = []
    for i, base_url in enumerate([first.base_url, second.base_url, first.base_url]):
        client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=30)
        reply = client.chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": f"go {i}"}]
        )
        got.append(reply.choices[0].message.content)
    assert got == ["step one", "step two", "step three"]
    steps = []
    for base_url in (first.base_url, second.base_url):
        admin = base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{admin}/_foxmock/journal", timeout=10) as response:
            journal = json.loads(response.read())
        entries = journal["entries"] if isinstance(journal, dict) else journal
        steps.append(sorted(e["step"] for e in entries))
    assert steps == [[1, 3], [2]]


def test_workers_share_one_sequence(redis_url: str, served: Any, tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, TRIO_PASS)
    server = served("--scenarios", path, "--state", redis_url, "--workers", "2")
    statuses: list[int] = []
    answers: list[str] = []
    for _ in range(30):  # fresh connections, so the kernel spreads them over the workers
        status, data = post(server.base_url, "hammer")
        statuses.append(status)
        if status == 200:
            answers.append(data["choices"][0]["message"]["content"])
    assert sorted(s for s in statuses if s != 200) == [500, 503]
    assert answers.count("third answers") == 1
    assert answers.count("caught") == 27


def test_workers_without_state_refuse_a_stateful_file(tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, THREE)
    result = run_cli("serve", "--scenarios", path, "--port", "0", "--workers", "2", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--state" in result.stdout + result.stderr


def test_redis_outage_refuses_only_stateful_requests(redis_server: RedisServer) -> None:
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    try:
        with MockServer(yaml=MIXED, state=redis_server.url) as server:
            assert answer(server.base_url, "go") == "step one"
            redis_server.stop()
            began = time.monotonic()
            status, data = post(server.base_url, "go")
            took = time.monotonic() - began
            assert status == 503, data
            assert data["error"]["code"] == "state_unavailable"
            assert data["error"]["type"] == "server_error"
            assert took < 10, took
            assert answer(server.base_url, "hello") == "no state needed"
            # a reset that cannot clear the counters changes nothing: 503, journal kept
            kept = len(server.journal)
            reset = urllib.request.Request(f"{server.url}/_foxmock/reset", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(reset, timeout=30)
            assert refused.value.code == 503
            assert len(server.journal) == kept
            redis_server.start()
            deadline = time.monotonic() + 20
            while True:
                status, data = post(server.base_url, "go")
                if status == 200 or time.monotonic() > deadline:
                    break
                assert data["error"]["code"] == "state_unavailable"
                time.sleep(0.2)
            assert status == 200, data
            # a restarted (empty) Redis starts the sequence again
            assert data["choices"][0]["message"]["content"] == "step one"
            assert answer(server.base_url, "go") == "step two"
    finally:
        if redis_server.process is None:
            redis_server.start()
