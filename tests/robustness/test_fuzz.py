"""Property-based fuzzing, end to end: generated request bodies POSTed to a live server.

This module also holds the strategies the other ``test_fuzz_*`` modules share: arbitrary JSON
values, structurally valid chat requests (checked against OpenAI's schema by a test below) and
one-field mutations of them.

Properties (each over ``conftest.FUZZ_EXAMPLES`` examples):

* no request body ever gets a 5xx from a scenario set whose answers cannot fail to render; every
  4xx body is an ``ErrorResponse``, every 200 body a ``CreateChatCompletionResponse``, every
  streamed event a ``CreateChatCompletionStreamResponse``;
* with scenarios that synthesise or check answers against the request's own JSON schemas, a 5xx
  is only ever the documented ``scenario_render_error``, never ``internal_error``;
* JSON nested just below the parser's limit never gets a 5xx.
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from foxmock.config import default_scenarios_path
from foxmock.openai.validation import KNOWN_FIELDS
from tests.support import write_scenarios

# -- JSON values ----------------------------------------------------------------------------------


def json_values(*, finite: bool = False, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value; ``finite`` leaves out infinities (which JSON text cannot carry)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=not finite),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


JSON = json_values()
WIRE_JSON = json_values(finite=True)

# values near the validator's decision boundaries, and shapes it expects somewhere else
BOUNDARY_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    3,
    0.5,
    -0.0001,
    2.0001,
    4,
    5,
    20,
    21,
    128,
    129,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    1e308,
    "",
    " ",
    "x",
    "json",
    "function",
    "user",
    "assistant",
    "tool",
    "system",
    "developer",
    "auto",
    "none",
    "required",
    "text",
    "json_object",
    "json_schema",
    "image_url",
    "a b",
    "x" * 65,
    [],
    {},
    [""],
    ["a", "b", "c", "d", "e"],
    [1],
    [{}],
    {"type": "function"},
    {"type": "function", "function": {"name": "f"}},
    {"type": "text", "text": "x"},
    {"name": "f"},
    {"role": "user", "content": "hi"},
    {"url": "https://example.com/fox.png"},
]


def replacement_values(values: st.SearchStrategy[Any] = JSON) -> st.SearchStrategy[Any]:
    """What a mutation writes: a (fresh copy of a) boundary value or an arbitrary JSON value."""
    return st.one_of(st.sampled_from(BOUNDARY_VALUES).map(copy.deepcopy), values)


# -- valid requests -------------------------------------------------------------------------------

WORDS = [
    "hi",
    "Hello",
    "What is the weather in Paris?",
    "Reply in json please",
    "",
    "count",
    "story",
    "ünïcødé ✓ 🦊",
    "line one\nline two",
]
RESERVED_TOOL = "mock_lookup"  # the end-to-end scenarios call it; requests never offer it
texts = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
api_names = st.text(NAME_CHARS, min_size=1, max_size=12)  # OpenAI's ^[a-zA-Z0-9_-]{1,64}$
tool_names = st.one_of(
    st.sampled_from(["get_weather", "get_time", "search", "create_ticket"]), api_names
).filter(lambda name: name != RESERVED_TOOL)
models = st.one_of(st.sampled_from(["foxora-1", "foxora-1-mini", "gpt-4o"]), st.text(min_size=1))

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    {
        "type": "object",
        "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["days", "unit"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "score": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
            "when": {"type": "string", "format": "date-time"},
            "ok": {"type": "boolean"},
            "nothing": {"type": "null"},
        },
    },
    {
        "type": "object",
        "properties": {"choice": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/item"}]}},
        "$defs": {"item": {"type": "object", "properties": {"id": {"type": "string"}}}},
    },
]
schemas = st.sampled_from(SCHEMAS)


_text_part = st.builds(lambda t: {"type": "text", "text": t}, texts)
_image_part = st.just({"type": "image_url", "image_url": {"url": "https://example.com/f.png"}})
# OpenAI allows image parts in user messages only
text_content = st.one_of(texts, st.lists(_text_part, min_size=1, max_size=3))
user_content = st.one_of(texts, st.lists(_text_part | _image_part, min_size=1, max_size=3))
tool_results = st.one_of(texts, st.just('{"temp_c": 21, "city": "Oslo"}'))


@st.composite
def conversations(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    """A system prompt, earlier turns (with tool calls and results, given tools), a user turn."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        role = draw(st.sampled_from(["system", "developer"]))
        messages.append({"role": role, "content": draw(text_content)})
    for turn in range(draw(st.integers(0, 2))):
        messages.append({"role": "user", "content": draw(user_content)})
        called = draw(st.lists(st.sampled_from(names), max_size=2)) if names else []
        if not called:
            messages.append({"role": "assistant", "content": draw(text_content)})
            continue
        calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"q": draw(texts)})},
            }
            for i, name in enumerate(called)
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": draw(tool_results)}
            )
    messages.append({"role": "user", "content": draw(user_content)})
    if draw(st.integers(0, 9)) == 0:  # sometimes the conversation ends on another role
        messages.append({"role": "assistant", "content": draw(texts)})
    return messages


