"""Streaming: the SSE wire, chunking, tool calls, agent loops, n and max_tokens.

Every scenario here answers both streamed and non-streamed requests; the tests drive the real
server with aiohttp (to see the raw bytes) and with the official ``openai`` SDK (sync and async).
Every body and chunk is validated against OpenAI's official OpenAPI schemas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
import pytest

MODEL = "foxora-1"
EXPECTED_ANSWER = "It is 21 °C and sunny in Lisbon."  # weather-answers, for Lisbon
LONG_ANSWER = "one two three four five six seven eight nine ten"  # long-answer
Validate = Callable[[str, Any], None]

SCENARIOS = r"""
version: 1
scenarios:
  - name: by-words
    match: {last_user: words please}
    respond: {content: "The quick  brown fox\njumps over the lazy dog."}
    stream: {by: words}

  - name: by-characters
    match: {last_user: characters please}
    respond: {content: "Foxes are clever."}
    stream: {by: characters, size: 3}

  - name: by-tokens
    match: {last_user: tokens please}
    respond: {content: "Hello, world! Foxes stream extraordinarily."}
    stream: {by: tokens, size: 2}

  - name: explicit-chunks
    match: {last_user: count}
    respond: {}
    stream: {chunks: ["One", ", two", ", three."]}

  - name: weather-answers
    match: {has_tool_result: get_weather}
    respond:
      content: >-
        {% set r = tool_result('get_weather') %}It is {{ r.temp_c }} °C and {{ r.conditions }}
        in {{ r.city }}.
    stream: {by: words}

  - name: weather-asks-tool
    match:
      last_user: {contains: weather}
      tools_offered: [get_weather]
      has_tool_result: false
    respond:
      tool_calls:
        - name: get_weather
          arguments:
            city: "{{ last_user | regex_search('in ([A-Z][a-z]+)') or 'Paris' }}"
            unit: celsius

  - name: parallel-calls
    match: {last_user: {contains: parallel}}
    respond:
      tool_calls:
        - name: get_weather
          arguments: {city: Oslo, unit: celsius}
        - name: get_time
          arguments: '{"timezone": "Europe/Oslo", "format": "24h"}'
        - name: get_weather
          arguments: {city: Bergen, unit: fahrenheit, days: 3}
    stream: {by: characters, size: 4}

  - name: fixed-id-call
    match: {last_user: fixed id}
    respond:
      tool_calls:
        - {name: get_weather, arguments: {city: Rome}, id: call_fixed_1}
        - {name: get_time, arguments: {timezone: Europe/Rome}, id: call_fixed_2}

  - name: says-and-calls
    match: {last_user: {contains: check first}}
    respond:
      content: "Let me check."
      tool_calls: [{name: get_time, arguments: {timezone: UTC}}]

  - name: long-answer
    match: {last_user: {contains: long}}
    respond: {content: "one two three four five six seven eight nine ten"}  # LONG_ANSWER

  - name: echo
    priority: -100
    respond: {content: "You said: {{ last_user }}"}
"""

WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}, "format": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    },
]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- the raw wire -------------------------------------------------------------------------


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Check the SSE framing byte for byte and return the JSON chunks (without ``[DONE]``)."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    events = raw.split(b"\n\n")
    assert events[-1] == b"", "the stream must end with a blank line"
    events = events[:-1]
    assert events[-1] == b"data: [DONE]"
    chunks = []
    for event in events[:-1]:
        assert event.startswith(b"data: "), event
        assert b"\n" not in event and b"\r" not in event, event
        payload = event[len(b"data: ") :]
        assert payload != b"[DONE]", "[DONE] must come last, once"
        chunks.append(json.loads(payload))
    assert raw == b"".join(b"data: " + e[6:] + b"\n\n" for e in events)
    return chunks


async def raw_stream(base_url: str, **body: Any) -> list[dict[str, Any]]:
    """POST a streamed request with aiohttp and return its chunks, framing checked."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/chat/completions", json={"model": MODEL, "stream": True, **body}
        ) as resp,
    ):
        raw = await resp.read()
        assert resp.status == 200, raw
        assert resp.headers["content-type"].startswith("text/event-stream")
    return parse_sse(raw)


