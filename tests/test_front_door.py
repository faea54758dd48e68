"""The front door every request passes: guards instead of middleware, the catch-all routes,
and the journal's record of refused chat requests, against live servers.

foxmock installs no aiohttp middleware (one middleware puts two coroutine layers on every
request); each route is wrapped in `foxmock.server.errors.guard`, and catch-all routes answer
unknown paths and methods. These tests pin what that design must keep: the same envelopes,
statuses and ``Allow`` headers for everything the router does not serve.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from foxmock import Config, create_app
from foxmock.server.state import STATE
from tests.conftest import LiveServer, StartServer

Validate = Callable[[str, Any], None]
KEY = "sk-front-door-1"
CHAT = {"model": "foxora-1", "messages": [{"role": "user", "content": "hello"}]}


def _middlewares(app: web.Application) -> list[Any]:
    found = list(app.middlewares)
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if isinstance(sub, web.Application):
            found += _middlewares(sub)
    return found


@pytest.mark.parametrize("admin", ["on", "loopback", "off"])
def test_no_middleware_anywhere(admin: str) -> None:
    """A middleware in the app or any sub-app would put every request through aiohttp's
    middleware chain again; the guards must do that job instead."""
    app = create_app(Config(admin=admin, admin_token="t" if admin != "off" else None))
    assert _middlewares(app) == []


async def _request(
    server: LiveServer, method: str, path: str, openapi: Validate, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, **kwargs) as resp,
    ):
        text = await resp.text()
        headers = dict(resp.headers)
        status = resp.status
    if method == "HEAD":
        return status, headers, None
    assert headers["Content-Type"].startswith("application/json"), (status, text)
    assert "Traceback" not in text
    body = json.loads(text)
    if status >= 400:
        openapi("ErrorResponse", body)
    return status, headers, body


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/v1/chat/completions", 405, "method_not_allowed", "POST"),
        ("PUT", "/v1/chat/completions", 405, "method_not_allowed", "POST"),
        ("POST", "/v1/models", 405, "method_not_allowed", "GET, HEAD"),
        ("DELETE", "/v1/models/foxora-1", 405, "method_not_allowed", "GET, HEAD"),
        ("POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"),
        ("GET", "/v1/embeddings", 404, "unknown_url", None),
        ("GET", "/", 404, "unknown_url", None),
        ("POST", "/v1/chat/completions/extra", 404, "unknown_url", None),
        ("GET", "/_foxmock/nope", 404, "unknown_url", None),
        ("PATCH", "/_foxmock/status", 405, "method_not_allowed", "GET, HEAD"),
        ("GET", "/_foxmock/journal/x", 404, "unknown_url", None),
    ],
)
async def test_unknown_paths_and_methods(
    start_server: StartServer,
    openapi: Validate,
    method: str,
    path: str,
    status: int,
    code: str,
    allow: str | None,
) -> None:
    server = await start_server()
    got, headers, body = await _request(server, method, path, openapi)
    assert got == status, body
    assert body["error"]["code"] == code
    assert headers.get("Allow") == allow
    if status == 404:
        assert path in body["error"]["message"]


async def test_admin_paths_are_unknown_when_the_admin_api_is_off(
    start_server: StartServer, openapi: Validate
) -> None:
    server = await start_server(admin="off")
    got, _, body = await _request(server, "GET", "/_foxmock/status", openapi)
    assert (got, body["error"]["code"]) == (404, "unknown_url")


async def test_head_answers_on_get_routes(start_server: StartServer, openapi: Validate) -> None:
    server = await start_server()
    for path in ("/healthz", "/v1/models", "/v1/models/foxora-1", "/_foxmock/status"):
        got, headers, _ = await _request(server, "HEAD", path, openapi)
        assert got == 200, path
        assert headers["Content-Type"].startswith("application/json"), path


async def test_keys_are_checked_before_paths_are_looked_up(
    start_server: StartServer, openapi: Validate
) -> None:
    """With keys set, an unknown ``/v1/`` path says 401 to a caller without a key (it does not
    reveal which paths exist) and 404 to one with a key; other paths need no key."""
    server = await start_server(api_keys=[KEY])
    got, _, body = await _request(server, "GET", "/v1/embeddings", openapi)
    assert (got, body["error"]["code"]) == (401, "missing_api_key")
    auth = {"Authorization": f"Bearer {KEY}"}
    got, _, body = await _request(server, "GET", "/v1/embeddings", openapi, headers=auth)
    assert (got, body["error"]["code"]) == (404, "unknown_url")
    got, _, body = await _request(server, "GET", "/nope", openapi)
    assert (got, body["error"]["code"]) == (404, "unknown_url")


async def test_admin_token_is_checked_before_admin_paths_are_looked_up(
    start_server: StartServer, openapi: Validate
) -> None:
    server = await start_server(admin_token="admin-secret")
    got, _, body = await _request(server, "GET", "/_foxmock/nope", openapi)
    assert (got, body["error"]["code"]) == (401, "invalid_admin_token")
    auth = {"Authorization": "Bearer admin-secret"}
    got, _, body = await _request(server, "GET", "/_foxmock/nope", openapi, headers=auth)
    assert (got, body["error"]["code"]) == (404, "unknown_url")


async def test_refused_chat_requests_are_journaled_with_their_status(
    start_server: StartServer, openapi: Validate
) -> None:
    """The chat route is its own guard; whatever it refuses, the journal holds the status sent
    and the reason, including refusals aiohttp raises (a body over the size limit)."""
    server = await start_server(max_body_bytes=2048)
    too_big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"json": too_big}, 413, "request_too_large"),
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, ""),
        ({"json": CHAT}, 200, ""),
    ]
    for kwargs, status, code in cases:
        got, _, body = await _request(server, "POST", "/v1/chat/completions", openapi, **kwargs)
        assert got == status, body
        if code:
            assert body["error"]["code"] == code
    entries = server.app[STATE].journal.entries()
    assert [e.status for e in entries] == [status for _, status, _ in cases]
    assert all(e.error for e in entries[:3])
    assert entries[0].error is not None and "limit" in entries[0].error
    assert entries[3].error is None and entries[3].scenario is not None
    assert all(e.duration_ms > 0 for e in entries)


async def test_a_client_that_leaves_is_journaled_as_499(start_server: StartServer) -> None:
    yaml_text = """\
version: 1
scenarios:
  - name: slow
    match: {last_user: {contains: hello}}
    respond: {content: late}
    latency: {ttft: 2s}
"""
    server = await start_server(yaml_text)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                server.base_url + "/chat/completions",
                json=CHAT,
                timeout=aiohttp.ClientTimeout(total=0.3),
            ):
                pass
    journal = server.app[STATE].journal
    for _ in range(100):  # the handler notices the closed connection on its own schedule
        if journal.entries() and journal.last().status == 499:
            break
        await asyncio.sleep(0.02)
    assert journal.last().status == 499
    assert journal.last().scenario == "slow"
