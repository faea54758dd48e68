"""Response templates through a live server: request variables, helpers, native tool arguments,
seeded randomness, and the sandbox (refused at load time or at render time, never leaking)."""

from __future__ import annotations

import datetime as dt
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

import foxmock
from tests.support import write_scenarios

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
    }


def tool_conversation() -> list[dict[str, Any]]:
    """An agent loop: two tool calls, a JSON result and a plain-text result."""
    return [
        {"role": "user", "content": "Weather and time in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    ]


def one_scenario(content: str, name: str = "templated") -> str:
    """A file whose only scenario answers with ``content`` (a JSON string is a YAML scalar)."""
    return f"""\
version: 1
scenarios:
  - name: {name}
    respond:
      content: {json.dumps(content)}
"""


async def completion(srv: Any, openapi: Any, **request: Any) -> Any:
    """One SDK call; the raw body is validated against the official schema; returns the parse."""
    request.setdefault("model", "foxora-1")
    request.setdefault("messages", user("hello"))
    async with AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(**request)
    assert raw.status_code == 200
    openapi("CreateChatCompletionResponse", json.loads(raw.text))
    return raw.parse()


async def content_of(srv: Any, openapi: Any, **request: Any) -> str:
    content = (await completion(srv, openapi, **request)).choices[0].message.content
    assert content is not None
    return str(content)


async def render_error(srv: Any, openapi: Any, **request: Any) -> dict[str, Any]:
    """A request whose scenario fails to render: a 500 envelope; returns the raw response."""
    request.setdefault("model", "foxora-1")
    request.setdefault("messages", user("hello"))
    async with AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(**request)
    response = caught.value.response
    assert response.status_code == 500
    body = response.json()
    openapi("ErrorResponse", body)
    assert body["error"]["type"] == "server_error"
    assert body["error"]["code"] == "scenario_render_error"
    return {"body": body, "text": response.text}


# -- request variables and helpers ---------------------------------------------------------------

VARIABLES = [
    pytest.param(
        "You said: {{ last_user }}",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                *user("Hi there"),
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        "You said: Hi there",
        id="last-user",
    ),
    pytest.param(
        "[{{ last_message }}]",
        {"messages": [*user("Hi"), {"role": "assistant", "content": "prefill"}]},
        "[prefill]",
        id="last-message",
    ),
    pytest.param(
        "[{{ system }}]",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric."},
                *user("Hi"),
            ]
        },
        "[Be brief.\n\nUse metric.]",
        id="system-and-developer",
    ),
    pytest.param(
        "model={{ model }}", {"model": "foxora-1-mini"}, "model=foxora-1-mini", id="model"
    ),
    pytest.param(
        "{{ messages | length }}:{{ messages[0].role }}:{{ messages[-1].content }}",
        {"messages": [{"role": "system", "content": "s"}, *user("last one")]},
        "2:system:last one",
        id="messages",
    ),
    pytest.param(
        "{{ tool_result('get_weather').temp_c }} C, {{ tool_result('get_weather').sky }}",
        {"messages": tool_conversation()},
        "21 C, clear",
        id="tool-result-field",
    ),
    pytest.param(
        "latest: {{ tool_result() }}; none: {{ tool_result('nope') is none }}",
        {"messages": tool_conversation()},
        "latest: noon; none: True",
        id="tool-result-latest-and-missing",
    ),
    pytest.param(
        "{% for r in tool_results %}{{ r.name }}="
        "{{ r.result.temp_c if r.result is mapping else r.result }};{% endfor %}",
        {"messages": tool_conversation()},
        "get_weather=21;get_time=noon;",
        id="tool-results",
    ),
    pytest.param(
        "{{ headers['x-user-id'] }}/{{ headers.get('x-absent', '-') }}",
        {"extra_headers": {"X-User-Id": "u-7"}},
        "u-7/-",
        id="headers-lower-case",
    ),
    pytest.param(
        "{{ request.metadata.user_id }}/{{ request.temperature }}/{{ request.user }}"
        "/{{ request.max_tokens }}/{{ request.messages[0].role }}",
        {"metadata": {"user_id": "u1"}, "temperature": 0.5, "user": "alice", "max_tokens": 50},
        "u1/0.5/alice/50/user",
        id="request-body-fields",
    ),
    pytest.param(
        "turn {{ turn }}",
        {
            "messages": [
                *user("a"),
                {"role": "assistant", "content": "b"},
                *user("c"),
                {"role": "assistant", "content": "d"},
                *user("e"),
            ]
        },
        "turn 2",
        id="turn",
    ),
    pytest.param(
        "{{ tools | join(',') }}|{{ tool_choice }}|{{ response_format }}|{{ stream }}",
        {"tools": [tool("get_weather"), tool("get_time")], "tool_choice": "auto"},
        "get_weather,get_time|auto|text|False",
        id="tools-choice-format-stream",
    ),
    # helpers
    pytest.param(
        r"#{{ last_user | regex_search('order #(\\d+)') }}",
        {"messages": user("where is order #1234 now?")},
        "#1234",
        id="regex-search",
    ),
    pytest.param(
        "{{ last_user | regex_search('zzz') or 'no match' }}",
        {},
        "no match",
        id="regex-search-no-match",
    ),
    pytest.param(
        r"{{ last_user | regex_search('(?P<w>\\w+)@', 'w') }}",
        {"messages": user("mail bob@example.com")},
        "bob",
        id="regex-search-named-group",
    ),
    pytest.param(
        "{{ last_user | regex_replace('[0-9]', '#') }}",
        {"messages": user("card 1234-99")},
        "card ####-##",
        id="regex-replace",
    ),
    pytest.param(
        "{{ request.metadata | json }} {{ json([1, 'a', none]) }}",
        {"metadata": {"user_id": "u1"}},
        '{"user_id": "u1"} [1, "a", null]',
        id="json",
    ),
    pytest.param(
        "{{ (last_user | from_json).city }} {{ (last_user | from_json).days + 1 }}",
        {"messages": user('{"city": "Oslo", "days": 2}')},
        "Oslo 3",
        id="from-json",
    ),
]