async def raw_body(base_url: str, **body: Any) -> dict[str, Any]:
    """POST a non-streamed request with aiohttp and return the JSON body."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url}/chat/completions", json={"model": MODEL, **body}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"].startswith("application/json")
        return dict(await resp.json())


@dataclass
class Choice:
    """What one choice of a stream said, reassembled from its deltas."""

    role: str | None = None
    deltas: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    @property
    def content(self) -> str:
        return "".join(self.deltas)

    def arguments(self, index: int) -> str:
        return "".join(self.calls[index]["fragments"])


@dataclass
class Stream:
    choices: dict[int, Choice]
    usage: dict[str, Any] | None
    id: str


def check_stream(
    chunks: list[dict[str, Any]], openapi: Validate, *, include_usage: bool = False
) -> Stream:
    """Validate every chunk and the stream's invariants; reassemble what each choice said."""
    assert chunks
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["id"], chunk["created"], chunk["model"]) == (
            chunks[0]["id"],
            chunks[0]["created"],
            chunks[0]["model"],
        )
        if include_usage:
            assert "usage" in chunk
        else:
            assert "usage" not in chunk, chunk
    usage = None
    body = chunks
    if include_usage:
        *body, last = chunks
        assert last["choices"] == []
        usage = last["usage"]
        openapi("CompletionUsage", usage)
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert all(c["usage"] is None for c in body)

    choices: dict[int, Choice] = {}
    for chunk in body:
        assert len(chunk["choices"]) == 1, chunk
        (wire,) = chunk["choices"]
        index, delta = wire["index"], wire["delta"]
        first = index not in choices
        choice = choices.setdefault(index, Choice())
        assert choice.finish_reason is None, f"a chunk after finish_reason: {chunk}"
        if first:
            assert delta.get("role") == "assistant", f"first delta must carry the role: {delta}"
            choice.role = delta["role"]
        else:
            assert "role" not in delta, delta
        if delta.get("content"):
            choice.deltas.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            if call["index"] not in choice.calls:
                assert set(call) == {"index", "id", "type", "function"}, call
                assert call["type"] == "function"
                assert call["id"] and call["function"]["name"]
                choice.calls[call["index"]] = {
                    "id": call["id"],
                    "name": call["function"]["name"],
                    "fragments": [call["function"].get("arguments", "")],
                }
            else:
                assert set(call) == {"index", "function"}, f"later deltas carry arguments: {call}"
                assert set(call["function"]) == {"arguments"}, call
                choice.calls[call["index"]]["fragments"].append(call["function"]["arguments"])
        choice.finish_reason = wire["finish_reason"]
    for index, choice in choices.items():
        assert choice.finish_reason, f"choice {index} never finished"
        assert sorted(choice.calls) == list(range(len(choice.calls)))
    return Stream(choices, usage, chunks[0]["id"])


def check_body(body: dict[str, Any], openapi: Validate) -> dict[str, Any]:
    openapi("CreateChatCompletionResponse", body)
    assert body["object"] == "chat.completion"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    return body


# --- the SDKs -----------------------------------------------------------------------------


def sync_create(client: openai.OpenAI, openapi: Validate, **kwargs: Any) -> Any:
    """A non-streamed SDK call; the raw body is validated before the SDK parses it."""
    raw = client.chat.completions.with_raw_response.create(model=MODEL, **kwargs)
    check_body(json.loads(raw.text), openapi)
    return raw.parse()


async def async_create(client: openai.AsyncOpenAI, openapi: Validate, **kwargs: Any) -> Any:
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, **kwargs)
    check_body(json.loads(raw.text), openapi)
    return raw.parse()


def sync_stream(
    client: openai.OpenAI, openapi: Validate, *, include_usage: bool = False, **kwargs: Any
) -> Stream:
    """A streamed SDK call; every chunk the SDK yields is checked like a raw one."""
    if include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    stream = client.chat.completions.create(model=MODEL, stream=True, **kwargs)
    chunks = [chunk.to_dict() for chunk in stream]
    return check_stream(chunks, openapi, include_usage=include_usage)


async def async_stream(
    client: openai.AsyncOpenAI, openapi: Validate, *, include_usage: bool = False, **kwargs: Any
) -> Stream:
    if include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    stream = await client.chat.completions.create(model=MODEL, stream=True, **kwargs)
    chunks = [chunk.to_dict() async for chunk in stream]
    return check_stream(chunks, openapi, include_usage=include_usage)


