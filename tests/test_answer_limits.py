"""Answer limits: lazy interleaved streams, the ``max_answer_bytes`` cap, and rendered headers.

Every test drives a real foxmock server on 127.0.0.1 through aiohttp or the ``openai`` SDK.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import StartServer
from tests.support import ROOT, write_scenarios

Validate = Callable[[str, Any], None]

SCENARIOS = r"""
version: 1
scenarios:
  - name: words
    match: {last_user: {startswith: words}}
    respond: {content: "{{ last_user }}"}
    stream: {by: words}

  - name: author-too-big
    match: {last_user: too big}
    respond: {content: "{{ 'x' * 20000 }}"}

  - name: bad-header
    match: {last_user: {startswith: header}}
    respond:
      content: ok
      headers: {x-echo: "{{ last_user }}"}

  - name: bad-header-name
    match: {last_user: bad name}
    respond:
      content: ok
      headers: {"x-a\r\nx-b": "fine"}

  - name: spaced-header-name
    match: {last_user: spaced name}
    respond:
      content: ok
      headers: {"x a": "fine"}

  - name: big-pieces
    match: {last_user: {startswith: big}}
    respond: {content: "{{ last_user }}"}
    stream: {by: characters, size: 8192}
"""


def _chat(text: str, *, n: int = 1, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "foxora-1",
        "messages": [{"role": "user", "content": text}],
        "n": n,
        "stream": stream,
        **extra,
    }


def _events(raw: bytes) -> list[Any]:
    """The data of every SSE event; ``[DONE]`` stays a string."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as resp,
    ):
        return resp.status, await resp.read()


def _error(raw: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(raw)["error"]
    return error


# --- the request's own oversized answer: a quick 400, and the loop stays free ----------------


async def test_huge_n_stream_on_the_bundled_echo_is_a_quick_400(start_server: StartServer) -> None:
    server = await start_server()  # the bundled scenarios, default max_answer_bytes (64 MiB)
    body = _chat("lorem ipsum dolor sit amet " * 3000, n=128, stream=True)  # 81 KB
    pings: list[float] = []

    async def ping_while(task: asyncio.Task[tuple[int, bytes]]) -> None:
        async with aiohttp.ClientSession() as session:
            while not task.done():
                started = time.perf_counter()
                async with session.get(f"{server.url}/healthz") as resp:
                    assert resp.status == 200
                pings.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)

    started = time.perf_counter()
    task = asyncio.ensure_future(_post(server.url, body))
    await ping_while(task)
    status, raw = await task
    elapsed = time.perf_counter() - started
    assert status == 400, raw[:300]
    error = _error(raw)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "n"
    assert error["code"] == "answer_too_large"
    assert "max_answer_bytes" in error["message"] and "--max-answer-bytes" in error["message"]
    # before: 5.5 GiB planned on the loop for 25 s; now one choice is encoded (~0.1 s here)
    assert elapsed < 5, elapsed
    assert max(pings, default=0.0) < 2, pings
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as r:
        assert r.status == 200


async def test_huge_n_body_is_refused_by_the_same_cap(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, max_answer_bytes=1024 * 1024)
    status, raw = await _post(server.url, _chat("words " + "abc " * 20_000, n=64))
    assert status == 400
    assert _error(raw)["param"] == "n" and "max_answer_bytes" in _error(raw)["message"]
    status, raw = await _post(server.url, _chat("words " + "abc " * 20_000, n=8))
    assert status == 200  # 8 x 80 KB fits
    assert len(json.loads(raw)["choices"]) == 8