@pytest.mark.parametrize(("template", "request_fields", "expected"), VARIABLES)
async def test_template_variables_and_helpers(
    start_server: Any, openapi: Any, template: str, request_fields: dict[str, Any], expected: str
) -> None:
    srv = await start_server(one_scenario(template))
    assert await content_of(srv, openapi, **request_fields) == expected


async def test_uuid_now_and_random_helpers(start_server: Any, openapi: Any) -> None:
    srv = await start_server(
        one_scenario(
            "{{ uuid() }}|{{ now() }}|{{ now('%Y') }}|{{ random_int(1, 6) }}"
            "|{{ random_choice(['a', 'b']) }}|{{ ['x', 'y'] | random }}"
        )
    )
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    uuids = set()
    for _ in range(5):
        uid, now, year, die, choice, pick = (await content_of(srv, openapi)).split("|")
        assert UUID4.match(uid), uid
        uuids.add(uid)
        stamp = dt.datetime.fromisoformat(now)
        assert stamp.utcoffset() == dt.timedelta(0)
        assert before <= stamp <= dt.datetime.now(dt.timezone.utc)
        assert year == str(stamp.year)
        assert 1 <= int(die) <= 6
        assert choice in ("a", "b")
        assert pick in ("x", "y")
    assert len(uuids) == 5


SEEDED = one_scenario(
    "{{ random_int(1, 1000000000) }} {{ uuid() }} {{ random_choice(range(1000)) }} "
    "{{ range(1000) | random }}"
)


async def test_seed_makes_template_randomness_reproducible(start_server: Any, openapi: Any) -> None:
    async def run(seed: int) -> list[str]:
        srv = await start_server(SEEDED, seed=seed)
        return [await content_of(srv, openapi) for _ in range(3)]

    first, second, other = await run(1234), await run(1234), await run(99)
    assert first == second
    assert len(set(first)) == 3  # each request draws anew
    assert other != first


# -- tool call arguments ------------------------------------------------------------------------

TOOL_ARGUMENTS = """\
version: 1
scenarios:
  - name: object-arguments
    match: {last_user: {startswith: book}}
    respond:
      tool_calls:
        - name: book_trip
          id: "call_fixed_{{ turn }}"
          arguments:
            city: "{{ last_user | regex_search('to ([A-Z][a-z]+)') }}"
            days: "{{ 3 }}"
            nights: "{{ request.metadata.nights | int }}"
            price: "{{ 19.5 * 2 }}"
            confirmed: "{{ true }}"
            nothing: "{{ none }}"
            note: "days={{ 3 }}"
            spaced: "  {{ 4 }}  "
            fixed: 7
            plain: just text
            list: ["{{ 1 + 1 }}", "x{{ 2 }}", 3]
            nested: {user: "{{ request.user }}", ids: "{{ [1, 2] }}"}
            count: "{{ messages | length }}"
  - name: string-arguments
    match: {last_user: {startswith: fly}}
    respond:
      tool_calls:
        - name: book_trip
          arguments: '{"city": {{ last_user | regex_search("to ([A-Z][a-z]+)") | json }},
            "days": {{ turn + 2 }}, "tools": {{ tools | json }}}'
        - name: get_time
          arguments: '{"zone": "UTC"}'
"""


