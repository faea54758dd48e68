"""Stateful scenarios: ``sequence``, ``after``, ``times`` and ``scope``, in memory and in Redis.

Each test that counts runs twice through the ``state_url`` fixture: counters in memory, then
in a real Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from foxmock.testing import MockServer
from tests.pytester_support import _hermetic_environment, run  # noqa: F401
from tests.support import run_cli, validate_schema, write_scenarios

pytest_plugins = ["pytester"]

FLAKY = """\
version: 1
scenarios:
  - name: flaky
    match: {last_user: {contains: summarise}}
    sequence:
      - fault: {status: 500, message: "upstream overloaded"}
      - fault: {status: 500, message: "still overloaded"}
      - respond: {content: "Here is the summary."}
"""

STEPS = """\
version: 1
scenarios:
  - name: steps
    match: {last_user: {contains: go}}
    sequence:
      - respond: {content: "step one"}
      - respond: {content: "step two"}
      - respond: {content: "step three"}
    after: AFTER
"""

FALLBACK = """\
  - name: fallback
    match: {}
    respond: {content: "fallback answer"}
"""

TIMES = """\
version: 1
scenarios:
  - name: one-shot
    match: {last_user: {contains: once}}
    times: 2
    respond: {content: "only twice"}
"""

ATOMIC = """\
version: 1
scenarios:
  - name: trio
    match: {last_user: {contains: hammer}}
    sequence:
      - fault: {status: 500, message: "first fails"}
      - fault: {status: 503, message: "second fails"}
      - respond: {content: "third answers"}
    after: pass
  - name: catch-all
    match: {}
    respond: {content: "caught"}
"""


def scoped(scope: str) -> str:
    return (
        "version: 1\n"
        "scenarios:\n"
        "  - name: scoped\n"
        "    match: {last_user: {contains: go}}\n"
        "    sequence:\n"
        '      - respond: {content: "step one"}\n'
        '      - respond: {content: "step two"}\n'
        '      - respond: {content: "step three"}\n'
        f"    scope: {scope}\n"
    )


class Reply:
    """A raw HTTP answer: status code and body."""

    def __init__(self, status_code: int, data: bytes) -> None:
        self.status_code, self.data = status_code, data

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.data)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """One request with the standard library (no client-side retries)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read())


def check_body(response: Reply) -> dict[str, Any]:
    """The JSON body, valid against OpenAI's schema for its status."""
    body: dict[str, Any] = response.json()
    if response.status_code == 200:
        validate_schema("CreateChatCompletionResponse", body)
    else:
        validate_schema("ErrorResponse", body)
    return body


@pytest.fixture
def serve(state_url: str | None) -> Iterator[Any]:
    """Factory: ``serve(yaml, **config)`` is a started thread MockServer on ``state_url``."""
    servers: list[MockServer] = []

    def start(yaml_text: str, **config: Any) -> MockServer:
        config.setdefault("state", state_url)
        server = MockServer(yaml=yaml_text, **config)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def chat(
    server: MockServer,
    text: str,
    headers: dict[str, str] | None = None,
    api_key: str = "sk-test",
    **extra: Any,
) -> Reply:
    body = {"model": "foxora-1", "messages": [{"role": "user", "content": text}], **extra}
    response = http(
        "POST",
        f"{server.base_url}/chat/completions",
        body,
        {"authorization": f"Bearer {api_key}", **(headers or {})},
    )
    check_body(response)
    return response


def content(response: Reply) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def steps_of(server: MockServer, scenario: str | None = None) -> list[int | None]:
    return [e.step for e in server.journal.entries() if scenario is None or e.scenario == scenario]


# --- 1. openai-python retries through a flaky sequence


def test_sync_client_retries_through_two_500s(serve: Any) -> None:
    server = serve(FLAKY)
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=2)
    reply = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": "please summarise this"}]
    )
    assert reply.choices[0].message.content == "Here is the summary."
    validate_schema("CreateChatCompletionResponse", reply.model_dump(exclude_unset=True))
    entries = server.journal.entries()
    assert [e.step for e in entries] == [1, 2, 3]
    assert [e.status for e in entries] == [500, 500, 200]
    assert {e.scenario for e in entries} == {"flaky"}
    # the last step repeats (after: repeat is the default)
    assert content(chat(server, "summarise again")) == "Here is the summary."
    assert steps_of(server)[-1] == 3


