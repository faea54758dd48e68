"""The recorder under abuse: ``kill -9`` mid-recording, and secrets that must never reach disk.

Real processes (tests/recording_support.py): an upstream ``foxmock serve`` stands in for the real
API and a ``foxmock record`` process sits in front of it.

- **kill -9**: many concurrent recordable requests (slow streams, short and large non-stream
  answers) run through the recorder, which is SIGKILLed at several moments. Every file left is a
  whole scenario file, or the writer's hidden ``.NAME.yaml.XXXX.tmp`` that the loader ignores;
  a recorder restarted on the same folder removes those temp files, serves and replays every
  recording and records more.
- **secrets**: a full session (keys, organisation, project, cookie, ``x-api-key``/``api-key``, a
  query-string key, redacted message text, streams, tool calls, upstream errors, key-shaped
  answers) then a byte scan of every file written under the recorder's side (recordings, logs,
  its TMPDIR and HOME; the upstream's own folder is the "real API" and is not scanned) for each
  secret: whole (raw, any case, URL-encoded, base64 at each alignment, hex) and in pieces.
- **credentials in the ``--upstream`` URL** (``http://user:PASSWORD@host/v1``): sent upstream,
  never written or logged, and no clash with a client's or the configured key.

The bugs found are fixed and kept below as regression tests (the last one: the debug access log
names the path only, never the query string).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml

import foxmock
from foxmock.scenarios.loader import iter_scenario_files
from tests.recording_support import (
    ACCOUNT,
    ACCOUNT_REGEX,
    CLIENT_KEY,
    COOKIE,
    KEY_SHAPED,
    ORGANIZATION,
    PROJECT,
    STORY,
    UPSTREAM_KEY,
    FoxmockProcess,
    Processes,
    all_files,
    closed_port,
    recordings,
    wait_for,
)

MODEL = "foxora-1"
COUNT = re.compile(r"foxmock: (\d+) scenarios from")
# what write_atomically names its temporary file: mkstemp(prefix=".NAME.yaml.", suffix=".tmp")
TEMP = re.compile(r"^\.(?P<target>[a-z0-9-]+\.yaml)\.[A-Za-z0-9_]+\.tmp$")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "procs")
    try:
        yield processes
    finally:
        processes.stop_all()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def scenario_count(proc: FoxmockProcess) -> int:
    """How many scenarios a process said it loaded at start."""
    match = COUNT.search("".join(proc.stdout))
    assert match, proc.log()
    return int(match.group(1))


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
        if data and data != "[DONE]":
            events.append(json.loads(data))
    return events


def sse_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices")
    )


# --- kill -9 while recording ------------------------------------------------------------------

SLOW_TEXT = " ".join(f"slow{i}" for i in range(1, 25))
KILL_UPSTREAM = {
    "version": 1,
    "scenarios": [
        {
            # a stream that stays open ~0.3 s, so SIGKILL lands while streams are in flight
            "name": "up-slow-stream",
            "priority": 50,
            "match": {"last_user": {"contains": "slowstream"}},
            "respond": {"content": SLOW_TEXT},
            "stream": {"by": "words"},
            "latency": {"ttft": "30ms", "chunk_delay": "12ms"},
        }
    ],
}
FILLER = "lorem ipsum dolor sit amet " * 250  # ~7 KB: a larger file, a longer write
WORKERS = 12
MOMENTS = ("immediately", "mid-stream", "first-write", "steady-load")
REPEATS = 3


@pytest.fixture(scope="module")
def kill_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FoxmockProcess]:
    """One upstream for every kill round."""
    workdir = tmp_path_factory.mktemp("kill-upstream")
    extra = workdir / "slow.yaml"
    extra.write_text(yaml.safe_dump(KILL_UPSTREAM, sort_keys=False), "utf-8")
    processes = Processes(workdir)
    try:
        yield processes.upstream("--scenarios", str(extra))
    finally:
        processes.stop_all()


@dataclass
class Load:
    """Concurrent clients of one recorder, until it is killed."""

    url: str
    tag: str
    expected: dict[str, tuple[bool, str]] = field(default_factory=dict)  # question: stream, text
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False
    completed: int = 0
    errors: list[str] = field(default_factory=list)

    def request(self, worker: int, n: int) -> tuple[str, bool, str]:
        """The n-th request of a worker: a short answer, a slow stream, or a large answer."""
        base = f"{self.tag} w{worker} n{n}"
        kind = (worker + n) % 3
        if kind == 1:
            return f"{base} slowstream please", True, SLOW_TEXT
        question = f"{base} short" if kind == 0 else f"{base} large {FILLER}"
        return question, False, f"Upstream says: {question}"

    async def worker(self, session: aiohttp.ClientSession, worker: int) -> None:
        n = 0
        while not self.killed:
            question, streamed, answer = self.request(worker, n)
            self.expected[question] = (streamed, answer)
            body = {"model": MODEL, "messages": user(question), "stream": streamed}
            try:
                async with session.post(f"{self.url}/chat/completions", json=body) as response:
                    if response.status != 200 and not self.killed:
                        self.errors.append(f"{response.status}: {await response.text()}")
                        return
                    if streamed:
                        async for _ in response.content.iter_any():
                            self.first_chunk.set()
                    else:
                        await response.read()
                self.completed += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if not self.killed:
                    self.errors.append(repr(exc))
                return
            n += 1


def kill(proc: FoxmockProcess, load: Load) -> None:
    load.killed = True
    os.kill(proc.proc.pid, signal.SIGKILL)


def kill_at_first_write(proc: FoxmockProcess, load: Load, out: Path, done: threading.Event) -> None:
    """Poll the folder and SIGKILL the moment anything appears (the writer's temp file first)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not load.killed:
        try:
            if os.listdir(out):
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    if not load.killed:
        kill(proc, load)
    done.set()


async def run_and_kill(proc: FoxmockProcess, out: Path, load: Load, moment: str) -> None:
    """Start the load, SIGKILL ``proc`` at ``moment``, wait for the process and the clients."""
    watcher_done = threading.Event()
    if moment == "first-write":
        threading.Thread(
            target=kill_at_first_write, args=(proc, load, out, watcher_done), daemon=True
        ).start()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(load.worker(session, i)) for i in range(WORKERS)]
        if moment == "immediately":  # the requests just sent, nothing answered yet
            await asyncio.sleep(0.005)
            kill(proc, load)
        elif moment == "mid-stream":
            await asyncio.wait_for(load.first_chunk.wait(), 10)
            kill(proc, load)
        elif moment == "first-write":
            await asyncio.to_thread(watcher_done.wait, 10)
        else:
            await asyncio.sleep(0.5)
            kill(proc, load)
        await asyncio.to_thread(proc.proc.wait, 10)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert proc.proc.returncode == -signal.SIGKILL


