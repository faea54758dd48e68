"""A battery of malformed requests: every one gets the right 4xx and an OpenAI error envelope.

Each case is sent as raw bytes with raw headers to a live server, so anything can be sent. For
each we check the status, that the body is a valid ``ErrorResponse``, that ``error.param`` names
the offending field and that no traceback leaks; then the same server must still answer a valid
request with a valid ``CreateChatCompletionResponse``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

CHAT = "/v1/chat/completions"
JSON = "application/json"
SMALL_LIMIT = 1024  # max_body_bytes for the oversized-body case
MISSING, TYPE = "missing_required_parameter", "invalid_type"  # the two commonest error codes


class _Any:
    """``param`` may be anything (the right answer depends on where the check lives)."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
DROP = object()  # remove this key from the valid body

USER = {"role": "user", "content": "Hello"}
VALID = {"model": "foxora-1", "messages": [USER]}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Berlin"}'},
}


def body(**changes: Any) -> bytes:
    """The valid request with ``changes`` applied (``DROP`` removes a key), as JSON bytes."""
    data: dict[str, Any] = dict(VALID)
    for key, value in changes.items():
        if value is DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


def messages(*items: Any) -> bytes:
    return body(messages=list(items))


def user(content: Any) -> bytes:
    return messages({"role": "user", "content": content})


def part(**fields: Any) -> bytes:
    """A user message whose content is one content part."""
    return user([fields])


def with_call(call: Any) -> bytes:
    """A conversation whose assistant turn carries ``tool_calls=call``."""
    return messages(
        USER,
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "user", "content": "ok"},
    )


