"""Matching through a live server and the official SDK: every matcher kind, precedence, near misses.

Each matcher case loads a file with a scenario ``hit`` (the match under test) and a catch-all
``fallback`` (priority -1), then proves one request that matches and at least one that does not.
Every 200 body is validated against OpenAI's ``CreateChatCompletionResponse``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.support import write_scenarios

# -- request building blocks ---------------------------------------------------------------------


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }


WEATHER, TIME, SEARCH = tool("get_weather"), tool("get_time"), tool("web_search")


def forced(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def tool_conversation(*names: str, result: str = '{"temp_c": 21}') -> list[dict[str, Any]]:
    """A user turn, an assistant turn calling each tool, and one ``tool`` message per call."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for i, n in enumerate(names)
    ]
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": result} for c in calls),
    ]


def turns(count: int, last: str = "and now?") -> list[dict[str, Any]]:
    """A conversation already holding ``count`` assistant messages."""
    messages: list[dict[str, Any]] = []
    for i in range(count):
        messages += [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    return [*messages, {"role": "user", "content": last}]


def parts(*texts: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}]


JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object"}},
}


def scenario_file(match: str) -> str:
    return f"""\
version: 1
scenarios:
  - name: hit
    match: {match}
    respond: {{content: '{{"scenario": "hit"}}'}}
  - name: fallback
    priority: -1
    respond: {{content: '{{"scenario": "fallback"}}'}}
"""


async def answer(srv: Any, openapi: Any, **request: Any) -> str:
    """Send one chat completion with the SDK; validate the raw body; return the content."""
    request.setdefault("model", "foxora-1")
    request.setdefault("messages", user("hello there"))
    async with AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(**request)
    assert raw.status_code == 200
    openapi("CreateChatCompletionResponse", json.loads(raw.text))
    content = raw.parse().choices[0].message.content
    assert content is not None
    return content


async def which(srv: Any, openapi: Any, **request: Any) -> str:
    """The name of the scenario that answered (every scenario here answers with its name)."""
    return str(json.loads(await answer(srv, openapi, **request))["scenario"])


# -- one case per matcher kind: (match, a matching request, requests that must not match) ------