def check_folder(out: Path, expected: dict[str, tuple[bool, str]]) -> tuple[list[Path], list[Path]]:
    """Every file is a whole recording of a request that was made, or a writer's temp file."""
    whole, temps = [], []
    for path in all_files(out):
        assert path.parent == out, f"unexpected subfolder: {path}"
        if TEMP.match(path.name):
            temps.append(path)
            continue
        assert path.suffix == ".yaml" and not path.name.startswith("."), f"stray file {path}"
        loaded = foxmock.load_scenarios([path])  # raises ScenarioError on any problem
        document = yaml.safe_load(path.read_text("utf-8"))
        assert document["version"] == 1 and len(document["scenarios"]) == 1
        scenario = document["scenarios"][0]
        assert [s.name for s in loaded.scenarios] == [scenario["name"]] == [path.stem]
        question = scenario["match"]["body"]["messages"]["equals"][0]["content"]
        streamed, answer = expected[question]
        if streamed:
            assert "".join(scenario["stream"]["chunks"]) == answer, path.name
            assert scenario["respond"]["finish_reason"] == "stop"
        else:
            assert scenario["respond"]["content"] == answer, path.name
        whole.append(path)
    # the loader never picks up a temp file, hidden or not
    assert not set(temps) & set(iter_scenario_files([out])[0])
    if whole:
        assert len(foxmock.load_scenarios([out]).scenarios) == len(whole)
    return whole, temps


def upstream_total(upstream: FoxmockProcess) -> int:
    """How many chat requests the upstream has ever answered."""
    return int(upstream.get_json("/_foxmock/journal?limit=0")["total"])


async def replay_all(proc: FoxmockProcess, files: list[Path]) -> None:
    """Every recorded request, sent again: each answer is exactly the recorded one."""

    async def one(session: aiohttp.ClientSession, path: Path) -> None:
        scenario = yaml.safe_load(path.read_text("utf-8"))["scenarios"][0]
        question = scenario["match"]["body"]["messages"]["equals"][0]["content"]
        streamed = "stream" in scenario
        body = {"model": MODEL, "messages": user(question), "stream": streamed}
        async with session.post(f"{proc.base_url}/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            raw = await response.read()
        if streamed:
            assert sse_text(parse_sse(raw)) == "".join(scenario["stream"]["chunks"])
        else:
            content = json.loads(raw)["choices"][0]["message"]["content"]
            assert content == scenario["respond"]["content"]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(one(session, p) for p in files))