def tool_reply(**fields: Any) -> bytes:
    """User -> assistant tool call -> tool message with ``fields``."""
    return messages(USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", **fields})


def function(**fields: Any) -> bytes:
    """One tool whose ``function`` object is ``fields``."""
    return body(tools=[{"type": "function", "function": fields}])


def schema_format(**spec: Any) -> bytes:
    return body(response_format={"type": "json_schema", "json_schema": spec})


@dataclass(frozen=True)
class Case:
    data: bytes = field(repr=False)
    param: Any = None  # expected error.param (None: the error has no param)
    status: int = 400
    code: str | None = None  # expected error.code, when the README documents it
    content_type: str | None = JSON  # None: send no Content-Type at all
    limit: int | None = None  # max_body_bytes for the server


def case(id: str, data: bytes, param: Any = None, **kw: Any) -> Any:
    return pytest.param(Case(data, param, **kw), id=id)


BATTERY = [
    # -- not JSON at all ---------------------------------------------------------------------
    case("json-truncated", b'{"model": "foxora-1", "messages": [', code="invalid_json"),
    case("json-trailing-comma", b'{"model": "foxora-1",}', code="invalid_json"),
    case("json-single-quotes", b"{'model': 'foxora-1'}", code="invalid_json"),
    case("json-empty-body", b"", code="invalid_json"),
    case("json-garbage", b"model=foxora-1&messages=hi", code="invalid_json"),
    case("json-two-documents", body() + body(), code="invalid_json"),
    case(
        "json-invalid-utf8",
        body(model="foxora-1").replace(b"foxora-1", b"fox\xff\xfe"),
        code="invalid_json",
    ),
    case("json-lone-continuation-byte", b'{"model": "\x80"}', code="invalid_json"),
    case("json-deeply-nested", b"[" * 100_000 + b"]" * 100_000, code="invalid_json"),
    # NaN is not JSON (RFC 8259), and it is not a temperature in [0, 2] either.
    case("json-nan-temperature", body()[:-1] + b', "temperature": NaN}', ANY),
    # -- JSON, but not an object -------------------------------------------------------------
    case("body-array", b"[]", code=TYPE),
    case("body-array-of-request", b"[" + body() + b"]", code=TYPE),
    case("body-string", b'"hello"', code=TYPE),
    case("body-number", b"42", code=TYPE),
    case("body-null", b"null", code=TYPE),
    case("body-true", b"true", code=TYPE),
    # -- model -------------------------------------------------------------------------------
    case("model-missing", body(model=DROP), "model", code=MISSING),
    case("model-int", body(model=4), "model", code=TYPE),
    case("model-null", body(model=None), "model", code=TYPE),
    case("model-list", body(model=["foxora-1"]), "model", code=TYPE),
    case("model-empty", body(model=""), "model"),
    # -- messages ----------------------------------------------------------------------------
    case("messages-missing", body(messages=DROP), "messages", code=MISSING),
    case("messages-string", body(messages="Hello"), "messages", code=TYPE),
    case("messages-object", body(messages=USER), "messages", code=TYPE),
    case("messages-null", body(messages=None), "messages", code=TYPE),
    case("messages-empty", body(messages=[]), "messages"),
    case("message-string", messages("Hello"), "messages[0]", code=TYPE),
    case("message-list", messages(["user", "Hello"]), "messages[0]", code=TYPE),
    case("message-second-null", messages(USER, None), "messages[1]", code=TYPE),
    case("role-missing", messages({"content": "Hello"}), "messages[0].role", code=MISSING),
    case("role-unknown", messages({"role": "robot", "content": "Hi"}), "messages[0].role"),
    case("role-int", messages({"role": 1, "content": "Hi"}), "messages[0].role"),
    case(
        "role-unknown-second",
        messages(USER, {"role": "human", "content": "Hi"}),
        "messages[1].role",
    ),
    case("content-missing", messages({"role": "user"}), "messages[0].content", code=MISSING),
    case("content-int", user(42), "messages[0].content", code=TYPE),
    case("content-object", user({"text": "Hi"}), "messages[0].content", code=TYPE),
    case("content-null-user", user(None), "messages[0].content"),
    case(
        "content-bool-system",
        messages({"role": "system", "content": True}, USER),
        "messages[0].content",
    ),
    case("content-parts-empty", user([]), "messages[0].content"),
    case("part-string", user(["Hello"]), "messages[0].content[0]", code=TYPE),
    case("part-missing-type", part(text="Hi"), "messages[0].content[0].type", code=MISSING),
    case("part-unknown-type", part(type="video", video="x"), "messages[0].content[0].type"),
    case("part-text-without-text", part(type="text"), "messages[0].content[0].text", code=MISSING),
    case(
        "part-text-not-string",
        part(type="text", text=["Hi"]),
        "messages[0].content[0].text",
        code=TYPE,
    ),
    case(
        "part-image-without-url",
        part(type="image_url", image_url={}),
        "messages[0].content[0].image_url.url",
    ),
    case(
        "part-second-bad",
        user([{"type": "text", "text": "a"}, {"type": 7}]),
        "messages[0].content[1].type",
    ),
    case(
        "name-not-string",
        messages({"role": "user", "content": "Hi", "name": 5}),
        "messages[0].name",
    ),
    case(
        "tool-message-without-id",
        tool_reply(content="21"),
        "messages[2].tool_call_id",
        code=MISSING,
    ),
    case(
        "tool-message-id-int",
        tool_reply(content="21", tool_call_id=1),
        "messages[2].tool_call_id",
        code=TYPE,
    ),
    case("tool-calls-not-list", with_call(CALL), "messages[1].tool_calls", code=TYPE),
    case("tool-call-not-object", with_call(["call_1"]), "messages[1].tool_calls[0]", code=TYPE),
    case(
        "tool-call-missing-id",
        with_call([{k: v for k, v in CALL.items() if k != "id"}]),
        "messages[1].tool_calls[0].id",
    ),
    case(
        "tool-call-missing-function",
        with_call([{"id": "c", "type": "function"}]),
        "messages[1].tool_calls[0].function",
    ),
    case(
        "tool-call-function-string",
        with_call([{**CALL, "function": "get_weather"}]),
        "messages[1].tool_calls[0].function",
    ),
    case(
        "tool-call-missing-name",
        with_call([{**CALL, "function": {"arguments": "{}"}}]),
        "messages[1].tool_calls[0].function.name",
    ),
    case(
        "tool-call-arguments-object",
        with_call([{**CALL, "function": {"name": "f", "arguments": {}}}]),
        "messages[1].tool_calls[0].function.arguments",
        code=TYPE,
    ),
    # -- sampling and sizes ------------------------------------------------------------------
    case(
        "temperature-below", body(temperature=-0.1), "temperature", code="decimal_below_min_value"
    ),
    case("temperature-above", body(temperature=2.1), "temperature", code="decimal_above_max_value"),
    case("temperature-string", body(temperature="1"), "temperature", code=TYPE),
    case("temperature-bool", body(temperature=True), "temperature", code=TYPE),
    case("temperature-huge", body()[:-1] + b', "temperature": 1e400}', "temperature"),
    case("top-p-above", body(top_p=1.5), "top_p", code="decimal_above_max_value"),
    case("top-p-below", body(top_p=-0.01), "top_p", code="decimal_below_min_value"),
    case("presence-penalty-below", body(presence_penalty=-2.5), "presence_penalty"),
    case("frequency-penalty-above", body(frequency_penalty=3), "frequency_penalty"),
    case("max-tokens-zero", body(max_tokens=0), "max_tokens", code="integer_below_min_value"),
    case("max-tokens-negative", body(max_tokens=-5), "max_tokens", code="integer_below_min_value"),
    case("max-tokens-float", body(max_tokens=10.5), "max_tokens", code=TYPE),
    case("max-tokens-string", body(max_tokens="100"), "max_tokens", code=TYPE),
    case("max-tokens-bool", body(max_tokens=True), "max_tokens", code=TYPE),
    case("max-completion-tokens-zero", body(max_completion_tokens=0), "max_completion_tokens"),
    case("n-zero", body(n=0), "n", code="integer_below_min_value"),
    case("n-129", body(n=129), "n", code="integer_above_max_value"),
    case("n-string", body(n="2"), "n", code=TYPE),
    case("seed-string", body(seed="42"), "seed", code=TYPE),
    case("top-logprobs-21", body(logprobs=True, top_logprobs=21), "top_logprobs"),
    case("logprobs-string", body(logprobs="yes"), "logprobs", code=TYPE),
    case("logit-bias-list", body(logit_bias=[1, 2]), "logit_bias", code=TYPE),
    case("user-int", body(user=42), "user", code=TYPE),
    case("metadata-string", body(metadata="x"), "metadata", code=TYPE),
    # -- streaming ---------------------------------------------------------------------------
    case("stream-string", body(stream="true"), "stream", code=TYPE),
    case("stream-int", body(stream=1), "stream", code=TYPE),
    case(
        "stream-options-without-stream",
        body(stream_options={"include_usage": True}),
        "stream_options",
    ),
    case(
        "stream-options-stream-false",
        body(stream=False, stream_options={"include_usage": True}),
        "stream_options",
    ),
    case("stream-options-list", body(stream=True, stream_options=[]), "stream_options", code=TYPE),
    case(
        "stream-options-usage-string",
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    # -- stop ----------------------------------------------------------------------------------
    case("stop-five", body(stop=["a", "b", "c", "d", "e"]), "stop", code="array_above_max_length"),
    case("stop-ints", body(stop=[1, 2]), "stop", code=TYPE),
    case("stop-int", body(stop=7), "stop", code=TYPE),
    # -- tools ---------------------------------------------------------------------------------
    case("tools-object", body(tools=TOOL), "tools", code=TYPE),
    case("tools-string", body(tools="get_weather"), "tools", code=TYPE),
    case("tool-string", body(tools=["get_weather"]), "tools[0]", code=TYPE),
    case("tool-wrong-type", body(tools=[{**TOOL, "type": "retrieval"}]), "tools[0].type"),
    case(
        "tool-missing-type",
        body(tools=[{"function": TOOL["function"]}]),
        "tools[0].type",
        code=MISSING,
    ),
    case(
        "tool-missing-function",
        body(tools=[{"type": "function"}]),
        "tools[0].function",
        code=MISSING,
    ),
    case(
        "tool-function-string",
        body(tools=[{"type": "function", "function": "f"}]),
        "tools[0].function",
        code=TYPE,
    ),
    case(
        "tool-missing-name", function(description="no name"), "tools[0].function.name", code=MISSING
    ),
    case("tool-name-int", function(name=3), "tools[0].function.name", code=TYPE),
    case("tool-name-space", function(name="get weather"), "tools[0].function.name"),
    case("tool-name-dot", function(name="weather.get"), "tools[0].function.name"),
    case("tool-name-empty", function(name=""), "tools[0].function.name"),
    case("tool-name-65-chars", function(name="a" * 65), "tools[0].function.name"),
    case(
        "tool-second-bad-name",
        body(tools=[TOOL, {"type": "function", "function": {"name": "a b"}}]),
        "tools[1].function.name",
    ),
    case(
        "tool-parameters-list",
        function(name="f", parameters=[]),
        "tools[0].function.parameters",
        code=TYPE,
    ),
    case(
        "tool-strict-string",
        function(name="f", strict="yes"),
        "tools[0].function.strict",
        code=TYPE,
    ),
    case("tool-choice-invalid-string", body(tools=[TOOL], tool_choice="always"), "tool_choice"),
    case("tool-choice-int", body(tools=[TOOL], tool_choice=1), "tool_choice", code=TYPE),
    case(
        "tool-choice-unknown-function",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
        "tool_choice",
    ),
    case(
        "tool-choice-function-without-tools",
        body(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        "tool_choice",
    ),
    case("tool-choice-required-without-tools", body(tool_choice="required"), "tool_choice"),
    case(
        "tool-choice-object-without-type",
        body(tools=[TOOL], tool_choice={"function": {"name": "get_weather"}}),
        "tool_choice",
    ),
    # -- response_format -----------------------------------------------------------------------
    case("response-format-string", body(response_format="json"), "response_format", code=TYPE),
    case(
        "response-format-unknown-type",
        body(response_format={"type": "xml"}),
        "response_format.type",
    ),
    case(
        "response-format-missing-type",
        body(response_format={}),
        "response_format.type",
        code=MISSING,
    ),
    case(
        "json-schema-missing-spec",
        body(response_format={"type": "json_schema"}),
        "response_format.json_schema",
    ),
    case(
        "json-schema-missing-name",
        schema_format(schema={"type": "object"}),
        "response_format.json_schema.name",
        code=MISSING,
    ),
    case(
        "json-schema-bad-name",
        schema_format(name="my schema", schema={}),
        "response_format.json_schema.name",
    ),
    case(
        "json-schema-schema-list",
        schema_format(name="s", schema=[]),
        "response_format.json_schema.schema",
        code=TYPE,
    ),
    case(
        "json-schema-strict-string",
        schema_format(name="s", strict="true"),
        "response_format.json_schema.strict",
        code=TYPE,
    ),
    case(
        "json-object-without-json-word", body(response_format={"type": "json_object"}), "messages"
    ),
    # -- unknown fields ------------------------------------------------------------------------
    case("unknown-field", body(temprature=0.5), "temprature", code="unknown_parameter"),
    case("unknown-field-prompt", body(prompt="Hello"), "prompt", code="unknown_parameter"),
    # -- transport: content type and size ------------------------------------------------------
    case(
        "content-type-text-plain",
        body(),
        status=415,
        content_type="text/plain",
        code="unsupported_media_type",
    ),
    case(
        "content-type-form",
        body(),
        status=415,
        content_type="application/x-www-form-urlencoded",
        code="unsupported_media_type",
    ),
    case(
        "content-type-multipart",
        body(),
        status=415,
        content_type="multipart/form-data; boundary=x",
        code="unsupported_media_type",
    ),
    case(
        "content-type-missing", body(), status=415, content_type=None, code="unsupported_media_type"
    ),
    case(
        "body-over-limit",
        body(user="x" * 2 * SMALL_LIMIT),
        status=413,
        limit=SMALL_LIMIT,
        code="request_too_large",
    ),
]


# -- helpers -----------------------------------------------------------------------------------


async def send(session: aiohttp.ClientSession, url: str, case: Case) -> tuple[int, str]:
    """POST the case's raw bytes with exactly its Content-Type (or none)."""
    headers = {} if case.content_type is None else {"Content-Type": case.content_type}
    skip = ["Content-Type"] if case.content_type is None else []
    async with session.post(
        url + CHAT, data=case.data, headers=headers, skip_auto_headers=skip
    ) as resp:
        return resp.status, await resp.text()


def check_error(
    openapi: Callable[[str, Any], None], status: int, text: str, case: Case
) -> dict[str, Any]:
    """The envelope checks every bad request must pass; returns ``error``."""
    assert "Traceback" not in text
    assert status == case.status, text
    payload = json.loads(text)
    openapi("ErrorResponse", payload)
    error = payload["error"]
    assert error["message"]
    if case.param is not ANY:
        assert error["param"] == case.param, error
    if case.code is not None:
        assert error["code"] == case.code, error
    return error


async def assert_still_serving(
    session: aiohttp.ClientSession, url: str, openapi: Callable[[str, Any], None]
) -> None:
    async with session.post(url + CHAT, json=VALID) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    payload = json.loads(text)
    openapi("CreateChatCompletionResponse", payload)
    assert payload["choices"][0]["message"]["content"] == "You said: Hello"


def server_config(case: Case) -> dict[str, Any]:
    return {} if case.limit is None else {"max_body_bytes": case.limit}


# -- the battery -------------------------------------------------------------------------------


def test_battery_is_big_enough() -> None:
    assert len(BATTERY) >= 40


@pytest.mark.parametrize("case", BATTERY)
async def test_bad_request_gets_error_envelope(start_server, openapi, case: Case) -> None:
    srv = await start_server(**server_config(case))
    async with aiohttp.ClientSession() as session:
        status, text = await send(session, srv.url, case)
        check_error(openapi, status, text, case)
        await assert_still_serving(session, srv.url, openapi)


def battery_failures(
    openapi: Callable[[str, Any], None], results: list[tuple[Any, tuple[int, str]]]
) -> list[str]:
    """Check every (case, response) pair; return one line per case that failed its checks."""
    failures = []
    for param, (status, text) in results:
        try:
            check_error(openapi, status, text, param.values[0])
        except AssertionError as exc:
            failures.append(f"{param.id}: {str(exc).splitlines()[0][:200]}")
    return failures


async def test_whole_battery_on_one_server(start_server, openapi) -> None:
    """Every bad request in a row on the same server(s), then a valid request still works."""
    servers: dict[int | None, Any] = {}
    results = []
    async with aiohttp.ClientSession() as session:
        for param in BATTERY:
            case = param.values[0]
            if case.limit not in servers:
                servers[case.limit] = await start_server(**server_config(case))
            results.append((param, await send(session, servers[case.limit].url, case)))
        for srv in servers.values():
            await assert_still_serving(session, srv.url, openapi)
            async with session.get(srv.url + "/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"
    assert battery_failures(openapi, results) == []


async def test_bad_requests_in_parallel(start_server, openapi) -> None:
    """Concurrent bad requests do not disturb each other or a valid one sent alongside."""
    srv = await start_server()
    params = [p for p in BATTERY if p.values[0].limit is None]
    async with aiohttp.ClientSession() as session:
        responses = await asyncio.gather(
            assert_still_serving(session, srv.url, openapi),
            *(send(session, srv.url, p.values[0]) for p in params),
        )
        await assert_still_serving(session, srv.url, openapi)
    assert battery_failures(openapi, list(zip(params, responses[1:], strict=True))) == []


async def test_valid_request_with_every_checked_field_is_accepted(start_server, openapi) -> None:
    """The boundaries themselves are valid: the validator must not be stricter than OpenAI."""
    srv = await start_server()
    data = {
        **VALID,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}], "name": "ann"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
            {"role": "user", "content": "thanks"},
        ],
        "temperature": 2,
        "top_p": 0,
        "presence_penalty": -2,
        "frequency_penalty": 2,
        "max_tokens": 100,
        "n": 1,
        "seed": 7,
        "stop": ["a", "b", "c", "d"],
        "stream": False,
        "tools": [TOOL, {"type": "function", "function": {"name": "A-z_0" + "9" * 59}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "user": "u",
        "metadata": {"k": "v"},
    }
    async with aiohttp.ClientSession() as session, session.post(srv.url + CHAT, json=data) as resp:
        payload = await resp.json()
        assert resp.status == 200, payload
    openapi("CreateChatCompletionResponse", payload)


async def chunks(data: bytes, size: int = 64) -> AsyncIterator[bytes]:
    """``data`` as a generator, so aiohttp sends it chunked (no Content-Length)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize(
    ("content_type", "chunked"),
    [
        ("application/json; charset=utf-8", False),
        ("Application/JSON", False),
        (JSON, True),
    ],
    ids=["charset-parameter", "upper-case", "chunked"],
)
async def test_valid_transport_variants_are_accepted(
    start_server, openapi, content_type: str, chunked: bool
) -> None:
    srv = await start_server()
    raw = json.dumps({**VALID, "messages": [{"role": "user", "content": "Héllo ☃"}]}).encode()
    data: Any = chunks(raw) if chunked else raw
    headers = {"Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(srv.url + CHAT, data=data, headers=headers) as resp,
    ):
        payload = await resp.json()
        assert resp.status == 200, payload
    openapi("CreateChatCompletionResponse", payload)
    assert payload["choices"][0]["message"]["content"] == "You said: Héllo ☃"


async def test_chunked_body_over_the_limit_gets_413(start_server, openapi) -> None:
    """The size limit holds without a Content-Length to go by."""
    srv = await start_server(max_body_bytes=SMALL_LIMIT)
    headers = {"Content-Type": JSON}
    async with aiohttp.ClientSession() as session:
        data = chunks(body(user="x" * 4 * SMALL_LIMIT))
        async with session.post(srv.url + CHAT, data=data, headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 413, text
        check_error(openapi, 413, text, Case(b"", status=413, code="request_too_large"))
        await assert_still_serving(session, srv.url, openapi)


# -- routing: unknown paths and wrong methods --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/nope", 404, None),
        ("POST", "/v1/completions", 404, None),
        ("GET", "/", 404, None),
        ("GET", "/v1/chat/completions/extra", 404, None),
        ("GET", CHAT, 405, "POST"),
        ("PUT", CHAT, 405, "POST"),
        ("DELETE", "/v1/models", 405, "GET"),
        ("POST", "/v1/models", 405, "GET"),
        ("DELETE", "/v1/models/foxora-1", 405, "GET"),
        ("POST", "/healthz", 405, "GET"),
    ],
)
async def test_unknown_path_and_wrong_method(
    start_server, openapi, method: str, path: str, status: int, allow: str | None
) -> None:
    srv = await start_server()
    async with aiohttp.ClientSession() as session:
        async with session.request(method, srv.url + path) as resp:
            text = await resp.text()
            assert resp.status == status, text
            assert resp.content_type == JSON
            if allow is not None:
                assert allow in resp.headers["Allow"]
        assert "Traceback" not in text
        payload = json.loads(text)
        openapi("ErrorResponse", payload)
        assert payload["error"]["code"] == (
            "unknown_url" if status == 404 else "method_not_allowed"
        )
        assert path in payload["error"]["message"]
        await assert_still_serving(session, srv.url, openapi)


# -- HTTP/1.0 ----------------------------------------------------------------------------------


async def raw_http(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status_line, headers, payload


def http10_post(data: bytes, content_type: str = JSON) -> bytes:
    return (
        f"POST {CHAT} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def test_http_1_0_request_works(start_server, openapi) -> None:
    srv = await start_server()
    status_line, headers, payload = await raw_http(srv.port, http10_post(body()))
    assert status_line.split()[1] == "200", status_line
    assert headers["content-type"].startswith(JSON)
    completion = json.loads(payload)
    openapi("CreateChatCompletionResponse", completion)
    assert completion["choices"][0]["message"]["content"] == "You said: Hello"


async def test_http_1_0_bad_request_gets_envelope(start_server, openapi) -> None:
    srv = await start_server()
    status_line, _, payload = await raw_http(srv.port, http10_post(body(temperature=9)))
    assert status_line.split()[1] == "400", status_line
    error = json.loads(payload)
    openapi("ErrorResponse", error)
    assert error["error"]["param"] == "temperature"


async def test_http_1_0_get_models(start_server, openapi) -> None:
    srv = await start_server()
    request = b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    status_line, _, payload = await raw_http(srv.port, request)
    assert status_line.split()[1] == "200", status_line
    openapi("ListModelsResponse", json.loads(payload))
