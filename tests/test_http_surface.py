"""The HTTP surface through the official ``openai`` SDK, sync and async, against a live server.

Bodies are validated as they came off the wire (``with_raw_response`` + ``http_response.json()``),
not as the SDK's lenient models see them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support import write_scenarios

Validate = Callable[[str, Any], None]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
README_MESSAGES = [SYSTEM, {"role": "user", "content": "Summarise SOLID in one paragraph."}]
SOLID_START = "SOLID is a set of five object-oriented design principles"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION = {"role": "user", "content": "What is the weather in Berlin?"}

INLINE = """\
version: 1
models: [foxora-test]
scenarios:
  - name: greeting
    match:
      model: foxora-test
      last_user: {contains: hello, ignore_case: true}
    respond:
      content: "Hello from the inline file."
  - name: broken-undefined
    match:
      last_user: {contains: undefined}
    respond:
      content: "{{ undefined_name }}"
  - name: broken-tool-result
    match:
      last_user: {contains: deeper}
    respond:
      content: "{{ tool_result('x').missing.deeper }}"
"""


# -- helpers -----------------------------------------------------------------------------------


def sync_client(srv: Any, api_key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=api_key, max_retries=0)


def async_client(srv: Any, api_key: str = "anything") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key=api_key, max_retries=0)


def wire_completion(raw: Any, openapi: Validate) -> tuple[dict[str, Any], Any]:
    """The wire body of a raw chat response, validated, and the SDK's parsed object."""
    body = raw.http_response.json()
    openapi("CreateChatCompletionResponse", body)
    return body, raw.parse()