@pytest.mark.parametrize("repeat", range(REPEATS))
@pytest.mark.parametrize("moment", MOMENTS)
async def test_sigkill_while_recording_leaves_only_whole_files(
    procs: Processes, kill_upstream: FoxmockProcess, tmp_path: Path, moment: str, repeat: int
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(kill_upstream, out, mode="record-missing")
    load = Load(recorder.base_url, f"{moment}-{repeat}")
    await run_and_kill(recorder, out, load, moment)
    assert load.errors == [], load.errors[:3]

    whole, temps = check_folder(out, load.expected)
    print(
        f"\n{moment}#{repeat}: {len(load.expected)} requests sent, {load.completed} answered "
        f"before SIGKILL, {len(whole)} whole recordings, {len(temps)} temp files left"
    )

    # restarted on the same folder: loads every recording, replays without forwarding ...
    again = procs.recorder(kill_upstream, out, mode="record-missing")
    assert scenario_count(again) == len(whole)
    forwarded = upstream_total(kill_upstream)
    await replay_all(again, whole)
    assert upstream_total(kill_upstream) == forwarded
    # ... and still records
    question = f"{load.tag} after the restart"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{again.base_url}/chat/completions", json={"model": MODEL, "messages": user(question)}
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["choices"][0]["message"]["content"].endswith(question)
    assert wait_for(lambda: len(recordings(out)) == len(whole) + 1)
    again.stop()
    load.expected[question] = (False, f"Upstream says: {question}")
    after, temps_after = check_folder(out, load.expected)
    assert len(after) == len(whole) + 1
    assert temps_after == []  # the restart removed what killed writes left, and added none


# A write killed between creating its temp file and renaming it: made deterministic by a
# child process whose fsync never returns (the slowest step, so where a real kill most often
# lands), then SIGKILLed.
KILLED_WRITER = textwrap.dedent(
    """\
    import os, sys, time
    from pathlib import Path
    from foxmock.recorder.writer import write_recording

    def stuck(fd):
        print("in fsync", flush=True)
        time.sleep(60)

    os.fsync = stuck
    scenario = {
        "name": "killed-mid-write-0123456789ab",
        "match": {"last_user": {"contains": "killed mid-write"}},
        "respond": {"content": "never renamed into place"},
    }
    write_recording(Path(sys.argv[1]), scenario, "a write that is killed")
    """
)


def killed_write(out: Path) -> Path:
    """Run a write and SIGKILL it inside fsync; returns the temp file it leaves."""
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(out)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"in fsync\n"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    leftovers = [p for p in out.iterdir() if p.name.startswith(".killed-mid-write-")]
    assert len(leftovers) == 1, sorted(p.name for p in out.iterdir())
    assert TEMP.match(leftovers[0].name)
    return leftovers[0]


def record_one(proc: FoxmockProcess, question: str) -> str:
    with openai.OpenAI(base_url=proc.base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        reply = client.chat.completions.create(model=MODEL, messages=user(question))
    return reply.choices[0].message.content or ""


def test_a_write_killed_mid_way_leaves_a_hidden_temp_file_the_loader_ignores(
    procs: Processes, kill_upstream: FoxmockProcess, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(kill_upstream, out, mode="record-missing")
    assert record_one(recorder, "A question before the kill") == (
        "Upstream says: A question before the kill"
    )
    recorder.stop()
    temp = killed_write(out)
    assert temp.name.startswith(".") and temp.suffix == ".tmp"
    assert not (out / TEMP.match(temp.name)["target"]).exists()

    # the loader, `foxmock validate` and a restarted recorder see only the whole recording
    assert [p.name for p in iter_scenario_files([out])[0]] == [p.name for p in recordings(out)]
    assert len(foxmock.load_scenarios([out]).scenarios) == 1
    validate = subprocess.run(
        [sys.executable, "-m", "foxmock", "validate", str(out)], capture_output=True, timeout=60
    )
    assert validate.returncode == 0, validate
    again = procs.recorder(kill_upstream, out, mode="replay")
    assert scenario_count(again) == 1
    assert record_one(again, "A question before the kill") == (
        "Upstream says: A question before the kill"
    )


def test_a_temp_file_left_by_a_killed_write_is_cleaned_at_the_next_start(
    procs: Processes, kill_upstream: FoxmockProcess, tmp_path: Path
) -> None:
    """Fixed bug: a temp file left by a write killed before its rename lingered forever (and
    could be committed). A recorder starting on the folder removes it, and nothing else."""
    out = tmp_path / "recordings"
    out.mkdir()
    temp = killed_write(out)
    # look-alikes that are not the writer's temp files stay untouched
    others = [".notes.yaml.tmp", ".x.yaml.ABCDEFGH.tmp", "kept.yaml.abcdefgh.tmp", ".x.yml.tmp"]
    for name in others:
        (out / name).write_text("not a temp file of foxmock's", "utf-8")
    again = procs.recorder(kill_upstream, out, mode="record-missing")
    assert not temp.exists(), f"{temp.name} is still there after a restart"
    assert record_one(again, "A question after the kill") == (
        "Upstream says: A question after the kill"
    )
    again.stop()
    assert "removed 1 temp file(s) left by killed writes" in again.log()
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".yaml") == sorted(others)


# --- secrets never reach disk -----------------------------------------------------------------

X_API_KEY = "xak-SecretXApiKey0123456789abcdef"
AZURE_KEY = "azk-SecretAzureApiKey9876543210"
QUERY_SECRET = "qs-SecretQueryToken5566778899"
PASSWORD = "hunter2-Vault5ecretPw7788"
PASSWORD_REGEX = r"hunter2-[A-Za-z0-9]+"
URL_PASSWORD = "UrlPassw0rdSecret4455"
# answers shaped like credentials (none of them ever sent by anyone); xox is also --redact'ed
SHAPES = {
    "openai": KEY_SHAPED,
    "project": "sk-proj-" + "Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2",
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    "akia": "AKIA" + "Q7RT3X9ZK2LMNP4W",
    "ghp": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "xox": "xoxb-" + "1234567890-abcdefGHIJKL",
}
XOX_REGEX = r"xox[baprs]-[A-Za-z0-9-]+"
# keys that YAML or JSON would write escaped (after a tab or newline, \u-escaped in tool-call
# arguments) or that sit in a tool call's name or id: all refused
TAB_KEY = "sk-" + "T4bK3yQw8Er7Ty6Ui5Op4"
NEWLINE_KEY = "sk-" + "N3wL1n3Kz9Xc8Vb7Nm6Lk"
ESCAPED_KEY = "sk-" + "Esc4p3dJh5Gf4Ds3Aa2Qq"
NAME_KEY = "sk-" + "T00lN4m3Pp9Oo8Ii7Uu6Y"
HIDDEN: dict[str, tuple[str, dict[str, Any]]] = {
    "tab": (TAB_KEY, {"content": f"Your token:\t{TAB_KEY}"}),
    "newline": (NEWLINE_KEY, {"content": f"Your token:\n{NEWLINE_KEY}"}),
    "escaped": (
        ESCAPED_KEY,
        {
            "tool_calls": [
                {"name": "transfer", "arguments": '{"token": "\\u0073k-' + ESCAPED_KEY[3:] + '"}'}
            ]
        },
    ),
    "tool name": (NAME_KEY, {"tool_calls": [{"name": NAME_KEY, "arguments": "{}"}]}),
    "tool id": (
        NAME_KEY,
        {"tool_calls": [{"name": "transfer", "id": f"call\t{NAME_KEY}", "arguments": "{}"}]},
    ),
}
# every secret of the session: none may be found, whole or in pieces, anywhere on disk
SECRETS = {
    "client key": CLIENT_KEY,
    "client key body": CLIENT_KEY.removeprefix("sk-"),
    "upstream key": UPSTREAM_KEY,
    "upstream key body": UPSTREAM_KEY.removeprefix("sk-"),
    "organization": ORGANIZATION,
    "project": PROJECT,
    "cookie": COOKIE,
    "cookie value": COOKIE.partition("=")[2],
    "x-api-key": X_API_KEY,
    "api-key": AZURE_KEY,
    "query-string key": QUERY_SECRET,
    "account (redacted)": ACCOUNT,
    "account digits": ACCOUNT.removeprefix("ACCT-"),
    "password (redacted)": PASSWORD,
    **{f"key-shaped answer ({label})": value for label, value in SHAPES.items()},
    **{f"hidden key ({label})": value for label, (value, _) in HIDDEN.items()},
    "escaped key body": ESCAPED_KEY.removeprefix("sk-"),
}
TRANSFER_TOOL: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "transfer",
            "parameters": {
                "type": "object",
                "properties": {"account": {"type": "string"}, "amount": {"type": "number"}},
            },
        },
    }
]
WEATHER_TOOL: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def secrets_upstream() -> dict[str, Any]:
    """Upstream scenarios added for this session: errors and answers that echo secrets."""
    scenarios: list[dict[str, Any]] = [
        {
            "name": "up-error-echo",
            "priority": 200,
            "match": {"last_user": {"contains": "fail loudly"}},
            "fault": {"status": 400, "message": "Bad request about: {{ last_user }}"},
        },
        {
            "name": "up-error-echo-headers",
            "priority": 200,
            "match": {"last_user": {"contains": "fail with headers"}},
            "fault": {
                "status": 403,
                "message": "Denied: {{ headers.get('authorization', '') }} "
                "{{ headers.get('x-api-key', '') }}",
            },
        },
        {
            "name": "up-echo-api-keys",
            "priority": 200,
            "match": {"last_user": {"contains": "echo my api keys"}},
            "respond": {
                "content": "x-api-key={{ headers.get('x-api-key', '') }} "
                "api-key={{ headers.get('api-key', '') }}"
            },
        },
    ]
    for label, value in SHAPES.items():
        scenarios.append(
            {
                "name": f"up-shape-{label}",
                "priority": 200,
                "match": {"last_user": {"contains": f"shape {label} please"}},
                "respond": {"content": f"Your token: {value} (keep it safe)."},
                "stream": {"by": "characters", "size": 3},  # the key arrives in pieces
            }
        )
    for label, (_, respond) in HIDDEN.items():
        scenarios.append(
            {
                "name": f"up-hidden-{label.replace(' ', '-')}",
                "priority": 200,
                "match": {"last_user": {"contains": f"hidden {label} please"}},
                "respond": respond,
            }
        )
    return {"version": 1, "scenarios": scenarios}


