"""Record and replay, as a user meets it: ``foxmock record`` in front of a real upstream process.

The upstream is a separate ``foxmock serve`` process (tests/recording_support.py), so "offline"
means its process is gone. Clients are the official ``openai`` SDK; every body and chunk is
validated against OpenAI's OpenAPI schemas; recordings are real files checked byte by byte.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import fcntl
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml

import foxmock
from foxmock.recorder import Recorder, RecorderSettings, RecordMode, proxy
from foxmock.recorder.capture import Exchange, recording_name
from foxmock.recorder.redact import Redactor, basic_secrets, secrets_in
from foxmock.recorder.writer import remove_stale_temps, write_atomically
from foxmock.scenarios.store import ScenarioStore
from foxmock.templating import TemplateEngine
from tests.recording_support import (
    ACCOUNT,
    ACCOUNT_REGEX,
    CLIENT_KEY,
    COOKIE,
    KEY_SHAPED,
    ORGANIZATION,
    PROJECT,
    STORY,
    STREAM_WORDS,
    UPSTREAM_KEY,
    FoxmockProcess,
    Processes,
    all_files,
    closed_port,
    recordings,
    running_processes,
    running_upstream,
    settled,
    wait_for,
)

Validate = Callable[[str, Any], None]
MODEL = "foxora-1"
CAPITAL = "What is the capital of France?"
CAPITAL_ANSWER = "The capital of France is Paris."
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{12}$")
WEATHER_TOOL: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """This test's foxmock processes (upstreams, recorders, replays); all stopped at the end."""
    yield from running_processes(tmp_path / "procs")


@pytest.fixture(scope="module")
def shared_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FoxmockProcess]:
    """One upstream process per module (per xdist worker), for tests that never stop it."""
    yield from running_upstream(tmp_path_factory.mktemp("shared-upstream"))


# --- helpers --------------------------------------------------------------------------------------


def sdk(proc: FoxmockProcess, key: str = CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 30)
    return openai.OpenAI(base_url=proc.base_url, api_key=key, **kwargs)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def create(client: openai.OpenAI, openapi: Validate, **kwargs: Any) -> dict[str, Any]:
    """A non-streamed call; the raw body is validated, then returned as JSON."""
    kwargs.setdefault("model", MODEL)
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    assert raw.http_response.status_code == 200
    body: dict[str, Any] = raw.http_response.json()
    openapi("CreateChatCompletionResponse", body)
    completion = raw.parse()
    assert completion.choices[0].message.content == body["choices"][0]["message"]["content"]
    return body


def stream(client: openai.OpenAI, openapi: Validate, **kwargs: Any) -> list[dict[str, Any]]:
    """A streamed call through the SDK; every chunk it yields is validated."""
    kwargs.setdefault("model", MODEL)
    chunks = []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        data = chunk.to_dict(mode="json")
        openapi("CreateChatCompletionStreamResponse", data)
        chunks.append(data)
    return chunks


def content_deltas(chunks: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """The chunk sequence: each choice chunk's content delta and finish reason."""
    return [
        (c["choices"][0]["delta"].get("content"), c["choices"][0].get("finish_reason"))
        for c in chunks
        if c["choices"]
    ]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def tool_fragments(chunks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Tool-call deltas in order: (index, id, type, name, argument fragment)."""
    out = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                function = call.get("function") or {}
                out.append(
                    (
                        call["index"],
                        call.get("id"),
                        call.get("type"),
                        function.get("name"),
                        function.get("arguments"),
                    )
                )
    return out


def usage_of(chunks: list[dict[str, Any]]) -> dict[str, int]:
    last = chunks[-1]
    assert last["choices"] == []
    return {k: last["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def calls_of(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in body["choices"][0]["message"]["tool_calls"] or []
    ]


def tool_turn(calls: list[tuple[str, str, str]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant message carrying ``calls`` and one tool message per call."""
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls
        ],
    }
    tools = [
        {"role": "tool", "tool_call_id": cid, "content": json.dumps(result)} for cid, *_ in calls
    ]
    return [assistant, *tools]


def status_error(
    client: openai.OpenAI, openapi: Validate, expected: type[openai.APIStatusError], **kwargs: Any
) -> openai.APIStatusError:
    """Make a call that must fail with ``expected``; its body must be an OpenAI error envelope."""
    kwargs.setdefault("model", MODEL)
    with pytest.raises(expected) as caught:
        result = client.chat.completions.create(**kwargs)
        if kwargs.get("stream"):
            list(result)
    exc = caught.value
    assert type(exc) is expected
    openapi("ErrorResponse", exc.response.json())
    return exc


def assert_serves(proc: FoxmockProcess, openapi: Validate, tag: str = "still serving") -> None:
    """The recorder answers a good request after a failure (from the upstream or a recording)."""
    with sdk(proc) as client:
        body = create(client, openapi, messages=user(f"{CAPITAL} ({tag})"))
    assert body["choices"][0]["message"]["content"] == CAPITAL_ANSWER


def validate_cli(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foxmock", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def scenario_of(path: Path) -> dict[str, Any]:
    """The one scenario of a recorded file (which must be plain, readable YAML)."""
    document = yaml.safe_load(path.read_text("utf-8"))
    assert document["version"] == 1
    assert len(document["scenarios"]) == 1
    scenario: dict[str, Any] = document["scenarios"][0]
    return scenario


def assert_no_temp_files(directory: Path) -> None:
    leftovers = [p for p in all_files(directory) if p.suffix != ".yaml" or p.name.startswith(".")]
    assert leftovers == []


def upstream_is_gone(proc: FoxmockProcess) -> None:
    assert not proc.running
    with sdk(proc) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=user(CAPITAL))


def set_recorded_content(path: Path, content: str) -> None:
    """Edit a recording the way a user would: change the answer it replays."""
    document = yaml.safe_load(path.read_text("utf-8"))
    document["scenarios"][0]["respond"]["content"] = content
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")


