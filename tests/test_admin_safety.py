"""The admin API refuses what a web page can send and never stalls the loop while it works."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer, StartServer

YAML = "application/yaml"
ONE = "name: one\nmatch: {last_user: one}\nrespond: {content: '1'}\n"
LAUGHS = (
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\nrespond: {content: *i}\n"
)


async def admin(
    server: LiveServer, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        url = f"{server.url}/_foxmock{path}"
        async with http.request(method, url, **kwargs) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else {}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_form_content_types_refused(start_server: StartServer, content_type: str) -> None:
    server = await start_server()
    headers = {"Content-Type": content_type}
    status, body = await admin(server, "POST", "/scenarios", data=ONE, headers=headers)
    assert status == 415 and body["error"]["code"] == "unsupported_content_type"
    status, body = await admin(server, "POST", "/reset", data="", headers=headers)
    assert status == 415
    _, listed = await admin(server, "GET", "/scenarios")
    assert "one" not in {s["name"] for s in listed["scenarios"]}


async def test_foreign_origin_refused_same_origin_accepted(start_server: StartServer) -> None:
    server = await start_server()
    evil = {"Origin": "http://evil.example", "Content-Type": YAML}
    status, body = await admin(server, "POST", "/scenarios", data=ONE, headers=evil)
    assert status == 403 and body["error"]["code"] == "admin_origin_refused"
    assert (await admin(server, "GET", "/status", headers={"Origin": "null"}))[0] == 403
    own = {"Origin": server.url, "Content-Type": YAML}
    status, body = await admin(server, "POST", "/scenarios", data=ONE, headers=own)
    assert status == 201 and body == {"added": ["one"]}


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.com:8080"])
async def test_foreign_host_refused(start_server: StartServer, host: str) -> None:
    server = await start_server()
    status, body = await admin(server, "GET", "/status", headers={"Host": host})
    assert status == 403 and body["error"]["code"] == "admin_host_refused"
    headers = {"Host": host, "Content-Type": YAML}
    assert (await admin(server, "POST", "/reset", headers=headers))[0] == 403


@pytest.mark.parametrize("host", ["localhost:8080", "foxmock:8080", "[::1]:1", "app.localhost"])
async def test_loopback_and_service_hosts_accepted(start_server: StartServer, host: str) -> None:
    server = await start_server()
    assert (await admin(server, "GET", "/status", headers={"Host": host}))[0] == 200


async def test_admin_hosts_and_token_allow_other_names(start_server: StartServer) -> None:
    server = await start_server(admin_hosts=["mock.internal"])
    assert (await admin(server, "GET", "/status", headers={"Host": "mock.internal"}))[0] == 200
    server = await start_server(admin_token="t0k")
    headers = {"Host": "mock.internal", "Authorization": "Bearer t0k"}
    assert (await admin(server, "GET", "/status", headers=headers))[0] == 200


async def _gaps(server: LiveServer, stop: asyncio.Event) -> list[float]:
    """Seconds between sent /healthz probes (one every 10 ms) until ``stop``."""
    gaps: list[float] = []
    async with aiohttp.ClientSession() as http:
        last = time.perf_counter()
        while not stop.is_set():
            async with http.get(f"{server.url}/healthz") as response:
                assert response.status == 200
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    return gaps


async def _while_probing(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    stop = asyncio.Event()
    probe = asyncio.create_task(_gaps(server, stop))
    await asyncio.sleep(0.1)
    try:
        result = await admin(server, method, path, **kwargs)
    finally:
        stop.set()
    return result, await probe


async def test_put_billion_laughs_refused_fast_without_stall(start_server: StartServer) -> None:
    server = await start_server()
    started = time.perf_counter()
    (status, body), gaps = await _while_probing(
        server, "PUT", "/scenarios/x", data=LAUGHS, headers={"Content-Type": YAML}
    )
    assert status == 400 and "200000" in body["error"]["message"].replace(",", "")
    assert time.perf_counter() - started < 10
    assert max(gaps) < 0.25


async def test_15000_scenarios_without_loop_stall(start_server: StartServer) -> None:
    server = await start_server()
    text = "".join(
        f"- name: s{i}\n  match: {{last_user: u{i}}}\n  respond: {{content: c{i}}}\n"
        for i in range(15_000)
    )
    (status, body), gaps = await _while_probing(
        server, "POST", "/scenarios", data=text, headers={"Content-Type": YAML}
    )
    assert status == 201 and len(body["added"]) == 15_000
    assert len(gaps) > 10  # the probe ran throughout the work
    # The probe shares this process (and a busy machine's cores) with the compile thread; the
    # noise-corrected figure against a separate server process, bound 250 ms, is in
    # tests/robustness/test_amplification.py. Here: clearly no multi-second freeze (was 27.8 s).
    assert max(gaps) < 2.0, f"longest /healthz gap {max(gaps):.3f}s"
    _, state = await admin(server, "GET", "/status")
    assert state["scenarios"] >= 15_000


async def test_total_scenarios_bounded(start_server: StartServer) -> None:
    server = await start_server(max_scenarios=20)
    many = "".join(f"- {{name: m{i}, respond: {{content: x}}}}\n" for i in range(30))
    status, body = await admin(
        server, "POST", "/scenarios", data=many, headers={"Content-Type": YAML}
    )
    assert status == 422 and body["error"]["code"] == "too_many_scenarios"