CASES = [
    # model
    pytest.param(
        "{model: foxora-1}",
        {},
        [{"model": "foxora-1-mini"}, {"model": "Foxora-1"}],
        id="model-equals",
    ),
    pytest.param(
        '{model: {glob: "foxora-*-mini"}}',
        {"model": "foxora-2-mini"},
        [{"model": "foxora-2"}, {"model": "xfoxora-2-mini"}],
        id="model-glob",
    ),
    pytest.param(
        r'{model: {regex: "^gpt-4o(-mini)?$"}}',
        {"model": "gpt-4o-mini"},
        [{"model": "gpt-4o-2024"}, {"model": "foxora-1"}],
        id="model-regex",
    ),
    pytest.param(
        "{model: {equals: Foxora-1, ignore_case: true}}",
        {"model": "FOXORA-1"},
        [{"model": "foxora-10"}],
        id="model-ignore-case",
    ),
    # any_message / last_message
    pytest.param(
        "{any_message: {contains: invoice}}",
        {
            "messages": [
                {"role": "system", "content": "Invoices are handled by finance."},
                {"role": "user", "content": "Where is invoice 7?"},
                {"role": "assistant", "content": "Checking."},
                {"role": "user", "content": "Any news?"},
            ]
        },
        [{"messages": user("Where is my bill?")}],
        id="any-message",
    ),
    pytest.param(
        r'{last_message: {regex: "^\\d+$"}}',
        {
            "messages": [
                {"role": "user", "content": "Pick a number"},
                {"role": "assistant", "content": "42"},
            ]
        },
        [
            {
                "messages": [
                    {"role": "user", "content": "42"},
                    {"role": "assistant", "content": "Pick a number"},
                ]
            }
        ],
        id="last-message-any-role",
    ),
    # last_user with every text operator
    pytest.param(
        "{last_user: Hello}",
        {"messages": user("Hello")},
        [{"messages": user("Hello!")}, {"messages": user("hello")}],
        id="last-user-plain-string-equals",
    ),
    pytest.param(
        "{last_user: {equals: Hello}}",
        {"messages": [*user("Hello"), {"role": "assistant", "content": "Hi!"}]},
        [{"messages": [*user("Hello"), {"role": "assistant", "content": "Hi!"}, *user("Bye")]}],
        id="last-user-equals-skips-later-assistant",
    ),
    pytest.param(
        '{last_user: {equals: ["yes", "y", "sure"]}}',
        {"messages": user("sure")},
        [{"messages": user("nope")}, {"messages": user("Yes")}],
        id="last-user-equals-list",
    ),
    pytest.param(
        '{last_user: {equals: ["yes", "y", "sure"], ignore_case: true}}',
        {"messages": user("YES")},
        [{"messages": user("yess")}],
        id="last-user-equals-list-ignore-case",
    ),
    pytest.param(
        "{last_user: {contains: weather}}",
        {"messages": user("how is the weather today")},
        [{"messages": user("how is the forecast")}, {"messages": user("WEATHER")}],
        id="last-user-contains",
    ),
    pytest.param(
        "{last_user: {contains: weather, ignore_case: true}}",
        {"messages": user("How is the WEATHER?")},
        [{"messages": user("wether")}],
        id="last-user-contains-ignore-case",
    ),
    pytest.param(
        "{last_user: {startswith: /deploy}}",
        {"messages": user("/deploy prod")},
        [{"messages": user("please /deploy prod")}],
        id="last-user-startswith",
    ),
    pytest.param(
        "{last_user: {startswith: /DEPLOY, ignore_case: true}}",
        {"messages": user("/Deploy prod")},
        [{"messages": user(" /deploy")}],
        id="last-user-startswith-ignore-case",
    ),
    pytest.param(
        '{last_user: {endswith: "?"}}',
        {"messages": user("Is it done?")},
        [{"messages": user("It is done.")}],
        id="last-user-endswith",
    ),
    pytest.param(
        "{last_user: {endswith: THANKS, ignore_case: true}}",
        {"messages": user("ok, thanks")},
        [{"messages": user("thanks, ok")}],
        id="last-user-endswith-ignore-case",
    ),
    pytest.param(
        r'{last_user: {regex: "order #\\d{4}\\b"}}',
        {"messages": user("Where is order #1234 now?")},
        [{"messages": user("Where is order #12?")}],
        id="last-user-regex-searches",
    ),
    pytest.param(
        r'{last_user: {regex: "^ORDER", ignore_case: true}}',
        {"messages": user("order #1")},
        [{"messages": user("my order")}],
        id="last-user-regex-ignore-case",
    ),
    pytest.param(
        '{last_user: {glob: "book a * to Paris"}}',
        {"messages": user("book a flight to Paris")},
        [
            {"messages": user("please book a flight to Paris")},
            {"messages": user("book a flight to paris")},
        ],
        id="last-user-glob-whole-text",
    ),
    pytest.param(
        '{last_user: {glob: "BOOK A ? TO *", ignore_case: true}}',
        {"messages": user("book a B to Rome")},
        [{"messages": user("book an X to Rome")}],
        id="last-user-glob-ignore-case",
    ),
    pytest.param(
        "{last_user: {startswith: a, endswith: z, contains: to}}",
        {"messages": user("a to z")},
        [{"messages": user("a to y")}, {"messages": user("a-z")}],
        id="last-user-operators-all-hold",
    ),
    # system / developer prompts
    pytest.param(
        "{system: {contains: pirate, ignore_case: true}}",
        {"messages": [{"role": "system", "content": "You are a Pirate."}, *user("hi")]},
        [
            {"messages": user("talk like a pirate")},
            {"messages": [{"role": "system", "content": "You are a clerk."}, *user("pirate")]},
        ],
        id="system-role",
    ),
    pytest.param(
        "{system: {contains: pirate}}",
        {"messages": [{"role": "developer", "content": "Answer as a pirate."}, *user("hi")]},
        [{"messages": [{"role": "developer", "content": "Answer as a clerk."}, *user("pirate")]}],
        id="developer-role",
    ),
    pytest.param(
        r'{system: "Rule one.\n\nRule two."}',
        {
            "messages": [
                {"role": "system", "content": "Rule one."},
                {"role": "developer", "content": "Rule two."},
                *user("hi"),
            ]
        },
        [{"messages": [{"role": "system", "content": "Rule one."}, *user("Rule two.")]}],
        id="system-and-developer-joined",
    ),
    # content parts
    pytest.param(
        r'{last_user: "first part\nsecond part"}',
        {"messages": parts("first part", "second part")},
        [{"messages": parts("first part")}, {"messages": parts("second part")}],
        id="content-parts-last-user",
    ),
    pytest.param(
        "{system: {contains: terse}, any_message: {contains: needle}}",
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
                *parts("hay", "a needle"),
            ]
        },
        [
            {
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "Be long."}]},
                    *parts("hay", "a needle"),
                ]
            },
            {"messages": [{"role": "system", "content": "Be terse."}, *parts("hay", "straw")]},
        ],
        id="content-parts-system-and-any-message",
    ),
    # tools
    pytest.param("{tools_offered: true}", {"tools": [WEATHER]}, [{}], id="tools-offered-true"),
    pytest.param("{tools_offered: false}", {}, [{"tools": [WEATHER]}], id="tools-offered-false"),
    pytest.param(
        "{tools_offered: [get_weather, get_time]}",
        {"tools": [SEARCH, TIME, WEATHER]},
        [{"tools": [WEATHER]}, {"tools": [TIME, SEARCH]}, {}],
        id="tools-offered-list",
    ),
    pytest.param(
        "{tool_choice: none}",
        {"tools": [WEATHER], "tool_choice": "none"},
        [{"tools": [WEATHER], "tool_choice": "auto"}, {"tools": [WEATHER]}],
        id="tool-choice-none",
    ),
    pytest.param(
        "{tool_choice: auto}",
        {"tools": [WEATHER], "tool_choice": "auto"},
        [{"tools": [WEATHER], "tool_choice": "required"}, {"tools": [WEATHER]}],
        id="tool-choice-auto",
    ),
    pytest.param(
        "{tool_choice: required}",
        {"tools": [WEATHER], "tool_choice": "required"},
        [{"tools": [WEATHER], "tool_choice": forced("get_weather")}],
        id="tool-choice-required",
    ),
    pytest.param(
        "{tool_choice: {function: get_weather}}",
        {"tools": [WEATHER, TIME], "tool_choice": forced("get_weather")},
        [
            {"tools": [WEATHER, TIME], "tool_choice": forced("get_time")},
            {"tools": [WEATHER, TIME], "tool_choice": "required"},
        ],
        id="tool-choice-function",
    ),
    pytest.param(
        "{tool_choice: absent}",
        {"tools": [WEATHER]},
        [{"tools": [WEATHER], "tool_choice": "auto"}, {"tools": [WEATHER], "tool_choice": "none"}],
        id="tool-choice-absent",
    ),
    pytest.param(
        "{has_tool_result: true}",
        {"messages": tool_conversation("get_time")},
        [{"messages": user("What is the weather in Paris?")}],
        id="has-tool-result-true",
    ),
    pytest.param(
        "{has_tool_result: false}",
        {"messages": user("What is the weather?")},
        [{"messages": tool_conversation("get_weather")}],
        id="has-tool-result-false",
    ),
    pytest.param(
        "{has_tool_result: get_weather}",
        {"messages": tool_conversation("get_time", "get_weather")},
        [{"messages": tool_conversation("get_time")}, {"messages": user("weather?")}],
        id="has-tool-result-named",
    ),
    # turn
    pytest.param("{turn: 0}", {"messages": turns(0)}, [{"messages": turns(1)}], id="turn-0"),
    pytest.param(
        "{turn: 2}",
        {"messages": turns(2)},
        [{"messages": turns(1)}, {"messages": turns(3)}],
        id="turn-int",
    ),
    pytest.param(
        "{turn: {min: 1, max: 2}}",
        {"messages": turns(1)},
        [{"messages": turns(0)}, {"messages": turns(3)}],
        id="turn-min-max",
    ),
    pytest.param(
        "{turn: {min: 3}}", {"messages": turns(5)}, [{"messages": turns(2)}], id="turn-min-only"
    ),
    pytest.param(
        "{turn: {max: 1}}", {"messages": turns(0)}, [{"messages": turns(2)}], id="turn-max-only"
    ),
    # response_format
    pytest.param(
        "{response_format: text}",
        {},
        [{"response_format": {"type": "json_object"}, "messages": user("answer in json")}],
        id="response-format-text-when-absent",
    ),
    pytest.param(
        "{response_format: text}",
        {"response_format": {"type": "text"}},
        [{"response_format": JSON_SCHEMA}],
        id="response-format-text-explicit",
    ),
    pytest.param(
        "{response_format: json_object}",
        {"response_format": {"type": "json_object"}, "messages": user("reply in JSON")},
        [{"response_format": JSON_SCHEMA}, {"messages": user("reply in JSON")}],
        id="response-format-json-object",
    ),
    pytest.param(
        "{response_format: json_schema}",
        {"response_format": JSON_SCHEMA},
        [{"response_format": {"type": "json_object"}, "messages": user("json please")}, {}],
        id="response-format-json-schema",
    ),
    # headers
    pytest.param(
        "{headers: {X-Test-Case: ratelimit}}",
        {"extra_headers": {"x-TEST-case": "ratelimit"}},
        [
            {"extra_headers": {"x-test-case": "RateLimit"}},
            {"extra_headers": {"x-test-other": "ratelimit"}},
            {},
        ],
        id="headers-name-any-case",
    ),
    pytest.param(
        '{headers: {x-tenant: {regex: "^acme-", ignore_case: true}}}',
        {"extra_headers": {"X-Tenant": "ACME-eu"}},
        [{"extra_headers": {"X-Tenant": "globex-acme-eu"}}],
        id="headers-regex-ignore-case",
    ),
    # body paths
    pytest.param(
        '{body: {"metadata.user_id": u1}}',
        {"metadata": {"user_id": "u1"}},
        [{"metadata": {"user_id": "u2"}}, {"metadata": {"other": "u1"}}, {}],
        id="body-nested",
    ),
    pytest.param(
        '{body: {"messages[0].role": system, "messages.1.content": ask}}',
        {"messages": [{"role": "system", "content": "s"}, *user("ask")]},
        [
            {"messages": user("ask")},
            {"messages": [{"role": "system", "content": "s"}, *user("other")]},
        ],
        id="body-list-index",
    ),
    pytest.param(
        '{body: {"messages[-1].content": {startswith: final}}}',
        {"messages": [*user("first"), *user("final answer?")]},
        [{"messages": [*user("final answer?"), *user("first")]}],
        id="body-negative-index",
    ),
    pytest.param(
        "{body: {user: {exists: false}}}", {}, [{"user": "alice"}], id="body-exists-false"
    ),
    pytest.param(
        '{body: {"metadata.trace": {exists: true}}}',
        {"metadata": {"trace": "t-1"}},
        [{"metadata": {"span": "s-1"}}, {}],
        id="body-exists-true",
    ),
    pytest.param(
        "{body: {temperature: {gt: 0.5, lt: 1.5}}}",
        {"temperature": 1.0},
        [{"temperature": 0.5}, {"temperature": 1.5}, {"temperature": 0.2}, {}],
        id="body-gt-lt",
    ),
    pytest.param(
        "{body: {max_tokens: {gte: 100, lte: 200}}}",
        {"max_tokens": 100},
        [{"max_tokens": 99}, {"max_tokens": 201}],
        id="body-gte-lte",
    ),
    pytest.param(
        "{body: {temperature: 0.2}}",
        {"temperature": 0.2},
        [{"temperature": 0.7}, {}],
        id="body-temperature-equals",
    ),
    pytest.param(
        r'{body: {user: {regex: "^team-\\d+$"}}}',
        {"user": "team-42"},
        [{"user": "team-x"}, {}],
        id="body-user-regex",
    ),
    pytest.param(
        "{body: {metadata: {equals: {env: test}}}}",
        {"metadata": {"env": "test"}},
        [{"metadata": {"env": "test", "extra": "1"}}, {"metadata": {"env": "prod"}}],
        id="body-equals-object",
    ),
    pytest.param(
        "{body: {stop: [END, STOP]}}",
        {"stop": ["END", "STOP"]},
        [{"stop": "END"}, {"stop": ["STOP", "END"]}],
        id="body-equals-list",
    ),
    pytest.param(
        "{body: {parallel_tool_calls: false}}",
        {"tools": [WEATHER], "parallel_tool_calls": False},
        [{"tools": [WEATHER], "parallel_tool_calls": True}, {"tools": [WEATHER]}],
        id="body-boolean",
    ),
    # all / any / not
    pytest.param(
        "{all: [{last_user: {contains: refund}}, {model: foxora-1}]}",
        {"messages": user("I want a refund")},
        [
            {"messages": user("I want a refund"), "model": "foxora-2"},
            {"messages": user("I want a discount")},
        ],
        id="all",
    ),
    pytest.param(
        "{any: [{last_user: hi}, {last_user: hello}, {model: special}]}",
        {"messages": user("hello")},
        [{"messages": user("hey")}],
        id="any",
    ),
    pytest.param(
        "{not: {last_user: {contains: secret}}}",
        {"messages": user("public info")},
        [{"messages": user("top secret")}],
        id="not",
    ),
    pytest.param(
        "{not: {any: [{tools_offered: true}, {turn: {min: 1}}]}, last_user: {contains: go}}",
        {"messages": user("go")},
        [
            {"messages": user("go"), "tools": [WEATHER]},
            {"messages": turns(1, "go")},
            {"messages": user("stop")},
        ],
        id="nested-not-any-with-siblings",
    ),
]