def needles(secret: str) -> set[bytes]:
    """The byte strings that would give ``secret`` away: raw, URL-encoded, base64 (at any of the
    three alignments, standard and URL-safe alphabets) and hex."""
    raw = secret.encode()
    found = {
        raw,
        urllib.parse.quote(secret, safe="").encode(),
        urllib.parse.quote_plus(secret).encode(),
        raw.hex().encode(),
    }
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw)
            found.add(encoded[4 if shift else 0 : -4])  # the part that depends on secret alone
    return found


FRAGMENT = 16  # a run of this many characters of a secret, in any case, counts as a leak


def fragments(secret: str) -> set[bytes]:
    """Every run of ``FRAGMENT`` characters of ``secret``, lower-cased (the whole if shorter)."""
    low = secret.lower().encode()
    size = min(FRAGMENT, len(low))
    return {low[i : i + size] for i in range(len(low) - size + 1)}


@dataclass
class Scan:
    files: int = 0
    bytes: int = 0
    forms: int = 0
    hits: list[str] = field(default_factory=list)  # a whole secret, in any encoding
    fragment_hits: list[str] = field(default_factory=list)  # a piece of one, in any case


def scan(root: Path, secrets: dict[str, str]) -> Scan:
    """Every byte of every file below ``root`` (paths included) for every form of each secret:
    whole (raw, any case, URL-encoded, base64, hex) and in pieces (any ``FRAGMENT`` chars)."""
    whole = {label: needles(value) for label, value in secrets.items()}
    pieces = {label: fragments(value) for label, value in secrets.items()}
    result = Scan(forms=sum(len(f) + 1 for f in whole.values()) + sum(map(len, pieces.values())))
    for path in all_files(root):
        data = path.read_bytes()
        result.files += 1
        result.bytes += len(data)
        where = str(path.relative_to(root))
        haystack = where.encode() + b"\n" + data
        lowered = haystack.lower()
        for label, value in secrets.items():
            if value.lower().encode() in lowered or any(v in haystack for v in whole[label]):
                result.hits.append(f"{where}: {label}")
            elif any(piece in lowered for piece in pieces[label]):
                result.fragment_hits.append(f"{where}: {label}")
    return result


