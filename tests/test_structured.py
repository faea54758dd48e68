"""Structured output: JSON mode, JSON schemas (checked and synthesised) and strict tool arguments.

Real server, official ``openai`` SDK and aiohttp; every body, chunk and error envelope is
validated against OpenAI's official OpenAPI schemas, and every JSON value against the schema
the request gave, with jsonschema (formats included).
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
import openai
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel

MODEL = "foxora-1"
Validate = Callable[[str, Any], None]

SCENARIOS = r"""
version: 1
scenarios:
  - name: json-mode-ok
    match: {response_format: json_object, last_user: {contains: good}}
    respond: {content: '{"answer": 42, "ok": true}'}

  - name: json-mode-prose
    match: {response_format: json_object, last_user: {contains: prose}}
    respond: {content: "Sure! Here is your JSON: {answer: 42}"}

  - name: person-fits
    match: {response_format: json_schema, last_user: {contains: fits}}
    respond: {content: '{"name": "Ada", "age": 36}'}

  - name: person-breaks
    match: {response_format: json_schema, last_user: {contains: breaks}}
    respond: {content: '{"name": "Ada", "age": "thirty-six"}'}

  - name: person-prose
    match: {response_format: json_schema, last_user: {contains: prose}}
    respond: {content: "Ada, 36"}

  - name: any-json-schema
    priority: -10
    match: {response_format: json_schema}
    respond: {}

  - name: ticket-synthesised
    match: {last_user: {contains: ticket}}
    respond:
      tool_calls: [{name: create_ticket}]
    stream: {by: characters, size: 5}

  - name: alarm-out-of-range
    match: {last_user: alarm at 25}
    respond:
      tool_calls: [{name: set_alarm, arguments: {hour: 25, label: wake up}}]

  - name: alarm-fits
    match: {last_user: alarm at 7}
    respond:
      tool_calls: [{name: set_alarm, arguments: {hour: 7, label: wake up}}]

  - name: alarm-not-json
    match: {last_user: alarm garbled}
    respond:
      tool_calls: [{name: set_alarm, arguments: "hour={{ 7 }}"}]  # templated: checked at run time

  - name: pydantic-tool
    match: {tools_offered: [Meeting]}
    respond:
      tool_calls: [{name: Meeting}]

  - name: plain
    priority: -100
    respond: {content: "plain text"}
"""


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def json_schema_format(schema: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": strict},
    }


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    """``instance`` is valid against ``schema``, formats (date, email, uuid, ...) included."""
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, f"{instance!r} breaks its schema: {errors}"


async def post(base_url: str, **body: Any) -> tuple[int, Any]:
    """POST /chat/completions with aiohttp; validate and return (status, JSON body or chunks)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url}/chat/completions", json={"model": MODEL, **body}) as resp,
    ):
        raw = await resp.read()
        status, content_type = resp.status, resp.headers["content-type"]
    if content_type.startswith("text/event-stream"):
        assert status == 200
        events = raw.split(b"\n\n")
        assert events[-2:] == [b"data: [DONE]", b""]
        chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
        return status, chunks
    assert content_type.startswith("application/json")
    return status, json.loads(raw)


def validated(status: int, body: Any, openapi: Validate) -> Any:
    """Validate a response (body, stream chunks or error envelope) per the official schemas."""
    if status != 200:
        openapi("ErrorResponse", body)
    elif isinstance(body, list):
        for chunk in body:
            openapi("CreateChatCompletionStreamResponse", chunk)
    else:
        openapi("CreateChatCompletionResponse", body)
    return body