async def test_async_client_retries_into_a_streamed_step(state_url: str | None) -> None:
    text = FLAKY.replace(
        '      - respond: {content: "Here is the summary."}\n',
        '      - respond: {content: "Here is the summary."}\n        latency: {ttft: 10ms}\n',
    )
    async with MockServer(yaml=text, state=state_url) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=2)
        stream = await client.chat.completions.create(
            model="foxora-1",
            messages=[{"role": "user", "content": "summarise it"}],
            stream=True,
        )
        parts = [
            chunk.choices[0].delta.content
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]
        await client.close()
        assert "".join(parts) == "Here is the summary."
        entries = server.journal.entries()
        assert [e.step for e in entries] == [1, 2, 3]
        assert [e.status for e in entries] == [500, 500, 200]
        assert entries[-1].stream is True


def test_error_steps_are_openai_envelopes(serve: Any) -> None:
    server = serve(FLAKY)
    first = chat(server, "summarise")
    assert first.status_code == 500
    assert first.json()["error"]["message"] == "upstream overloaded"
    second = chat(server, "summarise")
    assert second.status_code == 500
    assert second.json()["error"]["message"] == "still overloaded"
    assert content(chat(server, "summarise")) == "Here is the summary."


def test_admin_journal_json_has_the_step(serve: Any) -> None:
    server = serve(FLAKY)
    for _ in range(3):
        chat(server, "summarise")
    journal = http("GET", f"{server.url}/_foxmock/journal").json()
    entries = journal["entries"] if isinstance(journal, dict) else journal
    assert sorted(e["step"] for e in entries) == [1, 2, 3]


# --- 2. after: repeat / pass, times


def test_after_repeat_keeps_the_last_step(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "repeat"))
    got = [content(chat(server, "go")) for _ in range(5)]
    assert got == ["step one", "step two", "step three", "step three", "step three"]
    assert steps_of(server) == [1, 2, 3, 3, 3]


def test_after_pass_hands_over_to_a_later_scenario(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "pass") + FALLBACK)
    got = [content(chat(server, "go")) for _ in range(5)]
    assert got == ["step one", "step two", "step three", "fallback answer", "fallback answer"]
    entries = server.journal.entries()
    assert [e.scenario for e in entries] == ["steps"] * 3 + ["fallback"] * 2
    assert [e.step for e in entries[:3]] == [1, 2, 3]


def test_after_pass_with_nothing_later_is_a_404_naming_the_sequence(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "pass"))
    for _ in range(3):
        content(chat(server, "go"))
    missed = chat(server, "go")
    assert missed.status_code == 404
    error = missed.json()["error"]
    assert error["code"] == "no_scenario_matched"
    assert "Matched, but used up:" in error["message"]
    assert re.search(r"steps \([^)]*:\d+\): sequence used up, 3 of 3 steps", error["message"]), (
        error["message"]
    )
    assert server.journal.entries()[-1].status == 404


def test_times_answers_n_times_then_passes(serve: Any) -> None:
    server = serve(TIMES + FALLBACK)
    got = [content(chat(server, "once more")) for _ in range(4)]
    assert got == ["only twice", "only twice", "fallback answer", "fallback answer"]
    assert steps_of(server, "one-shot") == [1, 2]


def test_times_used_up_404_names_it(serve: Any) -> None:
    server = serve(TIMES)
    assert content(chat(server, "once")) == "only twice"
    assert content(chat(server, "once")) == "only twice"
    missed = chat(server, "once")
    assert missed.status_code == 404
    message = missed.json()["error"]["message"]
    assert missed.json()["error"]["code"] == "no_scenario_matched"
    assert "Matched, but used up:" in message
    assert re.search(r"one-shot \([^)]*:\d+\): used up, answered 2 of 2 times", message), message


# --- 3. atomicity


async def test_concurrent_identical_requests_each_get_one_step(state_url: str | None) -> None:
    async with MockServer(yaml=ATOMIC, state=state_url) as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=60
        ) as client:

            async def one() -> tuple[int, str]:
                try:
                    reply = await client.chat.completions.create(
                        model="foxora-1", messages=[{"role": "user", "content": "hammer"}]
                    )
                except openai.APIStatusError as exc:
                    validate_schema("ErrorResponse", exc.response.json())
                    return exc.status_code, ""
                validate_schema(
                    "CreateChatCompletionResponse", reply.model_dump(exclude_unset=True)
                )
                return 200, str(reply.choices[0].message.content)

            results = await asyncio.gather(*(one() for _ in range(50)))
        assert sorted(s for s, _ in results if s != 200) == [500, 503]
        answers = [c for s, c in results if s == 200]
        assert answers.count("third answers") == 1
        assert answers.count("caught") == 47
        entries = server.journal.entries()
        assert len(entries) == 50
        trio = sorted((e.step, e.status) for e in entries if e.scenario == "trio")
        assert trio == [(1, 500), (2, 503), (3, 200)]
        assert sum(e.scenario == "catch-all" for e in entries) == 47


