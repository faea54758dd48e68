"""Answers as faithful as the real API's: stop sequences, service tiers, request ids.

Through the official SDK against a real server on a loopback port; every body and chunk is
validated against OpenAI's spec.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest

from foxmock.server.state import STATE
from tests.conftest import StartServer

SCENARIOS = """\
version: 1
scenarios:
  - name: chunked
    match: {last_user: chunked}
    stream: {chunks: ["One, two", ", three. ", "Four, five."]}
    respond: {}
  - name: counting
    respond: {content: "One, two, three. Four, five. END of the count."}
"""
FULL = "One, two, three. Four, five. END of the count."


def _client(server: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)


async def _answer(
    server: Any, openapi: Any, text: str, stream: bool, **extra: Any
) -> tuple[str, str, set[str]]:
    """The content, finish reason and service tiers of an answer, streamed or not."""
    body = {"model": "foxora-1", "messages": [{"role": "user", "content": text}], **extra}
    async with _client(server) as client:
        if not stream:
            raw = await client.chat.completions.with_raw_response.create(**body)
            data = raw.http_response.json()
            openapi("CreateChatCompletionResponse", data)
            choice = data["choices"][0]
            return choice["message"]["content"], choice["finish_reason"], {data["service_tier"]}
        content, finish, tiers = "", "", set()
        async with client.chat.completions.with_streaming_response.create(
            stream=True, **body
        ) as response:
            async for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                openapi("CreateChatCompletionStreamResponse", chunk)
                tiers.add(chunk["service_tier"])
                for choice in chunk["choices"]:
                    content += choice["delta"].get("content") or ""
                    finish = choice["finish_reason"] or finish
        return content, finish, tiers


STOPS = [
    pytest.param("counting", ".", "One, two, three", id="one-string"),
    pytest.param("counting", ["Four", ", three"], "One, two", id="earliest-of-several"),
    pytest.param("counting", ["nowhere"], FULL, id="absent"),
    pytest.param("counting", "One", "", id="at-the-start"),
    pytest.param("chunked", ["Four"], "One, two, three. ", id="scenario-chunks"),
    pytest.param("chunked", "two,", "One, ", id="across-chunks"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
@pytest.mark.parametrize(("text", "stop", "expected"), STOPS)
async def test_stop_sequences_cut_the_content(
    start_server: StartServer,
    openapi: Any,
    stream: bool,
    text: str,
    stop: str | list[str],
    expected: str,
) -> None:
    server = await start_server(SCENARIOS)
    content, finish, _ = await _answer(server, openapi, text, stream, stop=stop)
    assert content == expected
    assert finish == "stop"


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
@pytest.mark.parametrize(
    ("asked", "reported"),
    [(None, "default"), ("auto", "default"), ("default", "default"), ("flex", "flex")],
)
async def test_service_tier_reports_what_was_asked(
    start_server: StartServer, openapi: Any, stream: bool, asked: str | None, reported: str
) -> None:
    server = await start_server(SCENARIOS)
    extra = {} if asked is None else {"service_tier": asked}
    _, _, tiers = await _answer(server, openapi, "counting", stream, **extra)
    assert tiers == {reported}


async def test_every_response_carries_a_request_id_the_journal_records(
    start_server: StartServer, openapi: Any
) -> None:
    server = await start_server(SCENARIOS, api_keys=["k"])
    journal = server.app[STATE].journal
    body = {"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}]}
    async with _client(server) as client:
        completion = await client.chat.completions.create(**body)  # type: ignore[call-overload]
        async with client.chat.completions.with_streaming_response.create(
            stream=True, **body
        ) as response:
            await response.read()
            streamed = response.headers["x-request-id"]
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="foxora-1", messages=[])
        models = await client.models.with_raw_response.list()
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="no", max_retries=0) as other:
        with pytest.raises(openai.AuthenticationError) as unauthorized:
            await other.chat.completions.create(**body)  # type: ignore[call-overload]
    ids = [
        completion._request_id,
        streamed,
        bad.value.request_id,
        models.headers["x-request-id"],
        unauthorized.value.request_id,
    ]
    assert all(isinstance(i, str) and re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    # the three chat requests that got past the key check are journaled under their ids
    assert [e.request_id for e in journal.entries()] == ids[:3]
    assert journal.entries()[0].to_json()["request_id"] == ids[0]


@pytest.mark.parametrize("top", [None, 0, 3, 20])
async def test_logprobs_cover_every_token_deterministically(
    start_server: StartServer, openapi: Any, top: int | None
) -> None:
    server = await start_server(SCENARIOS)
    body: dict[str, Any] = {
        "model": "foxora-1",
        "messages": [{"role": "user", "content": "counting"}],
        "logprobs": True,
    }
    if top is not None:
        body["top_logprobs"] = top
    async with _client(server) as client:
        first = await client.chat.completions.create(**body)
        again = await client.chat.completions.create(**body)
        plain = await client.chat.completions.create(**{**body, "logprobs": False})
        chunks = []
        async with client.chat.completions.with_streaming_response.create(
            stream=True, **body
        ) as response:
            async for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    openapi("CreateChatCompletionStreamResponse", chunk)
                    chunks.append(chunk)
    openapi("CreateChatCompletionResponse", first.model_dump(exclude_unset=True))
    assert plain.choices[0].logprobs is None
    logprobs = first.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == FULL
    for token in logprobs.content:
        assert -2 < token.logprob < 0
        assert bytes(token.bytes or []) == token.token.encode()
        assert len(token.top_logprobs) == (top or 0)
        if top:
            assert token.top_logprobs[0].token == token.token
            assert [t.logprob for t in token.top_logprobs] == sorted(
                (t.logprob for t in token.top_logprobs), reverse=True
            )
    assert again.choices[0].logprobs == logprobs  # the same answer, the same figures
    streamed = [
        t for c in chunks for ch in c["choices"] for t in (ch["logprobs"] or {}).get("content", [])
    ]
    assert "".join(t["token"] for t in streamed) == FULL
    assert all(c["choices"][0]["logprobs"] is not None for c in chunks if c["choices"])


CUSTOM = """\
version: 1
scenarios:
  - name: run-code
    match: {tools_offered: [code_exec], has_tool_result: false}
    respond:
      tool_calls:
        - {name: code_exec, input: "print({{ turn + 41 }})"}
  - name: chunked-code
    match: {tools_offered: [chunked_exec]}
    respond:
      tool_calls:
        - {name: chunked_exec, type: custom, chunks: ["import sys", "; print(sys.argv)"]}
  - name: ran
    match: {has_tool_result: code_exec}
    respond: {content: "it printed {{ tool_result('code_exec') }}"}
