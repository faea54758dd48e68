"""Hot reload: ``Config(watch=True)`` polls the scenario directory and swaps in good edits.

A broken edit keeps the last good set serving and shows up in ``/_foxmock/status``; fixing it
recovers; new files are picked up; a stream in flight during an edit finishes with the content
it started with.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import LiveServer, StartServer

Validate = Callable[[str, Any], None]
TIMEOUT = 5.0
INTERVAL = 0.1

GREET = """\
version: 1
scenarios:
  - name: greet
    match: {{last_user: {{contains: hello}}}}
    respond: {{content: "{answer}"}}
"""

CHUNKS = 20


def paced(version: str) -> str:
    """A file with a paced stream (20 chunks at 20 tokens/s, about 1 s) and a quick probe."""
    chunks = ", ".join(f'"{version}{i} "' for i in range(CHUNKS))
    return f"""\
version: 1
scenarios:
  - name: story
    match: {{last_user: story}}
    respond: {{}}
    stream: {{chunks: [{chunks}]}}
    latency: {{tokens_per_second: 20}}
  - name: probe
    match: {{last_user: probe}}
    respond: {{content: "{version}"}}
"""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def answer(server: LiveServer, openapi: Validate, text: str) -> str | None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="foxora-1", messages=[{"role": "user", "content": text}]
        )
        openapi("CreateChatCompletionResponse", raw.http_response.json())
        return raw.parse().choices[0].message.content  # type: ignore[no-any-return]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT
) -> float:
    """Poll ``check`` until it holds; return how long that took, or fail after ``timeout``."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def answers(server: LiveServer, openapi: Validate, text: str, expected: str) -> float:
    async def check() -> bool:
        try:
            return await answer(server, openapi, text) == expected
        except openai.NotFoundError:  # not served yet
            return False

    return await eventually(check, f"{text!r} answered with {expected!r}")


async def status(http: aiohttp.ClientSession, server: LiveServer) -> dict[str, Any]:
    async with http.get(f"{server.url}/_foxmock/status") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def start_watching(start_server: StartServer, directory: Path) -> LiveServer:
    return await start_server(scenarios=[directory], watch=True, watch_interval=INTERVAL)


def greet(answer_text: str) -> str:
    return GREET.format(answer=answer_text)