def streamed_content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_render_error(status: int, body: Any, scenario: str, *phrases: str) -> None:
    """A 500 envelope that names the scenario, its file:line, and says what went wrong."""
    assert status == 500, body
    error = body["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "scenario_render_error"
    assert f"scenario {scenario!r}" in error["message"]
    assert ".yaml:" in error["message"], "the message points at the scenario's file:line"
    for phrase in phrases:
        assert phrase in error["message"], error["message"]


@pytest.fixture
async def server(start_server: Any) -> Any:
    return await start_server(SCENARIOS, time_scale=0, seed=3)


@pytest.fixture
async def aclient(server: Any) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def client(thread_server: Any) -> Any:
    srv = thread_server(SCENARIOS, time_scale=0, seed=3)
    with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
        yield c


# --- JSON mode -----------------------------------------------------------------------------


async def test_json_object_with_json_content(server: Any, openapi: Validate) -> None:
    status, body = await post(
        server.base_url,
        messages=user("good answer as json"),
        response_format={"type": "json_object"},
    )
    validated(status, body, openapi)
    assert status == 200
    assert json.loads(body["choices"][0]["message"]["content"]) == {"answer": 42, "ok": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_json_object_with_prose_is_a_500_naming_the_scenario(
    server: Any, openapi: Validate, stream: bool
) -> None:
    status, body = await post(
        server.base_url,
        messages=user("prose answer as json"),
        response_format={"type": "json_object"},
        stream=stream,
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "json-mode-prose", "not valid JSON", "json_object")


async def test_json_object_error_through_the_sdk(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await aclient.chat.completions.create(
            model=MODEL,
            messages=user("prose answer as json"),
            response_format={"type": "json_object"},
        )
    assert caught.value.status_code == 500
    body = caught.value.response.json()
    openapi("ErrorResponse", body)
    assert "json-mode-prose" in body["error"]["message"]


# --- json_schema: checked ------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
async def test_strict_schema_content_that_fits(
    server: Any, openapi: Validate, stream: bool
) -> None:
    status, body = await post(
        server.base_url,
        messages=user("content that fits"),
        response_format=json_schema_format(PERSON),
        stream=stream,
    )
    validated(status, body, openapi)
    assert status == 200
    content = streamed_content(body) if stream else body["choices"][0]["message"]["content"]
    assert json.loads(content) == {"name": "Ada", "age": 36}


@pytest.mark.parametrize("stream", [False, True])
async def test_strict_schema_content_that_breaks_is_a_500(
    server: Any, openapi: Validate, stream: bool
) -> None:
    status, body = await post(
        server.base_url,
        messages=user("content that breaks"),
        response_format=json_schema_format(PERSON),
        stream=stream,
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "person-breaks", "strict json_schema", "age")


async def test_non_strict_schema_is_not_enforced_but_json_is(
    server: Any, openapi: Validate
) -> None:
    status, body = await post(
        server.base_url,
        messages=user("content that breaks"),
        response_format=json_schema_format(PERSON, strict=False),
    )
    validated(status, body, openapi)
    assert status == 200
    assert json.loads(body["choices"][0]["message"]["content"])["age"] == "thirty-six"

    status, body = await post(
        server.base_url,
        messages=user("prose please"),
        response_format=json_schema_format(PERSON, strict=False),
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "person-prose", "not valid JSON")


# --- json_schema: synthesised --------------------------------------------------------------

SCHEMAS = {
    "nested-objects": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 12},
                    "active": {"type": "boolean"},
                    "address": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "maxLength": 3},
                            "geo": {
                                "type": "object",
                                "properties": {
                                    "lat": {"type": "number"},
                                    "lon": {"type": "number"},
                                },
                                "required": ["lat", "lon"],
                                "additionalProperties": False,
                            },
                        },
                        "required": ["city", "geo"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "active", "address"],
                "additionalProperties": False,
            }
        },
        "required": ["user"],
        "additionalProperties": False,
    },
    "arrays-min-items": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
                "minItems": 2,
            },
            "anything": {"type": "array"},
        },
        "required": ["tags", "matrix", "anything"],
        "additionalProperties": False,
    },
    "enums": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
            "level": {"type": "integer", "enum": [3, 5, 8]},
            "flags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2},
        },
        "required": ["color", "size", "level", "flags"],
        "additionalProperties": False,
    },
    "const": {
        "type": "object",
        "properties": {
            "kind": {"const": "event"},
            "version": {"const": 2},
            "meta": {"const": {"source": "foxmock", "tags": ["x"]}},
        },
        "required": ["kind", "version", "meta"],
        "additionalProperties": False,
    },
    "integer-bounds": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 18, "maximum": 120},
            "below_zero": {"type": "integer", "maximum": -5},
            "score": {"type": "number", "minimum": 0.5, "maximum": 1},
            "step": {"type": "integer", "minimum": 1, "multipleOf": 5},
            "tiny": {"type": "integer", "minimum": 0, "maximum": 0},
        },
        "required": ["age", "below_zero", "score", "step", "tiny"],
        "additionalProperties": False,
    },
    "string-formats": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "email": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"},
            "ip": {"type": "string", "format": "ipv4"},
            "home": {"type": "string", "format": "uri"},
        },
        "required": ["day", "email", "id", "at", "ip", "home"],
        "additionalProperties": False,
    },
    "any-of-null": {
        "type": "object",
        "properties": {
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "when": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
            "count": {"type": ["integer", "null"], "minimum": 3},
            "nothing": {"type": "null"},
        },
        "required": ["note", "when", "count", "nothing"],
        "additionalProperties": False,
    },
    "ref-into-defs": {
        "type": "object",
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "format": "uuid"},
                    "qty": {"type": "integer", "minimum": 1},
                    "dimensions": {"$ref": "#/$defs/Size"},
                },
                "required": ["sku", "qty", "dimensions"],
                "additionalProperties": False,
            },
            "Size": {
                "type": "object",
                "properties": {"w": {"type": "number"}, "h": {"type": "number"}},
                "required": ["w", "h"],
                "additionalProperties": False,
            },
        },
        "properties": {
            "main": {"$ref": "#/$defs/Item"},
            "others": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2},
            "maybe": {"anyOf": [{"$ref": "#/$defs/Size"}, {"type": "null"}]},
        },
        "required": ["main", "others", "maybe"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", list(SCHEMAS))
async def test_synthesised_content_fits_the_schema(
    server: Any, openapi: Validate, name: str
) -> None:
    schema = SCHEMAS[name]
    request = {
        "messages": user(f"give me {name}"),
        "response_format": json_schema_format(copy.deepcopy(schema)),
    }
    status, body = await post(server.base_url, **request)
    validated(status, body, openapi)
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "stop"
    value = json.loads(message["content"])
    assert_valid(value, schema)

    status, again = await post(server.base_url, **request)
    validated(status, again, openapi)
    assert again["choices"][0]["message"]["content"] == message["content"], "deterministic"

    status, chunks = await post(server.base_url, stream=True, **request)
    validated(status, chunks, openapi)
    assert streamed_content(chunks) == message["content"]


async def test_synthesis_is_the_same_on_another_server(
    server: Any, start_server: Any, openapi: Validate
) -> None:
    other = await start_server(SCENARIOS, time_scale=0, seed=99)
    request = {
        "messages": user("anything"),
        "response_format": json_schema_format(SCHEMAS["ref-into-defs"]),
    }
    contents = []
    for srv in (server, other):
        status, body = await post(srv.base_url, **request)
        validated(status, body, openapi)
        contents.append(body["choices"][0]["message"]["content"])
    assert contents[0] == contents[1]


async def test_synthesised_values_follow_the_documented_rules(
    server: Any, openapi: Validate
) -> None:
    """README: const, first enum, formats, bounds, array sizes, first non-null branch."""
    results = {}
    for name in ("enums", "const", "integer-bounds", "string-formats", "any-of-null"):
        status, body = await post(
            server.base_url,
            messages=user(name),
            response_format=json_schema_format(SCHEMAS[name]),
        )
        validated(status, body, openapi)
        results[name] = json.loads(body["choices"][0]["message"]["content"])
    assert results["enums"] == {"color": "red", "size": "S", "level": 3, "flags": ["a", "a"]}
    assert results["const"] == {
        "kind": "event",
        "version": 2,
        "meta": {"source": "foxmock", "tags": ["x"]},
    }
    assert results["integer-bounds"] == {
        "age": 18,
        "below_zero": -5,
        "score": 0.5,
        "step": 5,
        "tiny": 0,
    }
    formats = results["string-formats"]
    assert formats["day"] == "2025-01-01"
    assert formats["email"] == "user@example.com"
    assert formats["id"] == "00000000-0000-4000-8000-000000000000"
    assert results["any-of-null"]["note"] is not None
    assert results["any-of-null"]["when"] == "2025-01-01"
    assert results["any-of-null"]["count"] == 3
    assert results["any-of-null"]["nothing"] is None


async def test_synthesis_honours_exclusive_bounds(server: Any, openapi: Validate) -> None:
    """``exclusiveMaximum: 0`` means a negative number; 0 itself is not allowed."""
    schema = {
        "type": "object",
        "properties": {
            "negative": {"type": "integer", "exclusiveMaximum": 0},
            "positive": {"type": "number", "exclusiveMinimum": 0},
            "below_ten": {"type": "integer", "minimum": 10, "exclusiveMaximum": 11},
        },
        "required": ["negative", "positive", "below_ten"],
        "additionalProperties": False,
    }
    status, body = await post(
        server.base_url, messages=user("bounds"), response_format=json_schema_format(schema)
    )
    validated(status, body, openapi)
    assert status == 200, body["error"]["message"] if status != 200 else body
    assert_valid(json.loads(body["choices"][0]["message"]["content"]), schema)


async def test_unsatisfiable_synthesis_is_a_500(server: Any, openapi: Validate) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[0-9]{4}$"}},
        "required": ["code"],
        "additionalProperties": False,
    }
    status, body = await post(
        server.base_url, messages=user("a code"), response_format=json_schema_format(schema)
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "any-json-schema", "synthesise")


