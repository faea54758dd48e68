"""CORS (``--cors ORIGIN``) against live servers: preflights, headers on every API answer
(streams and errors included), never on the admin API, and nothing at all without it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from foxmock import Config, create_app
from foxmock.server import cors
from foxmock.server.cors import EXPOSED, MAX_REQUEST_HEADERS, parse_origin
from tests.conftest import LiveServer, StartServer
from tests.support import run_cli

PAGE = "http://localhost:3000"
KEY = "sk-cors-1"
ANSWER = "hello from foxmock"
SCENARIOS = f"""
version: 1
scenarios:
  - name: slow-down
    match:
      last_user: {{contains: limit}}
    fault: {{status: 429, message: "Slow down", code: rate_limit_exceeded, retry_after: 1s}}
  - name: answer
    priority: -10
    respond:
      content: "{ANSWER}"
"""
CHAT = {"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}]}
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def _call(
    server: LiveServer, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, **kwargs) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


def _cors(headers: dict[str, str]) -> dict[str, str]:
    """The CORS headers among ``headers``, names in lower case."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


def _assert_readable(headers: dict[str, str], allowed: str = PAGE) -> None:
    cors = _cors(headers)
    assert cors["access-control-allow-origin"] == allowed
    assert cors["access-control-expose-headers"] == EXPOSED
    assert "access-control-allow-credentials" not in cors
    assert "Origin" in headers["Vary"]


# --- origins --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("*", "*"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("HTTP://LocalHost:3000/", "http://localhost:3000"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[::1]:5173", "http://[::1]:5173"),
        ("http://web_app:8080", "http://web_app:8080"),
    ],
)
def test_origins_are_normalized(given: str, origin: str) -> None:
    assert parse_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    [
        "localhost:3000",
        "ftp://localhost",
        "http://localhost:3000/app",
        "http://localhost:3000?x=1",
        "http://user@localhost",
        "http://localhost:99999",
        "http://[nope]:3000",
        "http://",
        "null",
        "**",
    ],
)
def test_bad_origins_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        parse_origin(given)
    with pytest.raises(ValueError, match="is not an origin"):
        create_app(Config(cors=[given]))


# --- preflights -----------------------------------------------------------------------------


async def test_preflight_from_an_allowed_origin(start_server: StartServer) -> None:
    """Answered without an API key (browsers send none on preflights)."""
    server = await start_server(SCENARIOS, cors=[PAGE], api_keys=[KEY])
    status, headers, body = await _call(server, "OPTIONS", "/v1/chat/completions", PREFLIGHT)
    assert (status, body) == (204, "")
    assert _cors(headers) == {
        "access-control-allow-origin": PAGE,
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "authorization, content-type",
        "access-control-max-age": "600",
    }
    assert (
        headers["Vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/foxora-1", "/v1/unknown", "/healthz"])
async def test_preflight_to_other_api_paths(start_server: StartServer, path: str) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE])
    headers = {"Origin": PAGE, "Access-Control-Request-Method": "GET"}
    status, answer, _ = await _call(server, "OPTIONS", path, headers)
    assert status == 204
    assert _cors(answer)["access-control-allow-origin"] == PAGE
    assert "access-control-allow-headers" not in _cors(answer)


async def test_preflight_from_another_origin_is_refused(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE, "http://localhost:4000"])
    evil = {**PREFLIGHT, "Origin": "http://evil.example"}
    status, headers, body = await _call(server, "OPTIONS", "/v1/chat/completions", evil)
    assert status == 403
    assert _cors(headers) == {}
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "cors_origin_refused"
    assert error["type"] == "invalid_request_error"
    assert "http://evil.example" in error["message"]


@pytest.mark.parametrize(
    "requested",
    ["x-evil, set-cookie: a=b", "x-a; x-b", "x" * (MAX_REQUEST_HEADERS + 1)],
)
async def test_preflight_with_bad_request_headers_is_refused(
    start_server: StartServer, requested: str
) -> None:
    server = await start_server(SCENARIOS, cors=["*"])
    headers = {**PREFLIGHT, "Access-Control-Request-Headers": requested}
    status, answer, body = await _call(server, "OPTIONS", "/v1/chat/completions", headers)
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_cors_preflight"
    assert "access-control-allow-headers" not in _cors(answer)
    assert "access-control-allow-methods" not in _cors(answer)


async def test_wildcard_allows_any_origin(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=["*"])
    preflight = {**PREFLIGHT, "Origin": "http://anything.test:1234"}
    status, headers, _ = await _call(server, "OPTIONS", "/v1/chat/completions", preflight)
    assert status == 204
    assert _cors(headers)["access-control-allow-origin"] == "*"
    status, headers, _ = await _call(
        server, "POST", "/v1/chat/completions", {"Origin": "null"}, json=CHAT
    )
    assert status == 200
    _assert_readable(headers, "*")