# --- 4. scopes


def test_header_scope_sessions_are_independent(serve: Any) -> None:
    server = serve(scoped("{header: x-foxmock-session}"))
    got: dict[str, list[str]] = {"a": [], "b": []}
    for session in ["a", "b", "a", "a", "b", "b"]:
        got[session].append(content(chat(server, "go", {"x-foxmock-session": session})))
    assert got["a"] == ["step one", "step two", "step three"]
    assert got["b"] == ["step one", "step two", "step three"]
    assert steps_of(server) == [1, 1, 2, 3, 2, 3]


@pytest.mark.parametrize(
    ("scope", "field"),
    [("{body: metadata.session_id}", "metadata"), ("{body: user}", "user")],
)
def test_body_scope_sessions_are_independent(serve: Any, scope: str, field: str) -> None:
    server = serve(scoped(scope))

    def extra(session: str) -> dict[str, Any]:
        if field == "metadata":
            return {"metadata": {"session_id": session}}
        return {"user": session}

    seen: dict[str, list[str]] = {"x": [], "y": []}
    for session in ["x", "y", "y", "x", "x", "y"]:
        seen[session].append(content(chat(server, "go", **extra(session))))
    assert seen["x"] == ["step one", "step two", "step three"]
    assert seen["y"] == ["step one", "step two", "step three"]


def test_api_key_scope(serve: Any) -> None:
    server = serve(scoped("api_key"))
    order = ["sk-one", "sk-two", "sk-one", "sk-two", "sk-two", "sk-one"]
    got = [content(chat(server, "go", api_key=key)) for key in order]
    assert got == ["step one", "step one", "step two", "step two", "step three", "step three"]
    state = http("GET", f"{server.url}/_foxmock/state").json()
    scopes = [e["scope"] for e in state["entries"] if e["kind"] == "sequence"]
    assert len(scopes) == 2
    assert not any("sk-one" in str(s) or "sk-two" in str(s) for s in scopes), scopes


def test_test_scope_follows_test_id(serve: Any) -> None:
    server = serve(scoped("test"))
    server.test_id = "t1"
    assert content(chat(server, "go")) == "step one"
    assert content(chat(server, "go")) == "step two"
    server.test_id = "t2"
    assert server.test_id == "t2"
    assert content(chat(server, "go")) == "step one"
    server.test_id = "t1"
    assert content(chat(server, "go")) == "step three"


def test_sequence_scope_config_sets_the_default(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "repeat"), sequence_scope="header:x-who")
    assert content(chat(server, "go", {"x-who": "a"})) == "step one"
    assert content(chat(server, "go", {"x-who": "b"})) == "step one"
    assert content(chat(server, "go", {"x-who": "a"})) == "step two"
    state = http("GET", f"{server.url}/_foxmock/state").json()
    assert "x-who" in state["default_scope"]


# --- 5. admin state and reset


def test_admin_state_shows_clears_and_resets(serve: Any) -> None:
    two = STEPS.replace("AFTER", "repeat") + (
        "  - name: other\n"
        "    match: {last_user: {contains: other}}\n"
        "    sequence:\n"
        '      - respond: {content: "other one"}\n'
        '      - respond: {content: "other two"}\n'
    )
    server = serve(two)
    chat(server, "go")
    chat(server, "go")
    chat(server, "other")
    state = http("GET", f"{server.url}/_foxmock/state").json()
    if server.config.state is None:
        assert state["store"] == "memory"
    else:
        assert state["store"].startswith("redis://")
    by_name = {e["name"]: e for e in state["entries"] if e["kind"] == "sequence"}
    assert by_name["steps"]["count"] == 2
    assert by_name["steps"]["steps"] == 3
    assert by_name["steps"]["next_step"] == 3
    assert by_name["steps"]["used_up"] is False
    assert by_name["other"]["count"] == 1
    assert by_name["other"]["next_step"] == 2

    cleared = http("DELETE", f"{server.url}/_foxmock/state?scenario=steps").json()
    assert cleared == {"cleared": 1}
    assert content(chat(server, "go")) == "step one"
    assert content(chat(server, "other")) == "other two"

    cleared = http("DELETE", f"{server.url}/_foxmock/state").json()
    assert cleared["cleared"] == 2
    assert http("GET", f"{server.url}/_foxmock/state").json()["entries"] == []
    assert content(chat(server, "other")) == "other one"

    chat(server, "go")
    reset = http("POST", f"{server.url}/_foxmock/reset")
    assert reset.status_code == 200
    assert len(server.journal.entries()) == 0
    assert http("GET", f"{server.url}/_foxmock/state").json()["entries"] == []
    assert content(chat(server, "go")) == "step one"


