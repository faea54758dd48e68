"""The admin API under ``/_foxmock/`` against live servers, with the openai SDK as the client.

Every error body is checked against OpenAI's ``ErrorResponse`` schema and every chat answer
against ``CreateChatCompletionResponse``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

import foxmock
from tests.conftest import LiveServer, StartServer
from tests.support import run_cli

Validate = Callable[[str, Any], None]

BUNDLED = [
    "rate-limit-demo",
    "solid-summary",
    "count-to-five",
    "weather-asks-tool",
    "weather-answers",
    "json-schema-synthesised",
    "json-echo",
    "echo",
]
SOLID_PROMPT = "Summarise SOLID in one paragraph."
YAML = "application/yaml"

PING_YAML = """\
version: 1
scenarios:
  - name: ping
    match:
      last_user: ping
    respond:
      content: pong
"""

FILE_V1 = """\
version: 1
models: [foxora-1]
scenarios:
  - name: greet
    match: {last_user: {contains: hello}}
    respond: {content: version one}
"""

FILE_V2 = """\
version: 1
models: [foxora-1]
scenarios:
  - name: greet
    match: {last_user: {contains: hello}}
    respond: {content: "version two, edited on disk"}
  - name: bye
    match: {last_user: {contains: bye}}
    respond: {content: see you}
"""

FILE_BROKEN = """\
version: 1
models: [foxora-1]
scenarios:
  - name: greet
    match: {last_usr: {contains: hello}}
    respond: {content: broken}