@pytest.fixture
async def server(start_server: Any) -> Any:
    return await start_server(SCENARIOS, time_scale=0, seed=7)


@pytest.fixture
async def aclient(server: Any) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def client(thread_server: Any) -> Any:
    srv = thread_server(SCENARIOS, time_scale=0, seed=7)
    with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
        yield c


# --- the wire ------------------------------------------------------------------------------


async def test_wire_without_stream_options_has_no_usage_key(server: Any, openapi: Validate) -> None:
    chunks = await raw_stream(server.base_url, messages=user("tokens please"))
    stream = check_stream(chunks, openapi)
    assert stream.usage is None
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert first["finish_reason"] is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert stream.id.startswith("cmpl_")


async def test_wire_with_include_usage(server: Any, openapi: Validate) -> None:
    messages = user("tokens please")
    chunks = await raw_stream(
        server.base_url, messages=messages, stream_options={"include_usage": True}
    )
    stream = check_stream(chunks, openapi, include_usage=True)
    assert stream.choices[0].content == "Hello, world! Foxes stream extraordinarily."
    assert stream.usage is not None
    # README: 3 per message + its tokens, + 3; "tokens please" is 2 tokens.
    assert stream.usage["prompt_tokens"] == 3 + 3 + 2
    # Hello , world ! Foxes stream extrao rdinar ily .
    assert stream.usage["completion_tokens"] == 10
    assert stream.usage["total_tokens"] == 18
    body = check_body(await raw_body(server.base_url, messages=messages), openapi)
    assert body["usage"] == stream.usage


async def test_stream_chunks_share_id_created_and_model(server: Any, openapi: Validate) -> None:
    chunks = await raw_stream(server.base_url, model="foxora-1-mini", messages=user("hi"))
    check_stream(chunks, openapi)
    assert {c["model"] for c in chunks} == {"foxora-1-mini"}
    assert len({c["id"] for c in chunks}) == 1
    again = await raw_stream(server.base_url, messages=user("hi"))
    assert again[0]["id"] != chunks[0]["id"], "every completion has its own id"


# --- chunking ------------------------------------------------------------------------------

CHUNKING = [
    pytest.param(
        "words please",
        ["The", " quick", "  brown", " fox", "\njumps", " over", " the", " lazy", " dog."],
        id="words",
    ),
    pytest.param("characters please", ["Fox", "es ", "are", " cl", "eve", "r."], id="characters-3"),
    pytest.param(
        "tokens please",
        ["Hello,", " world!", " Foxes stream", " extraordinar", "ily."],
        id="tokens-2",
    ),
    pytest.param("count", ["One", ", two", ", three."], id="explicit-chunks"),
]


@pytest.mark.parametrize(("prompt", "expected"), CHUNKING)
async def test_chunking_raw_and_sdk(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate, prompt: str, expected: list[str]
) -> None:
    raw = check_stream(await raw_stream(server.base_url, messages=user(prompt)), openapi)
    assert raw.choices[0].deltas == expected
    sdk = await async_stream(aclient, openapi, messages=user(prompt))
    assert sdk.choices[0].deltas == expected
    completion = await async_create(aclient, openapi, messages=user(prompt))
    assert completion.choices[0].message.content == "".join(expected)
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("prompt", "expected"), CHUNKING)
def test_chunking_sync_sdk(
    client: openai.OpenAI, openapi: Validate, prompt: str, expected: list[str]
) -> None:
    stream = sync_stream(client, openapi, include_usage=True, messages=user(prompt))
    assert stream.choices[0].deltas == expected
    completion = sync_create(client, openapi, messages=user(prompt))
    assert completion.choices[0].message.content == stream.choices[0].content
    assert completion.usage is not None and stream.usage is not None
    assert completion.usage.completion_tokens == stream.usage["completion_tokens"]


async def test_default_chunking_is_one_token(server: Any, openapi: Validate) -> None:
    stream = check_stream(await raw_stream(server.base_url, messages=user("a b-c")), openapi)
    assert stream.choices[0].deltas == ["You", " said", ":", " a", " b", "-", "c"]


# --- tool calls ----------------------------------------------------------------------------