@pytest.mark.parametrize(("match", "hit", "misses"), CASES)
async def test_matcher(
    start_server: Any, openapi: Any, match: str, hit: dict[str, Any], misses: list[dict[str, Any]]
) -> None:
    srv = await start_server(scenario_file(match))
    request = {"messages": user("hello there"), **hit}
    assert await which(srv, openapi, **request) == "hit"
    for miss in misses:
        request = {"messages": user("hello there"), **miss}
        assert await which(srv, openapi, **request) == "fallback", miss


async def test_stream_false_matches_a_non_streamed_request(start_server: Any, openapi: Any) -> None:
    srv = await start_server(
        """\
version: 1
scenarios:
  - name: streamed
    priority: 5
    match: {stream: true}
    respond: {content: '{"scenario": "streamed"}'}
  - name: not-streamed
    match: {stream: false}
    respond: {content: '{"scenario": "not-streamed"}'}
"""
    )
    assert await which(srv, openapi, messages=user("hi")) == "not-streamed"
    assert await which(srv, openapi, messages=user("hi"), stream=False) == "not-streamed"


AGENT_LOOP = """\
version: 1
scenarios:
  - name: ask-weather-tool
    match: {tools_offered: [get_weather], has_tool_result: false}
    respond:
      tool_calls: [{name: get_weather, arguments: {city: Paris}}]
  - name: weather-answered
    match: {has_tool_result: get_weather}
    respond: {content: "weather answered at turn {{ turn }}"}
  - name: other-tool-answered
    match: {has_tool_result: true}
    respond: {content: "another tool answered"}
"""