def call(client: openai.OpenAI, stream: bool, **kwargs: Any) -> str:
    """A chat call (streamed or not); its text and tool-call arguments."""
    kwargs.setdefault("model", MODEL)
    if not stream:
        message = client.chat.completions.create(**kwargs).choices[0].message
        calls = message.tool_calls or []
        return (message.content or "") + "".join(c.function.arguments for c in calls)
    text = ""
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                text += (delta.function.arguments if delta.function else None) or ""
    return text


def run_session(client: openai.OpenAI) -> tuple[int, int]:
    """Every kind of exchange, secrets everywhere; (recordings expected, refusals expected)."""
    recorded = refused = 0
    system = {"role": "system", "content": f"The vault password is {PASSWORD}."}
    move = f"Move 100 EUR from {ACCOUNT} to savings"
    assert call(client, False, messages=[system, *user(move)]) == f"Upstream says: {move}"
    assert call(client, True, messages=user(f"Tell me a story about {ACCOUNT}")) == STORY
    streamed = f"Streamed: my account is {ACCOUNT}, password {PASSWORD}"
    assert call(client, True, messages=user(streamed)) == f"Upstream says: {streamed}"
    assert ACCOUNT in call(client, False, messages=user(f"Pay from {ACCOUNT}"), tools=TRANSFER_TOOL)
    assert ACCOUNT in call(
        client, True, messages=user(f"Stream a payment from {ACCOUNT}"), tools=TRANSFER_TOOL
    )
    recorded += 5

    ask = user("What is the weather in Oslo?")
    message = client.chat.completions.create(model=MODEL, messages=ask, tools=WEATHER_TOOL)
    tool_call = message.choices[0].message.tool_calls[0]
    result = {"temp_c": 21, "city": "Oslo", "account": ACCOUNT}
    follow_up = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [tool_call.to_dict()]},
        {"role": "tool", "tool_call_id": tool_call.id, "content": json.dumps(result)},
    ]
    answer = call(client, False, messages=follow_up, tools=WEATHER_TOOL)
    assert answer == "It is 21 degrees in Oslo."
    recorded += 2

    # upstream errors are recorded as faults, their text redacted ...
    errors: list[tuple[str, bool, type[openai.APIStatusError]]] = [
        (f"rate limit me, account {ACCOUNT}", False, openai.RateLimitError),
        (f"rate limit me (streamed), account {ACCOUNT}", True, openai.RateLimitError),
        (f"break the server, password {PASSWORD}", False, openai.InternalServerError),
        (f"fail loudly for {ACCOUNT} with {PASSWORD}", False, openai.BadRequestError),
    ]
    # ... or refused when they echo a credential
    errors.append(("fail with headers", False, openai.PermissionDeniedError))
    for text, stream, expected in errors:
        with pytest.raises(expected) as caught:
            call(client, stream, messages=user(text))
        if expected is openai.BadRequestError:
            assert ACCOUNT in str(caught.value)  # the client gets the error as it was
    recorded += 4
    refused += 1

    # answers echoing the credentials, or a request holding the client's key: refused
    assert f"Bearer {UPSTREAM_KEY}" in call(client, False, messages=user("echo my headers"))
    assert COOKIE in call(client, True, messages=user("Streamed: echo my headers"))
    assert X_API_KEY in call(client, False, messages=user("echo my api keys"))
    assert CLIENT_KEY in call(client, False, messages=user(f"my key is {CLIENT_KEY}"))
    refused += 4

    # answers shaped like keys: refused, unless a --redact pattern masks them (xox)
    for label, value in SHAPES.items():
        for stream in (False, True):
            text = f"shape {label} please" + (" (streamed)" if stream else "")
            assert value in call(client, stream, messages=user(text))  # relayed unchanged
            if label == "xox":
                recorded += 1
            else:
                refused += 1

    # keys written escaped in the file, or in a tool call's name or id: refused
    for label, (value, _) in HIDDEN.items():
        for stream in (False, True):
            text = f"hidden {label} please" + (" (streamed)" if stream else "")
            if label in ("tool name", "tool id"):
                call(client, stream, messages=user(text))
            else:
                relayed = call(client, stream, messages=user(text))
                assert value[3:] in relayed  # relayed unchanged
            refused += 1
    return recorded, refused