def check_calls_match(stream: Stream, message: Any) -> None:
    """The streamed calls are the non-streamed ones: names, order, arguments text."""
    choice = stream.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.calls) == len(message.tool_calls)
    for index, call in enumerate(message.tool_calls):
        assert choice.calls[index]["name"] == call.function.name
        streamed = choice.arguments(index)
        assert json.loads(streamed) == json.loads(call.function.arguments)
        assert streamed == call.function.arguments


async def test_one_tool_call_streamed_and_not(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    messages = user("What is the weather in Oslo?")
    chunks = await raw_stream(server.base_url, messages=messages, tools=WEATHER_TOOLS)
    stream = check_stream(chunks, openapi)
    first = chunks[0]["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": None}
    choice = stream.choices[0]
    assert list(choice.calls) == [0]
    assert choice.calls[0]["name"] == "get_weather"
    assert len(choice.calls[0]["fragments"]) > 2, "arguments arrive in several fragments"
    assert choice.calls[0]["fragments"][0] == ""
    assert json.loads(choice.arguments(0)) == {"city": "Oslo", "unit": "celsius"}
    assert choice.content == ""
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }

    completion = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    (call,) = message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_") and call.id != choice.calls[0]["id"]
    check_calls_match(stream, message)


async def test_parallel_tool_calls_streamed_and_not(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    messages = user("parallel calls please")
    stream = check_stream(
        await raw_stream(server.base_url, messages=messages, tools=WEATHER_TOOLS), openapi
    )
    choice = stream.choices[0]
    assert [choice.calls[i]["name"] for i in range(3)] == ["get_weather", "get_time", "get_weather"]
    ids = [choice.calls[i]["id"] for i in range(3)]
    assert len(set(ids)) == 3, ids
    assert [json.loads(choice.arguments(i)) for i in range(3)] == [
        {"city": "Oslo", "unit": "celsius"},
        {"timezone": "Europe/Oslo", "format": "24h"},
        {"city": "Bergen", "unit": "fahrenheit", "days": 3},
    ]
    # stream: {by: characters, size: 4} cuts arguments too
    for i in range(3):
        fragments = choice.calls[i]["fragments"][1:]
        assert all(len(f) == 4 for f in fragments[:-1]), fragments

    completion = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    message = completion.choices[0].message
    check_calls_match(stream, message)
    response_ids = [c.id for c in message.tool_calls]
    assert len(set(response_ids)) == 3
    assert not set(response_ids) & set(ids), "ids are unique across responses"


async def test_tool_call_deltas_are_ordered_per_call(server: Any, openapi: Validate) -> None:
    chunks = await raw_stream(
        server.base_url, messages=user("parallel calls please"), tools=WEATHER_TOOLS
    )
    check_stream(chunks, openapi)
    seen = [
        call["index"]
        for chunk in chunks
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert seen == sorted(seen), "each call's deltas finish before the next call begins"
    heads = [
        chunk["choices"][0]["delta"]["tool_calls"][0]
        for chunk in chunks
        if "id" in (chunk["choices"][0]["delta"].get("tool_calls") or [{}])[0]
    ]
    assert [h["index"] for h in heads] == [0, 1, 2]
    assert all(h["function"]["arguments"] == "" for h in heads)


async def test_fixed_tool_call_ids_repeat(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    messages = user("fixed id")
    first = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    second = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    expected = ["call_fixed_1", "call_fixed_2"]
    assert [c.id for c in first.choices[0].message.tool_calls] == expected
    assert [c.id for c in second.choices[0].message.tool_calls] == expected
    stream = check_stream(
        await raw_stream(server.base_url, messages=messages, tools=WEATHER_TOOLS), openapi
    )
    assert [stream.choices[0].calls[i]["id"] for i in range(2)] == expected


async def test_content_and_tool_calls_in_one_answer(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    messages = user("check first, then call")
    chunks = await raw_stream(server.base_url, messages=messages, tools=WEATHER_TOOLS)
    stream = check_stream(chunks, openapi)
    choice = stream.choices[0]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert choice.content == "Let me check."
    assert choice.calls[0]["name"] == "get_time"
    content_at = [i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("content")]
    calls_at = [i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("tool_calls")]
    assert max(content_at) < min(calls_at), "content comes before the tool calls"
    completion = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    assert completion.choices[0].message.content == "Let me check."
    check_calls_match(stream, completion.choices[0].message)


async def test_file_defaults_set_the_chunking(start_server: Any, openapi: Validate) -> None:
    """``defaults.stream`` applies to scenarios without their own; own keys win, key by key."""
    srv = await start_server(
        """
version: 1
defaults: {stream: {by: characters, size: 2}}
scenarios:
  - {name: inherits, match: {last_user: a}, respond: {content: "abcde"}}
  - {name: own, match: {last_user: b}, respond: {content: "ab cd ef"}, stream: {by: words}}
  - name: all-own
    match: {last_user: c}
    respond: {content: "ab cd"}
    stream: {by: words, size: 1}
""",
        time_scale=0,
    )
    deltas = {}
    for prompt in "abc":
        stream = check_stream(await raw_stream(srv.base_url, messages=user(prompt)), openapi)
        deltas[prompt] = stream.choices[0].deltas
    assert deltas == {"a": ["ab", "cd", "e"], "b": ["ab cd", " ef"], "c": ["ab", " cd"]}


def test_generated_tool_call_ids_differ_across_responses(
    client: openai.OpenAI, openapi: Validate
) -> None:
    messages = user("parallel calls please")
    ids = []
    for _ in range(2):
        completion = sync_create(client, openapi, messages=messages, tools=WEATHER_TOOLS)
        ids += [c.id for c in completion.choices[0].message.tool_calls]
    for _ in range(2):
        stream = sync_stream(client, openapi, messages=messages, tools=WEATHER_TOOLS)
        ids += [c["id"] for c in stream.choices[0].calls.values()]
    assert len(ids) == 12 and len(set(ids)) == 12, ids


def test_sync_stream_helper_final_completion(client: openai.OpenAI, openapi: Validate) -> None:
    messages = user("parallel calls please")
    helper = getattr(client.chat.completions, "stream", None)
    if helper is None:
        pytest.skip("this openai SDK has no chat.completions.stream helper")
    chunks = []
    argument_events: dict[int, str] = {}
    with helper(model=MODEL, messages=messages, tools=WEATHER_TOOLS) as stream:
        for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk.to_dict())
            elif event.type == "tool_calls.function.arguments.done":
                argument_events[event.index] = event.arguments
        final = stream.get_final_completion()
    check_stream(chunks, openapi)
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Oslo", "unit": "celsius"},
        {"timezone": "Europe/Oslo", "format": "24h"},
        {"city": "Bergen", "unit": "fahrenheit", "days": 3},
    ]
    assert argument_events == {i: c.function.arguments for i, c in enumerate(calls)}
    assert len({c.id for c in calls}) == 3


async def test_async_stream_helper_final_completion(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    helper = getattr(aclient.chat.completions, "stream", None)
    if helper is None:
        pytest.skip("this openai SDK has no chat.completions.stream helper")
    chunks, deltas = [], []
    async with helper(model=MODEL, messages=user("words please")) as stream:
        async for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk.to_dict())
            elif event.type == "content.delta":
                deltas.append(event.delta)
        final = await stream.get_final_completion()
    check_stream(chunks, openapi)
    assert "".join(deltas) == "The quick  brown fox\njumps over the lazy dog."
    assert final.choices[0].message.content == "".join(deltas)
    assert final.choices[0].finish_reason == "stop"


# --- an agent loop -------------------------------------------------------------------------


def run_tool(name: str, arguments: str) -> str:
    """The 'tool' the agent runs locally."""
    assert name == "get_weather"
    args = json.loads(arguments)
    return json.dumps({"city": args["city"], "temp_c": 21, "conditions": "sunny"})


def add_tool_turn(messages: list[dict[str, Any]], calls: list[tuple[str, str, str]]) -> None:
    """Append the assistant's tool calls and, for each, the result of running the tool here."""
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in calls
            ],
        }
    )
    for call_id, name, arguments in calls:
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": run_tool(name, arguments)}
        )