async def test_has_tool_result_in_a_real_agent_loop(start_server: Any, openapi: Any) -> None:
    srv = await start_server(AGENT_LOOP)
    messages: list[dict[str, Any]] = user("What is the weather in Paris?")
    async with AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="foxora-1", messages=messages, tools=[WEATHER, TIME]
        )
        openapi("CreateChatCompletionResponse", json.loads(raw.text))
        first = raw.parse().choices[0]
        assert first.finish_reason == "tool_calls"
        assert first.message.tool_calls is not None
        call = first.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}

        messages.append(first.message.model_dump(exclude_none=True))
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21, "city": "Paris"}'}
        )
        content = await answer(srv, openapi, messages=messages, tools=[WEATHER, TIME])
        assert content == "weather answered at turn 1"

        # the same loop with a different tool's result: the named matcher does not hold
        messages[-2]["tool_calls"][0]["function"]["name"] = "get_time"
        content = await answer(srv, openapi, messages=messages, tools=[WEATHER, TIME])
        assert content == "another tool answered"


# -- precedence ----------------------------------------------------------------------------------


async def test_higher_priority_wins_regardless_of_file_order(
    start_server: Any, openapi: Any
) -> None:
    srv = await start_server(
        """\
version: 1
scenarios:
  - name: below-zero
    priority: -3
    respond: {content: '{"scenario": "below-zero"}'}
  - name: default-priority
    respond: {content: '{"scenario": "default-priority"}'}
  - name: low
    priority: 1
    match: {last_user: {contains: x}}
    respond: {content: '{"scenario": "low"}'}
  - name: high
    priority: 7
    match: {last_user: {contains: xy}}
    respond: {content: '{"scenario": "high"}'}
"""
    )
    assert await which(srv, openapi, messages=user("xyz")) == "high"
    assert await which(srv, openapi, messages=user("x")) == "low"
    assert await which(srv, openapi, messages=user("other")) == "default-priority"


