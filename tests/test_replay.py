"""Replay: byte-identical requests to deterministic scenarios reuse the planned answer.

Everything runs against live servers with aiohttp (raw bytes) and the ``openai`` SDK; every body
and chunk is validated against OpenAI's schemas. ``/_foxmock/status`` reports the cache's hits, so
each test can tell a replay from a fresh plan.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from foxmock.openai.responses import make_id

Validate = Callable[[str, Any], None]

SCENARIOS = r"""
version: 1
scenarios:
  - name: templated
    match: {last_user: {startswith: "echo "}}
    respond: {content: "You said {{ last_user[5:] }} to {{ model }}"}
    stream: {by: words}
  - name: static-tool
    match: {last_user: weather please}
    respond:
      tool_calls:
        - {id: call_fixed1, name: get_weather, arguments: {city: Lisbon}}
  - name: generated-tool-id
    match: {last_user: "weather, no id"}
    respond:
      tool_calls:
        - {name: get_weather, arguments: {city: Lisbon}}
  - name: uuid
    match: {last_user: uuid}
    respond: {content: "{{ uuid() }}"}
  - name: clock
    match: {last_user: clock}
    respond: {content: "{{ now('%H:%M:%S.%f') }}"}
  - name: header-template
    match: {last_user: who am i}
    respond: {content: "You are {{ headers['x-user'] | default('nobody') }}"}
  - name: sometimes-failing
    match: {last_user: flaky}
    respond: {content: fine}
    fault: {kind: http, status: 503, probability: 0.5}
  - name: paced
    match: {last_user: paced}
    respond: {content: "one two three four five"}
    stream: {by: words}
    latency: {chunk_delay: 40ms}
"""

HEADER_SCENARIOS = r"""
version: 1
scenarios:
  - name: for-admins
    match: {last_user: hi, headers: {x-role: admin}}
    respond: {content: "Hello, admin"}
  - name: for-everyone
    match: {last_user: hi}
    respond: {content: "Hello"}
  - name: bye
    match: {last_user: bye}
    respond: {content: "Goodbye"}
"""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "foxora-1", "messages": [{"role": "user", "content": text}], **extra}


async def post(
    http: aiohttp.ClientSession,
    server: Any,
    openapi: Validate,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One non-streamed request; the body must be a valid ChatCompletion."""
    async with http.post(
        f"{server.base_url}/chat/completions", json=body, headers=headers
    ) as response:
        data: dict[str, Any] = await response.json()
        assert response.status == 200, data
    openapi("CreateChatCompletionResponse", data)
    return data


async def stream(
    http: aiohttp.ClientSession, server: Any, openapi: Validate, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[float]]:
    """One streamed request: its chunks (each validated) and when each arrived."""
    chunks, times = [], []
    async with http.post(
        f"{server.base_url}/chat/completions", json={**body, "stream": True}
    ) as response:
        assert response.status == 200
        raw = b""
        async for piece in response.content.iter_any():
            raw += piece
            while b"\n\n" in raw:
                event, raw = raw.split(b"\n\n", 1)
                assert event.startswith(b"data: ")
                payload = event[6:]
                if payload == b"[DONE]":
                    continue
                chunk = json.loads(payload)
                openapi("CreateChatCompletionStreamResponse", chunk)
                chunks.append(chunk)
                times.append(time.monotonic())
    assert raw == b""
    return chunks, times


async def replay_stats(http: aiohttp.ClientSession, server: Any) -> dict[str, Any]:
    async with http.get(f"{server.url}/_foxmock/status") as response:
        stats: dict[str, Any] = (await response.json())["replay"]
        return stats


def content(data: dict[str, Any]) -> str:
    return str(data["choices"][0]["message"]["content"])