async def test_status_shows_watch(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    (directory / "greet.yaml").write_text(greet("v1"), "utf-8")
    server = await start_watching(start_server, directory)
    body = await status(http, server)
    assert body["watch"] is True and body["reload_error"] == [] and body["scenarios"] == 1


async def test_good_edit_is_picked_up(
    start_server: StartServer, openapi: Validate, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    path = directory / "greet.yaml"
    path.write_text(greet("first answer"), "utf-8")
    server = await start_watching(start_server, directory)
    assert await answer(server, openapi, "hello") == "first answer"

    path.write_text(greet("second answer, longer"), "utf-8")
    took = await answers(server, openapi, "hello", "second answer, longer")
    print(f"edit picked up after {took:.2f} s")

    path.write_text(greet("third"), "utf-8")
    await answers(server, openapi, "hello", "third")


async def test_broken_edit_keeps_last_good_set_then_fix_recovers(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    path = directory / "greet.yaml"
    path.write_text(greet("good"), "utf-8")
    server = await start_watching(start_server, directory)
    assert await answer(server, openapi, "hello") == "good"

    async def reload_error() -> list[dict[str, Any]]:
        return (await status(http, server))["reload_error"]  # type: ignore[no-any-return]

    # invalid YAML
    path.write_text("version: 1\nscenarios: [\n  {name: greet,\n", "utf-8")

    async def yaml_error_reported() -> bool:
        errors = await reload_error()
        return bool(errors) and "invalid YAML" in errors[0]["message"]

    await eventually(yaml_error_reported, "invalid YAML reported in status")
    errors = await reload_error()
    assert errors[0]["file"] == str(path)
    assert await answer(server, openapi, "hello") == "good"
    assert (await status(http, server))["scenarios"] == 1

    # an unknown key (valid YAML, invalid scenario)
    path.write_text(greet("never served").replace("respond:", "respnd:"), "utf-8")

    async def key_error_reported() -> bool:
        errors = await reload_error()
        return bool(errors) and "respnd" in (errors[0]["key"] + errors[0]["message"])

    await eventually(key_error_reported, "unknown key reported in status")
    errors = await reload_error()
    assert errors[0]["file"] == str(path)
    assert errors[0]["line"] == 5
    assert await answer(server, openapi, "hello") == "good"
    # the admin listing shows the same error
    async with http.get(f"{server.url}/_foxmock/scenarios") as response:
        listed = await response.json()
    assert listed["reload_error"] == errors
    assert [s["name"] for s in listed["scenarios"]] == ["greet"]

    # fixing the file recovers
    path.write_text(greet("fixed"), "utf-8")
    await answers(server, openapi, "hello", "fixed")

    async def error_cleared() -> bool:
        return await reload_error() == []

    await eventually(error_cleared, "reload_error cleared")


async def test_new_file_in_the_directory_is_picked_up(
    start_server: StartServer, openapi: Validate, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    (directory / "nested").mkdir(parents=True)
    (directory / "greet.yaml").write_text(greet("hi there"), "utf-8")
    server = await start_watching(start_server, directory)
    assert await answer(server, openapi, "hello") == "hi there"
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="foxora-1", messages=[{"role": "user", "content": "goodbye"}]
            )

    (directory / "nested" / "bye.yml").write_text(
        "version: 1\nscenarios:\n  - name: bye\n    match: {last_user: goodbye}\n"
        "    respond: {content: farewell}\n",
        "utf-8",
    )
    await answers(server, openapi, "goodbye", "farewell")
    assert await answer(server, openapi, "hello") == "hi there"

    # a file that is not .yaml/.yml is ignored
    (directory / "notes.txt").write_text("this: is [not a scenario", "utf-8")
    await asyncio.sleep(INTERVAL * 4)
    assert await answer(server, openapi, "goodbye") == "farewell"


async def test_removed_file_is_dropped(
    start_server: StartServer, openapi: Validate, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    (directory / "a.yaml").write_text(greet("from a"), "utf-8")
    extra = directory / "b.yaml"
    extra.write_text(
        "version: 1\nscenarios:\n  - name: b\n    match: {last_user: bee}\n"
        "    respond: {content: buzz}\n",
        "utf-8",
    )
    server = await start_watching(start_server, directory)
    assert await answer(server, openapi, "bee") == "buzz"
    extra.unlink()

    async def gone() -> bool:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0
        ) as client:
            try:
                await client.chat.completions.create(
                    model="foxora-1", messages=[{"role": "user", "content": "bee"}]
                )
            except openai.NotFoundError:
                return True
            return False

    await eventually(gone, "scenario of the deleted file no longer served")
    assert await answer(server, openapi, "hello") == "from a"


async def read_stream(
    http: aiohttp.ClientSession,
    server: LiveServer,
    openapi: Validate,
    text: str,
    received: list[str],
) -> str:
    """Stream a chat completion over raw SSE, validating every chunk; collect content pieces."""
    body = {"model": "foxora-1", "stream": True, "messages": [{"role": "user", "content": text}]}
    done = False
    async with http.post(f"{server.base_url}/chat/completions", json=body) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async for raw_line in response.content:
            line = raw_line.decode().strip()
            if not line:
                continue
            assert line.startswith("data: "), line
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            openapi("CreateChatCompletionStreamResponse", chunk)
            for choice in chunk["choices"]:
                if choice["delta"].get("content"):
                    received.append(choice["delta"]["content"])
    assert done, "stream ended without [DONE]"
    return "".join(received)


async def test_in_flight_stream_finishes_with_old_content(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate, tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    path = directory / "story.yaml"
    path.write_text(paced("old"), "utf-8")
    server = await start_watching(start_server, directory)
    assert await answer(server, openapi, "probe") == "old"

    received: list[str] = []
    started = time.monotonic()
    stream = asyncio.create_task(read_stream(http, server, openapi, "story", received))

    async def streaming() -> bool:
        return len(received) >= 2

    await eventually(streaming, "the paced stream started")
    path.write_text(paced("new"), "utf-8")
    await answers(server, openapi, "probe", "new")
    chunks_when_new_served = len(received)
    assert not stream.done()
    assert chunks_when_new_served < CHUNKS, "the stream finished before the edit was served"

    old_text = await asyncio.wait_for(stream, TIMEOUT)
    elapsed = time.monotonic() - started
    assert old_text == "".join(f"old{i} " for i in range(CHUNKS))
    assert elapsed >= 0.6, f"the stream was not paced ({elapsed:.2f} s)"

    # a stream started after the edit gets the new content
    new_text = await asyncio.wait_for(read_stream(http, server, openapi, "story", []), TIMEOUT)
    assert new_text == "".join(f"new{i} " for i in range(CHUNKS))
