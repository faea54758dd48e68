"""`foxmock.testing.MockServer`: in-process servers for test suites, driven by the real SDK.

Covers both ways to run it (``with`` on a background thread, ``async with`` on the running
loop), every way to give it scenarios (paths, YAML text, dicts), run-time changes (add, replace,
remove, clear, reset), the journal API and its bound, and its addresses.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

import foxmock
from foxmock.testing import MockServer

SOLID_PROMPT = "Summarise SOLID in one paragraph."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

PING_YAML = """\
version: 1
scenarios:
  - name: ping
    match:
      last_user: ping
    respond:
      content: pong
"""

Validate = Callable[[str, Any], None]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def client_for(server: MockServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)


def chat(client: openai.OpenAI, openapi: Validate, text: str, **kwargs: Any) -> Any:
    """One non-streamed completion; the raw body is validated against the OpenAPI schema."""
    kwargs.setdefault("messages", user(text))
    raw = client.chat.completions.with_raw_response.create(model="foxora-1", **kwargs)
    openapi("CreateChatCompletionResponse", raw.http_response.json())
    return raw.parse()


def answer(client: openai.OpenAI, openapi: Validate, text: str, **kwargs: Any) -> str | None:
    return chat(client, openapi, text, **kwargs).choices[0].message.content  # type: ignore[no-any-return]


def no_match(client: openai.OpenAI, openapi: Validate, text: str) -> openai.NotFoundError:
    """Send a request that must match nothing; return the SDK's error (body validated)."""
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="foxora-1", messages=user(text))
    envelope = info.value.response.json()
    openapi("ErrorResponse", envelope)
    assert envelope["error"]["code"] == "no_scenario_matched"
    return info.value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- running it -------------------------------------------------------------------------------