"""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    server: LiveServer,
    method: str,
    path: str,
    openapi: Validate | None = None,
    *,
    expect: int,
    **kwargs: Any,
) -> Any:
    """An admin request; checks the status, validates error bodies, returns the JSON (or None)."""
    async with http.request(method, f"{server.url}/_foxmock{path}", **kwargs) as response:
        text = await response.text()
        assert response.status == expect, f"{method} {path}: {response.status} {text}"
        if response.status == 204:
            assert text == ""
            return None
        assert response.content_type == "application/json"
        body = json.loads(text)
        if response.status >= 400:
            assert openapi is not None, "pass openapi to validate error bodies"
            openapi("ErrorResponse", body)
            assert "Traceback" not in text
        return body


async def chat(server: LiveServer, openapi: Validate, text: str, **kwargs: Any) -> Any:
    """A chat completion through the async SDK; the raw body is validated."""
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="any-key", max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="foxora-1", messages=[{"role": "user", "content": text}], **kwargs
        )
        openapi("CreateChatCompletionResponse", raw.http_response.json())
        return raw.parse()


async def answer(server: LiveServer, openapi: Validate, text: str) -> str | None:
    return (await chat(server, openapi, text)).choices[0].message.content  # type: ignore[no-any-return]


async def no_match(server: LiveServer, openapi: Validate, text: str) -> dict[str, Any]:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="any-key", max_retries=0
    ) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(
                model="foxora-1", messages=[{"role": "user", "content": text}]
            )
    envelope: dict[str, Any] = info.value.response.json()
    openapi("ErrorResponse", envelope)
    assert envelope["error"]["code"] == "no_scenario_matched"
    return envelope


# --- status and listing ------------------------------------------------------------------------


async def test_status(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    status = await call(http, server, "GET", "/status", expect=200)
    assert status == {
        "version": foxmock.__version__,
        "scenarios": len(BUNDLED),
        "watch": False,
        "reload_error": [],
        "journal": {"size": 0, "max": 1000, "total": 0},
        "replay": {"enabled": True, "entries": 0, "hits": 0},
    }
    await answer(server, openapi, "hi")
    await answer(server, openapi, "again")
    await answer(server, openapi, "again")
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["journal"] == {"size": 3, "max": 1000, "total": 3}
    assert status["replay"] == {"enabled": True, "entries": 2, "hits": 1}


async def test_status_reports_journal_size_setting(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(journal_size=3)
    for i in range(5):
        await answer(server, openapi, f"m{i}")
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["journal"] == {"size": 3, "max": 3, "total": 5}


async def test_list_scenarios(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server()
    body = await call(http, server, "GET", "/scenarios", expect=200)
    assert body["reload_error"] == []
    assert [s["name"] for s in body["scenarios"]] == BUNDLED  # match order: priority first
    solid = body["scenarios"][1]
    assert solid["priority"] == 0
    assert solid["file"].endswith("default.yaml")
    assert isinstance(solid["line"], int) and solid["line"] > 1
    assert set(solid) == {"name", "description", "priority", "file", "line"}
    assert body["scenarios"][0]["priority"] == 100


# --- adding scenarios ---------------------------------------------------------------------------


async def test_post_yaml_text_adds_a_scenario(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    assert await answer(server, openapi, "ping") == "You said: ping"
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    assert body == {"added": ["ping"]}
    assert await answer(server, openapi, "ping") == "pong"
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    ping = next(s for s in listed["scenarios"] if s["name"] == "ping")
    assert ping["file"] == "<inline yaml>" and ping["line"] == 3


async def test_post_yaml_without_content_type_header(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    single = "name: solo\nmatch: {last_user: solo}\nrespond: {content: just one}\n"
    # bytes: aiohttp labels str data text/plain, which the admin refuses (a form type)
    body = await call(http, server, "POST", "/scenarios", expect=201, data=single.encode())
    assert body == {"added": ["solo"]}
    assert await answer(server, openapi, "solo") == "just one"


async def test_post_json_single_and_list(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    one = {"name": "j1", "match": {"last_user": "j1"}, "respond": {"content": "json one"}}
    body = await call(http, server, "POST", "/scenarios", expect=201, json=one)
    assert body == {"added": ["j1"]}
    many = [
        {"name": "j2", "match": {"last_user": "j2"}, "respond": {"content": "json two"}},
        {"name": "j3", "match": {"last_user": "j3"}, "respond": {"content": "json three"}},
    ]
    body = await call(http, server, "POST", "/scenarios", expect=201, json=many)
    assert body == {"added": ["j2", "j3"]}
    document = {
        "version": 1,
        "scenarios": [{"name": "j4", "respond": {"content": "four"}, "match": {"last_user": "j4"}}],
    }
    body = await call(http, server, "POST", "/scenarios", expect=201, json=document)
    assert body == {"added": ["j4"]}
    for name, expected in [
        ("j1", "json one"),
        ("j2", "json two"),
        ("j3", "json three"),
        ("j4", "four"),
    ]:
        assert await answer(server, openapi, name) == expected


async def test_post_name_clash_is_409_and_replace_true_replaces(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    clash = {
        "name": "solid-summary",
        "match": {"last_user": {"contains": "summarise solid", "ignore_case": True}},
        "respond": {"content": "SOLID, replaced at run time."},
    }
    body = await call(http, server, "POST", "/scenarios", openapi, expect=409, json=clash)
    assert body["error"]["code"] == "scenario_exists"
    assert "solid-summary" in body["error"]["message"]
    assert (await answer(server, openapi, SOLID_PROMPT) or "").startswith("SOLID is a set")

    # a clash with a run-time addition is a clash too
    await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        openapi,
        expect=409,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    assert "ping" in body["error"]["message"]

    body = await call(http, server, "POST", "/scenarios?replace=true", expect=201, json=clash)
    assert body == {"added": ["solid-summary"]}
    assert await answer(server, openapi, SOLID_PROMPT) == "SOLID, replaced at run time."
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert [s["name"] for s in listed["scenarios"]].count("solid-summary") == 1


async def test_post_invalid_scenario_is_422_with_file_and_line(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    bad = (
        "version: 1\nscenarios:\n  - name: bad\n    match:\n      modle: x\n"
        "    respond: {content: hi}\n"
    )
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        openapi,
        expect=422,
        data=bad,
        headers={"Content-Type": YAML},
    )
    error = body["error"]
    assert error["code"] == "invalid_scenarios"
    assert "<inline yaml>:5:" in error["message"]
    assert "scenarios[0].match.modle" in error["message"]
    assert "unknown key 'modle'" in error["message"]

    bad_json = {"name": "bad", "match": {"last_user": {"regex": "(x"}}, "respond": {}}
    body = await call(http, server, "POST", "/scenarios", openapi, expect=422, json=bad_json)
    assert "regular expression" in body["error"]["message"]
    assert "match.last_user.regex" in body["error"]["message"]

    template = "name: t\nrespond:\n  content: '{{ oops }'\n"
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        openapi,
        expect=422,
        data=template,
        headers={"Content-Type": YAML},
    )
    assert "<inline yaml>:3:" in body["error"]["message"]
    assert "template" in body["error"]["message"]

    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert [s["name"] for s in listed["scenarios"]] == BUNDLED


async def test_post_unparseable_body_is_400(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        openapi,
        expect=400,
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert body["error"]["code"] == "invalid_body"
    body = await call(
        http,
        server,
        "POST",
        "/scenarios",
        openapi,
        expect=400,
        data="just text",
        headers={"Content-Type": YAML},
    )
    assert body["error"]["code"] == "invalid_body"


# --- replacing and deleting ----------------------------------------------------------------------


async def test_put_replaces_or_creates_one_scenario(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    body = await call(
        http,
        server,
        "PUT",
        "/scenarios/echo",
        expect=200,
        json={"priority": -100, "respond": {"content": "echo was replaced: {{ last_user }}"}},
    )
    assert body == {"replaced": "echo"}
    assert await answer(server, openapi, "hi") == "echo was replaced: hi"

    yaml_body = "match: {last_user: ping}\nrespond: {content: pong via PUT}\n"
    body = await call(
        http,
        server,
        "PUT",
        "/scenarios/ping",
        expect=200,
        data=yaml_body,
        headers={"Content-Type": YAML},
    )
    assert body == {"replaced": "ping"}
    assert await answer(server, openapi, "ping") == "pong via PUT"

    body = await call(
        http,
        server,
        "PUT",
        "/scenarios/ping",
        openapi,
        expect=400,
        json={"name": "pong", "respond": {"content": "x"}},
    )
    assert body["error"]["code"] == "name_mismatch"
    body = await call(
        http,
        server,
        "PUT",
        "/scenarios/ping",
        openapi,
        expect=400,
        json=[{"name": "ping", "respond": {}}],
    )
    assert body["error"]["code"] == "invalid_body"
    body = await call(
        http,
        server,
        "PUT",
        "/scenarios/ping",
        openapi,
        expect=422,
        json={"respond": {"contnet": "typo"}},
    )
    assert "contnet" in body["error"]["message"]
    assert await answer(server, openapi, "ping") == "pong via PUT"


async def test_delete_one_scenario(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    assert await call(http, server, "DELETE", "/scenarios/echo", expect=204) is None
    envelope = await no_match(server, openapi, "hi")
    assert "Nearest scenarios" in envelope["error"]["message"]
    body = await call(http, server, "DELETE", "/scenarios/echo", openapi, expect=404)
    assert body["error"]["code"] == "scenario_not_found"
    body = await call(http, server, "DELETE", "/scenarios/no-such-thing", openapi, expect=404)
    assert "no-such-thing" in body["error"]["message"]


async def test_delete_all_scenarios(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    assert await call(http, server, "DELETE", "/scenarios", expect=204) is None
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert listed["scenarios"] == []
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["scenarios"] == 0
    envelope = await no_match(server, openapi, "ping")
    assert "No scenarios are loaded" in envelope["error"]["message"]


async def test_reset_empties_journal_and_drops_run_time_changes(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    await call(http, server, "DELETE", "/scenarios/solid-summary", expect=204)
    await call(
        http,
        server,
        "PUT",
        "/scenarios/echo",
        expect=200,
        json={"priority": -100, "respond": {"content": "changed"}},
    )
    assert await answer(server, openapi, "ping") == "pong"
    assert await answer(server, openapi, "x") == "changed"

    body = await call(http, server, "POST", "/reset", expect=200)
    assert body == {"scenarios": len(BUNDLED)}
    journal = await call(http, server, "GET", "/journal", expect=200)
    assert journal["entries"] == []
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert [s["name"] for s in listed["scenarios"]] == BUNDLED
    assert await answer(server, openapi, "ping") == "You said: ping"
    assert (await answer(server, openapi, SOLID_PROMPT) or "").startswith("SOLID is a set")


# --- the journal ----------------------------------------------------------------------------------


async def test_journal_queries(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(PING_YAML)
    await answer(server, openapi, "ping")
    await no_match(server, openapi, "first miss")
    await answer(server, openapi, "ping")
    await no_match(server, openapi, "second miss")

    body = await call(http, server, "GET", "/journal", expect=200)
    assert body["total"] == 4
    entries = body["entries"]
    assert [e["id"] for e in entries] == [1, 2, 3, 4]
    assert [e["matched"] for e in entries] == [True, False, True, False]
    first = entries[0]
    assert first["scenario"] == "ping" and first["status"] == 200 and first["content"] == "pong"
    assert first["body"]["messages"] == [{"role": "user", "content": "ping"}]
    assert first["stream"] is False and first["finish_reason"] == "stop"
    assert first["headers"]  # request headers are recorded
    assert entries[1]["status"] == 404 and entries[1]["scenario"] is None
    assert "No foxmock scenario matched" in entries[1]["near_miss"]

    body = await call(http, server, "GET", "/journal?scenario=ping", expect=200)
    assert [e["id"] for e in body["entries"]] == [1, 3]
    body = await call(http, server, "GET", "/journal?matched=false", expect=200)
    assert [e["id"] for e in body["entries"]] == [2, 4]
    body = await call(http, server, "GET", "/journal?matched=true", expect=200)
    assert [e["id"] for e in body["entries"]] == [1, 3]
    body = await call(http, server, "GET", "/journal?limit=2", expect=200)
    assert [e["id"] for e in body["entries"]] == [3, 4]
    body = await call(http, server, "GET", "/journal?limit=0", expect=200)
    assert body["entries"] == []
    body = await call(http, server, "GET", "/journal?matched=false&limit=1", expect=200)
    assert [e["id"] for e in body["entries"]] == [4]
    body = await call(http, server, "GET", "/journal?scenario=nothing", expect=200)
    assert body["entries"] == []

    body = await call(http, server, "GET", "/journal?limit=-1", openapi, expect=400)
    assert body["error"]["param"] == "limit"
    body = await call(http, server, "GET", "/journal?limit=many", openapi, expect=400)
    assert body["error"]["param"] == "limit"


async def test_delete_journal(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    await answer(server, openapi, "one")
    await answer(server, openapi, "two")
    assert await call(http, server, "DELETE", "/journal", expect=204) is None
    body = await call(http, server, "GET", "/journal", expect=200)
    assert body["entries"] == []
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["journal"]["size"] == 0
    await answer(server, openapi, "three")
    body = await call(http, server, "GET", "/journal", expect=200)
    assert [e["body"]["messages"][0]["content"] for e in body["entries"]] == ["three"]
    # scenarios are untouched by clearing the journal
    assert await answer(server, openapi, "four") == "You said: four"


# --- reload ---------------------------------------------------------------------------------------


async def test_reload_after_editing_and_breaking_the_file(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate, tmp_path: Path
) -> None:
    server = await start_server(FILE_V1)
    path = tmp_path / "scenarios0.yaml"
    assert path.read_text("utf-8") == FILE_V1
    assert await answer(server, openapi, "hello") == "version one"
    await no_match(server, openapi, "bye")

    path.write_text(FILE_V2, "utf-8")
    assert await answer(server, openapi, "hello") == "version one"  # no watch: not yet
    body = await call(http, server, "POST", "/reload", expect=200)
    assert body == {"scenarios": 2}
    assert await answer(server, openapi, "hello") == "version two, edited on disk"
    assert await answer(server, openapi, "bye") == "see you"

    path.write_text(FILE_BROKEN, "utf-8")
    body = await call(http, server, "POST", "/reload", openapi, expect=422)
    assert body["error"]["code"] == "reload_failed"
    assert "last good scenarios are still served" in body["error"]["message"]
    problems = body["problems"]
    assert problems and problems[0]["file"] == str(path)
    assert problems[0]["line"] == 5
    assert "last_usr" in problems[0]["key"] or "last_usr" in problems[0]["message"]
    assert set(problems[0]) == {"file", "line", "key", "message"}

    # the last good set still answers, and the failure is visible
    assert await answer(server, openapi, "hello") == "version two, edited on disk"
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["scenarios"] == 2
    assert status["reload_error"] == problems
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert listed["reload_error"] == problems

    path.write_text("version: 1\nscenarios: [\n", "utf-8")  # not even YAML
    body = await call(http, server, "POST", "/reload", openapi, expect=422)
    assert "invalid YAML" in body["problems"][0]["message"]
    assert await answer(server, openapi, "bye") == "see you"

    path.write_text(FILE_V1, "utf-8")
    body = await call(http, server, "POST", "/reload", expect=200)
    assert body == {"scenarios": 1}
    status = await call(http, server, "GET", "/status", expect=200)
    assert status["reload_error"] == []
    assert await answer(server, openapi, "hello") == "version one"


async def test_reload_keeps_run_time_additions(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(FILE_V1)
    await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={"Content-Type": YAML},
    )
    await call(http, server, "POST", "/reload", expect=200)
    assert await answer(server, openapi, "ping") == "pong"
    assert await answer(server, openapi, "hello") == "version one"


# --- admin token ----------------------------------------------------------------------------------


async def test_admin_token(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(admin_token="s3cret")
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret"},
        {"Authorization": "Basic s3cret"},
        {"X-Foxmock-Admin-Token": "wrong"},
        {"X-Foxmock-Admin-Token": ""},
        {"X-Foxmock-Admin-Token": "s3cret-and-more"},
    ]
    for headers in bad_headers:
        for method, path in [
            ("GET", "/status"),
            ("GET", "/journal"),
            ("POST", "/reset"),
            ("DELETE", "/scenarios"),
            ("DELETE", "/scenarios/echo"),
        ]:
            body = await call(http, server, method, path, openapi, expect=401, headers=headers)
            assert body["error"]["code"] == "invalid_admin_token", (headers, path)
            assert "s3cret" not in json.dumps(body)
    # nothing above was carried out
    assert await answer(server, openapi, "still here") == "You said: still here"

    for headers in [
        {"Authorization": "Bearer s3cret"},
        {"authorization": "bearer s3cret"},
        {"X-Foxmock-Admin-Token": "s3cret"},
    ]:
        status = await call(http, server, "GET", "/status", expect=200, headers=headers)
        assert status["scenarios"] == len(BUNDLED)
    good = {"X-Foxmock-Admin-Token": "s3cret"}
    await call(
        http,
        server,
        "POST",
        "/scenarios",
        expect=201,
        data=PING_YAML,
        headers={**good, "Content-Type": YAML},
    )
    assert await answer(server, openapi, "ping") == "pong"
    journal = await call(
        http, server, "GET", "/journal", expect=200, headers={"Authorization": "Bearer s3cret"}
    )
    assert len(journal["entries"]) == 2


async def test_admin_token_does_not_affect_openai_paths(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(admin_token="s3cret")
    assert await answer(server, openapi, "hi") == "You said: hi"
    async with http.get(f"{server.base_url}/models") as response:
        assert response.status == 200
        openapi("ListModelsResponse", await response.json())
    async with http.get(f"{server.url}/healthz") as response:
        assert response.status == 200


async def test_admin_token_with_api_keys(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """The admin token is not an API key, and API keys do not open the admin API."""
    server = await start_server(admin_token="s3cret", api_keys=["sk-user"])
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-user", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "You said: hi"
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="s3cret", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(
                model="foxora-1", messages=[{"role": "user", "content": "hi"}]
            )
        openapi("ErrorResponse", info.value.response.json())
    body = await call(
        http,
        server,
        "GET",
        "/status",
        openapi,
        expect=401,
        headers={"Authorization": "Bearer sk-user"},
    )
    assert body["error"]["code"] == "invalid_admin_token"


async def test_no_admin_token_means_open_admin_api(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    await call(
        http, server, "GET", "/status", expect=200, headers={"Authorization": "Bearer whatever"}
    )


# --- unknown paths and methods --------------------------------------------------------------------


async def test_unknown_admin_path_and_method(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server()
    body = await call(http, server, "GET", "/nope", openapi, expect=404)
    assert body["error"]["code"] == "unknown_url"
    body = await call(http, server, "PATCH", "/status", openapi, expect=405)
    assert body["error"]["code"] == "method_not_allowed"
    body = await call(http, server, "GET", "/reset", openapi, expect=405)
    assert body["error"]["code"] == "method_not_allowed"


async def test_reload_after_replacing_a_file_scenario_keeps_names_unique(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """A scenario replaced at run time must not be served twice after a reload.

    Names are unique across everything loaded (README), and reload keeps run-time additions
    (see the test above), so after ``POST /reload`` the set holds one ``greet``: the run-time
    replacement, not the file version shadowing it.
    """
    server = await start_server(FILE_V1)
    replacement = {
        "name": "greet",
        "match": {"last_user": {"contains": "hello"}},
        "respond": {"content": "replaced at run time"},
    }
    await call(http, server, "POST", "/scenarios?replace=true", expect=201, json=replacement)
    assert await answer(server, openapi, "hello") == "replaced at run time"
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    assert [s["name"] for s in listed["scenarios"]] == ["greet"]

    await call(http, server, "POST", "/reload", expect=200)
    listed = await call(http, server, "GET", "/scenarios", expect=200)
    names = [s["name"] for s in listed["scenarios"]]
    assert names == ["greet"], f"scenario names served after reload: {names}"
    assert await answer(server, openapi, "hello") == "replaced at run time"


# --- admin exposure: loopback only, or off --------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        (None, True),
        ("", True),
        ("10.0.0.7", False),
        ("192.168.1.20", False),
        ("203.0.113.5", False),
        ("2001:db8::1", False),
        ("::ffff:203.0.113.5", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
    ],
)
def test_is_loopback(remote: str | None, local: bool) -> None:
    from foxmock.server.admin import is_loopback

    assert is_loopback(remote) is local


async def _serve_app(app: Any) -> tuple[Any, LiveServer]:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, LiveServer(app, runner.addresses[0][1])


async def test_admin_loopback_refuses_other_peers(
    http: aiohttp.ClientSession, openapi: Validate
) -> None:
    """With ``admin="loopback"`` a peer from another address gets 403; local peers get through.

    Tests may only use 127.0.0.1, so a far peer is played by an outer middleware that rewrites
    the request's remote address, exactly what aiohttp reports for a real remote peer.
    """
    from aiohttp import web

    far = {"remote": None}

    @web.middleware
    async def as_peer(request: web.Request, handler: Any) -> web.StreamResponse:
        if far["remote"]:
            request = request.clone(remote=far["remote"])
        return await handler(request)  # type: ignore[no-any-return]

    app = foxmock.create_app(foxmock.Config(admin="loopback"))
    app.middlewares.insert(0, as_peer)
    runner, server = await _serve_app(app)
    try:
        assert (await call(http, server, "GET", "/status", expect=200))["scenarios"] == len(BUNDLED)
        far["remote"] = "203.0.113.5"
        for method, path in [("GET", "/status"), ("POST", "/reset"), ("DELETE", "/scenarios")]:
            body = await call(http, server, method, path, openapi, expect=403)
            assert body["error"]["code"] == "admin_loopback_only"
        # the OpenAI routes still answer far peers, and nothing above was carried out
        assert await answer(server, openapi, "far away") == "You said: far away"
        far["remote"] = None
        status = await call(http, server, "GET", "/status", expect=200)
        assert status["scenarios"] == len(BUNDLED)
    finally:
        await runner.cleanup()


async def test_admin_loopback_and_token_together(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(admin="loopback", admin_token="s3cret")
    body = await call(http, server, "GET", "/status", openapi, expect=401)
    assert body["error"]["code"] == "invalid_admin_token"
    good = {"Authorization": "Bearer s3cret"}
    assert (await call(http, server, "GET", "/status", expect=200, headers=good))["scenarios"]


async def test_admin_off_is_not_mounted(
    start_server: StartServer, http: aiohttp.ClientSession, openapi: Validate
) -> None:
    server = await start_server(admin="off")
    for method, path in [("GET", "/status"), ("POST", "/reset"), ("GET", "/journal")]:
        body = await call(http, server, method, path, openapi, expect=404)
        assert body["error"]["code"] == "unknown_url"
    assert await answer(server, openapi, "still served") == "You said: still served"


def test_admin_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="admin must be one of on, loopback, off"):
        foxmock.create_app(foxmock.Config(admin="public"))


def test_cli_admin_option(tmp_path: Path) -> None:
    """``foxmock serve`` refuses a bad FOXMOCK_ADMIN with exit 2; ``--admin off`` unmounts it."""
    import urllib.error
    import urllib.request

    from tests.recording_support import FoxmockProcess

    done = run_cli("serve", "--port", "0", env={"FOXMOCK_ADMIN": "public"})
    assert done.returncode == 2
    assert "admin must be one of on, loopback, off" in done.stderr
    assert "Traceback" not in done.stderr

    args = ["serve", "--port", "0", "--admin", "off"]
    with FoxmockProcess(args, cwd=tmp_path, log=tmp_path / "serve.log") as proc:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{proc.url}/_foxmock/status", timeout=10)
        assert info.value.code == 404
        with urllib.request.urlopen(f"{proc.url}/healthz", timeout=10) as response:
            assert response.status == 200