# --- the SDK's parse helper -----------------------------------------------------------------


class Address(BaseModel):
    street: str
    city: str


class Contact(BaseModel):
    name: str
    email: str
    birthday: datetime.date
    status: Literal["active", "inactive"]
    tags: list[str]
    address: Address
    nickname: str | None
    score: int


def test_parse_with_a_pydantic_model(client: openai.OpenAI, openapi: Validate) -> None:
    messages = user("extract the contact")
    raw = client.chat.completions.with_raw_response.parse(
        model=MODEL, messages=messages, response_format=Contact
    )
    body = json.loads(raw.text)
    openapi("CreateChatCompletionResponse", body)
    completion = raw.parse()
    contact = completion.choices[0].message.parsed
    assert isinstance(contact, Contact)
    assert isinstance(contact.address, Address)
    assert contact.status == "active"
    assert contact.birthday == datetime.date(2025, 1, 1)
    assert contact.nickname is not None
    assert contact == Contact.model_validate_json(body["choices"][0]["message"]["content"])


async def test_async_parse_with_content_from_the_scenario(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    class Person(BaseModel):
        name: str
        age: int

    raw = await aclient.chat.completions.with_raw_response.parse(
        model=MODEL, messages=user("content that fits"), response_format=Person
    )
    openapi("CreateChatCompletionResponse", json.loads(raw.text))
    completion = raw.parse()
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)