def _tool(name: str, schema: dict[str, Any], strict: bool | None, description: str | None) -> Any:
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if strict is not None:
        function["strict"] = strict
    if description is not None:
        function["description"] = description
    return {"type": "function", "function": function}


tools = st.lists(
    st.builds(
        _tool,
        tool_names,
        schemas,
        st.none() | st.booleans(),
        st.none() | texts,
    ),
    max_size=3,
    unique_by=lambda tool: tool["function"]["name"],
)

OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "max_tokens": st.integers(1, 40),
    "max_completion_tokens": st.integers(1, 40),
    "n": st.integers(1, 3),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "user": st.text(max_size=10),
    "safety_identifier": st.text(max_size=10),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), min_size=1, max_size=4)),
    "metadata": st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3),
    "logit_bias": st.dictionaries(
        st.integers(0, 100_000).map(str), st.integers(-100, 100), max_size=2
    ),
    "store": st.booleans(),
    "logprobs": st.booleans(),
}


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A chat request that follows OpenAI's rules (and foxmock's documented ones)."""
    offered = draw(tools)
    names = [t["function"]["name"] for t in offered]
    body: dict[str, Any] = {"model": draw(models), "messages": draw(conversations(names))}
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), max_size=5, unique=True)):
        body[key] = draw(OPTIONAL_FIELDS[key])
    if body.get("logprobs") and draw(st.booleans()):
        body["top_logprobs"] = draw(st.integers(0, 20))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
        if body["stream"] and draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    if offered:
        body["tools"] = offered
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    if draw(st.booleans()):
        choices: list[Any] = ["none", "auto"]
        if names:
            choices += ["required", *({"type": "function", "function": {"name": n}} for n in names)]
        body["tool_choice"] = draw(st.sampled_from(choices))
    kind = draw(st.sampled_from([None, None, "text", "json_object", "json_schema"]))
    if kind == "json_object":
        body["messages"].insert(0, {"role": "system", "content": "Answer in JSON."})
        body["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        spec: dict[str, Any] = {"name": draw(api_names)}
        if draw(st.booleans()):
            spec["schema"] = draw(schemas)
        if draw(st.booleans()):
            spec["strict"] = draw(st.booleans())
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind == "text":
        body["response_format"] = {"type": "text"}
    return body


# -- mutations of valid requests ------------------------------------------------------------------

NESTED_FIELDS = [
    "role",
    "content",
    "name",
    "tool_call_id",
    "tool_calls",
    "refusal",
    "function_call",
    "audio",
    "type",
    "function",
    "description",
    "parameters",
    "strict",
    "arguments",
    "id",
    "text",
    "image_url",
    "url",
    "json_schema",
    "schema",
    "include_usage",
]
FIELD_NAMES = sorted(KNOWN_FIELDS) + NESTED_FIELDS + ["unknown_field", "Model", "messages "]

JsonPath = tuple[str | int, ...]


def walk(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Every (path, value) inside ``value``, the root included."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def _parent(body: Any, path: JsonPath) -> Any:
    node = body
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated(
    draw: st.DrawFn,
    base: st.SearchStrategy[Any],
    values: st.SearchStrategy[Any] = JSON,
    field_names: list[str] = FIELD_NAMES,
) -> Any:
    """A value of ``base`` with one or two nodes replaced, removed, or added under a known name."""
    data = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(1, 2))):
        nodes = list(walk(data))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "add":
            containers = [p for p, v in nodes if isinstance(v, dict)]
            if not containers:
                continue
            path = draw(st.sampled_from(containers))
            key = draw(st.sampled_from(field_names))
            _parent(data, (*path, key))[key] = draw(replacement_values(values))
            continue
        if len(nodes) == 1:
            continue
        path, _ = draw(st.sampled_from(nodes[1:]))
        parent = _parent(data, path)
        if action == "delete":
            del parent[path[-1]]
        elif draw(st.integers(0, 4)) == 0:  # a value from elsewhere in the document
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(nodes))[1])
        else:
            parent[path[-1]] = draw(replacement_values(values))
    return data


def mutated_requests(values: st.SearchStrategy[Any] = JSON) -> st.SearchStrategy[Any]:
    """A valid request with one or two fields (top-level or nested) replaced, removed or added."""
    return mutated(valid_requests(), values, FIELD_NAMES)


# -- end to end -----------------------------------------------------------------------------------

CHAT = "/v1/chat/completions"

# Every answer here renders whatever the request says: no strict schema is ever checked (strict
# json_schema requests get a 422 fault) and the tool called is never one the request defines.
FIXED_ANSWERS = f"""\
version: 1
models: [foxora-1]
scenarios:
  - name: strict-schema-refused
    priority: 10
    match:
      response_format: json_schema
      body: {{"response_format.json_schema.strict": true}}
    fault:
      status: 422
      message: "strict schemas are not served here (model {{{{ model }}}})"
      code: strict_not_served
  - name: json-schema-answer
    priority: 5
    match: {{response_format: json_schema}}
    respond: {{content: '{{"answer": {{{{ last_user | json }}}}}}'}}
  - name: json-object-answer
    priority: 5
    match: {{response_format: json_object}}
    respond: {{content: '{{"turn": {{{{ turn }}}}}}'}}
  - name: tool-caller
    priority: 2
    match: {{tools_offered: true, has_tool_result: false, model: {{glob: "foxora-*"}}}}
    respond:
      tool_calls:
        - name: {RESERVED_TOOL}
          arguments:
            query: "{{{{ last_user }}}}"
            turn: "{{{{ turn }}}}"
            offered: "{{{{ tools | join(',') }}}}"
  - name: after-tools
    match: {{has_tool_result: true}}
    respond:
      content: "{{{{ tool_results | length }}}} result(s), last {{{{ tool_result() | string }}}}"
    stream: {{by: words}}
  - name: body-paths
    match:
      body: {{"metadata.case": {{exists: true}}, temperature: {{lte: 1}}}}
    respond: {{content: "metadata {{{{ request.metadata | json }}}}"}}
  - name: echo
    match:
      model: {{glob: "foxora-*"}}
      not: {{last_user: {{regex: "^$"}}}}
    respond:
      content: >-
        You said {{{{ last_user | truncate(60) }}}} (turn {{{{ turn }}}},
        system {{{{ system | length }}}} chars, {{{{ headers | length }}}} headers)
    stream: {{by: characters, size: 3}}