# --- end to end: record through the CLI, stop the upstream, replay offline ------------------------


class Session:
    """The conversation recorded and replayed: plain, streamed, a tool turn, a streamed call."""

    def __init__(self, client: openai.OpenAI, openapi: Validate) -> None:
        self.client = client
        self.openapi = openapi

    def run(self) -> dict[str, Any]:
        client, openapi = self.client, self.openapi
        out: dict[str, Any] = {}
        out["plain"] = create(client, openapi, messages=user(CAPITAL))
        out["story"] = stream(
            client,
            openapi,
            messages=user("Tell me a story about a fox."),
            stream_options={"include_usage": True},
        )
        ask = user("What is the weather in Oslo?")
        out["ask"] = create(client, openapi, messages=ask, tools=WEATHER_TOOL)
        calls = calls_of(out["ask"])
        follow_up = ask + tool_turn(calls, {"temp_c": 21, "city": "Oslo"})
        out["answer"] = create(client, openapi, messages=follow_up, tools=WEATHER_TOOL)
        out["streamed_call"] = stream(
            client, openapi, messages=user("Stream me the weather in Rome"), tools=WEATHER_TOOL
        )
        return out


def check_session(live: dict[str, Any], again: dict[str, Any]) -> None:
    """``again`` (replayed) carries the same content, tool calls and chunk sequence as ``live``."""
    assert again["plain"]["choices"][0]["message"]["content"] == CAPITAL_ANSWER
    assert again["plain"]["choices"][0]["message"] == live["plain"]["choices"][0]["message"]
    assert again["plain"]["choices"][0]["finish_reason"] == "stop"

    assert text_of(live["story"]) == STORY
    assert content_deltas(again["story"]) == content_deltas(live["story"])
    assert usage_of(again["story"]) == usage_of(live["story"])

    assert calls_of(again["ask"]) == calls_of(live["ask"])
    assert again["ask"]["choices"][0]["finish_reason"] == "tool_calls"
    assert again["answer"]["choices"][0]["message"]["content"] == "It is 21 degrees in Oslo."
    assert again["answer"]["choices"][0]["message"] == live["answer"]["choices"][0]["message"]

    fragments = tool_fragments(live["streamed_call"])
    assert len([f for f in fragments if f[4]]) > 1  # the arguments really came in pieces
    assert tool_fragments(again["streamed_call"]) == fragments
    arguments = "".join(f[4] or "" for f in fragments)
    assert json.loads(arguments) == {"city": "Rome", "unit": "celsius"}
    assert content_deltas(again["streamed_call"])[-1] == (None, "tool_calls")