async def test_async_stream_helper_with_a_pydantic_model(
    aclient: openai.AsyncOpenAI, openapi: Validate
) -> None:
    chunks = []
    async with aclient.chat.completions.stream(
        model=MODEL, messages=user("extract the contact"), response_format=Contact
    ) as stream:
        async for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk.to_dict())
        final = await stream.get_final_completion()
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, Contact)
    assert parsed.address.city == "city"


# --- tool arguments ------------------------------------------------------------------------

TICKET_PARAMETERS = {
    "type": "object",
    "$defs": {
        "Person": {
            "type": "object",
            "properties": {
                "login": {"type": "string", "minLength": 3, "maxLength": 8},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["login", "email"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "title": {"type": "string", "minLength": 10},
        "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "due": {"type": "string", "format": "date"},
        "estimate_hours": {"type": "integer", "minimum": 1, "maximum": 40},
        "assignee": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Person"}]},
        "ticket_id": {"type": "string", "format": "uuid"},
    },
    "required": ["title", "priority", "labels", "due", "estimate_hours", "assignee", "ticket_id"],
    "additionalProperties": False,
}

ALARM_PARAMETERS = {
    "type": "object",
    "properties": {
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "label": {"type": "string"},
    },
    "required": ["hour", "label"],
    "additionalProperties": False,
}


def tool(name: str, parameters: dict[str, Any], strict: bool | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if strict is not None:
        function["strict"] = strict
    return {"type": "function", "function": function}


@pytest.mark.parametrize("strict", [None, True])
async def test_tool_arguments_are_synthesised_from_parameters(
    server: Any, openapi: Validate, strict: bool | None
) -> None:
    request = {
        "messages": user("open a ticket"),
        "tools": [tool("create_ticket", copy.deepcopy(TICKET_PARAMETERS), strict)],
    }
    status, body = await post(server.base_url, **request)
    validated(status, body, openapi)
    assert status == 200, body
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "create_ticket"
    arguments = json.loads(call["function"]["arguments"])
    assert_valid(arguments, TICKET_PARAMETERS)
    assert arguments["assignee"] is not None, "anyOf takes the first non-null branch"
    assert body["choices"][0]["finish_reason"] == "tool_calls"

    status, chunks = await post(server.base_url, stream=True, **request)
    validated(status, chunks, openapi)
    fragments = [
        tc["function"]["arguments"]
        for c in chunks
        for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert "".join(fragments) == call["function"]["arguments"]
    assert all(len(f) <= 5 for f in fragments), "stream: {by: characters, size: 5}"


async def test_tool_with_no_parameters_gets_empty_arguments(server: Any, openapi: Validate) -> None:
    status, body = await post(
        server.base_url,
        messages=user("open a ticket"),
        tools=[{"type": "function", "function": {"name": "create_ticket"}}],
    )
    validated(status, body, openapi)
    assert status == 200, body
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize("stream", [False, True])
async def test_strict_tool_arguments_that_break_the_schema_are_a_500(
    server: Any, openapi: Validate, stream: bool
) -> None:
    status, body = await post(
        server.base_url,
        messages=user("alarm at 25"),
        tools=[tool("set_alarm", ALARM_PARAMETERS, strict=True)],
        stream=stream,
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "alarm-out-of-range", "set_alarm", "strict", "25")


async def test_non_strict_tool_arguments_are_not_checked(server: Any, openapi: Validate) -> None:
    for strict in (None, False):
        status, body = await post(
            server.base_url,
            messages=user("alarm at 25"),
            tools=[tool("set_alarm", ALARM_PARAMETERS, strict=strict)],
        )
        validated(status, body, openapi)
        assert status == 200, body
        arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(arguments) == {"hour": 25, "label": "wake up"}


async def test_strict_tool_arguments_that_fit(server: Any, openapi: Validate) -> None:
    status, body = await post(
        server.base_url,
        messages=user("alarm at 7"),
        tools=[tool("set_alarm", ALARM_PARAMETERS, strict=True)],
    )
    validated(status, body, openapi)
    assert status == 200, body
    arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert_valid(json.loads(arguments), ALARM_PARAMETERS)


async def test_tool_arguments_that_are_not_json_are_a_500(server: Any, openapi: Validate) -> None:
    status, body = await post(
        server.base_url,
        messages=user("alarm garbled"),
        tools=[tool("set_alarm", ALARM_PARAMETERS)],
    )
    validated(status, body, openapi)
    assert_render_error(status, body, "alarm-not-json", "not valid JSON")


class Meeting(BaseModel):
    title: str
    day: datetime.date
    attendees: list[str]
    room: Literal["north", "south"] | None


def test_parse_tool_call_with_a_pydantic_tool(client: openai.OpenAI, openapi: Validate) -> None:
    raw = client.chat.completions.with_raw_response.parse(
        model=MODEL,
        messages=user("book a meeting"),
        tools=[openai.pydantic_function_tool(Meeting)],
    )
    openapi("CreateChatCompletionResponse", json.loads(raw.text))
    completion = raw.parse()
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "Meeting"
    meeting = call.function.parsed_arguments
    assert isinstance(meeting, Meeting)
    assert meeting.day == datetime.date(2025, 1, 1)
    assert meeting.room == "north"
    assert len(meeting.attendees) == 1
