"""Request forms the official description accepts, sent through the official SDK.

Each form is listed once, sent to a real server on a loopback port, and must be answered 200
with a body valid per OpenAI's spec; the scenario that answers shows what matching saw. Forms
the spec refuses get OpenAI's 400 envelope naming the parameter.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import StartServer

SCENARIOS = """\
version: 1
scenarios:
  - name: custom-forced
    match: {tool_choice: {function: code_exec}}
    respond: {content: "forced {{ tool_choice }}"}
  - name: allowed-required
    match: {tool_choice: required, tools_offered: [code_exec]}
    respond: {content: "required among {{ tools|join(',') }}"}
  - name: custom-result
    match: {has_tool_result: code_exec}
    respond: {content: "ran: {{ tool_result('code_exec') }}"}
  - name: custom-offered
    match: {tools_offered: [code_exec]}
    respond: {content: "offered {{ tools|join(',') }}"}
  - name: structured
    match: {response_format: json_schema}
    respond: {}
  - name: anything
    respond: {content: "turn {{ turn }}"}
"""

CODE_EXEC = {"type": "custom", "custom": {"name": "code_exec", "format": {"type": "text"}}}
GRAMMAR = {
    "type": "custom",
    "custom": {
        "name": "calc",
        "description": "arithmetic",
        "format": {
            "type": "grammar",
            "grammar": {"definition": "start: NUMBER", "syntax": "lark"},
        },
    },
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
USER = {"role": "user", "content": "hi"}

# (id, extra request fields, the answer's content)
ACCEPTED: list[tuple[str, dict[str, Any], str]] = [
    ("custom-tool", {"tools": [CODE_EXEC]}, "offered code_exec"),
    ("custom-tool-plain", {"tools": [{"type": "custom", "custom": {"name": "code_exec"}}]}, ""),
    ("custom-grammar", {"tools": [GRAMMAR, CODE_EXEC]}, "offered calc,code_exec"),
    (
        "custom-forced",
        {"tools": [CODE_EXEC], "tool_choice": {"type": "custom", "custom": {"name": "code_exec"}}},
        "forced code_exec",
    ),
    (
        "allowed-tools-required",
        {
            "tools": [WEATHER, CODE_EXEC],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [CODE_EXEC]},
            },
        },
        "required among get_weather,code_exec",
    ),
    (
        "allowed-tools-auto",
        {
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        },
        "turn 0",
    ),
    (
        "assistant-audio-only",
        {"messages": [USER, {"role": "assistant", "audio": {"id": "audio_1"}}, USER]},
        "turn 1",
    ),
    (
        "assistant-null-content",
        {"messages": [USER, {"role": "assistant", "content": None}, USER]},
        "turn 1",
    ),
    ("assistant-role-only", {"messages": [USER, {"role": "assistant"}, USER]}, "turn 1"),
    (
        "assistant-refusal-parts",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
                USER,
            ]
        },
        "turn 1",
    ),
    (
        "custom-tool-call-history",
        {
            "tools": [CODE_EXEC],
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "custom",
                            "custom": {"name": "code_exec", "input": "print(1)"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "1"},
            ],
        },
        "ran: 1",
    ),
    (
        "function-message-null-content",
        {
            "messages": [
                USER,
                {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": None},
            ]
        },
        "turn 1",
    ),
]

# the rest of CreateChatCompletionRequest, field by field: each accepted as the spec has it
ACCEPTED += [
    (f"field-{name}", extra, "")
    for name, extra in [
        ("audio", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "mp3"}}),
        ("frequency-penalty", {"frequency_penalty": -2}),
        ("presence-penalty", {"presence_penalty": 2}),
        ("logit-bias", {"logit_bias": {"50256": -100}}),
        ("logprobs", {"logprobs": True, "top_logprobs": 20}),
        ("max-completion-tokens", {"max_completion_tokens": 50}),
        ("max-tokens", {"max_tokens": 50}),
        ("metadata", {"metadata": {"suite": "forms"}}),
        ("n", {"n": 3}),
        ("parallel-tool-calls", {"tools": [WEATHER], "parallel_tool_calls": False}),
        ("prediction-text", {"prediction": {"type": "content", "content": "hi"}}),
        (
            "prediction-parts",
            {"prediction": {"type": "content", "content": [{"type": "text", "text": "hi"}]}},
        ),
        ("prompt-cache", {"prompt_cache_key": "k", "prompt_cache_retention": "24h"}),
        ("reasoning-effort", {"reasoning_effort": "minimal"}),
        ("safety-identifier", {"safety_identifier": "u-1", "user": "u-1"}),
        ("seed", {"seed": -(2**63)}),
        ("service-tier", {"service_tier": "priority"}),
        ("stop-string", {"stop": "\n"}),
        ("stop-list", {"stop": ["a", "b", "c", "d"]}),
        ("store", {"store": True}),
        ("stream-options", {"stream": False}),
        ("temperature-top-p", {"temperature": 2, "top_p": 0}),
        ("verbosity", {"verbosity": "high"}),
        ("web-search", {"web_search_options": {"search_context_size": "low"}}),
        (
            "web-search-location",
            {
                "web_search_options": {
                    "user_location": {"type": "approximate", "approximate": {"city": "Paris"}}
                }
            },
        ),
        ("legacy-functions", {"functions": [{"name": "f"}], "function_call": "auto"}),
        ("legacy-function-named", {"functions": [{"name": "f"}], "function_call": {"name": "f"}}),
        ("response-format-text", {"response_format": {"type": "text"}}),
        (
            "response-format-schema",
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "strict": True, "schema": {"type": "object"}},
                }
            },
        ),
        (
            "user-parts",
            {
                "messages": [
                    {
                        "role": "user",
                        "name": "ana",
                        "content": [
                            {"type": "text", "text": "look"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"},
                            },
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "AA==", "format": "wav"},
                            },
                            {"type": "file", "file": {"file_id": "file-1"}},
                        ],
                    }
                ]
            },
        ),
        (
            "developer-parts",
            {
                "messages": [
                    {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                    {"role": "system", "content": "x", "name": "sys"},
                    USER,
                ]
            },
        ),
        (
            "tool-parts",
            {
                "messages": [
                    USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": "{}"},
                            }
                        ],
                    },
                    {
                        "role": "tool",
                        "tool_call_id": "c1",
                        "content": [{"type": "text", "text": "sunny"}],
                    },
                ]
            },
        ),
    ]
]

# (id, extra request fields, the param the 400 names)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("custom-no-name", {"tools": [{"type": "custom", "custom": {}}]}, "tools[0].custom.name"),
    ("custom-no-object", {"tools": [{"type": "custom"}]}, "tools[0].custom"),
    (
        "custom-bad-format",
        {"tools": [{"type": "custom", "custom": {"name": "x", "format": {"type": "json"}}}]},
        "tools[0].custom.format.type",
    ),
    (
        "custom-bad-syntax",
        {
            "tools": [
                {
                    "type": "custom",
                    "custom": {
                        "name": "x",
                        "format": {"type": "grammar", "grammar": {"definition": "a"}},
                    },
                }
            ]
        },
        "tools[0].custom.format.grammar.syntax",
    ),
    ("tool-type", {"tools": [{"type": "web", "web": {"name": "x"}}]}, "tools[0].type"),
    (
        "custom-choice-names-a-function",
        {"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "get_weather"}}},
        "tool_choice",
    ),
    (
        "allowed-tools-unknown",
        {
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [CODE_EXEC]},
            },
        },
        "tool_choice.allowed_tools.tools[0]",
    ),
    (
        "allowed-tools-mode",
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "x", "tools": []}},
        },
        "tool_choice.allowed_tools.mode",
    ),
    (
        "audio-without-id",
        {"messages": [USER, {"role": "assistant", "audio": {}}, USER]},
        "messages[1].audio.id",
    ),
    (
        "custom-call-without-input",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x"}}],
                },
            ]
        },
        "messages[1].tool_calls[0].custom.input",
    ),
    ("user-null-content", {"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    (
        "function-without-name",
        {"messages": [USER, {"role": "function", "content": "x"}]},
        "messages[1].name",
    ),
]


def _body(extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": "foxora-1", "messages": [USER], **extra}


@pytest.mark.parametrize(("name", "extra", "content"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
async def test_accepted_forms_are_answered(
    start_server: StartServer, openapi: Any, name: str, extra: dict[str, Any], content: str
) -> None:
    server = await start_server(SCENARIOS)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        body = _body(extra)
        openapi("CreateChatCompletionRequest", body)  # a form the spec accepts
        raw = await client.chat.completions.with_raw_response.create(**body)
    assert raw.http_response.status_code == 200
    data = raw.http_response.json()
    openapi("CreateChatCompletionResponse", data)
    if content:
        assert data["choices"][0]["message"]["content"] == content


@pytest.mark.parametrize(("name", "extra", "param"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_refused_forms_name_the_parameter(
    start_server: StartServer, openapi: Any, name: str, extra: dict[str, Any], param: str
) -> None:
    server = await start_server(SCENARIOS)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(**_body(extra))
    assert caught.value.status_code == 400
    body = caught.value.response.json()
    openapi("ErrorResponse", body)
    assert body["error"]["param"] == param, body