"""


def _custom_tool(name: str) -> dict[str, Any]:
    return {"type": "custom", "custom": {"name": name, "format": {"type": "text"}}}


@pytest.mark.parametrize(
    ("tool", "expected"),
    [("code_exec", "print(41)"), ("chunked_exec", "import sys; print(sys.argv)")],
)
async def test_a_scenario_answers_with_a_custom_tool_call(
    start_server: StartServer, openapi: Any, tool: str, expected: str
) -> None:
    server = await start_server(CUSTOM)
    body: dict[str, Any] = {
        "model": "foxora-1",
        "messages": [{"role": "user", "content": "run it"}],
        "tools": [_custom_tool(tool)],
    }
    async with _client(server) as client:
        completion = await client.chat.completions.create(**body)
        raw: list[dict[str, Any]] = []
        async with client.chat.completions.with_streaming_response.create(
            stream=True, **body
        ) as response:
            async for line in response.iter_lines():
                if line.startswith("data: {"):
                    raw.append(json.loads(line[6:]))
    openapi("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "custom"
    assert (call.custom.name, call.custom.input) == (tool, expected)  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"
    # Streamed as the API streams custom calls: a head with id, type and name, then input
    # fragments. The spec's chunk schema knows only function deltas (openai-openapi #576), so
    # chunks are validated with their tool-call deltas aside and those are checked here.
    deltas = []
    for chunk in raw:
        for choice in chunk["choices"]:
            deltas += choice["delta"].pop("tool_calls", [])
        openapi("CreateChatCompletionStreamResponse", chunk)
    head, *fragments = deltas
    assert head.pop("id").startswith("call_")  # each answer's calls get fresh ids
    assert head == {"index": 0, "type": "custom", "custom": {"name": tool, "input": ""}}
    assert all(set(f) == {"index", "custom"} and set(f["custom"]) == {"input"} for f in fragments)
    assert "".join(f["custom"]["input"] for f in fragments) == expected
    if tool == "chunked_exec":
        assert [f["custom"]["input"] for f in fragments] == ["import sys", "; print(sys.argv)"]


async def test_a_custom_tool_result_is_answered(start_server: StartServer, openapi: Any) -> None:
    server = await start_server(CUSTOM)
    async with _client(server) as client:
        first = await client.chat.completions.create(
            model="foxora-1",
            messages=[{"role": "user", "content": "run it"}],
            tools=[_custom_tool("code_exec")],  # type: ignore[list-item]
        )
        call = (first.choices[0].message.tool_calls or [])[0]
        second = await client.chat.completions.create(
            model="foxora-1",
            messages=[
                {"role": "user", "content": "run it"},
                first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": "41"},
            ],
            tools=[_custom_tool("code_exec")],  # type: ignore[list-item]
        )
    openapi("CreateChatCompletionResponse", second.model_dump(exclude_unset=True))
    assert second.choices[0].message.content == "it printed 41"