async def test_identical_requests_replay_with_fresh_ids(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    body = chat_body("echo fox", temperature=0.2)
    answers = [await post(http, server, openapi, body) for _ in range(5)]
    assert {content(a) for a in answers} == {"You said fox to foxora-1"}
    assert len({a["id"] for a in answers}) == 5
    now = time.time()
    assert all(abs(a["created"] - now) < 5 for a in answers)
    # apart from id and created the bodies are the same, usage included
    same = [{k: v for k, v in a.items() if k not in ("id", "created")} for a in answers]
    assert all(s == same[0] for s in same)
    stats = await replay_stats(http, server)
    assert stats == {"enabled": True, "entries": 1, "hits": 4}

    # a body that differs by one byte is planned afresh
    other = await post(http, server, openapi, chat_body("echo fix", temperature=0.2))
    assert content(other) == "You said fix to foxora-1"
    assert (await replay_stats(http, server))["entries"] == 2


async def test_the_journal_records_every_replay(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    for _ in range(3):
        await post(http, server, openapi, chat_body("weather please"))
    async with http.get(f"{server.url}/_foxmock/journal") as response:
        entries = (await response.json())["entries"]
    assert [e["scenario"] for e in entries] == ["static-tool"] * 3
    assert all(e["tool_calls"] == ["get_weather"] for e in entries)
    assert all(e["finish_reason"] == "tool_calls" for e in entries)
    assert all(e["body"]["messages"][0]["content"] == "weather please" for e in entries)
    assert len({e["id"] for e in entries}) == 3
    assert (await replay_stats(http, server))["hits"] == 2


async def test_streams_replay_with_one_fresh_id_per_stream(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    body = chat_body("echo the quick brown fox", stream_options={"include_usage": True})
    runs = [(await stream(http, server, openapi, body))[0] for _ in range(3)]
    for chunks in runs:
        assert len({c["id"] for c in chunks}) == 1
        assert len({c["created"] for c in chunks}) == 1
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "You said the quick brown fox to foxora-1"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert len({chunks[0]["id"] for chunks in runs}) == 3
    assert [len(chunks) for chunks in runs] == [len(runs[0])] * 3
    assert (await replay_stats(http, server))["hits"] == 2


async def test_a_replayed_paced_stream_keeps_its_pacing(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """Five words 40 ms apart take at least 160 ms, replayed or not (a starved client can see
    chunks bunched, but never sooner than the server sends them)."""
    server = await start_server(SCENARIOS)
    for _ in range(3):
        started = time.monotonic()
        chunks, _times = await stream(http, server, openapi, chat_body("paced"))
        took = time.monotonic() - started
        words = [c["choices"][0]["delta"].get("content") for c in chunks]
        assert "".join(w or "" for w in words) == "one two three four five"
        assert 0.16 <= took < 5, took
    assert (await replay_stats(http, server))["hits"] == 2


@pytest.mark.parametrize(
    ("text", "varies"),
    [
        ("uuid", lambda a: content(a)),
        ("weather, no id", lambda a: a["choices"][0]["message"]["tool_calls"][0]["id"]),
    ],
)
async def test_answers_that_draw_randomness_are_never_replayed(
    start_server: Any,
    http: aiohttp.ClientSession,
    openapi: Validate,
    text: str,
    varies: Callable[[dict[str, Any]], str],
) -> None:
    server = await start_server(SCENARIOS)
    answers = [await post(http, server, openapi, chat_body(text)) for _ in range(4)]
    assert len({varies(a) for a in answers}) == 4
    assert await replay_stats(http, server) == {"enabled": True, "entries": 0, "hits": 0}


async def test_answers_that_read_the_clock_are_never_replayed(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    first = await post(http, server, openapi, chat_body("clock"))
    second = await post(http, server, openapi, chat_body("clock"))
    assert content(first) != content(second)  # microseconds apart
    assert (await replay_stats(http, server))["entries"] == 0


async def test_templates_that_read_headers_follow_the_headers(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    body = chat_body("who am i")
    for user in ["ada", "grace", "ada"]:
        answer = await post(http, server, openapi, body, headers={"X-User": user})
        assert content(answer) == f"You are {user}"
    assert (await replay_stats(http, server))["entries"] == 0


async def test_headers_that_scenarios_match_on_are_part_of_the_key(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(HEADER_SCENARIOS)
    body = chat_body("hi")
    cases: list[tuple[dict[str, str], str]] = [
        ({"X-Role": "user"}, "Hello"),
        ({"X-Role": "admin"}, "Hello, admin"),
        ({}, "Hello"),
        ({"X-Role": "user"}, "Hello"),
        ({"X-Role": "admin"}, "Hello, admin"),
        ({"X-Role": "admin", "X-Other": "ignored"}, "Hello, admin"),
        ({}, "Hello"),
    ]
    for headers, expected in cases:
        answer = await post(http, server, openapi, body, headers=headers)
        assert content(answer) == expected, headers
    # three distinct keys (user, admin, none); other headers do not split them
    assert await replay_stats(http, server) == {"enabled": True, "entries": 3, "hits": 4}


async def test_probabilistic_faults_are_never_replayed(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS, seed=3)
    statuses = []
    for _ in range(30):
        async with http.post(
            f"{server.base_url}/chat/completions", json=chat_body("flaky")
        ) as response:
            statuses.append(response.status)
            data = await response.json()
            openapi(
                "CreateChatCompletionResponse" if response.status == 200 else "ErrorResponse", data
            )
    assert set(statuses) == {200, 503}
    assert (await replay_stats(http, server))["entries"] == 0


async def test_a_changed_scenario_set_starts_an_empty_cache(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(SCENARIOS)
    body = chat_body("echo fox")
    await post(http, server, openapi, body)
    await post(http, server, openapi, body)
    assert (await replay_stats(http, server))["hits"] == 1
    override = (
        "name: override\npriority: 5\nmatch: {last_user: echo fox}\nrespond: {content: new}\n"
    )
    async with http.post(
        f"{server.url}/_foxmock/scenarios",
        data=override,
        headers={"Content-Type": "application/yaml"},
    ) as response:
        assert response.status == 201
    assert content(await post(http, server, openapi, body)) == "new"
    assert await replay_stats(http, server) == {"enabled": True, "entries": 1, "hits": 0}
    async with http.post(f"{server.url}/_foxmock/reset") as response:
        assert response.status == 200
    assert content(await post(http, server, openapi, body)) == "You said fox to foxora-1"


async def test_seeded_ids_are_the_same_with_or_without_replay(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """A replay draws the completion id exactly as a fresh plan does, so seeds still hold."""
    server = await start_server(SCENARIOS, seed=42)
    ids = [(await post(http, server, openapi, chat_body("echo fox")))["id"] for _ in range(4)]
    assert (await replay_stats(http, server))["hits"] == 3
    rng = random.Random(42)
    assert ids == [make_id("cmpl_", rng) for _ in range(4)]


async def test_only_the_same_body_replays_never_a_broken_one(
    start_server: Any, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """After one answer is kept, bodies that are not that body are still checked in full."""
    server = await start_server(SCENARIOS)
    await post(http, server, openapi, chat_body("echo fox"))
    assert (await replay_stats(http, server))["entries"] == 1
    url = f"{server.base_url}/chat/completions"
    for data, code in [(b"", "invalid_json"), (b"{", "invalid_json"), (b"[]", "invalid_type")]:
        async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
            error = await r.json()
            assert r.status == 400, error
        openapi("ErrorResponse", error)
        assert error["error"]["code"] == code
    assert await replay_stats(http, server) == {"enabled": True, "entries": 1, "hits": 0}