async def test_tool_call_arguments_object_keeps_native_types(
    start_server: Any, openapi: Any
) -> None:
    srv = await start_server(TOOL_ARGUMENTS)
    reply = await completion(
        srv,
        openapi,
        messages=user("book a trip to Rome"),
        tools=[tool("book_trip")],
        metadata={"nights": "4"},
        user="alice",
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id == "call_fixed_0"
    assert call.type == "function"
    assert call.function.name == "book_trip"
    arguments = json.loads(call.function.arguments)
    assert arguments == {
        "city": "Rome",
        "days": 3,
        "nights": 4,
        "price": 39.0,
        "confirmed": True,
        "nothing": None,
        "note": "days=3",
        "spaced": 4,
        "fixed": 7,
        "plain": "just text",
        "list": [2, "x2", 3],
        "nested": {"user": "alice", "ids": [1, 2]},
        "count": 1,
    }
    assert type(arguments["days"]) is int
    assert type(arguments["confirmed"]) is bool


async def test_tool_call_arguments_json_string_template(start_server: Any, openapi: Any) -> None:
    srv = await start_server(TOOL_ARGUMENTS)
    messages = [*user("hi"), {"role": "assistant", "content": "hello"}, *user("fly me to Lima")]
    reply = await completion(
        srv, openapi, messages=messages, tools=[tool("book_trip"), tool("get_time")]
    )
    first, second = reply.choices[0].message.tool_calls
    assert json.loads(first.function.arguments) == {
        "city": "Lima",
        "days": 3,
        "tools": ["book_trip", "get_time"],
    }
    assert json.loads(second.function.arguments) == {"zone": "UTC"}
    assert first.id != second.id
    assert first.id.startswith("call_")


async def test_render_failures_answer_500_naming_the_scenario(
    start_server: Any, openapi: Any, tmp_path: Path
) -> None:
    path = write_scenarios(
        tmp_path,
        """\
version: 1
scenarios:
  - name: ok
    match: {last_user: ping}
    respond: {content: pong}
  - name: undefined-variable
    match: {last_user: undefined}
    respond: {content: "{{ no_such_variable }}"}
  - name: bad-json-arguments
    match: {last_user: arguments}
    respond:
      tool_calls: [{name: f, arguments: '{"x": {{ last_user }}}'}]
""",
        "render.yaml",
    )
    srv = await start_server(scenarios=[path])
    error = await render_error(srv, openapi, messages=user("undefined"))
    message = error["body"]["error"]["message"]
    assert message.startswith(f"scenario 'undefined-variable' ({path}:6) failed to render: ")
    assert "no_such_variable" in message
    error = await render_error(srv, openapi, messages=user("arguments"))
    message = error["body"]["error"]["message"]
    assert message.startswith(f"scenario 'bad-json-arguments' ({path}:9) failed to render: ")
    assert "not valid JSON" in message
    assert await content_of(srv, openapi, messages=user("ping")) == "pong"


# -- the sandbox ----------------------------------------------------------------------------------

ENV_SECRET = "env-secret-7f3a9c"
FILE_SECRET = "file-secret-b81d44"

ESCAPES = [
    # Python internals through attributes and items: refused when the file loads
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ request['__class__'] }}",
    "{{ request.__class__ }}",
    "{{ lipsum.__globals__.os }}",
    "{{ lipsum.__globals__['os'].environ['FOXMOCK_TEST_SECRET'] }}",
    "{{ self._TemplateReference__context }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    # the same through the attr filter, computed names and format strings: refused at render time
    "{{ ''|attr('__class__') }}",
    "{{ (''|attr('__class__'))|attr('__mro__') }}",
    "{{ cycler|attr('__init__')|attr('__globals__') }}",
    "{{ (lipsum|attr('__globals__'))['os'].environ['FOXMOCK_TEST_SECRET'] }}",
    r"{{ request|attr('\x5f\x5fclass\x5f\x5f') }}",
    "{{ request['__cla' ~ 'ss__'] }}",
    "{{ lipsum['__glo' ~ 'bals__']['os'].environ['FOXMOCK_TEST_SECRET'] }}",
    "{{ '{0.__class__}'.format(request) }}",
    "{{ '{0.__init__.__globals__[os].environ}'.format(cycler) }}",
    # files
    "{% include '/etc/passwd' %}",
    "{% include 'SECRET_FILE' %}",
    "{% import 'SECRET_FILE' as f %}{{ f }}",
    "{% extends 'SECRET_FILE' %}",
    "{{ open('/etc/passwd').read() }}",
    "{{ open('SECRET_FILE').read() }}",
    # the environment
    "{{ environ }}",
    "{{ environ['FOXMOCK_TEST_SECRET'] }}",
    "{{ os.environ['FOXMOCK_TEST_SECRET'] }}",
    "{{ config }}",
]