@pytest.fixture
def confined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recorder's side: its working folder, with TMPDIR, HOME and caches inside it."""
    work = tmp_path / "recorder-side"
    for name, sub in (("TMPDIR", "tmp"), ("HOME", "home"), ("XDG_CACHE_HOME", "cache")):
        (work / sub).mkdir(parents=True)
        monkeypatch.setenv(name, str(work / sub))
    return work


def test_secrets_never_reach_disk(
    confined: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream_side = Processes(tmp_path / "upstream-side")
    recorder_side = Processes(confined)
    try:
        extra = upstream_side.workdir / "secrets.yaml"
        extra.write_text(yaml.safe_dump(secrets_upstream(), sort_keys=False), "utf-8")
        # this upstream accepts only the upstream key: the client's key never reaches it
        upstream = upstream_side.upstream("--scenarios", str(extra), "--api-key", UPSTREAM_KEY)
        out = confined / "recordings"
        recorder = recorder_side.recorder(
            upstream,
            out,
            "--upstream-api-key",
            UPSTREAM_KEY,
            *("--redact", ACCOUNT_REGEX, "--redact", PASSWORD_REGEX, "--redact", XOX_REGEX),
            mode="record-missing",
        )
        client = openai.OpenAI(
            base_url=recorder.base_url,
            api_key=CLIENT_KEY,
            organization=ORGANIZATION,
            project=PROJECT,
            default_headers={"Cookie": COOKIE, "x-api-key": X_API_KEY, "api-key": AZURE_KEY},
            default_query={"api_key": QUERY_SECRET},
            max_retries=0,
            timeout=30,
        )
        with client:
            expected, refusals = run_session(client)
        assert wait_for(lambda: len(recordings(out)) == expected, timeout=5), [
            p.name for p in recordings(out)
        ]
        assert wait_for(lambda: recorder.log().count("refusing to write") == refusals), (
            recorder.log()
        )
        recorder.stop()
        # its console output, kept as a log file the way `foxmock record > record.log` would
        (confined / "record-console.log").write_text(recorder.log(), "utf-8")
    finally:
        recorder_side.stop_all()
        upstream_side.stop_all()

    assert len(foxmock.load_scenarios([out]).scenarios) == expected
    redacted = ("move-", "streamed-my-", "pay-", "stream-a-payment-", "fail-loudly-", "shape-xox-")
    for path in recordings(out):
        assert ("[REDACTED]" in path.read_text("utf-8")) == path.name.startswith(redacted), path
    assert not [p for p in all_files(out) if p.suffix != ".yaml" or p.name.startswith(".")]

    result = scan(confined, SECRETS)
    assert result.hits == []
    assert result.fragment_hits == []  # see test_a_refusal_never_logs_a_piece_of_the_client_key
    assert result.files >= expected + 2 and result.bytes > 10_000
    with capsys.disabled():
        print(
            f"\nrecorder secret scan: {result.files} files, {result.bytes} bytes scanned, "
            f"{len(SECRETS)} secrets checked in {result.forms} forms, "
            f"{len(result.hits)} secrets found, {len(result.fragment_hits)} pieces of one"
        )


def test_the_scan_finds_every_form_of_a_planted_secret(tmp_path: Path) -> None:
    """The scanner itself: raw, other case, URL-encoded, base64 at each alignment, hex, a piece,
    and in a file name; and nothing in a file that holds none."""
    secret = COOKIE  # has a '=' so its URL-encoded form differs
    planted = {
        "raw": secret.encode(),
        "upper": secret.upper().encode(),
        "url": urllib.parse.quote(secret, safe="").encode(),
        "hex": secret.encode().hex().encode(),
        "piece": b"xx" + secret[5 : 5 + FRAGMENT].lower().encode() + b"xx",
        **{
            f"base64-{shift}": base64.b64encode(b"pad"[:shift] + secret.encode())
            for shift in range(3)
        },
        "urlsafe": base64.urlsafe_b64encode(b"p" + secret.encode()),
    }
    for name, data in planted.items():
        (tmp_path / f"{name}.txt").write_bytes(b"before " + data + b" after")
    (tmp_path / f"named-{secret}.log").write_bytes(b"")
    (tmp_path / "clean.txt").write_bytes(b"nothing to see: " + PROJECT.encode()[:8])
    result = scan(tmp_path, {"cookie": secret})
    assert result.files == len(planted) + 2
    whole = sorted(h.partition(":")[0] for h in result.hits)
    assert whole == sorted([f"{n}.txt" for n in planted if n != "piece"] + [f"named-{secret}.log"])
    assert result.fragment_hits == ["piece.txt: cookie"]


def test_a_refusal_never_logs_a_piece_of_the_client_key(procs: Processes, tmp_path: Path) -> None:
    """Fixed bug: the refusal of a request whose message holds the client's key named the
    recording, a slug of the message ('my-key-is-sk-test-cl13ntk3yzcl13ntk3yzcl-...'), so up to
    ~40 lower-cased characters of the key reached the log. A refusal now names the recording
    by number and the kind of secret only."""
    upstream = procs.upstream()
    recorder = procs.recorder(upstream, tmp_path / "recordings", mode="record-missing")
    with openai.OpenAI(base_url=recorder.base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        assert CLIENT_KEY in call(client, False, messages=user(f"my key is {CLIENT_KEY}"))
    assert wait_for(lambda: "refusing to write recording" in recorder.log())
    recorder.stop()
    assert recordings(tmp_path / "recordings") == []
    assert "refusing to write recording #1: it contains a credential sent to foxmock" in (
        recorder.log()
    )
    assert "my-key-is" not in recorder.log()
    log = recorder.log().lower().encode()
    assert CLIENT_KEY.lower().encode() not in log
    assert [p for p in fragments(CLIENT_KEY) if p in log] == []


def test_a_recording_name_never_trips_the_key_shape_scan(
    procs: Processes, kill_upstream: FoxmockProcess, tmp_path: Path
) -> None:
    """Fixed bug: the key-shape scan also read the recording's generated name, and 'Set the
    locale to sk-SK for Slovak users' gave '...-sk-sk-for-slovak-users-<hash>', which matches
    sk-[A-Za-z0-9_-]{16,}: an innocent request was refused. A name is now built clear of key
    shapes (words are dropped from the end of its slug), while real key-shaped text in the
    recorded content is still refused."""
    out = tmp_path / "recordings"
    recorder = procs.recorder(kill_upstream, out, mode="record-missing")
    question = "Set the locale to sk-SK for Slovak users"
    assert record_one(recorder, question) == f"Upstream says: {question}"
    assert wait_for(lambda: "recorded" in recorder.log() or "refusing" in recorder.log())
    # ... and a key-shaped message is still refused
    keyed = f"Set the locale with {KEY_SHAPED} please"
    assert record_one(recorder, keyed) == f"Upstream says: {keyed}"
    assert wait_for(lambda: "refusing to write" in recorder.log())
    recorder.stop()
    assert recorder.log().count("refusing to write") == 1, recorder.log()
    assert "something shaped like a key (sk-…)" in recorder.log()
    assert KEY_SHAPED not in recorder.log()
    [path] = recordings(out)
    assert path.name.startswith("set-the-locale-to-")
    scenario = yaml.safe_load(path.read_text("utf-8"))["scenarios"][0]
    assert scenario["match"]["body"]["messages"]["equals"] == user(question)
    assert scenario["respond"]["content"] == f"Upstream says: {question}"


# --- credentials in the --upstream URL ---------------------------------------------------------

BASIC_TOKEN = base64.b64encode(f"user:{URL_PASSWORD}".encode()).decode()
URL_SECRETS = {"url password": URL_PASSWORD, "basic token": BASIC_TOKEN}


def credentials_url(upstream: FoxmockProcess | int) -> str:
    port = upstream.port if isinstance(upstream, FoxmockProcess) else upstream
    return f"http://user:{URL_PASSWORD}@127.0.0.1:{port}/v1"


async def test_credentials_in_the_upstream_url_never_reach_recordings(
    procs: Processes, tmp_path: Path
) -> None:
    """Fixed bug: the '# Recorded by foxmock from URL' header and the description repeated the
    URL verbatim, password included. The URL loses its credentials when the recorder starts:
    they are sent upstream, and never written, logged, journaled or shown in an error."""
    upstream = procs.upstream()
    side = tmp_path / "recorder-side"
    out = side / "recordings"
    recorder = procs.recorder(
        credentials_url(upstream), out, "--log-level", "debug", mode="record-missing"
    )
    dead = closed_port()
    down = procs.recorder(credentials_url(dead), side / "down", mode="record-missing")

    async def ask(proc: FoxmockProcess, text: str) -> tuple[int, str]:
        # a client without a key of its own: the URL's credentials go upstream
        body = {"model": MODEL, "messages": user(text)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{proc.base_url}/chat/completions", json=body) as response,
        ):
            return response.status, await response.text()

    question = "A question via basic auth"
    status, text = await ask(recorder, question)
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] == (
        f"Upstream says: {question}"
    )
    status, text = await ask(recorder, "echo my headers")  # refused: it holds the credentials
    assert json.loads(text)["choices"][0]["message"]["content"].startswith(
        f"auth=Basic {BASIC_TOKEN} "
    )
    status, error = await ask(down, question)
    assert status == 502 and f"http://127.0.0.1:{dead}/v1" in error
    journal = json.dumps(
        [recorder.get_json("/_foxmock/journal"), down.get_json("/_foxmock/journal")]
    )
    assert f"http://127.0.0.1:{dead}/v1" in journal
    assert wait_for(lambda: len(recordings(out)) == 1 and "refusing to write" in recorder.log())
    for proc in (recorder, down):
        proc.stop()
    (side / "console.log").write_text(recorder.log() + down.log() + error + journal, "utf-8")

    [path] = recordings(out)
    scenario = yaml.safe_load(path.read_text("utf-8"))["scenarios"][0]
    assert scenario["description"].startswith(f"recorded from {upstream.base_url} at ")
    assert path.read_text("utf-8").startswith(f"# Recorded by foxmock from {upstream.base_url} at ")
    result = scan(side, URL_SECRETS)
    assert (result.hits, result.fragment_hits) == ([], [])
    assert result.files >= 2


def test_credentials_in_the_upstream_url_with_a_client_key(
    procs: Processes, tmp_path: Path
) -> None:
    """Fixed bug: with credentials in the URL, a request carrying Authorization (every SDK sends
    one), or any request with --upstream-api-key, failed with 500 (aiohttp: "Cannot combine
    AUTHORIZATION header with ... credentials encoded in URL"). What foxmock is told to send
    wins: --upstream-api-key, else the URL's credentials, else the client's key."""
    upstream = procs.upstream()
    side = tmp_path / "recorder-side"
    url = credentials_url(upstream)
    plain = procs.recorder(url, side / "url", mode="record-missing")
    keyed = procs.recorder(
        url, side / "keyed", "--upstream-api-key", UPSTREAM_KEY, mode="record-missing"
    )
    question = "A question with a key"
    with openai.OpenAI(base_url=plain.base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        assert call(client, False, messages=user(question)) == f"Upstream says: {question}"
        assert call(client, True, messages=user("Tell me a story")) == STORY
        assert call(client, True, messages=user("echo my headers")).startswith(
            f"auth=Basic {BASIC_TOKEN} "
        )
    with openai.OpenAI(base_url=keyed.base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        assert call(client, True, messages=user(question)) == f"Upstream says: {question}"
        assert call(client, False, messages=user("echo my headers")).startswith(
            f"auth=Bearer {UPSTREAM_KEY} "
        )
    for proc in (plain, keyed):
        assert wait_for(lambda proc=proc: "refusing to write" in proc.log()), proc.log()
        proc.stop()
        assert proc.log().count("refusing to write") == 1
        (side / f"{proc.log_path.stem}.log").write_text(proc.log(), "utf-8")
    assert len(recordings(side / "url")) == 2 and len(recordings(side / "keyed")) == 1
    assert "credentials are not sent" in keyed.log()
    assert "credentials are not sent" not in plain.log()
    secrets = {**URL_SECRETS, "client key": CLIENT_KEY, "upstream key": UPSTREAM_KEY}
    result = scan(side, secrets)
    assert (result.hits, result.fragment_hits) == ([], [])


def test_debug_logs_never_hold_a_query_string_key(procs: Processes, tmp_path: Path) -> None:
    upstream = procs.upstream()
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, "--log-level", "debug", mode="record-missing")
    with openai.OpenAI(
        base_url=recorder.base_url,
        api_key=CLIENT_KEY,
        default_headers={"x-api-key": X_API_KEY, "Cookie": COOKIE},
        default_query={"api_key": QUERY_SECRET},
        max_retries=0,
    ) as client:
        assert call(client, False, messages=user("A debug-level question")).endswith("question")
    recorder.stop()
    log = recorder.log()
    assert "aiohttp.access" in log
    for secret in (CLIENT_KEY, X_API_KEY, COOKIE):
        assert secret not in log
    assert QUERY_SECRET not in log