"""

# Answers built from the request's own schemas: synthesised content and arguments, and a strict
# schema check of explicit arguments; on top of the bundled scenarios.
SCHEMA_SHAPED = """\
version: 1
scenarios:
  - name: synthesised-structured
    priority: 50
    match: {response_format: json_schema}
    respond: {}
  - name: synthesised-call
    priority: 50
    match: {tools_offered: true, has_tool_result: false}
    respond:
      tool_calls: [{name: "{{ tools[0] }}"}]
  - name: explicit-call
    priority: 50
    match: {tools_offered: true, has_tool_result: true}
    respond:
      tool_calls: [{name: "{{ tools[-1] }}", arguments: {city: Paris}}]
"""


class Client:
    """One keep-alive HTTP connection to a foxmock server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, data: bytes) -> tuple[int, str, bytes]:
        headers = {"Content-Type": "application/json", "x-fuzz": "1"}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", CHAT, body=data, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.getheader("content-type", ""), response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def check_exchange(
    client: Client, body: Any, openapi: Callable[[str, Any], None], allow_500: bool = False
) -> None:
    """POST ``body``; assert the answer is a well-formed OpenAI body for its status."""
    status, content_type, raw = client.post(json.dumps(body, allow_nan=False).encode())
    event(f"status {status}")
    if status >= 500:
        error = json.loads(raw)["error"]
        assert allow_500 and status == 500 and error["code"] == "scenario_render_error", (
            f"{status} for a request body: {raw[:600]!r}"
        )
    if status >= 400:
        assert content_type.startswith("application/json"), content_type
        openapi("ErrorResponse", json.loads(raw))
        return
    assert status == 200, (status, raw[:300])
    if isinstance(body, dict) and body.get("stream") is True:
        assert content_type.startswith("text/event-stream"), content_type
        events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", raw[-200:]
        chunks = [json.loads(data) for data in events[:-1]]
        for chunk in chunks[:4] + chunks[-2:]:
            openapi("CreateChatCompletionStreamResponse", chunk)
    else:
        openapi("CreateChatCompletionResponse", json.loads(raw))