CONTENT_LINE = 8  # the line of `content:` in the file below


def sandbox_file(template: str) -> str:
    return f"""\
version: 1
scenarios:
  - name: ok
    match: {{last_user: ping}}
    respond: {{content: pong}}
  - name: escape-attempt
    respond:
      content: {json.dumps(template)}
"""


@pytest.mark.parametrize("template", ESCAPES)
async def test_sandbox_refuses_escapes(
    start_server: Any,
    openapi: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    template: str,
) -> None:
    monkeypatch.setenv("FOXMOCK_TEST_SECRET", ENV_SECRET)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(f"root:x:0:0:{FILE_SECRET}\n", "utf-8")
    path = write_scenarios(
        tmp_path, sandbox_file(template.replace("SECRET_FILE", str(secret_file))), "escape.yaml"
    )
    assert path.read_text().splitlines()[CONTENT_LINE - 1].startswith("      content: ")

    try:
        foxmock.load_scenarios([path])
    except foxmock.ScenarioError as exc:  # refused at load time
        assert [(p.file, p.line, p.key) for p in exc.problems] == [
            (str(path), CONTENT_LINE, "scenarios[1].respond.content")
        ]
        assert f"{path}:{CONTENT_LINE}: [scenarios[1].respond.content] " in str(exc)
        with pytest.raises(foxmock.ScenarioError):
            await start_server(scenarios=[path])
        return

    # otherwise refused at render time: a 500 naming the scenario, nothing leaked
    srv = await start_server(scenarios=[path])
    error = await render_error(srv, openapi)
    message = error["body"]["error"]["message"]
    assert message.startswith(f"scenario 'escape-attempt' ({path}:6) failed to render: ")
    for leak in (ENV_SECRET, FILE_SECRET, "root:x:0:0", "uid=", "<function", "<module"):
        assert leak not in error["text"]
    assert await content_of(srv, openapi, messages=user("ping")) == "pong"


# -- bounded rendering, against a real `foxmock serve` process (a hang cannot block the tests) ----


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@contextmanager
def served(path: Path) -> Iterator[str]:
    """Run ``foxmock serve`` on a free port; yield its base URL; kill it afterwards."""
    command = [
        sys.executable,
        "-m",
        "foxmock",
        "serve",
        "--scenarios",
        str(path),
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--log-level",
        "error",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 15
        while True:  # queue.Empty if it does not start in time
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                break
        yield found.group(1)
    finally:
        proc.kill()
        proc.wait(10)


BOUNDED = [
    pytest.param("{% for i in range(10**9) %}x{% endfor %}", id="huge-range-loop"),
    pytest.param("{{ range(10**9) | list | length }}", id="huge-range-list"),
    pytest.param("{{ range(0, 10**12, 3) | sum }}", id="huge-range-step"),
    pytest.param("{{ 'x' * 2000000 }}", id="output-over-cap"),
    pytest.param(
        "{% for i in range(1000) %}{% for j in range(1001) %}x{% endfor %}{% endfor %}",
        id="nested-loops-output-over-cap",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done",
        id="nested-loops-ten-billion-iterations",
    ),
]


@pytest.mark.parametrize("template", BOUNDED)
def test_huge_renders_are_bounded(tmp_path: Path, openapi: Any, template: str) -> None:
    path = write_scenarios(tmp_path, sandbox_file(template), "bounded.yaml")
    with served(path) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=5)
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="foxora-1", messages=user("hello"))
        assert time.monotonic() - started < 5
        body = caught.value.response.json()
        openapi("ErrorResponse", body)
        assert body["error"]["code"] == "scenario_render_error"
        assert "'escape-attempt'" in body["error"]["message"]
        reply = client.chat.completions.create(model="foxora-1", messages=user("ping"))
        assert reply.choices[0].message.content == "pong"