async def test_big_n_body_under_the_cap_is_whole_and_valid(
    start_server: StartServer, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    text = "words " + 'éa"\\ ' * 5_000
    status, raw = await _post(server.url, _chat(text, n=128))
    assert status == 200
    body = json.loads(raw)
    openapi("CreateChatCompletionResponse", body)
    assert [c["index"] for c in body["choices"]] == list(range(128))
    assert {c["message"]["content"] for c in body["choices"]} == {text}
    single = json.loads((await _post(server.url, _chat(text)))[1])
    assert body["usage"]["completion_tokens"] == 128 * single["usage"]["completion_tokens"]
    assert body["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]


# --- streams: interleaved, valid, the same whether built whole or lazily ---------------------


@pytest.mark.parametrize("n", [3, 40])  # 3: a small stream built whole; 40: built lazily
async def test_n_choices_stream_interleaved_and_valid(
    start_server: StartServer, openapi: Validate, n: int
) -> None:
    server = await start_server(SCENARIOS)
    text = "words " + " ".join(f"w{i}" for i in range(30))
    body = _chat(text, n=n, stream=True, stream_options={"include_usage": True})
    status, raw = await _post(server.url, body)
    assert status == 200
    events = _events(raw)
    assert events[-1] == "[DONE]"
    usage_event = events[-2]
    chunks = events[:-2]
    for chunk in [*chunks, usage_event]:
        openapi("CreateChatCompletionStreamResponse", chunk)
    assert usage_event["choices"] == [] and usage_event["usage"]["completion_tokens"] > 0
    assert len({c["id"] for c in events[:-1]}) == 1
    steps = len(chunks) // n
    assert len(chunks) == steps * n
    # the API's order: every choice's chunk of a step, choice 0 first, before the next step
    assert [c["choices"][0]["index"] for c in chunks] == list(range(n)) * steps
    for index in range(n):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert "".join(c["delta"].get("content") or "" for c in mine) == text
        assert mine[-1]["finish_reason"] == "stop"
    assert usage_event["usage"]["completion_tokens"] % n == 0


async def test_lazy_stream_through_the_sdk(thread_server: Callable[..., Any]) -> None:
    server = thread_server(SCENARIOS)
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    text = "words " + " ".join(f"t{i}" for i in range(200))
    parts: dict[int, list[str]] = {}
    stream = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": text}], n=16, stream=True
    )
    for chunk in stream:
        for choice in chunk.choices:
            parts.setdefault(choice.index, []).append(choice.delta.content or "")
    assert sorted(parts) == list(range(16))
    assert all("".join(p) == text for p in parts.values())


async def test_faults_still_cut_a_lazy_stream(start_server: StartServer) -> None:
    yaml_text = r"""
version: 1
scenarios:
  - name: cut
    respond: {content: "{{ last_user }}"}
    stream: {by: words}
    fault: {kind: stream_error, after_chunks: 700, message: boom}
"""
    server = await start_server(yaml_text)
    status, raw = await _post(server.url, _chat(" ".join(["w"] * 100), n=10, stream=True))
    assert status == 200
    events = _events(raw)
    assert len(events) == 701  # 700 chunks of the 1,020, then the error event, no [DONE]
    assert "error" in events[-1] and events[-1]["error"]["message"] == "boom"
    assert [e["choices"][0]["index"] for e in events[:-1]] == list(range(10)) * 70


# --- the scenario author's own oversized answer ----------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_scenario_answer_over_the_cap_is_a_render_error(
    start_server: StartServer, stream: bool
) -> None:
    server = await start_server(SCENARIOS, max_answer_bytes=10_000)
    status, raw = await _post(server.url, _chat("too big", stream=stream))
    assert status == 500
    error = _error(raw)
    assert error["code"] == "scenario_render_error"
    assert "author-too-big" in error["message"] and "max_answer_bytes" in error["message"]


# --- header names and values rendered from templates -----------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("bad", ["\r\nx-injected: 1", "\n", "\x00", "\r", "\x7f", "\x1b[0m"])
async def test_control_characters_in_a_header_value_are_a_render_error(
    start_server: StartServer, stream: bool, bad: str
) -> None:
    server = await start_server(SCENARIOS)
    status, raw = await _post(server.url, _chat(f"header a{bad}b", stream=stream))
    assert status == 500, raw[:200]
    error = _error(raw)
    assert error["code"] == "scenario_render_error"
    assert error["type"] == "server_error"
    assert "bad-header" in error["message"] and "x-echo" in error["message"]
    # a tab is allowed, and the server is fine afterwards
    status, raw = await _post(server.url, _chat("header a\tb", stream=stream))
    assert status == 200


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("text", "scenario"), [("bad name", "bad-header-name"), ("spaced name", "spaced-header-name")]
)
async def test_a_bad_header_name_is_a_render_error(
    start_server: StartServer, stream: bool, text: str, scenario: str
) -> None:
    server = await start_server(SCENARIOS)
    status, raw = await _post(server.url, _chat(text, stream=stream))
    assert status == 500
    error = _error(raw)
    assert error["code"] == "scenario_render_error" and scenario in error["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-evil", "a\\r\\nset-cookie: x=1"), ("x-nul", "a\\u0000b"), ("bad name", "v")],
)
def test_a_fault_header_http_forbids_is_refused_when_the_file_loads(
    tmp_path: Path, name: str, value: str
) -> None:
    """A fault's headers are plain text: checked at load, with file, line and key."""
    path = write_scenarios(
        tmp_path,
        "version: 1\nscenarios:\n  - name: f\n"
        f'    fault: {{status: 429, headers: {{"{name}": "{value}"}}}}\n',
    )
    result = subprocess.run(
        [sys.executable, "-m", "foxmock", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert f"{path}:4" in out and "scenarios[0].fault.headers" in out
    assert "HTTP" in out


# --- memory: a near-cap stream is built as it is sent ----------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_near_cap_stream_keeps_server_memory_small(tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, SCENARIOS)
    port = _free_port()
    cap = 64 * 1024 * 1024
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "foxmock",
            "serve",
            "--scenarios",
            str(path),
            "--port",
            str(port),
            "--max-answer-bytes",
            str(cap),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{url}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            text = "big " + "0123456789" * 50_000  # 500 KB, cut into 8 KiB pieces
            # warm up (imports, first render), then take the baseline peak
            async with session.post(
                f"{url}/v1/chat/completions", json=_chat(text, stream=True)
            ) as resp:
                assert resp.status == 200
                await resp.read()
            before = _peak_rss_kib(proc.pid)
            received = 0
            async with session.post(
                f"{url}/v1/chat/completions", json=_chat(text, n=120, stream=True)
            ) as resp:
                assert resp.status == 200
                async for piece in resp.content.iter_chunked(1 << 16):
                    received += len(piece)
            after = _peak_rss_kib(proc.pid)
        assert 0.8 * cap < received < cap  # a near-cap answer (~60 MB) reached the client
        # planned whole it would hold all 60 MB of frames; built as sent, the growth is about
        # one choice's encoded deltas and the socket buffers
        assert after - before < 24 * 1024, (before, after)
    finally:
        proc.terminate()
        proc.wait(10)