def test_record_then_replay_offline_end_to_end(
    procs: Processes, openapi: Validate, tmp_path: Path
) -> None:
    upstream = procs.upstream()
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record-missing")

    with sdk(recorder) as client:
        live = Session(client, openapi).run()
    assert calls_of(live["ask"])[0][1] == "get_weather"
    assert json.loads(calls_of(live["ask"])[0][2]) == {"city": "Oslo", "unit": "celsius"}
    assert live["answer"]["choices"][0]["message"]["content"] == "It is 21 degrees in Oslo."

    # five exchanges, five files (the streamed ones are written when their stream ends)
    assert wait_for(lambda: len(recordings(out)) == 5), (
        f"recorded {[p.name for p in recordings(out)]}\nrecorder log:\n{recorder.log()}"
    )
    files = recordings(out)
    names = sorted(p.stem for p in files)
    for path in files:
        scenario = scenario_of(path)
        assert scenario["name"] == path.stem
        assert NAME.match(path.stem), path.stem
        assert "recorded from" in scenario["description"]
    assert any(n.startswith("what-is-the-capital-of-france-") for n in names)
    assert any(n.startswith("tell-me-a-story-about-a-fox-") for n in names)
    assert sum(n.startswith("what-is-the-weather-in-oslo-") for n in names) == 2
    assert any(n.startswith("stream-me-the-weather-in-rome-") for n in names)
    story = scenario_of(next(p for p in files if p.stem.startswith("tell-me-a-story")))
    assert story["stream"]["chunks"] == [d for d, _ in content_deltas(live["story"]) if d]
    checked = validate_cli(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK: 5 scenarios in 5 file(s)" in checked.stdout
    foxmock.load_scenarios([out])
    assert_no_temp_files(out)

    # recording the same requests again (record mode always forwards) rewrites, never duplicates
    recorder.stop()
    capital = next(p for p in files if p.stem.startswith("what-is-the-capital"))
    capital_mtime = capital.stat().st_mtime_ns
    again = procs.recorder(upstream, out, mode="record")
    with sdk(again) as client:
        create(client, openapi, messages=user(CAPITAL))
        stream(
            client,
            openapi,
            messages=user("Tell me a story about a fox."),
            stream_options={"include_usage": True},
        )
    time.sleep(0.3)
    assert capital.stat().st_mtime_ns != capital_mtime  # really recorded again ...
    assert sorted(p.stem for p in recordings(out)) == names  # ... under the same name
    assert_no_temp_files(out)
    again.stop()

    # offline: the upstream process is gone
    upstream.stop()
    upstream_is_gone(upstream)

    replay = procs.replay(out)
    with sdk(replay) as client:
        check_session(live, Session(client, openapi).run())

    replay_mode = procs.recorder(None, out, "--time-scale", "0", mode="replay")
    with sdk(replay_mode) as client:
        check_session(live, Session(client, openapi).run())
    assert sorted(p.stem for p in recordings(out)) == names  # replaying writes nothing


def test_streamed_recordings_survive_the_sdk_closing_at_done(
    procs: Processes, openapi: Validate, tmp_path: Path
) -> None:
    """The openai SDK closes the connection as soon as it reads ``[DONE]``. A stream the client
    got in full must be recorded even when the upstream ends its response a moment later."""
    upstream = procs.lingering_upstream(0.5)
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record-missing")
    live = {}
    with sdk(recorder) as client:
        for i in range(3):
            question = f"Tell me a story, take {i}"
            live[question] = stream(client, openapi, messages=user(question))
            assert text_of(live[question]) == f"Upstream says: {question}"
    wait_for(lambda: len(recordings(out)) == 3, timeout=3)
    assert len(recordings(out)) == 3, (
        f"only {len(recordings(out))} of 3 complete streams were recorded: "
        f"{[p.name for p in recordings(out)]}\nrecorder log:\n{recorder.log()}"
    )
    # and they replay, chunk for chunk
    recorder.stop()
    replay = procs.replay(out)
    with sdk(replay) as client:
        for question, chunks in live.items():
            again = stream(client, openapi, messages=user(question))
            assert content_deltas(again) == content_deltas(chunks)


# --- modes ----------------------------------------------------------------------------------------


def record_one(
    procs: Processes, upstream: FoxmockProcess, out: Path, text: str, openapi: Validate
) -> Path:
    """Record one plain request with a short-lived record-missing recorder; returns its file."""
    before = set(recordings(out))
    recorder = procs.recorder(upstream, out, mode="record-missing")
    with sdk(recorder) as client:
        create(client, openapi, messages=user(text))
    recorder.stop()
    added = set(recordings(out)) - before
    assert len(added) == 1, recorder.log()
    return added.pop()


def test_replay_mode_never_forwards(procs: Processes, openapi: Validate, tmp_path: Path) -> None:
    upstream = procs.upstream()
    out = tmp_path / "recordings"
    question = f"{CAPITAL} (replay mode)"
    path = record_one(procs, upstream, out, question, openapi)
    assert upstream.requests_containing(question) == 1
    before = {p: p.read_bytes() for p in all_files(out)}

    # an upstream is configured, and running: replay still never talks to it
    recorder = procs.recorder(upstream, out, mode="replay")
    with sdk(recorder) as client:
        body = create(client, openapi, messages=user(question))
        assert body["choices"][0]["message"]["content"] == CAPITAL_ANSWER
        miss = status_error(
            client, openapi, openai.NotFoundError, messages=user("Never recorded (replay mode)")
        )
    assert miss.status_code == 404
    error = miss.response.json()["error"]
    assert error["code"] == "no_scenario_matched"
    assert "No foxmock scenario matched this request" in error["message"]
    assert "Nearest scenarios:" in error["message"]
    assert path.stem in error["message"]
    assert "body.messages" in error["message"]
    assert upstream.requests_containing(question) == 1
    assert upstream.requests_containing("Never recorded (replay mode)") == 0

    # and with the upstream stopped, replay is unchanged: hits answer, misses are 404 (not 502)
    upstream.stop()
    upstream_is_gone(upstream)
    with sdk(recorder) as client:
        body = create(client, openapi, messages=user(question))
        assert body["choices"][0]["message"]["content"] == CAPITAL_ANSWER
        streamed = stream(client, openapi, messages=user(question))
        assert text_of(streamed) == CAPITAL_ANSWER
        status_error(client, openapi, openai.NotFoundError, messages=user("Still never recorded"))
    assert {p: p.read_bytes() for p in all_files(out)} == before


def test_record_mode_always_forwards_and_rewrites(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    question = f"{CAPITAL} (record mode)"
    path = record_one(procs, shared_upstream, out, question, openapi)
    set_recorded_content(path, "EDITED by hand")
    old_mtime = path.stat().st_mtime_ns
    time.sleep(0.05)

    recorder = procs.recorder(shared_upstream, out, mode="record")
    with sdk(recorder) as client:
        body = create(client, openapi, messages=user(question))
    assert settled(recorder, 1), recorder.log()
    # the recording matched, yet the answer came from the upstream ...
    assert body["choices"][0]["message"]["content"] == CAPITAL_ANSWER
    assert shared_upstream.requests_containing(question) == 2
    # ... and the file was rewritten in place, under the same name
    assert recordings(out) == [path]
    assert path.stat().st_mtime_ns != old_mtime
    assert scenario_of(path)["respond"]["content"] == CAPITAL_ANSWER
    assert "EDITED" not in path.read_text("utf-8")

    with sdk(recorder) as client:
        create(client, openapi, messages=user(question))
    assert settled(recorder, 2), recorder.log()
    assert shared_upstream.requests_containing(question) == 3
    assert recordings(out) == [path]
    assert_no_temp_files(out)


def test_record_missing_replays_what_exists_and_records_the_rest(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    known = f"{CAPITAL} (record-missing, known)"
    fresh = "Something new (record-missing)"
    path = record_one(procs, shared_upstream, out, known, openapi)
    set_recorded_content(path, "EDITED by hand")
    known_bytes = path.read_bytes()
    known_mtime = path.stat().st_mtime_ns

    recorder = procs.recorder(shared_upstream, out, mode="record-missing")
    with sdk(recorder) as client:
        replayed = create(client, openapi, messages=user(known))
        assert replayed["choices"][0]["message"]["content"] == "EDITED by hand"
        assert text_of(stream(client, openapi, messages=user(known))) == "EDITED by hand"
        assert shared_upstream.requests_containing(known) == 1  # only the first recording

        live = create(client, openapi, messages=user(fresh))
        assert live["choices"][0]["message"]["content"] == f"Upstream says: {fresh}"
        assert shared_upstream.requests_containing(fresh) == 1
        assert settled(recorder, 1), recorder.log()
        assert len(recordings(out)) == 2
        # the new recording is served at once, without the upstream
        again = create(client, openapi, messages=user(fresh))
        assert again["choices"][0]["message"]["content"] == f"Upstream says: {fresh}"
        assert shared_upstream.requests_containing(fresh) == 1

    assert path.read_bytes() == known_bytes
    assert path.stat().st_mtime_ns == known_mtime
    new = next(p for p in recordings(out) if p != path)
    assert scenario_of(new)["respond"]["content"] == f"Upstream says: {fresh}"
    assert_no_temp_files(out)


def test_passthrough_forwards_and_writes_nothing(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    known = f"{CAPITAL} (passthrough, known)"
    path = record_one(procs, shared_upstream, out, known, openapi)
    set_recorded_content(path, "EDITED by hand")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in all_files(out)}

    recorder = procs.recorder(shared_upstream, out, mode="passthrough")
    with sdk(recorder) as client:
        # a recording matches, but passthrough forwards anyway
        body = create(client, openapi, messages=user(known))
        assert body["choices"][0]["message"]["content"] == CAPITAL_ANSWER
        assert shared_upstream.requests_containing(known) == 2
        fresh = "Passthrough only"
        body = create(client, openapi, messages=user(fresh))
        assert body["choices"][0]["message"]["content"] == f"Upstream says: {fresh}"
        chunks = stream(client, openapi, messages=user("Tell me a story (passthrough)"))
        assert text_of(chunks) == STORY
        status_error(
            client, openapi, openai.RateLimitError, messages=user("rate limit me (passthrough)")
        )
    time.sleep(0.3)
    assert shared_upstream.requests_containing(fresh) == 1
    assert shared_upstream.requests_containing("(passthrough)") == 2
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in all_files(out)} == before

    empty = tmp_path / "never-written"
    recorder = procs.recorder(shared_upstream, empty, mode="passthrough")
    with sdk(recorder) as client:
        create(client, openapi, messages=user(fresh))
    assert all_files(empty) == []


# --- redaction ------------------------------------------------------------------------------------


SECRETS = (
    CLIENT_KEY,
    CLIENT_KEY.removeprefix("sk-"),
    UPSTREAM_KEY,
    UPSTREAM_KEY.removeprefix("sk-"),
    ORGANIZATION,
    PROJECT,
    COOKIE,
    COOKIE.partition("=")[2],
    ACCOUNT,
    ACCOUNT.removeprefix("ACCT-"),
)


def leaks(directory: Path, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """Every (file, secret) pair where the secret's bytes occur anywhere in the file."""
    found = []
    for path in all_files(directory):
        data = path.read_bytes()
        found += [f"{path.name}: {s[:10]}..." for s in secrets if s.encode() in data]
    return found


def test_credentials_and_redacted_text_never_reach_recordings(
    procs: Processes, openapi: Validate, tmp_path: Path
) -> None:
    # this upstream accepts only the upstream key: the client's key must never reach it
    upstream = procs.upstream("--api-key", UPSTREAM_KEY)
    out = tmp_path / "recordings"
    recorder = procs.recorder(
        upstream,
        out,
        "--upstream-api-key",
        UPSTREAM_KEY,
        "--redact",
        ACCOUNT_REGEX,
        mode="record-missing",
    )
    question = f"Move 100 EUR from {ACCOUNT} to savings, please."
    client = sdk(
        recorder, organization=ORGANIZATION, project=PROJECT, default_headers={"Cookie": COOKIE}
    )
    with client:
        live = create(client, openapi, messages=user(question))
        # the client gets the upstream's answer as it was, secret included
        assert live["choices"][0]["message"]["content"] == f"Upstream says: {question}"

        # the upstream saw the upstream key, the organisation, project and cookie headers
        echo = create(client, openapi, messages=user("echo my headers"))
        echoed = echo["choices"][0]["message"]["content"]
        assert f"auth=Bearer {UPSTREAM_KEY}" in echoed
        assert CLIENT_KEY not in echoed
        assert f"org={ORGANIZATION}" in echoed
        assert f"project={PROJECT}" in echoed
        assert f"cookie={COOKIE}" in echoed

        streamed = stream(client, openapi, messages=user(f"Tell me a story about {ACCOUNT}"))
        assert text_of(streamed) == STORY
    time.sleep(0.5)

    # the echo of credentials was refused; nothing anywhere holds a secret
    files = recordings(out)
    # the plain request, and the story unless its recording was lost to the client closing
    # the stream at [DONE] (see test_streamed_recordings_survive_the_sdk_closing_at_done)
    assert 1 <= len(files) <= 2, [p.name for p in files]
    assert leaks(out) == []
    assert all(ACCOUNT not in p.name for p in files)
    assert wait_for(lambda: "refusing to write recording" in recorder.log()), recorder.log()
    assert_no_temp_files(out)

    path = next(p for p in files if p.stem.startswith("move-100-eur-from-"))
    scenario = scenario_of(path)
    assert (
        scenario["respond"]["content"]
        == "Upstream says: Move 100 EUR from [REDACTED] to savings, please."
    )
    body_match = scenario["match"]["body"]
    assert body_match["messages[0].content"]["regex"]
    assert re.search(body_match["messages[0].content"]["regex"], question)
    assert validate_cli(out).returncode == 0

    # the redacted request still replays, offline
    recorder.stop()
    upstream.stop()
    replay = procs.replay(out)
    with sdk(replay) as client:
        replayed = create(client, openapi, messages=user(question))
    assert replayed["choices"][0]["message"]["content"] == (
        "Upstream says: Move 100 EUR from [REDACTED] to savings, please."
    )
    assert leaks(out) == []


def test_key_shaped_answers_are_refused_unless_allowed(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    strict_out = tmp_path / "strict"
    recorder = procs.recorder(shared_upstream, strict_out, mode="record-missing")
    with sdk(recorder) as client:
        body = create(client, openapi, messages=user("show me a key"))
        # the client still gets the answer ...
        assert KEY_SHAPED in body["choices"][0]["message"]["content"]
    # ... but nothing is written
    assert all_files(strict_out) == []
    assert wait_for(lambda: "refusing to write recording" in recorder.log()), recorder.log()
    assert_serves(recorder, openapi, "after a refused recording")
    assert settled(recorder, 2), recorder.log()
    assert len(recordings(strict_out)) == 1
    assert leaks(strict_out, (KEY_SHAPED, CLIENT_KEY)) == []

    allowed_out = tmp_path / "allowed"
    allowing = procs.recorder(
        shared_upstream, allowed_out, "--allow-secrets", mode="record-missing"
    )
    with sdk(allowing) as client:
        body = create(client, openapi, messages=user("show me a key"))
        assert KEY_SHAPED in body["choices"][0]["message"]["content"]
        # the client's own key is never written, even with --allow-secrets: not when the
        # upstream echoes the Authorization header ...
        echo = create(client, openapi, messages=user("echo my headers"))
        assert CLIENT_KEY in echo["choices"][0]["message"]["content"]
        # ... nor when the key is in the request itself
        create(client, openapi, messages=user(f"my key is {CLIENT_KEY}"))
    assert settled(allowing, 3), allowing.log()
    files = recordings(allowed_out)
    assert len(files) == 1, [p.name for p in files]
    assert KEY_SHAPED in files[0].read_text("utf-8")
    assert leaks(allowed_out, (CLIENT_KEY, CLIENT_KEY.removeprefix("sk-"))) == []
    assert_no_temp_files(allowed_out)


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


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
        if data and data != "[DONE]":
            events.append(json.loads(data))
    return events


def recorded_texts(directory: Path) -> list[str]:
    """Every streamed text a recording replays, each joined from its chunks."""
    texts = []
    for path in recordings(directory):
        scenario = scenario_of(path)
        texts.append("".join(scenario.get("stream", {}).get("chunks", [])))
        for call in scenario.get("respond", {}).get("tool_calls", []):
            texts.append("".join(call.get("chunks", [])) + str(call.get("arguments", "")))
    return texts


async def test_secrets_split_across_stream_chunks_never_reach_recordings(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    """Real APIs stream a token at a time, so a secret arrives in pieces; redaction and the
    secret scan must work on the whole text, not chunk by chunk."""
    out = tmp_path / "recordings"
    recorder = procs.recorder(
        shared_upstream, out, "--redact", ACCOUNT_REGEX, mode="record-missing"
    )
    requests = {
        "account": {"messages": user(f"Streamed: my account is {ACCOUNT}")},
        "transfer": {
            "messages": user(f"Stream a transfer from {ACCOUNT}"),
            "tools": TRANSFER_TOOL,
        },
        "key-shaped": {"messages": user("Streamed: show me a key")},
        "client-key": {"messages": user("Streamed: echo my headers")},
    }
    live = {}
    # a raw client that reads every stream to its end on a kept-alive connection
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as session:
        for label, body in requests.items():
            async with session.post(
                f"{recorder.base_url}/chat/completions",
                json={"model": MODEL, "stream": True, **body},
            ) as response:
                assert response.status == 200
                chunks = parse_sse(await response.read())
            for chunk in chunks:
                openapi("CreateChatCompletionStreamResponse", chunk)
            live[label] = text_of(chunks) + "".join(f[4] or "" for f in tool_fragments(chunks))
        wait_for(lambda: len(recordings(out)) >= 2, timeout=3)
        time.sleep(0.3)
    # the client got every answer live, secrets included
    assert ACCOUNT in live["account"] and ACCOUNT in live["transfer"]
    assert KEY_SHAPED in live["key-shaped"]
    assert CLIENT_KEY in live["client-key"]

    names = [p.stem for p in recordings(out)]
    texts = recorded_texts(out)
    found = [
        (secret[:10], text)
        for text in texts
        for secret in (ACCOUNT, KEY_SHAPED, CLIENT_KEY, "5551234567")
        if secret in text
    ]
    assert found == [], f"secrets written in pieces in {names}"
    assert leaks(out, (*SECRETS, KEY_SHAPED)) == []
    # the key-shaped answer and the echoed client key are refused; the others are redacted
    assert not any(n.startswith(("streamed-show-me", "streamed-echo")) for n in names), names
    assert any(n.startswith("streamed-my-account-is-redacted-") for n in names), names
    assert any(n.startswith("stream-a-transfer-from-redacted-") for n in names), names


def test_match_on_template_markers_and_unicode_replay_verbatim(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(
        shared_upstream, out, "--match-on", "last_user,stream", mode="record-missing"
    )
    markers = "Write {{ name }} or {% if x %}, never {# this #}."
    unicode_text = "Grüße aus Köln 🦊 日本語"
    with sdk(recorder) as client:
        first = create(
            client,
            openapi,
            messages=[{"role": "system", "content": "System A"}, *user("show me templates")],
        )
        assert first["choices"][0]["message"]["content"] == markers
        second = create(client, openapi, messages=user(unicode_text))
        assert second["choices"][0]["message"]["content"] == f"Upstream says: {unicode_text}"
    assert settled(recorder, 2), recorder.log()
    files = recordings(out)
    assert len(files) == 2
    for path in files:
        match = scenario_of(path)["match"]
        assert set(match) == {"last_user", "stream"} and match["stream"] is False
    assert unicode_text in "".join(p.read_text("utf-8") for p in files)  # readable, not escaped
    assert validate_cli(out).returncode == 0

    recorder.stop()
    replay = procs.replay(out)
    with sdk(replay) as client:
        # other model, other system prompt: only the last user message and stream matter
        again = create(
            client,
            openapi,
            model="another-model",
            messages=[{"role": "system", "content": "System B"}, *user("show me templates")],
        )
        assert again["choices"][0]["message"]["content"] == markers
        again = create(client, openapi, messages=user(unicode_text))
        assert again["choices"][0]["message"]["content"] == f"Upstream says: {unicode_text}"
        miss = status_error(
            client, openapi, openai.NotFoundError, messages=user(unicode_text), stream=True
        )
    assert "stream: expected False, got True" in miss.response.json()["error"]["message"]


# --- atomic writes under concurrency --------------------------------------------------------------


async def _gather(proc: FoxmockProcess, questions: list[str]) -> list[str]:
    async with openai.AsyncOpenAI(
        base_url=proc.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=60
    ) as client:
        replies = await asyncio.gather(
            *(client.chat.completions.create(model=MODEL, messages=user(q)) for q in questions)
        )
    return [r.choices[0].message.content or "" for r in replies]


def assert_valid_recordings(directory: Path, count: int) -> None:
    files = recordings(directory)
    assert len(files) == count
    for path in files:
        scenario = scenario_of(path)
        loaded = foxmock.load_scenarios([path])
        assert [s.name for s in loaded.scenarios] == [scenario["name"]] == [path.stem]
    assert len(foxmock.load_scenarios([directory]).scenarios) == count
    assert_no_temp_files(directory)


async def test_concurrent_distinct_requests_write_one_valid_file_each(
    procs: Processes, shared_upstream: FoxmockProcess, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(shared_upstream, out, mode="record-missing")
    questions = [f"Concurrent question number {i}" for i in range(30)]
    answers = await _gather(recorder, questions)
    assert answers == [f"Upstream says: {q}" for q in questions]
    assert settled(recorder, 30), recorder.log()
    assert_valid_recordings(out, 30)


@pytest.mark.parametrize("mode", ["record-missing", "record"])
async def test_concurrent_identical_requests_write_one_file(
    procs: Processes, shared_upstream: FoxmockProcess, tmp_path: Path, mode: str
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(shared_upstream, out, mode=mode)
    question = f"The same question, twenty times ({mode})"
    answers = await _gather(recorder, [question] * 20)
    assert answers == [f"Upstream says: {question}"] * 20
    # one recording per request that reached the upstream (the others replayed one)
    assert settled(recorder, shared_upstream.requests_containing(question)), recorder.log()
    assert_valid_recordings(out, 1)


def test_write_atomically_readers_see_old_or_new(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "recording.yaml"
    old = "# old\n" + "a: 1\n" * 50_000
    new = "# new\n" + "b: 2\n" * 60_000
    write_atomically(path, old)
    stop = threading.Event()
    seen: list[str] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text("utf-8")
            if text == old:
                seen.append("old")
            elif text == new:
                seen.append("new")
            else:
                bad.append(text[:40] + f"... ({len(text)} chars)")

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for i in range(200):
            write_atomically(path, new if i % 2 == 0 else old)
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert bad == []
    assert {"old", "new"} <= set(seen)
    assert path.read_text("utf-8") == old
    assert sorted(p.name for p in path.parent.iterdir()) == ["recording.yaml"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)

    # a write that fails half-way leaves the old file and no temporary file behind
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "c: 3\n" * 1000 + "\ud800")
    assert path.read_text("utf-8") == old
    assert sorted(p.name for p in path.parent.iterdir()) == ["recording.yaml"]


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    """Only the writer's own temp names, only unlocked (a live writer holds its lock)."""
    stale = tmp_path / ".a-story-0123456789ab.yaml.k2j4_x9q.tmp"
    stale.write_text("half a recording", "utf-8")
    live = tmp_path / ".live-0123456789ab.yaml.abcdefgh.tmp"
    live.write_text("being written", "utf-8")
    kept = [
        "a-story-0123456789ab.yaml",
        ".a-story.yaml.tmp",  # no random part
        ".a-story.yaml.ABCDEFGH.tmp",  # mkstemp never uses capitals
        "a-story.yaml.abcdefgh.tmp",  # not hidden
        ".a-story.yml.abcdefgh.tmp",
        ".a-story.yaml.abcdefgh.tmp.bak",
    ]
    for name in kept:
        (tmp_path / name).write_text("someone else's", "utf-8")
    (tmp_path / ".dir.yaml.abcdefgh.tmp").mkdir()
    (tmp_path / ".link.yaml.abcdefgh.tmp").symlink_to(tmp_path / kept[0])
    with live.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as write_atomically holds it while it writes
        assert remove_stale_temps(tmp_path) == 1
        assert live.exists() and not stale.exists()
    assert remove_stale_temps(tmp_path) == 1  # the writer died: now it is stale
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*kept, ".dir.yaml.abcdefgh.tmp", ".link.yaml.abcdefgh.tmp"]
    )
    assert (tmp_path / kept[0]).read_text("utf-8") == "someone else's"
    assert remove_stale_temps(tmp_path / "missing") == 0


def test_a_write_never_loses_its_temp_file_to_a_cleaner(tmp_path: Path) -> None:
    """Writers and cleaners racing on one folder: every write lands, whole."""
    stop = threading.Event()

    def clean() -> None:
        while not stop.is_set():
            remove_stale_temps(tmp_path)

    cleaners = [threading.Thread(target=clean) for _ in range(2)]
    for thread in cleaners:
        thread.start()
    try:
        for i in range(100):
            write_atomically(tmp_path / f"r{i % 7}.yaml", f"n: {i}\n")
    finally:
        stop.set()
        for thread in cleaners:
            thread.join(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"r{i}.yaml" for i in range(7)]
    assert (tmp_path / "r1.yaml").read_text("utf-8") == "n: 99\n"


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("Tell me a story", "tell-me-a-story-"),
        ("Set the locale to sk-SK for Slovak users", "set-the-locale-to-sk-sk-"),
        (f"my key is {CLIENT_KEY}", "my-key-is-redacted-"),
        (f"{KEY_SHAPED} and then some", "redacted-and-then-some-"),
        ("xoxb-abc def ghi jkl", "request-"),
        ("a Bearer abcdefghijklmnopqrstuvwxyz token", "a-redacted-token-"),
        (f"use {ORGANIZATION.lower()} please", "use-redacted-please-"),
        ("", "request-"),
    ],
)
def test_recording_names_never_hold_a_key_shape_or_a_credential(text: str, prefix: str) -> None:
    request = {"model": MODEL, "messages": user(text)}
    known = [CLIENT_KEY, ORGANIZATION.lower()]
    name = recording_name(request, {"model": MODEL}, Redactor(), known)
    assert name.startswith(prefix) and NAME.match(name), name
    assert secrets_in(name, known) == []


def test_upstream_url_credentials_are_taken_out_at_settings_time(tmp_path: Path) -> None:
    settings = RecorderSettings(
        mode=RecordMode.RECORD,
        upstream="https://me:p%40ss-W0rd-long@api.example.com:8443/v1?x=1",
        directory=tmp_path,
    )
    assert settings.upstream == "https://api.example.com:8443/v1?x=1"
    assert settings.upstream_auth == "Basic " + base64.b64encode(b"me:p@ss-W0rd-long").decode()
    assert dataclasses.replace(settings, mode=RecordMode.RECORD_MISSING).upstream_auth == (
        settings.upstream_auth
    )
    assert "p@ss-W0rd-long" in basic_secrets(settings.upstream_auth)
    plain = RecorderSettings(RecordMode.RECORD, "http://127.0.0.1:1/v1", tmp_path)
    assert (plain.upstream, plain.upstream_auth) == ("http://127.0.0.1:1/v1", None)


async def test_recordings_are_written_off_the_event_loop_one_at_a_time_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ScenarioStore([], TemplateEngine(random.Random(0)))
    recorder = Recorder(RecorderSettings(RecordMode.RECORD, "http://h/v1", tmp_path), store)
    writers: list[int] = []
    busy = threading.Lock()
    real = proxy.write_recording

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        assert busy.acquire(blocking=False), "two recordings written at once"
        try:
            writers.append(threading.get_ident())
            time.sleep(0.05)  # a slow disk: the event loop must keep serving meanwhile
            return real(*args, **kwargs)
        finally:
            busy.release()

    monkeypatch.setattr(proxy, "write_recording", slow_write)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    answers = [f"answer {i}" for i in range(5)]
    exchanges = [
        Exchange(
            request={"model": MODEL, "messages": user("The same question")},
            status=200,
            body=json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": a}}]}
            ).encode(),
            complete=True,
        )
        for a in answers
    ]
    jobs = [recorder.record(e, []) for e in exchanges]  # returns at once: written off the loop
    names = await asyncio.gather(*map(asyncio.wrap_future, jobs))
    ticker.cancel()
    assert len(set(names)) == 1 and names[0] is not None
    assert len(writers) == 5 and threading.get_ident() not in writers
    assert ticks >= 20  # 5 x 50 ms of writing did not stall the loop
    path = tmp_path / f"{names[0]}.yaml"
    assert scenario_of(path)["respond"]["content"] == answers[-1]  # the last one wins
    assert [s.name for s in store.current.scenarios] == names[:1]


# --- upstream failures ----------------------------------------------------------------------------


def test_upstream_down_is_502_and_nothing_written(
    procs: Processes, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    out.mkdir()
    known = out / "known.yaml"
    known.write_text(
        "version: 1\nscenarios:\n  - name: known\n"
        f"    match: {{last_user: {{contains: {CAPITAL!r}}}}}\n"
        f"    respond: {{content: {CAPITAL_ANSWER!r}}}\n",
        "utf-8",
    )
    recorder = procs.recorder(f"http://127.0.0.1:{closed_port()}/v1", out, mode="record-missing")
    with sdk(recorder) as client:
        for streamed in (False, True):
            exc = status_error(
                client,
                openapi,
                openai.InternalServerError,
                messages=user(f"Nobody is listening ({streamed})"),
                stream=streamed,
            )
            assert exc.status_code == 502
            error = exc.response.json()["error"]
            assert error["code"] == "upstream_unavailable"
            assert error["type"] == "upstream_error"
            assert "could not be reached" in error["message"]
            assert_serves(recorder, openapi, f"after upstream down {streamed}")
    assert all_files(out) == [known]


def test_upstream_timeout_is_504_and_nothing_written(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(
        shared_upstream, out, "--upstream-timeout", "0.5", mode="record-missing"
    )
    with sdk(recorder) as client:
        for streamed in (False, True):
            started = time.perf_counter()
            exc = status_error(
                client,
                openapi,
                openai.InternalServerError,
                messages=user(f"please hang ({streamed})"),
                stream=streamed,
            )
            assert time.perf_counter() - started < 4
            assert exc.status_code == 504
            error = exc.response.json()["error"]
            assert error["code"] == "upstream_timeout"
            assert error["type"] == "upstream_error"
            assert settled(recorder, int(streamed)), recorder.log()
            assert len(all_files(out)) == int(streamed)  # the good request after the first
            assert_serves(recorder, openapi, f"after a timeout {streamed}")
    assert settled(recorder, 2), recorder.log()
    assert len(recordings(out)) == 2  # the good requests after each failure
    assert not any("hang" in p.name for p in all_files(out))


def test_upstream_stalling_mid_stream_is_an_error_event(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(
        shared_upstream, out, "--upstream-timeout", "0.5", mode="record-missing"
    )
    received: list[dict[str, Any]] = []
    with sdk(recorder) as client:
        chunks = client.chat.completions.create(
            model=MODEL, messages=user("stall mid-stream please"), stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            for chunk in chunks:
                data = chunk.to_dict(mode="json")
                openapi("CreateChatCompletionStreamResponse", data)
                received.append(data)
    exc = caught.value
    assert not isinstance(exc, openai.APIStatusError)  # the stream had started with a 200
    assert isinstance(exc.body, dict)
    openapi("ErrorResponse", {"error": exc.body})
    assert exc.body["code"] == "upstream_stream_broken"
    assert received and STREAM_WORDS.startswith(text_of(received))
    assert text_of(received) != STREAM_WORDS
    time.sleep(0.3)
    assert all_files(out) == []
    assert_serves(recorder, openapi, "after a stalled stream")


def test_upstream_stream_broken_midway(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    recorder = procs.recorder(shared_upstream, out, mode="record-missing")
    received: list[dict[str, Any]] = []
    with sdk(recorder) as client:
        chunks = client.chat.completions.create(
            model=MODEL, messages=user("please disconnect"), stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            for chunk in chunks:
                data = chunk.to_dict(mode="json")
                openapi("CreateChatCompletionStreamResponse", data)
                received.append(data)
    # the partial stream came through (the role chunk and three words), then an error
    assert len(received) == 4
    assert text_of(received) == "one two three"
    exc = caught.value
    assert not isinstance(exc, openai.APIStatusError)
    assert isinstance(exc.body, dict)
    openapi("ErrorResponse", {"error": exc.body})
    assert exc.body["code"] == "upstream_stream_broken"
    assert "The upstream stream broke" in exc.message
    time.sleep(0.3)
    assert all_files(out) == []
    assert_serves(recorder, openapi, "after a broken stream")

    # without streaming, the upstream drops the connection before answering: 502
    with sdk(recorder) as client:
        exc502 = status_error(
            client, openapi, openai.InternalServerError, messages=user("please disconnect")
        )
    assert exc502.status_code == 502
    assert exc502.response.json()["error"]["code"] == "upstream_unavailable"
    assert not any("disconnect" in p.name for p in all_files(out))
    assert_serves(recorder, openapi, "after a dropped connection")


ERRORS = [
    pytest.param("rate limit me", {}, 429, openai.RateLimitError, False, id="429-by-message"),
    pytest.param(
        "rate limit me while streaming", {}, 429, openai.RateLimitError, True, id="429-streamed"
    ),
    pytest.param(
        "plain question",
        {"x-upstream-fault": "429"},
        429,
        openai.RateLimitError,
        False,
        id="429-by-header",
    ),
    pytest.param("break the server", {}, 500, openai.InternalServerError, False, id="500"),
    pytest.param(
        "break the server, streamed", {}, 500, openai.InternalServerError, True, id="500-streamed"
    ),
]


@pytest.mark.parametrize(("text", "headers", "status", "error_class", "streamed"), ERRORS)
def test_upstream_errors_are_relayed_and_recorded_as_faults(
    procs: Processes,
    shared_upstream: FoxmockProcess,
    openapi: Validate,
    tmp_path: Path,
    text: str,
    headers: dict[str, str],
    status: int,
    error_class: type[openai.APIStatusError],
    streamed: bool,
) -> None:
    text = f"{text} ({tmp_path.name})"
    kwargs: dict[str, Any] = {"messages": user(text), "stream": streamed, "extra_headers": headers}
    with sdk(shared_upstream) as client:
        direct = status_error(client, openapi, error_class, **kwargs)

    out = tmp_path / "recordings"
    recorder = procs.recorder(shared_upstream, out, mode="record-missing")
    with sdk(recorder) as client:
        relayed = status_error(client, openapi, error_class, **kwargs)
    assert relayed.status_code == direct.status_code == status
    assert relayed.response.json() == direct.response.json()
    assert relayed.message == direct.message
    assert shared_upstream.requests_containing(text) == 2

    # recorded as a fault scenario ...
    assert settled(recorder, 1), recorder.log()
    files = recordings(out)
    assert len(files) == 1
    scenario = scenario_of(files[0])
    error = direct.response.json()["error"]
    assert scenario["fault"]["status"] == status
    assert scenario["fault"]["message"] == error["message"]
    assert "respond" not in scenario
    assert validate_cli(out).returncode == 0

    # ... that replays the same status and message, here without the upstream
    with sdk(recorder) as client:
        replayed = status_error(client, openapi, error_class, **kwargs)
    assert shared_upstream.requests_containing(text) == 2
    for exc in (replayed,):
        assert exc.status_code == status
        got = exc.response.json()["error"]
        assert (got["message"], got["type"], got["code"]) == (
            error["message"],
            error["type"],
            error["code"],
        )
    assert_serves(recorder, openapi, f"after a relayed {status}")

    replay = procs.replay(out)
    with sdk(replay) as client:
        offline = status_error(client, openapi, error_class, **{**kwargs, "extra_headers": {}})
    assert offline.status_code == status
    assert offline.response.json()["error"]["message"] == error["message"]


def test_upstream_rate_limit_headers_are_relayed(
    procs: Processes, shared_upstream: FoxmockProcess, openapi: Validate, tmp_path: Path
) -> None:
    """A 429 relayed "unchanged" keeps the headers clients back off by (Retry-After & co)."""
    kwargs: dict[str, Any] = {"messages": user(f"rate limit me ({tmp_path.name})")}
    with sdk(shared_upstream) as client:
        direct = status_error(client, openapi, openai.RateLimitError, **kwargs)
    recorder = procs.recorder(shared_upstream, tmp_path / "recordings", mode="passthrough")
    with sdk(recorder) as client:
        relayed = status_error(client, openapi, openai.RateLimitError, **kwargs)
    names = ("retry-after", "retry-after-ms", "x-ratelimit-remaining-requests")
    assert direct.response.headers.get("retry-after") == "1"
    assert {n: relayed.response.headers.get(n) for n in names} == {
        n: direct.response.headers.get(n) for n in names
    }