request_bodies = st.one_of(WIRE_JSON, mutated_requests(WIRE_JSON), valid_requests())


def test_generated_valid_requests_follow_the_openai_schema(
    openapi: Callable[[str, Any], None],
) -> None:
    """The request strategy itself: every generated request is valid per the official spec."""

    @given(valid_requests())
    def check(body: dict[str, Any]) -> None:
        openapi("CreateChatCompletionRequest", body)

    check()


VALID_BASE = {"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}]}
WEATHER = _tool("get_weather", SCHEMAS[1], None, "The weather in a city")


def test_no_request_body_gets_a_5xx(thread_server: Any, openapi: Any) -> None:
    client = Client(thread_server(FIXED_ANSWERS, time_scale=0, seed=7).port)

    @given(request_bodies)
    # one of each answer, so every run covers them all: echo (streamed, n=2, with usage) ...
    @example({**VALID_BASE, "stream": True, "stream_options": {"include_usage": True}, "n": 2})
    @example({**VALID_BASE, "tools": [WEATHER], "tool_choice": "required"})  # ... a tool call
    @example({**VALID_BASE, "model": "gpt-4o"})  # ... no scenario matched, with near misses
    @example({**VALID_BASE, "response_format": {"type": "json_object"}})  # ... a 400: no "json"
    @example(  # ... a 422 fault
        {
            **VALID_BASE,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "strict": True},
            },
        }
    )
    @example({**VALID_BASE, "max_tokens": 2, "metadata": {"case": "x"}, "temperature": 0})
    @example([VALID_BASE])
    def check(body: Any) -> None:
        check_exchange(client, body, openapi)

    check()


def _structured(schema: Any) -> dict[str, Any]:
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return {**VALID_BASE, "response_format": fmt}


def _strict_tool(schema: Any) -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    return {
        **VALID_BASE,
        "messages": [
            *VALID_BASE["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        ],
        "tools": [_tool("f", schema, True, None)],
    }


def test_schema_shaped_answers_fail_only_as_render_errors(
    thread_server: Any, openapi: Any, tmp_path: Path
) -> None:
    """A 5xx is only ever the documented ``scenario_render_error``, never ``internal_error``."""
    path = write_scenarios(tmp_path, SCHEMA_SHAPED, "schema_shaped.yaml")
    server = thread_server(scenarios=[path, default_scenarios_path()], time_scale=0, seed=7)
    client = Client(server.port)

    @given(st.one_of(mutated_requests(WIRE_JSON), valid_requests()))
    @example(_structured({"type": "integer", "minimum": "5"}))  # TypeError in synthesis._number
    @example(_structured({"enum": {"a": 1}}))  # KeyError: 0 in synthesis.synthesize
    @example(_structured({"type": "string", "pattern": "("}))  # re.error in schema_errors
    @example(_strict_tool({"type": 5}))  # jsonschema UnknownType in the strict check
    def check(body: Any) -> None:
        check_exchange(client, body, openapi, allow_500=True)

    check()


def test_deep_nesting_below_the_parser_limit_never_gets_a_5xx(thread_server: Any) -> None:
    client = Client(thread_server(FIXED_ANSWERS, time_scale=0).port)
    statuses = {}
    for depth in range(850, 1001):
        nested = "[" * depth + "]" * depth
        data = (
            '{"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}], '
            '"tools": [{"type": "function", "function": {"name": "f", "parameters": '
            '{"a": ' + nested + "}}}]}"
        ).encode()
        statuses[depth] = client.post(data)[0]
    assert not {d: s for d, s in statuses.items() if s >= 500}, statuses