def chat(client: openai.OpenAI, openapi: Validate, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    kwargs.setdefault("model", "foxora-1")
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    return wire_completion(raw, openapi)


async def achat(
    client: openai.AsyncOpenAI, openapi: Validate, **kwargs: Any
) -> tuple[dict[str, Any], Any]:
    kwargs.setdefault("model", "foxora-1")
    raw = await client.chat.completions.with_raw_response.create(**kwargs)
    return wire_completion(raw, openapi)


def error_of(exc: openai.APIStatusError, openapi: Validate) -> dict[str, Any]:
    """The wire envelope of an SDK error, validated; returns ``error``."""
    payload = exc.response.json()
    assert "Traceback" not in exc.response.text
    openapi("ErrorResponse", payload)
    return payload["error"]


def check_completion(body: dict[str, Any], model: str) -> None:
    """What every chat.completion must carry, beyond the schema."""
    assert body["id"].startswith("cmpl_")
    assert body["object"] == "chat.completion"
    assert body["model"] == model
    assert body["system_fingerprint"]
    assert isinstance(body["created"], int)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for i, choice in enumerate(body["choices"]):
        assert choice["index"] == i


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- the README request ------------------------------------------------------------------------


def test_readme_request_sync(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    body, completion = chat(client, openapi, messages=README_MESSAGES)
    check_completion(body, "foxora-1")
    assert body["choices"][0]["message"]["content"].startswith(SOLID_START)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert completion.choices[0].message.content == body["choices"][0]["message"]["content"]
    assert completion.id == body["id"]


async def test_readme_request_async(start_server, openapi) -> None:
    client = async_client(await start_server())
    body, completion = await achat(client, openapi, messages=README_MESSAGES)
    check_completion(body, "foxora-1")
    assert completion.choices[0].message.content.startswith(SOLID_START)
    assert completion.choices[0].message.role == "assistant"


def test_plain_create_returns_the_sdk_object(thread_server, openapi) -> None:
    """Without with_raw_response the SDK parses the same body."""
    client = sync_client(thread_server())
    completion = client.chat.completions.create(model="foxora-1", messages=README_MESSAGES)
    openapi("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
    assert completion.choices[0].message.content.startswith(SOLID_START)


async def test_usage_is_deterministic(start_server, openapi) -> None:
    client = async_client(await start_server())
    first, _ = await achat(client, openapi, messages=README_MESSAGES)
    second, _ = await achat(client, openapi, messages=README_MESSAGES)
    assert first["usage"] == second["usage"]
    assert first["choices"] == second["choices"]
    longer, _ = await achat(
        client, openapi, messages=[*README_MESSAGES[:1], {"role": "user", "content": "x " * 50}]
    )
    assert longer["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]


def test_ids_are_unique(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    ids = {chat(client, openapi, messages=README_MESSAGES)[0]["id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("model", ["foxora-1", "foxora-1-mini", "some-other-model"])
async def test_model_is_echoed(start_server, openapi, model: str) -> None:
    client = async_client(await start_server())
    body, _ = await achat(client, openapi, model=model, messages=README_MESSAGES)
    check_completion(body, model)


async def test_n_gives_that_many_choices(start_server, openapi) -> None:
    client = async_client(await start_server())
    one, _ = await achat(client, openapi, messages=README_MESSAGES)
    two, completion = await achat(client, openapi, messages=README_MESSAGES, n=2)
    check_completion(two, "foxora-1")
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert len(completion.choices) == 2
    for choice in two["choices"]:
        assert choice["message"]["content"].startswith(SOLID_START)
    # usage counts every choice's tokens, and the prompt once
    assert two["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    assert two["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]


def test_echo_fallback(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    body, _ = chat(client, openapi, messages=[{"role": "user", "content": "Ping 42"}])
    assert body["choices"][0]["message"]["content"] == "You said: Ping 42"


# -- inline scenario files ---------------------------------------------------------------------


def test_inline_scenarios_sync(thread_server, openapi) -> None:
    srv = thread_server(INLINE)
    client = sync_client(srv)
    body, _ = chat(
        client, openapi, model="foxora-test", messages=[{"role": "user", "content": "Hello!"}]
    )
    check_completion(body, "foxora-test")
    assert body["choices"][0]["message"]["content"] == "Hello from the inline file."
    listed = client.models.with_raw_response.list().http_response.json()
    openapi("ListModelsResponse", listed)
    assert [m["id"] for m in listed["data"]] == ["foxora-test"]


async def test_inline_scenarios_no_match_is_a_404_envelope(start_server, openapi) -> None:
    client = async_client(await start_server(INLINE))
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": "Hello!"}]
        )
    error = error_of(info.value, openapi)
    assert error["code"] == "no_scenario_matched"
    assert "greeting" in error["message"]  # the near miss is named


# -- models and health -------------------------------------------------------------------------


def test_models_list_and_retrieve_sync(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    raw = client.models.with_raw_response.list()
    listed = raw.http_response.json()
    openapi("ListModelsResponse", listed)
    ids = [m["id"] for m in listed["data"]]
    assert ids[:2] == ["foxora-1", "foxora-1-mini"]
    assert [m.id for m in raw.parse()] == ids
    for model_id in ids:
        model = client.models.with_raw_response.retrieve(model_id).http_response.json()
        openapi("Model", model)
        assert model["id"] == model_id
        assert model["object"] == "model"


async def test_models_retrieve_async(start_server, openapi) -> None:
    client = async_client(await start_server())
    raw = await client.models.with_raw_response.retrieve("foxora-1")
    model = raw.http_response.json()
    openapi("Model", model)
    assert model["id"] == "foxora-1"
    assert raw.parse().owned_by == model["owned_by"]
    listed = (await client.models.with_raw_response.list()).http_response.json()
    openapi("ListModelsResponse", listed)
    assert "foxora-1-mini" in [m["id"] for m in listed["data"]]


def test_unknown_model_is_not_found(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-nonexistent")
    assert info.value.status_code == 404
    error = error_of(info.value, openapi)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-nonexistent" in error["message"]


async def test_healthz(start_server) -> None:
    srv = await start_server()
    async with aiohttp.ClientSession() as session, session.get(srv.url + "/healthz") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        health = await resp.json()
    assert health["status"] == "ok"
    assert isinstance(health["scenarios"], int)
    assert health["scenarios"] >= 7  # the bundled set


# -- API keys ----------------------------------------------------------------------------------

KEYS = ["sk-test-1", "sk-test-2"]


@pytest.mark.parametrize("key", KEYS)
async def test_configured_key_works(start_server, openapi, key: str) -> None:
    client = async_client(await start_server(api_keys=KEYS), api_key=key)
    body, _ = await achat(client, openapi, messages=README_MESSAGES)
    assert body["choices"][0]["message"]["content"].startswith(SOLID_START)
    openapi(
        "ListModelsResponse", (await client.models.with_raw_response.list()).http_response.json()
    )


async def test_wrong_key_is_rejected(start_server, openapi) -> None:
    client = async_client(await start_server(api_keys=KEYS), api_key="sk-test-3")
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="foxora-1", messages=README_MESSAGES)
    assert info.value.status_code == 401
    error = error_of(info.value, openapi)
    assert error["code"] == "invalid_api_key"
    assert "sk-test-3" not in error["message"]  # the key is masked
    with pytest.raises(openai.AuthenticationError) as info:
        await client.models.list()
    assert error_of(info.value, openapi)["code"] == "invalid_api_key"


def test_wrong_key_is_rejected_sync(thread_server, openapi) -> None:
    client = sync_client(thread_server(api_keys=KEYS), api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="foxora-1", messages=README_MESSAGES)
    assert error_of(info.value, openapi)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("", "missing_api_key"),
        ("Bearer", "invalid_api_key"),
        ("Basic sk-test-1", "invalid_api_key"),
        ("Bearer sk-test-10", "invalid_api_key"),
    ],
    ids=["absent", "empty", "bearer-without-key", "basic-scheme", "key-prefix"],
)
@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions"])
async def test_missing_or_malformed_authorization(
    start_server, openapi, authorization: str | None, code: str, path: str
) -> None:
    srv = await start_server(api_keys=KEYS)
    headers = {} if authorization is None else {"Authorization": authorization}
    method = "POST" if path.endswith("completions") else "GET"
    request = {"model": "foxora-1", "messages": README_MESSAGES}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, srv.url + path, json=request, headers=headers) as resp,
    ):
        text = await resp.text()
        assert resp.status == 401, text
    assert "Traceback" not in text
    payload = json.loads(text)
    openapi("ErrorResponse", payload)
    assert payload["error"]["code"] == code


async def test_healthz_needs_no_key(start_server) -> None:
    srv = await start_server(api_keys=KEYS)
    async with aiohttp.ClientSession() as session, session.get(srv.url + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


# -- the bundled tool-call demo ----------------------------------------------------------------


def test_tool_call_round_trip_sync(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    body, completion = chat(client, openapi, messages=[WEATHER_QUESTION], tools=[WEATHER_TOOL])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Berlin"}
    assert call["id"]
    assert completion.choices[0].message.tool_calls[0].id == call["id"]

    follow_up = [
        WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": call["id"],
            "content": json.dumps({"city": "Berlin", "temp_c": 21}),
        },
    ]
    answer, _ = chat(client, openapi, messages=follow_up, tools=[WEATHER_TOOL])
    check_completion(answer, "foxora-1")
    assert answer["choices"][0]["finish_reason"] == "stop"
    content = answer["choices"][0]["message"]["content"]
    assert "21" in content
    assert "Berlin" in content


async def test_tool_call_round_trip_async(start_server, openapi) -> None:
    client = async_client(await start_server())
    _, first = await achat(client, openapi, messages=[WEATHER_QUESTION], tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Berlin"}
    follow_up = [
        WEATHER_QUESTION,
        message.model_dump(exclude_unset=True, exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": message.tool_calls[0].id,
            "content": '{"city":"Berlin","temp_c":21}',
        },
    ]
    answer, _ = await achat(client, openapi, messages=follow_up, tools=[WEATHER_TOOL])
    assert "21" in answer["choices"][0]["message"]["content"]


# -- the bundled rate-limit demo ---------------------------------------------------------------


def test_rate_limit_demo_sync(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="foxora-1",
            messages=README_MESSAGES,
            extra_headers={"x-foxmock-fault": "rate-limit"},
        )
    assert info.value.status_code == 429
    assert float(info.value.response.headers["Retry-After"]) == 2
    error = error_of(info.value, openapi)
    assert error["code"] == "rate_limit_exceeded"
    # without the header the same request is answered
    body, _ = chat(client, openapi, messages=README_MESSAGES)
    assert body["choices"][0]["message"]["content"].startswith(SOLID_START)


async def test_rate_limit_demo_async_by_phrase(start_server, openapi) -> None:
    client = async_client(await start_server())
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": "Please trigger a rate limit"}]
        )
    assert "retry-after" in info.value.response.headers
    assert error_of(info.value, openapi)["code"] == "rate_limit_exceeded"


# -- JSON mode ---------------------------------------------------------------------------------


def test_json_object_content_parses(thread_server, openapi) -> None:
    client = sync_client(thread_server())
    body, _ = chat(
        client,
        openapi,
        messages=[{"role": "user", "content": "reply in json"}],
        response_format={"type": "json_object"},
    )
    value = json.loads(body["choices"][0]["message"]["content"])
    assert value == {"echo": "reply in json", "model": "foxora-1"}


async def test_json_schema_content_follows_the_schema(start_server, openapi) -> None:
    client = async_client(await start_server())
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    body, _ = await achat(
        client,
        openapi,
        messages=[{"role": "user", "content": "A person, please."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    value = json.loads(body["choices"][0]["message"]["content"])
    assert set(value) == {"name", "age"}
    assert isinstance(value["name"], str)
    assert isinstance(value["age"], int)


# -- render-time template failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "prompt"),
    [("broken-undefined", "undefined please"), ("broken-tool-result", "go deeper")],
)
async def test_render_error_is_a_500_envelope(
    start_server, openapi, tmp_path: Path, scenario: str, prompt: str
) -> None:
    path = write_scenarios(tmp_path, INLINE, "render-errors.yaml")
    client = async_client(await start_server(scenarios=[path]))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="foxora-test", messages=[{"role": "user", "content": prompt}]
        )
    assert info.value.status_code == 500
    error = error_of(info.value, openapi)
    assert error["code"] == "scenario_render_error"
    assert error["type"] == "server_error"
    assert scenario in error["message"]
    assert f"{path.name}:{line_of(INLINE, f'name: {scenario}')}" in error["message"]
    # the server is fine afterwards
    body, _ = await achat(
        client, openapi, model="foxora-test", messages=[{"role": "user", "content": "hello"}]
    )
    assert body["choices"][0]["message"]["content"] == "Hello from the inline file."


def test_render_error_sync(thread_server, openapi, tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, INLINE, "render-errors.yaml")
    client = sync_client(thread_server(scenarios=[path]))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="foxora-test", messages=[{"role": "user", "content": "undefined"}]
        )
    message = error_of(info.value, openapi)["message"]
    assert "broken-undefined" in message
    assert "undefined_name" in message
    assert f"render-errors.yaml:{line_of(INLINE, 'name: broken-undefined')}" in message
    body, _ = chat(
        client, openapi, model="foxora-test", messages=[{"role": "user", "content": "HELLO"}]
    )
    assert body["choices"][0]["message"]["content"] == "Hello from the inline file."


# -- bad input through the SDK -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"n": 0}, "n"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        ({"extra_body": {"temprature": 1}}, "temprature"),
    ],
)
def test_sdk_sees_bad_request_errors(
    thread_server, openapi, kwargs: dict[str, Any], param: str
) -> None:
    client = sync_client(thread_server())
    request: dict[str, Any] = {"model": "foxora-1", "messages": README_MESSAGES, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**request)
    assert info.value.param == param
    assert error_of(info.value, openapi)["param"] == param