async def test_equal_priority_first_in_file_order_wins(start_server: Any, openapi: Any) -> None:
    srv = await start_server(
        """\
version: 1
scenarios:
  - name: general
    priority: 2
    match: {last_user: {contains: refund}}
    respond: {content: '{"scenario": "general"}'}
  - name: specific
    priority: 2
    match: {last_user: {equals: refund now}}
    respond: {content: '{"scenario": "specific"}'}
  - name: specific-higher
    priority: 3
    match: {last_user: {equals: refund later}}
    respond: {content: '{"scenario": "specific-higher"}'}
"""
    )
    assert await which(srv, openapi, messages=user("refund now")) == "general"
    assert await which(srv, openapi, messages=user("refund later")) == "specific-higher"


def _named(name: str, priority: int = 0, match: str = "{}") -> str:
    return f"""\
version: 1
scenarios:
  - name: {name}
    priority: {priority}
    match: {match}
    respond: {{content: '{{"scenario": "{name}"}}'}}
"""


async def test_files_in_a_directory_load_in_sorted_path_order(
    start_server: Any, openapi: Any, tmp_path: Path
) -> None:
    directory = tmp_path / "dir"
    (directory / "a").mkdir(parents=True)
    # written in reverse order, so only sorting by path gives a/, a.yaml, b.yaml
    write_scenarios(directory, _named("from-b") + "models: [b]\n", "b.yaml")
    write_scenarios(directory, _named("from-a", match="{model: foxora-2}"), "a.yaml")
    write_scenarios(directory / "a", _named("from-a-dir", match="{model: foxora-3}"), "z.yml")
    write_scenarios(directory, _named("urgent-in-b", 5, "{model: urgent}"), "c.yaml")
    write_scenarios(directory, "not: a scenario file", "notes.txt")

    srv = await start_server(scenarios=[directory])
    assert await which(srv, openapi, model="foxora-3") == "from-a-dir"
    assert await which(srv, openapi, model="foxora-2") == "from-a"
    assert await which(srv, openapi, model="foxora-1") == "from-b"
    assert await which(srv, openapi, model="urgent") == "urgent-in-b"

    # several catch-alls at equal priority: the first file in sorted order wins
    same = tmp_path / "same"
    same.mkdir()
    for name in ("20-late", "10-early", "3-last"):  # string order: 10-early, 20-late, 3-last
        write_scenarios(same, _named(name), f"{name}.yaml")
    srv = await start_server(scenarios=[same])
    assert await which(srv, openapi) == "10-early"