async def test_options_that_is_no_preflight_is_answered_as_before(
    start_server: StartServer,
) -> None:
    """No Access-Control-Request-Method: a plain OPTIONS, 405 naming the path's methods."""
    server = await start_server(SCENARIOS, cors=[PAGE])
    status, headers, body = await _call(server, "OPTIONS", "/v1/chat/completions", {"Origin": PAGE})
    assert status == 405
    assert headers["Allow"] == "POST"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    status, headers, _ = await _call(server, "DELETE", "/v1/models", {})
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, _, _ = await _call(server, "GET", "/v2/nothing", {})
    assert status == 404


async def test_without_cors_nothing_changes(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS)
    hooks = [h.__module__ for h in server.app.on_response_prepare]
    assert "foxmock.server.cors" not in hooks  # nothing on the hot path
    assert not [r for r in server.app.router.resources() if type(r).__module__ == cors.__name__]
    status, headers, body = await _call(server, "OPTIONS", "/v1/chat/completions", PREFLIGHT)
    assert status == 405
    assert headers["Allow"] == "POST"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert _cors(headers) == {}
    status, headers, _ = await _call(
        server, "POST", "/v1/chat/completions", {"Origin": PAGE}, json=CHAT
    )
    assert status == 200
    assert _cors(headers) == {}
    assert "Vary" not in headers


# --- actual requests ------------------------------------------------------------------------


async def test_chat_answer_is_readable_by_the_page(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE], api_keys=[KEY])
    auth = {"Origin": PAGE, "Authorization": f"Bearer {KEY}"}
    status, headers, body = await _call(server, "POST", "/v1/chat/completions", auth, json=CHAT)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == ANSWER
    _assert_readable(headers)


async def test_streamed_answer_is_readable_by_the_page(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE])
    status, headers, body = await _call(
        server, "POST", "/v1/chat/completions", {"Origin": PAGE}, json={**CHAT, "stream": True}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert body.rstrip().endswith("data: [DONE]")
    _assert_readable(headers)


async def test_other_api_answers_are_readable(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE])
    for path in ("/v1/models", "/healthz"):
        status, headers, _ = await _call(server, "GET", path, {"Origin": PAGE})
        assert status == 200, path
        _assert_readable(headers)


@pytest.mark.parametrize(
    ("authorization", "path", "status", "code"),
    [
        ("Bearer sk-wrong", "/v1/chat/completions", 401, "invalid_api_key"),
        (None, "/v1/chat/completions", 401, "missing_api_key"),
        (f"Bearer {KEY}", "/v1/nowhere", 404, "unknown_url"),
    ],
)
async def test_error_answers_are_readable(
    start_server: StartServer, authorization: str | None, path: str, status: int, code: str
) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE], api_keys=[KEY])
    headers = {"Origin": PAGE} | ({"Authorization": authorization} if authorization else {})
    got, answer, body = await _call(server, "POST", path, headers, json=CHAT)
    assert (got, json.loads(body)["error"]["code"]) == (status, code)
    _assert_readable(answer)


async def test_rate_limit_headers_are_exposed(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE])
    chat = {**CHAT, "messages": [{"role": "user", "content": "over the limit"}]}
    status, headers, _ = await _call(
        server, "POST", "/v1/chat/completions", {"Origin": PAGE}, json=chat
    )
    assert status == 429
    _assert_readable(headers)
    exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
    sent = {h.lower() for h in headers if h.lower().startswith(("retry-after", "x-ratelimit-"))}
    assert sent and sent <= exposed


@pytest.mark.parametrize("origin", [None, "http://evil.example", "http://localhost:3001"])
async def test_no_cors_headers_for_other_or_no_origins(
    start_server: StartServer, origin: str | None
) -> None:
    server = await start_server(SCENARIOS, cors=[PAGE])
    headers = {"Origin": origin} if origin else {}
    status, answer, _ = await _call(server, "POST", "/v1/chat/completions", headers, json=CHAT)
    assert status == 200
    assert _cors(answer) == {}


# --- the admin API --------------------------------------------------------------------------


async def test_admin_paths_never_get_cors_headers(start_server: StartServer) -> None:
    server = await start_server(SCENARIOS, cors=["*"])
    same_origin = {"Origin": server.url}  # the admin answers its own origin only
    status, headers, _ = await _call(server, "GET", "/_foxmock/journal", same_origin)
    assert status == 200
    assert _cors(headers) == {}
    for origin in (PAGE, server.url):
        for path in ("/_foxmock/scenarios", "/_foxmock/journal", "/_foxmock/nothing"):
            preflight = {**PREFLIGHT, "Origin": origin}
            status, headers, _ = await _call(server, "OPTIONS", path, preflight)
            assert status >= 400, (origin, path)
            assert _cors(headers) == {}, (origin, path)
        status, headers, _ = await _call(server, "GET", "/_foxmock/status", {"Origin": origin})
        assert _cors(headers) == {}