def test_sync_context_manager_serves_bundled_defaults(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        content = answer(client, openapi, SOLID_PROMPT)
        assert content is not None and content.startswith("SOLID is a set of five")
        assert answer(client, openapi, "Hello there") == "You said: Hello there"
        assert server.journal.count("solid-summary") == 1
        assert server.journal.count("echo") == 1


def test_sync_stream_chunks_are_valid(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        stream = client.chat.completions.create(
            model="foxora-1", messages=user(SOLID_PROMPT), stream=True
        )
        parts = []
        for chunk in stream:
            openapi("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        assert "".join(parts) == server.journal.last().content
        assert server.journal.last().stream is True


def test_server_stops_and_releases_its_port(openapi: Validate) -> None:
    server = MockServer(yaml=PING_YAML)
    with server:
        port = server.port
        assert answer(client_for(server), openapi, "ping") == "pong"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "port still accepting after exit"


async def test_async_context_manager(openapi: Validate) -> None:
    async with MockServer(yaml=PING_YAML) as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0
        ) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="foxora-1", messages=user("ping")
            )
            openapi("CreateChatCompletionResponse", raw.http_response.json())
            assert raw.parse().choices[0].message.content == "pong"

            stream = await client.chat.completions.create(
                model="foxora-1", messages=user("ping"), stream=True
            )
            text = ""
            async for chunk in stream:
                openapi("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
            assert text == "pong"
        server.journal.assert_called("ping", times=2)


def test_addresses_and_port() -> None:
    with MockServer() as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        models = client_for(server).models.list()
        assert {m.id for m in models.data} >= {"foxora-1", "foxora-1-mini"}


def test_starts_on_a_given_free_port(openapi: Validate) -> None:
    port = free_port()
    with MockServer(yaml=PING_YAML, port=port) as server:
        assert server.port == port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert answer(client_for(server), openapi, "ping") == "pong"


def test_port_in_use_raises_on_start() -> None:
    with MockServer() as first, pytest.raises(OSError):
        MockServer(port=first.port).__enter__()


def test_startup_time_is_reported() -> None:
    server = MockServer()
    started = time.perf_counter()
    server.__enter__()
    elapsed = time.perf_counter() - started
    try:
        print(f"MockServer.__enter__ took {elapsed * 1000:.1f} ms")
    finally:
        server.__exit__(None, None, None)


# --- where scenarios come from --------------------------------------------------------------------


def test_scenarios_from_paths(tmp_path: Path, openapi: Validate) -> None:
    file_a = tmp_path / "a.yaml"
    file_a.write_text(PING_YAML, "utf-8")
    directory = tmp_path / "more"
    directory.mkdir()
    (directory / "b.yaml").write_text(
        "version: 1\nscenarios:\n  - name: hello\n    match: {last_user: hi}\n"
        "    respond: {content: hello from a directory}\n",
        "utf-8",
    )
    with MockServer([file_a, str(directory)]) as server:
        client = client_for(server)
        assert answer(client, openapi, "ping") == "pong"
        assert answer(client, openapi, "hi") == "hello from a directory"
        assert [s.name for s in server.state.scenarios.scenarios] == ["ping", "hello"]
        # only the given files: the bundled defaults are not served
        no_match(client, openapi, SOLID_PROMPT)


def test_scenarios_from_yaml_text_replace_the_defaults(openapi: Validate) -> None:
    with MockServer(yaml=PING_YAML) as server:
        client = client_for(server)
        assert answer(client, openapi, "ping") == "pong"
        error = no_match(client, openapi, "Hello")
        assert "ping" in str(error)


def test_scenarios_from_a_single_dict(openapi: Validate) -> None:
    data = {"name": "one", "match": {"last_user": {"contains": "one"}}, "respond": {"content": "1"}}
    with MockServer(data=data) as server:
        client = client_for(server)
        assert answer(client, openapi, "say one") == "1"
        no_match(client, openapi, "two")


def test_scenarios_from_a_list_of_dicts(openapi: Validate) -> None:
    data = [
        {"name": "one", "match": {"last_user": "one"}, "respond": {"content": "1"}},
        {"name": "two", "match": {"last_user": "two"}, "respond": {"content": "2"}},
        {
            "name": "tool",
            "match": {"last_user": "tool"},
            "respond": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        },
    ]
    with MockServer(data=data) as server:
        client = client_for(server)
        assert answer(client, openapi, "one") == "1"
        assert answer(client, openapi, "two") == "2"
        completion = chat(client, openapi, "tool", tools=[WEATHER_TOOL])
        call = completion.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        assert completion.choices[0].finish_reason == "tool_calls"


def test_yaml_and_data_together_and_reset_keeps_them(openapi: Validate) -> None:
    data = {"name": "from-data", "match": {"last_user": "data"}, "respond": {"content": "D"}}
    with MockServer(yaml=PING_YAML, data=data) as server:
        client = client_for(server)
        assert answer(client, openapi, "ping") == "pong"
        assert answer(client, openapi, "data") == "D"
        server.clear()
        no_match(client, openapi, "ping")
        server.reset()
        assert answer(client, openapi, "ping") == "pong"
        assert answer(client, openapi, "data") == "D"


def test_invalid_constructor_scenarios_raise_scenario_error() -> None:
    with pytest.raises(foxmock.ScenarioError) as info:
        MockServer(yaml="version: 1\nscenarios:\n  - name: a\n    respond: {contnet: hi}\n")
    assert "contnet" in str(info.value)
    assert info.value.problems[0].line == 4


# --- run-time changes ---------------------------------------------------------------------------


def test_add_at_run_time(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        assert answer(client, openapi, "ping") == "You said: ping"
        assert server.add(PING_YAML) == ["ping"]
        assert answer(client, openapi, "ping") == "pong"
        names = server.add(
            [
                {"name": "d1", "match": {"last_user": "d1"}, "respond": {"content": "dict one"}},
                {"name": "d2", "match": {"last_user": "d2"}, "respond": {"content": "dict two"}},
            ]
        )
        assert names == ["d1", "d2"]
        assert answer(client, openapi, "d2") == "dict two"


def test_add_from_a_path_at_run_time(tmp_path: Path, openapi: Validate) -> None:
    path = tmp_path / "ping.yaml"
    path.write_text(PING_YAML, "utf-8")
    with MockServer() as server:
        assert server.add(path) == ["ping"]
        assert answer(client_for(server), openapi, "ping") == "pong"


def test_add_with_a_clashing_name_raises_unless_replace(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        clash = {"name": "echo", "priority": -100, "respond": {"content": "replaced echo"}}
        with pytest.raises(ValueError, match="echo"):
            server.add(clash)
        assert answer(client, openapi, "anything") == "You said: anything"
        assert server.add(clash, replace=True) == ["echo"]
        assert answer(client, openapi, "anything") == "replaced echo"
        assert [s.name for s in server.state.scenarios.scenarios].count("echo") == 1

        server.add(PING_YAML)
        with pytest.raises(ValueError, match="ping"):
            server.add(PING_YAML)
        server.add(PING_YAML.replace("pong", "PONG"), replace=True)
        assert answer(client, openapi, "ping") == "PONG"


def test_add_invalid_scenario_raises_scenario_error_naming_the_problem(
    openapi: Validate,
) -> None:
    with MockServer() as server:
        before = [s.name for s in server.state.scenarios.scenarios]
        with pytest.raises(foxmock.ScenarioError) as info:
            server.add({"name": "bad", "match": {"modle": "x"}, "respond": {"content": "hi"}})
        assert "modle" in str(info.value)
        assert info.value.problems[0].key == "scenarios[0].match.modle"

        with pytest.raises(foxmock.ScenarioError) as info:
            server.add(
                "version: 1\nscenarios:\n  - name: r\n    match:\n"
                "      last_user: {regex: '(unclosed'}\n    respond: {content: x}\n"
            )
        problem = info.value.problems[0]
        assert "regular expression" in problem.message
        assert problem.file == "<inline yaml>"
        assert problem.line == 5

        with pytest.raises(foxmock.ScenarioError, match="invalid YAML"):
            server.add("scenarios: [")
        # nothing half-added
        assert [s.name for s in server.state.scenarios.scenarios] == before
        assert answer(client_for(server), openapi, "hi") == "You said: hi"


def test_remove_clear_and_reset(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        server.add(PING_YAML)
        assert answer(client, openapi, "ping") == "pong"

        assert server.remove("ping") is True
        assert server.remove("ping") is False
        assert answer(client, openapi, "ping") == "You said: ping"

        assert server.remove("echo") is True  # a file scenario can be removed too
        error = no_match(client, openapi, "ping")
        assert "Nearest scenarios" in str(error)

        server.add(PING_YAML)
        server.clear()
        assert len(server.state.scenarios) == 0
        assert "No scenarios are loaded" in str(no_match(client, openapi, "ping"))

        assert len(server.journal) > 0
        server.reset()
        assert len(server.journal) == 0
        names = [s.name for s in server.state.scenarios.scenarios]
        assert "echo" in names and "solid-summary" in names
        assert "ping" not in names  # run-time additions are gone
        assert answer(client, openapi, "ping") == "You said: ping"


# --- the journal ---------------------------------------------------------------------------------


def test_journal_entries_count_last_and_unmatched(openapi: Validate) -> None:
    with MockServer(yaml=PING_YAML) as server:
        client = client_for(server)
        messages = [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "ping"},
        ]
        chat(client, openapi, "", messages=messages)
        chat(client, openapi, "ping")
        no_match(client, openapi, "nothing matches this")

        journal = server.journal
        assert len(journal) == 3 and journal.total == 3
        assert [e.id for e in journal.entries()] == [1, 2, 3]
        assert journal.count("ping") == 2
        assert journal.count() == 3
        assert [e.id for e in journal.entries(scenario="ping")] == [1, 2]
        assert [e.id for e in journal.entries(matched=True)] == [1, 2]

        first = journal.entries()[0]
        assert first.messages == messages
        assert first.status == 200 and first.content == "pong"
        assert first.finish_reason == "stop" and first.stream is False

        last = journal.last()
        assert last.messages == [{"role": "user", "content": "nothing matches this"}]
        assert last.matched is False and last.status == 404
        unmatched = journal.unmatched()
        assert [e.id for e in unmatched] == [3]
        assert unmatched[0].near_miss is not None
        assert "No foxmock scenario matched" in unmatched[0].near_miss
        assert "ping" in unmatched[0].near_miss
        assert last.to_json()["matched"] is False


def test_journal_last_on_empty_journal_is_an_assertion_error() -> None:
    with MockServer() as server, pytest.raises(AssertionError, match="no chat requests"):
        server.journal.last()


def test_journal_records_tool_results_of_an_agent_loop(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        messages: list[dict[str, Any]] = user("What is the weather in Berlin?")
        completion = chat(client, openapi, "", messages=messages, tools=[WEATHER_TOOL])
        message = completion.choices[0].message
        assert completion.choices[0].finish_reason == "tool_calls"
        call = message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Berlin"}
        assert not server.journal.called_with_tool_result("get_weather")

        messages.append(message.model_dump(exclude_none=True))
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": json.dumps({"city": "Berlin", "temp_c": 21, "conditions": "sunny"}),
            }
        )
        final = answer(client, openapi, "", messages=messages, tools=[WEATHER_TOOL])
        assert final is not None and "Berlin" in final and "21" in final

        journal = server.journal
        assert journal.called_with_tool_result("get_weather")
        assert not journal.called_with_tool_result("get_time")
        assert journal.entries()[0].tool_calls == ["get_weather"]
        assert journal.last().tool_results == ["get_weather"]
        journal.assert_called("weather-asks-tool", times=1)
        journal.assert_called("weather-answers")


def test_assert_called_raises_with_a_summary(openapi: Validate) -> None:
    with MockServer() as server:
        client = client_for(server)
        answer(client, openapi, SOLID_PROMPT)
        answer(client, openapi, "Hello")
        server.journal.assert_called("solid-summary")
        server.journal.assert_called("solid-summary", times=1)

        with pytest.raises(AssertionError) as info:
            server.journal.assert_called("solid-summary", times=2)
        text = str(info.value)
        assert "used 1 time(s), expected 2" in text
        assert "#1 200 solid-summary" in text and "#2 200 echo" in text
        assert "Summarise SOLID" in text

        with pytest.raises(AssertionError) as info:
            server.journal.assert_called("weather-answers")
        assert "'weather-answers' was never used" in str(info.value)
        assert "echo" in str(info.value)

    with MockServer() as empty, pytest.raises(AssertionError, match="no requests"):
        empty.journal.assert_called("echo")


def test_journal_is_bounded(openapi: Validate) -> None:
    with MockServer(journal_size=5) as server:
        client = client_for(server)
        for i in range(20):
            assert answer(client, openapi, f"message {i}") == f"You said: message {i}"
        journal = server.journal
        assert len(journal) == 5
        assert len(journal.entries()) == 5
        assert journal.total == 20
        assert journal.maxlen == 5
        assert [e.id for e in journal] == [16, 17, 18, 19, 20]
        assert journal.count("echo") == 5
        assert journal.last().messages == user("message 19")


def test_reset_empties_the_journal(openapi: Validate) -> None:
    with MockServer() as server:
        answer(client_for(server), openapi, "hi")
        assert server.journal.count() == 1
        server.reset()
        assert server.journal.count() == 0
        assert server.journal.unmatched() == []


def test_reload_rereads_files_and_keeps_serving_on_problems(
    tmp_path: Path, openapi: Validate
) -> None:
    path = tmp_path / "ping.yaml"
    path.write_text(PING_YAML, "utf-8")
    with MockServer([path]) as server:
        client = client_for(server)
        assert answer(client, openapi, "ping") == "pong"
        path.write_text(PING_YAML.replace("pong", "pong, reloaded"), "utf-8")
        assert answer(client, openapi, "ping") == "pong"
        server.reload()
        assert answer(client, openapi, "ping") == "pong, reloaded"

        path.write_text(PING_YAML.replace("respond:", "respnd:"), "utf-8")
        with pytest.raises(foxmock.ScenarioError) as info:
            server.reload()
        assert "respnd" in str(info.value)
        assert str(path) in str(info.value)
        assert answer(client, openapi, "ping") == "pong, reloaded"
        assert server.state.store.last_error == info.value.problems