async def test_files_given_explicitly_keep_the_given_order(
    start_server: Any, openapi: Any, tmp_path: Path
) -> None:
    a = write_scenarios(tmp_path, _named("from-a"), "a.yaml")
    b = write_scenarios(tmp_path, _named("from-b"), "b.yaml")
    srv = await start_server(scenarios=[b, a])
    assert await which(srv, openapi) == "from-b"


# -- near-miss report ----------------------------------------------------------------------------

NEAR_MISS = """\
version: 1
scenarios:
  - name: weather-asks-tool
    match:
      tools_offered: [get_weather]
      last_user: {contains: weather}
    respond: {content: calling}
  - name: far-away
    match:
      model: other-model
      last_user: goodbye
      tools_offered: true
    respond: {content: bye}
  - name: greeting
    match:
      model: foxora-1
      last_user: hello
    respond: {content: hi}
  - name: json-only
    match: {response_format: json_object, model: foxora-1, turn: 3}
    respond: {content: "{}"}
"""


async def not_found(srv: Any, openapi: Any, **request: Any) -> str:
    """Send a request that must match nothing; check the 404 envelope; return its message."""
    request.setdefault("model", "foxora-1")
    async with AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(**request)
    error = caught.value
    assert error.status_code == 404
    body = error.response.json()
    openapi("ErrorResponse", body)
    assert body["error"]["code"] == "no_scenario_matched"
    assert error.code == "no_scenario_matched"
    assert body["error"]["type"] == "invalid_request_error"
    assert error.message == f"Error code: 404 - {body['error']['message']}"
    return str(body["error"]["message"])