def test_agent_loop_sync_not_streamed(client: openai.OpenAI, openapi: Validate) -> None:
    messages: list[dict[str, Any]] = user("What is the weather in Lisbon?")
    first = sync_create(client, openapi, messages=messages, tools=WEATHER_TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]
    add_tool_turn(messages, calls)
    second = sync_create(client, openapi, messages=messages, tools=WEATHER_TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == EXPECTED_ANSWER
    assert second.choices[0].message.tool_calls is None


def test_agent_loop_sync_streamed(client: openai.OpenAI, openapi: Validate) -> None:
    messages: list[dict[str, Any]] = user("What is the weather in Lisbon?")
    first = sync_stream(client, openapi, messages=messages, tools=WEATHER_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [(c["id"], c["name"], choice.arguments(i)) for i, c in choice.calls.items()]
    add_tool_turn(messages, calls)
    second = sync_stream(
        client, openapi, include_usage=True, messages=messages, tools=WEATHER_TOOLS
    )
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert answer.content == EXPECTED_ANSWER
    assert answer.deltas[:3] == ["It", " is", " 21"], "weather-answers streams by words"
    assert not answer.calls


async def test_agent_loop_async_streamed(aclient: openai.AsyncOpenAI, openapi: Validate) -> None:
    messages: list[dict[str, Any]] = user("What is the weather in Lisbon?")
    first = await async_stream(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    choice = first.choices[0]
    calls = [(c["id"], c["name"], choice.arguments(i)) for i, c in choice.calls.items()]
    add_tool_turn(messages, calls)
    second = await async_create(aclient, openapi, messages=messages, tools=WEATHER_TOOLS)
    assert second.choices[0].message.content == EXPECTED_ANSWER


# --- n and max_tokens ----------------------------------------------------------------------


async def test_n_2_streamed(server: Any, aclient: openai.AsyncOpenAI, openapi: Validate) -> None:
    chunks = await raw_stream(
        server.base_url,
        messages=user("words please"),
        n=2,
        stream_options={"include_usage": True},
    )
    stream = check_stream(chunks, openapi, include_usage=True)
    assert sorted(stream.choices) == [0, 1]
    for choice in stream.choices.values():
        assert choice.content == "The quick  brown fox\njumps over the lazy dog."
        assert choice.finish_reason == "stop"
    body = await raw_body(server.base_url, messages=user("words please"), n=2)
    check_body(body, openapi)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert stream.usage == body["usage"]

    sdk = await async_stream(aclient, openapi, messages=user("count"), n=2)
    assert {i: c.deltas for i, c in sdk.choices.items()} == {
        0: ["One", ", two", ", three."],
        1: ["One", ", two", ", three."],
    }


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates(
    server: Any, aclient: openai.AsyncOpenAI, openapi: Validate, key: str
) -> None:
    messages = user("a long answer")
    completion = await async_create(aclient, openapi, messages=messages, **{key: 4})
    assert completion.choices[0].message.content == "one two three four"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    stream = check_stream(
        await raw_stream(
            server.base_url,
            messages=messages,
            stream_options={"include_usage": True},
            **{key: 4},
        ),
        openapi,
        include_usage=True,
    )
    assert stream.choices[0].content == "one two three four"
    assert stream.choices[0].finish_reason == "length"
    assert stream.usage is not None and stream.usage["completion_tokens"] == 4

    sdk = await async_stream(aclient, openapi, messages=messages, **{key: 4})
    assert sdk.choices[0].content == "one two three four"
    assert sdk.choices[0].finish_reason == "length"


async def test_max_tokens_larger_than_answer_changes_nothing(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    messages = user("a long answer")
    completion = await async_create(aclient, openapi, messages=messages, max_tokens=10)
    assert completion.choices[0].message.content == LONG_ANSWER
    assert completion.choices[0].finish_reason == "stop"
    stream = await async_stream(aclient, openapi, messages=user("count"), max_tokens=6)
    assert stream.choices[0].deltas == ["One", ", two", ", three."]
    assert stream.choices[0].finish_reason == "stop"


async def test_max_tokens_cuts_explicit_chunks(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    """``One , two , three .`` is 6 tokens; 3 of them leave "One, two"."""
    completion = await async_create(aclient, openapi, messages=user("count"), max_tokens=3)
    assert completion.choices[0].message.content == "One, two"
    stream = await async_stream(aclient, openapi, messages=user("count"), max_tokens=3)
    assert stream.choices[0].content == "One, two"
    assert stream.choices[0].finish_reason == "length"