def test_admin_state_marks_used_up(serve: Any) -> None:
    server = serve(TIMES)
    chat(server, "once")
    chat(server, "once")
    state = http("GET", f"{server.url}/_foxmock/state").json()
    (entry,) = [e for e in state["entries"] if e["kind"] == "sequence"]
    assert entry["name"] == "one-shot"
    assert entry["limit"] == 2
    assert entry["used_up"] is True
    assert entry["next_step"] is None


def test_mockserver_reset_restarts_sequences(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "repeat"))
    chat(server, "go")
    chat(server, "go")
    server.reset()
    assert len(server.journal.entries()) == 0
    assert content(chat(server, "go")) == "step one"
    chat(server, "go")
    server.reset_state()
    assert len(server.journal.entries()) == 2  # reset_state keeps the journal
    assert content(chat(server, "go")) == "step one"


# --- 6. the replay cache never answers for a sequence


def test_identical_requests_walk_the_steps(serve: Any) -> None:
    text = (
        "version: 1\n"
        "scenarios:\n"
        "  - name: five\n"
        "    match: {last_user: {contains: same}}\n"
        "    sequence:\n"
        + "".join(f'      - respond: {{content: "answer {i}"}}\n' for i in range(1, 6))
    )
    server = serve(text)
    got = [content(chat(server, "same words")) for _ in range(5)]
    assert got == [f"answer {i}" for i in range(1, 6)]
    assert steps_of(server) == [1, 2, 3, 4, 5]


def test_fallback_is_not_replayed_after_state_is_cleared(serve: Any) -> None:
    server = serve(STEPS.replace("AFTER", "pass") + FALLBACK)
    got = [content(chat(server, "go")) for _ in range(6)]
    assert got[3:] == ["fallback answer"] * 3
    assert http("DELETE", f"{server.url}/_foxmock/state").status_code == 200
    assert content(chat(server, "go")) == "step one"
    assert server.journal.entries()[-1].scenario == "steps"
    # a purely stateless answer still may be replayed and is unaffected
    assert content(chat(server, "hello")) == "fallback answer"
    assert content(chat(server, "hello")) == "fallback answer"


# --- 8. scenario file problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nscenarios:\n  - name: bad\n    match: {}\n"
            "    times: 2\n    after: pass\n    respond: {content: x}\n",
            r"after|times",
        ),
        (
            "version: 1\nscenarios:\n  - name: bad\n    match: {}\n"
            "    respond: {content: x}\n    sequence:\n      - respond: {content: y}\n",
            r"respond|sequence",
        ),
        (
            "version: 1\nscenarios:\n  - name: bad\n    match: {}\n    sequence:\n"
            "      - respond: {content: y}\n      - respnd: {content: z}\n",
            r"respnd",
        ),
        (
            "version: 1\nscenarios:\n  - name: bad\n    match: {}\n    sequence: []\n",
            r"sequence",
        ),
    ],
    ids=["pass-with-times", "respond-beside-sequence", "unknown-step-key", "empty-sequence"],
)
def test_validate_rejects(tmp_path: Path, text: str, expected: str) -> None:
    path = write_scenarios(tmp_path, text)
    result = run_cli("validate", path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(expected, output), output
    if "respnd" in text:
        assert re.search(r":7\b|line 7", output), output


def test_validate_accepts_a_good_stateful_file(tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, ATOMIC + TIMES.split("scenarios:\n", 1)[1])
    result = run_cli("validate", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- 9. the pytest plugin: each test starts at step 1

INNER = '''\
import openai
import pytest

SEQ = """\\
version: 1
scenarios:
  - name: two-step
    match: {}
    sequence:
      - respond: {content: "first step"}
      - respond: {content: "second step"}
"""

pytestmark = pytest.mark.foxmock(yaml=SEQ)


def ask():
    client = openai.OpenAI(max_retries=0)
    reply = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": "hi"}]
    )
    return reply.choices[0].message.content


def test_a(foxmock):
    assert ask() == "first step"
    assert foxmock.journal.last().step == 1


def test_b(foxmock):
    assert ask() == "first step"


def test_c(foxmock):
    assert ask() == "first step"
    assert ask() == "second step"
'''


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_plugin_starts_every_test_at_step_one(pytester: pytest.Pytester, args: tuple[str]) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = run(pytester, *args)
    result.assert_outcomes(passed=3)