async def test_near_miss_report_names_nearest_scenarios_and_failed_predicates(
    start_server: Any, openapi: Any, tmp_path: Path
) -> None:
    path = write_scenarios(tmp_path, NEAR_MISS, "near.yaml")
    srv = await start_server(scenarios=[path])
    message = await not_found(srv, openapi, messages=user("what is the weather?"))
    assert message.startswith(
        "No foxmock scenario matched this request (model 'foxora-1', 1 message(s), "
        "last user message 'what is the weather?')."
    )
    lines = message.splitlines()
    assert lines[1] == "Nearest scenarios:"
    # fewest failed conditions first; ties keep match order; only the nearest three
    assert lines[2] == f"  1. weather-asks-tool ({path}:3): 1 of 2 conditions held"
    assert lines[3] == "    - tools_offered: expected tools ['get_weather'] offered, got []"
    assert lines[4] == f"  2. greeting ({path}:14): 1 of 2 conditions held"
    assert lines[5] == "    - last_user: expected equals 'hello', got 'what is the weather?'"
    assert lines[6] == f"  3. json-only ({path}:19): 1 of 3 conditions held"
    assert lines[7] == "    - response_format: expected 'json_object', got 'text'"
    assert lines[8] == "    - turn: expected turn 3, got 0"
    assert len(lines) == 9
    assert "far-away" not in message

    # the server keeps serving after a miss
    message = await not_found(srv, openapi, messages=user("goodbye"), model="other-model")
    assert f"  1. far-away ({path}:8): 2 of 3 conditions held" in message.splitlines()


