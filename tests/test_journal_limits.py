"""The journal under oversized input: bounded by bytes as well as entries, bodies kept as bytes
and decoded only when read, credentials masked wherever an entry can be printed.

Against real servers: a ``foxmock serve`` process whose RSS is read from ``/proc``, in-process
servers on loopback ports for the eviction order, and a server in a thread whose journal is
cleared from the test's thread.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from foxmock.journal import Entry, is_credential_header
from foxmock.server.state import STATE
from tests.conftest import LiveServer, StartServer
from tests.recording_support import FoxmockProcess
from tests.support import ThreadServer

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(size: int, text: str = "x") -> bytes:
    """A valid chat request for the bundled echo scenario, exactly ``size`` bytes long."""
    message = {"role": "user", "content": ""}
    base: dict[str, Any] = {"model": "foxora-1", "messages": [message]}
    empty = len(json.dumps(base).encode())
    assert size >= empty
    message["content"] = text * ((size - empty) // len(text))
    raw = json.dumps(base).encode()
    assert len(raw) == size
    return raw


async def post(
    http: aiohttp.ClientSession, server: LiveServer, raw: bytes, **headers: str
) -> tuple[int, str]:
    async with http.post(server.url + CHAT, data=raw, headers={**JSON, **headers}) as response:
        return response.status, await response.text()


def vm(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


# --- bounded by bytes ---------------------------------------------------------------------------


def test_forty_refused_4_mib_bodies_leave_rss_bounded(tmp_path: Path) -> None:
    """40 bodies just under the 4 MiB limit, each refused with 400, whose JSON parses into an
    object tree ~4 times its size (a list of 2 M integers). Before, the journal kept each tree
    (and the refusal's traceback cycle kept each request's until a full collection): RSS grew
    by ~735 MiB. Now it keeps at most ``--journal-bytes`` of raw bytes."""
    journal_bytes = 8 * MIB
    body = b'{"model":"foxora-1","messages":[' + b"0," * ((4 * MIB - 60) // 2) + b"0]}"
    assert 4 * MIB - 100 < len(body) <= 4 * MIB
    args = ["serve", "--port", "0", "--journal-bytes", str(journal_bytes)]
    with FoxmockProcess(args, cwd=tmp_path, log=tmp_path / "serve.log") as server:
        idle = vm(server.proc.pid, "VmRSS")
        connection = HTTPConnection("127.0.0.1", server.port, timeout=120)
        for _ in range(40):
            connection.request("POST", CHAT, body=body, headers=JSON)
            response = connection.getresponse()
            assert response.status == 400, response.read()[:300]
            assert json.loads(response.read())["error"]["param"] == "messages[0]"
        grown_mib = (vm(server.proc.pid, "VmRSS") - idle) / 1024
        status = server.get_json("/_foxmock/status")["journal"]
        entries = server.journal()
        connection.close()
    # the mechanism: two 4 MiB bodies fit in 8 MiB; older entries were evicted, oldest first
    assert status == {"size": 2, "max": 1000, "total": 40}
    assert [e["id"] for e in entries] == [39, 40]
    assert all(e["status"] == 400 and e["body_bytes"] == len(body) for e in entries)
    assert entries[-1]["body"]["messages"][:3] == [0, 0, 0]  # still readable, decoded on read
    # the bound: 8 MiB kept plus one request's transient parse; without the byte bound the
    # raw bodies alone would be 160 MiB, with trees kept ~735 MiB
    assert grown_mib < 96, f"RSS grew {grown_mib:.0f} MiB"


async def test_eviction_by_bytes_drops_the_oldest_first(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(journal_bytes=10_000)
    journal = server.app[STATE].journal
    expected: list[list[int]] = []
    seen: list[list[int]] = []
    for size, kept in [
        (3000, [1]),
        (3000, [1, 2]),
        (3000, [1, 2, 3]),
        (3000, [2, 3, 4]),  # 12,000 > 10,000: #1 goes
        (6000, [4, 5]),  # 15,000: #2 and #3 go, 9,000 stays
        (1000, [4, 5, 6]),  # 10,000 is within the bound
    ]:
        status, text = await post(http, server, chat_body(size))
        assert status == 200, text
        seen.append([e.id for e in journal])
        expected.append(kept)
        assert journal.kept_bytes <= 10_000
    assert seen == expected
    assert [e.body_bytes for e in journal] == [3000, 6000, 1000]

    # a body larger than the whole journal is measured, not kept, and evicts nothing
    status, _ = await post(http, server, chat_body(20_000))
    assert status == 200
    assert [e.id for e in journal] == [4, 5, 6, 7]
    last = journal.last()
    assert (last.body_bytes, last.raw, last.body, last.messages) == (20_000, b"", None, [])
    assert last.scenario == "echo" and journal.kept_bytes == 10_000
    assert journal.total == 7


def test_a_clear_from_another_thread_is_recounted(
    thread_server: Callable[..., ThreadServer],
) -> None:
    """The loop thread counts bytes without the lock; a clear from the test's thread asks for
    a recount. Without it the 9,000 bytes cleared would still count and the next 3,000-byte
    body would evict its own entry."""
    server = thread_server(journal_bytes=10_000)
    journal = server.app[STATE].journal
    connection = HTTPConnection("127.0.0.1", server.port, timeout=30)

    def send() -> None:
        connection.request("POST", CHAT, body=chat_body(3000), headers=JSON)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()

    for _ in range(3):
        send()
    journal.clear()
    assert len(journal) == 0 and journal.kept_bytes == 0
    seen = []
    for _ in range(4):
        send()
        seen.append([e.id for e in journal])
    connection.close()
    assert seen == [[4], [4, 5], [4, 5, 6], [5, 6, 7]]
    assert journal.kept_bytes == 9000


# --- bodies as bytes, decoded on read -----------------------------------------------------------


async def test_bodies_are_kept_as_bytes_and_decoded_on_read(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    journal = server.app[STATE].journal
    good = chat_body(200, "hi ")
    no_content = {"model": "foxora-1", "messages": [{"role": "user"}]}
    refused: list[tuple[bytes, int, Any]] = [
        (b"[{}, {}]", 400, [{}, {}]),  # JSON, but not a request: shown decoded, as before
        (b"{not json", 400, None),  # not JSON: kept (and counted), shown as null
        (json.dumps(no_content).encode(), 400, no_content),
    ]
    assert (await post(http, server, good))[0] == 200
    for raw, status, _ in refused:
        assert (await post(http, server, raw))[0] == status

    entries = journal.entries()
    assert [e.raw for e in entries] == [good, *(raw for raw, _, _ in refused)]
    assert [e.body_bytes for e in entries] == [len(e.raw) for e in entries]
    assert journal.kept_bytes == sum(len(e.raw) for e in entries)
    first = entries[0]
    assert first.body == json.loads(good) and first.messages == json.loads(good)["messages"]
    assert first.body is not first.body  # decoded afresh each time: no tree is stored
    for entry in entries:  # the mechanism: nothing in an entry is a decoded body
        held = [getattr(entry, f.name) for f in fields(Entry) if f.name != "tool_calls"]
        assert not any(isinstance(value, (dict, list)) for value in held)
    assert [e.body for e in entries[1:]] == [body for _, _, body in refused]
    assert [e.status for e in entries] == [200, 400, 400, 400]

    # the admin API copies kept bodies in as they arrived: the same document as before
    async with http.get(server.url + "/_foxmock/journal") as response:
        assert response.status == 200 and response.content_type == "application/json"
        document = json.loads(await response.text())
    assert document["total"] == 4
    assert [e["body"] for e in document["entries"]] == [e.body for e in entries]
    assert [e["body_bytes"] for e in document["entries"]] == [e.body_bytes for e in entries]
    assert document["entries"][0]["content"] == first.content
    async with http.get(server.url + "/_foxmock/journal?limit=1") as response:
        assert [e["id"] for e in json.loads(await response.text())["entries"]] == [4]
    async with http.head(server.url + "/_foxmock/journal") as response:
        assert response.status == 200 and await response.read() == b""


# --- credentials masked -------------------------------------------------------------------------

SECRET_HEADERS = {
    "Authorization": "Bearer sk-journal-authorization-0001",
    "X-Goog-Api-Key": "goog-journal-secret-0002",
    "Anthropic-Api-Key": "anthropic-journal-secret-0003",
    "X-Api-Key": "xapikey-journal-secret-0004",
    "Api-Key": "apikey-journal-secret-0005",
    "Cookie": "session=cookie-journal-secret-0006",
    "X-Amz-Security-Token": "amz-journal-secret-0007",
    "X-Hub-Signature-256": "sha256=signature-journal-secret-0008",
    "X-Session-Id": "session-journal-secret-0009",
    "X-Client-Secret": "client-journal-secret-0010",
    "X-Refresh-Token": "refresh-journal-secret-0011",
    "X-Db-Password": "password-journal-secret-0012",
    "OpenAI-Organization": "org-journal-secret-0013",
}
PLAIN_HEADERS = {"X-Test-Name": "masking-check", "X-Stainless-Lang": "python"}


def test_credential_names_are_recognised_by_their_parts() -> None:
    for name in [*SECRET_HEADERS, "proxy-authorization", "set-cookie", "ocp-apim-subscription-key"]:
        assert is_credential_header(name) and is_credential_header(name.upper()), name
    for name in ["content-type", "user-agent", "accept", "keep-alive", "x-request-id", "host"]:
        assert not is_credential_header(name), name


async def test_credential_headers_are_masked_wherever_an_entry_prints(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    status, _ = await post(http, server, chat_body(120), **SECRET_HEADERS, **PLAIN_HEADERS)
    assert status == 200
    async with http.get(server.url + "/_foxmock/journal") as response:
        admin_text = await response.text()
    entry = server.app[STATE].journal.last()
    assert entry.raw_headers["X-Goog-Api-Key"] == SECRET_HEADERS["X-Goog-Api-Key"]  # as sent

    shown = json.loads(admin_text)["entries"][0]["headers"]
    for name in SECRET_HEADERS:
        assert shown[name] == "***", name
    for name, value in PLAIN_HEADERS.items():
        assert shown[name] == value
    printed = [
        admin_text,
        repr(entry),
        str(entry),
        json.dumps(entry.to_json()),
        json.dumps(entry.to_json_without_body()),
        server.app[STATE].journal.summary(),
    ]
    for text in printed:
        for value in SECRET_HEADERS.values():
            assert value not in text
            assert value.split("=")[-1] not in text
    assert "masking-check" in repr(entry)
    assert "'***'" in repr(entry)


def test_repr_and_json_never_carry_the_raw_headers() -> None:
    entry = Entry(1, 0.0, {"X-Goog-Api-Key": "clear-value", "Accept": "*/*"})
    for text in (repr(entry), json.dumps(entry.to_json())):
        assert "clear-value" not in text and "*/*" in text