async def test_admin_paths_without_the_admin_get_no_cors_either(
    start_server: StartServer,
) -> None:
    server = await start_server(SCENARIOS, cors=["*"], admin="off")
    status, headers, _ = await _call(server, "OPTIONS", "/_foxmock/scenarios", PREFLIGHT)
    assert status == 404
    assert _cors(headers) == {}
    status, headers, _ = await _call(server, "GET", "/_foxmock/status", {"Origin": PAGE})
    assert status == 404
    assert _cors(headers) == {}


# --- the command line -----------------------------------------------------------------------


async def _serve_and_preflight(*options: str, env: dict[str, str] | None = None) -> int:
    """Start ``foxmock serve --port 0 OPTIONS``, send one preflight, return its status."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "foxmock",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "warning",
        *options,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "foxmock serve exited before serving"
            found = re.search(r"serving on (http://\S+/v1)", line)
            url = found.group(1) if found else None
        async with (
            aiohttp.ClientSession() as http,
            http.options(f"{url}/chat/completions", headers=PREFLIGHT) as resp,
        ):
            assert resp.headers.get("Access-Control-Allow-Origin") == (
                PAGE if resp.status == 204 else None
            )
            return resp.status
    finally:
        proc.terminate()
        await proc.wait()


async def test_foxmock_serve_with_cors_answers_preflights() -> None:
    assert await _serve_and_preflight("--cors", "http://localhost:4000", "--cors", PAGE) == 204


async def test_foxmock_serve_reads_cors_from_the_environment() -> None:
    assert await _serve_and_preflight(env={"FOXMOCK_CORS": f"http://localhost:4000, {PAGE}"}) == 204
    assert await _serve_and_preflight(env={"FOXMOCK_CORS": ""}) == 405


def test_bad_cors_origin_is_a_usage_error() -> None:
    result = run_cli("serve", "--port", "0", "--cors", "localhost:3000", timeout=30)
    assert result.returncode == 2
    assert "--cors 'localhost:3000' is not an origin" in result.stderr
    assert "serving on" not in result.stdout


def test_cors_is_in_the_help() -> None:
    result = run_cli("serve", "--help")
    assert "--cors ORIGIN" in result.stdout
    assert "FOXMOCK_CORS" in result.stdout


# --- a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
BROWSER_PAGE = """<!doctype html><title>cors</title><div id="out"></div><script>
fetch(%(url)s, {method: "POST", body: %(body)s,
  headers: {"Authorization": "Bearer %(key)s", "Content-Type": "application/json"}})
  .then(r => r.json()).then(j => j.choices[0].message.content, e => "failed: " + e)
  .then(t => { document.getElementById("out").textContent = t; });
</script>"""


def _browser_fetch(page_url: str) -> str:
    """What the page at ``page_url`` wrote after its fetch, as headless Chromium shows it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(page_url)
        found = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "out").text)
        return str(found)
    finally:
        driver.quit()


def _need_a_browser() -> None:
    """Skip without Chromium, chromedriver and selenium; fail instead under
    FOXMOCK_REQUIRE_BROWSER=1 (``.ci/run`` installs them and sets it)."""
    if CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium"):
        return
    problem = "needs chromium, chromedriver and selenium"
    if os.environ.get("FOXMOCK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FOXMOCK_REQUIRE_BROWSER=1 but this {problem}")
    pytest.skip(f"{problem} (.ci/run installs them; FOXMOCK_REQUIRE_BROWSER=1 makes this fail)")


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed-origin", "other-origin"])
async def test_a_page_from_another_origin_reads_the_answer_only_when_allowed(
    start_server: StartServer, allowed: bool
) -> None:
    """A page served from localhost:PORT fetches from 127.0.0.1:OTHER with a bearer key; the
    browser lets it read the answer only when foxmock allows that origin."""
    _need_a_browser()
    page_app = web.Application()
    page_runner = web.AppRunner(page_app, access_log=None)
    html: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html["page"], content_type="text/html")

    page_app.router.add_get("/", page)
    await page_runner.setup()
    site = web.TCPSite(page_runner, "127.0.0.1", 0)
    await site.start()
    try:
        page_port = page_runner.addresses[0][1]
        origin = f"http://localhost:{page_port}" if allowed else "http://localhost:1"
        server = await start_server(SCENARIOS, cors=[origin], api_keys=[KEY])
        url = json.dumps(f"{server.base_url}/chat/completions")
        html["page"] = BROWSER_PAGE % {"url": url, "body": json.dumps(json.dumps(CHAT)), "key": KEY}
        text = await asyncio.to_thread(_browser_fetch, f"http://localhost:{page_port}/")
    finally:
        await page_runner.cleanup()
    if allowed:
        assert text == ANSWER
    else:
        assert text.startswith("failed: TypeError"), text  # the browser refused the answer