EXPLAINED = [
    pytest.param(
        "{tools_offered: [get_weather, get_time]}",
        {"tools": [TIME]},
        "tools_offered: expected tools ['get_weather', 'get_time'] offered, got ['get_time']",
        id="tools-offered",
    ),
    pytest.param(
        "{tools_offered: false}",
        {"tools": [TIME]},
        "tools_offered: expected no tools, got ['get_time']",
        id="tools-offered-false",
    ),
    pytest.param(
        "{last_user: {contains: weather, ignore_case: true}}",
        {},
        "last_user: expected contains 'weather' (ignoring case), got 'hey'",
        id="last-user",
    ),
    pytest.param(
        '{model: {glob: "gpt-*"}}',
        {},
        "model: expected glob 'gpt-*', got 'foxora-1'",
        id="model-glob",
    ),
    pytest.param(
        "{system: {startswith: You}}",
        {},
        "system: expected startswith 'You', got ''",
        id="system-absent",
    ),
    pytest.param(
        "{any_message: {contains: invoice}}",
        {},
        "any_message: no message matched contains 'invoice'",
        id="any-message",
    ),
    pytest.param(
        "{headers: {X-Test-Case: ratelimit}}",
        {},
        "headers.x-test-case: header not sent",
        id="header-absent",
    ),
    pytest.param(
        "{headers: {x-test-case: ratelimit}}",
        {"extra_headers": {"X-Test-Case": "slow"}},
        "headers.x-test-case: expected equals 'ratelimit', got 'slow'",
        id="header-value",
    ),
    pytest.param(
        '{body: {"metadata.user_id": u1}}',
        {},
        "body.metadata.user_id: expected equals 'u1', got nothing (path absent)",
        id="body-absent",
    ),
    pytest.param(
        "{body: {temperature: {lt: 0.5}}}",
        {"temperature": 0.9},
        "body.temperature: expected lt 0.5, got 0.9",
        id="body-lt",
    ),
    pytest.param(
        "{body: {user: {exists: false}}}",
        {"user": "bob"},
        "body.user: expected absent, got 'bob'",
        id="body-exists-false",
    ),
    pytest.param("{turn: {min: 2}}", {}, "turn: expected turn in [2, ...], got 0", id="turn"),
    pytest.param(
        "{tool_choice: required}",
        {},
        "tool_choice: expected 'required', got None",
        id="tool-choice",
    ),
    pytest.param(
        "{tool_choice: {function: get_weather}}",
        {"tools": [WEATHER, TIME], "tool_choice": forced("get_time")},
        "tool_choice: expected a forced call of 'get_weather', got 'get_time'",
        id="tool-choice-function",
    ),
    pytest.param(
        "{has_tool_result: get_weather}",
        {"messages": tool_conversation("get_time")},
        "has_tool_result: expected a result of tool 'get_weather', got ['get_time']",
        id="has-tool-result",
    ),
    pytest.param("{stream: true}", {}, "stream: expected True, got False", id="stream"),
    pytest.param("{not: {model: foxora-1}}", {}, "not: the negated condition held", id="not"),
    pytest.param(
        "{any: [{last_user: hi}, {last_user: hello}]}",
        {},
        "any: no alternative held (last_user: expected equals 'hi', got 'hey'; "
        "last_user: expected equals 'hello', got 'hey')",
        id="any",
    ),
    pytest.param(
        "{all: [{model: foxora-1}, {last_user: hi}]}",
        {},
        "last_user: expected equals 'hi', got 'hey'",
        id="all",
    ),
]


@pytest.mark.parametrize(("match", "request_fields", "expected"), EXPLAINED)
async def test_near_miss_explains_each_predicate(
    start_server: Any,
    openapi: Any,
    tmp_path: Path,
    match: str,
    request_fields: dict[str, Any],
    expected: str,
) -> None:
    text = f"version: 1\nscenarios:\n  - name: only\n    match: {match}\n    respond: {{}}\n"
    path = write_scenarios(tmp_path, text, "only.yaml")
    srv = await start_server(scenarios=[path])
    message = await not_found(srv, openapi, **{"messages": user("hey"), **request_fields})
    assert f"  1. only ({path}:3): " in message
    assert f"    - {expected}" in message.splitlines()


async def test_no_scenarios_loaded_says_so(start_server: Any, openapi: Any) -> None:
    srv = await start_server("version: 1\nscenarios: []\n")
    message = await not_found(srv, openapi, messages=user("hi"))
    assert message.splitlines()[-1] == "No scenarios are loaded."
