"""The recorder in front of a hostile upstream (a real process on 127.0.0.1): odd JSON shapes,
huge answers, template text and escaped keys. The client always gets the upstream's answer; a
recording is written only when it is safe, literal and loads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

import foxmock
from foxmock.recorder.proxy import _SSEReader
from foxmock.recorder.redact import Redactor
from foxmock.recorder.writer import RecordingInvalid, SecretFound, write_recording
from foxmock.scenarios.loader import load_scenarios
from foxmock.templating import TemplateEngine
from tests.recording_support import (
    CAPPED_RECORDER,
    HOSTILE_UPSTREAM,
    FoxmockProcess,
    Processes,
    peak_rss_bytes,
    recordings,
    running_processes,
    settled,
    start_script,
    wait_for,
)

MODEL = "foxora-1"
MIB = 1024 * 1024
KEY = "sk-" + "Hx7Tq2Lm9Pw4Zr8Kd3Vb6Nc1"  # shaped like a key, sent by nobody
ESCAPED_KEY = "\\u0073k-" + KEY[3:]  # the same key as JSON writes it with a \u escape
TEMPLATES = [
    "{{ 7 * 7 }}",
    "{%endraw%}{{ 7*7 }}",
    "{%- endraw %}{{ 7 * 7 }}{% raw %}",
    "{{ request.headers }} {{ headers }} {{ headers.get('authorization') }}",
    "{% for m in messages %}{{ m }}{% endfor %}{# note #}",
]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    yield from running_processes(tmp_path / "procs")


def hostile(procs: Processes) -> FoxmockProcess:
    return start_script(procs, "hostile_upstream", HOSTILE_UPSTREAM)


def capped(procs: Processes, upstream: FoxmockProcess, out: Path, cap: int) -> FoxmockProcess:
    return start_script(
        procs, "capped_recorder", CAPPED_RECORDER, upstream.base_url, str(out), str(cap), "record"
    )


def ask(spec: Any, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": json.dumps(spec)}],
        "stream": stream,
        **extra,
    }


async def post(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.post(f"{url}/chat/completions", json=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def no_traceback(proc: FoxmockProcess) -> None:
    assert "Traceback" not in proc.log(), proc.log()


# --- (13) any JSON shape is data ---------------------------------------------------------------

WRONG_SHAPES: list[Any] = [
    {"choices": ["x"]},
    {"choices": "x"},
    {"choices": [{"message": "x"}]},
    {"choices": [{"message": {"content": 5}}]},
    {"choices": [{"message": {"content": ["a", "b"]}}]},
    {"choices": [{"message": {"tool_calls": [{"function": "f"}]}}]},
    {"choices": [{"message": {"tool_calls": "x"}, "finish_reason": {"no": 1}}]},
    {"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "many"}},
    {"choices": [{"message": {"content": "ok"}}], "model": 7},
    [1, 2, 3],
    "just a string",
    None,
]


async def test_any_upstream_json_shape_reaches_the_client_unchanged(
    procs: Processes, tmp_path: Path
) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record")
    attempts = 0
    for shape in WRONG_SHAPES:
        for status in (200, 400):
            spec = {"json": shape, "status": status}
            direct = await post(upstream.base_url, ask(spec))
            relayed = await post(recorder.base_url, ask(spec))
            assert relayed == direct, (shape, status)
            attempts += 1
    deep = {"raw": "[" * 100_000 + "]" * 100_000}  # deeper than any parser recurses
    assert await post(recorder.base_url, ask(deep)) == await post(upstream.base_url, ask(deep))
    attempts += 1
    streamed = [["x"], {"choices": ["x"]}, {"choices": [{"delta": {"content": 5}}]}, "not json"]
    for event in streamed:
        spec = {"sse": [event]}
        assert await post(recorder.base_url, ask(spec, True)) == await post(
            upstream.base_url, ask(spec, True)
        )
        attempts += 1
    assert settled(recorder, attempts), recorder.log()
    no_traceback(recorder)
    assert "could not turn the upstream answer into a scenario" in recorder.log()
    for path in recordings(out):  # what was written (the 400 faults) loads
        foxmock.load_scenarios([path])


# --- (13) large answers: relayed at once, in full, not recorded, bounded memory ---------------


@pytest.mark.parametrize("stream", [False, True], ids=["body", "sse"])
async def test_a_large_answer_is_relayed_promptly_and_not_recorded(
    procs: Processes, tmp_path: Path, stream: bool
) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = capped(procs, upstream, out, MIB)
    spec = {"big_sse_mib": 40} if stream else {"big_json_mib": 40}
    rss_before, _ = peak_rss_bytes(recorder)
    started = time.perf_counter()
    digest, size = hashlib.sha256(), 0
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
        session.post(f"{recorder.base_url}/chat/completions", json=ask(spec, stream)) as reply,
    ):
        assert reply.status == 200
        async for data in reply.content.iter_any():
            digest.update(data)
            size += len(data)
    elapsed = time.perf_counter() - started
    _, rss_peak = peak_rss_bytes(recorder)
    direct = hashlib.sha256()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{upstream.base_url}/chat/completions", json=ask(spec, stream)) as reply,
    ):
        direct.update(await reply.read())
    assert size >= 40 * MIB and digest.hexdigest() == direct.hexdigest()
    assert elapsed < 20, f"{size} bytes took {elapsed:.1f} s"
    assert rss_peak - rss_before < 24 * MIB, f"grew {(rss_peak - rss_before) / MIB:.0f} MiB"
    assert wait_for(lambda: "(max_record_bytes): relayed, not recorded" in recorder.log())
    time.sleep(0.3)
    assert recordings(out) == []
    no_traceback(recorder)


async def test_a_small_answer_is_still_recorded_under_the_cap(
    procs: Processes, tmp_path: Path
) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = capped(procs, upstream, out, MIB)
    status, _ = await post(recorder.base_url, ask({"big_json_mib": 0.5}))
    assert status == 200
    assert settled(recorder, 1) and len(recordings(out)) == 1, recorder.log()


def test_one_long_sse_event_parses_in_linear_time() -> None:
    """An 8 MiB event in 1 KiB pieces: the old parser copied and searched the whole buffer on
    every piece (quadratic, ~30 GiB of work); this one scans each byte once."""
    content = "d" * (8 * MIB)
    event = b"data: " + json.dumps({"choices": [{"delta": {"content": content}}]}).encode()
    data = event + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    reader = _SSEReader(time.perf_counter())
    started = time.perf_counter()
    for start in range(0, len(data), 1024):
        reader.feed(data[start : start + 1024])
    elapsed = time.perf_counter() - started
    assert elapsed < 2, f"{elapsed:.2f} s"
    assert reader.done and len(reader.payloads) == 1
    assert json.loads(reader.payloads[0][1])["choices"][0]["delta"]["content"] == content


def test_sse_boundaries_split_anywhere_parse_the_same() -> None:
    events = [{"n": i, "text": "x" * i} for i in range(20)]
    data = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    data += b": comment\n\ndata: [DONE]\n\n"
    rng = random.Random(1)
    for _ in range(50):
        reader = _SSEReader(0.0)
        at = 0
        while at < len(data):
            step = rng.randint(1, 9)
            reader.feed(data[at : at + step])
            at += step
        assert [json.loads(p) for _, p in reader.payloads] == events and reader.done


# --- (8) keys hidden by escapes, in tool calls ---------------------------------------------------


def scenario_with(respond: dict[str, Any], stream: dict[str, Any] | None = None) -> dict[str, Any]:
    scenario: dict[str, Any] = {"name": "hidden-key-0123456789ab", "literal": True}
    scenario["match"] = {"last_user": {"contains": "x"}}
    scenario["respond"] = respond
    if stream:
        scenario["stream"] = stream
    return scenario


HIDDEN: dict[str, dict[str, Any]] = {
    "after a tab": scenario_with({"content": f"token:\t{KEY}"}),
    "after a newline": scenario_with({"content": f"token:\n{KEY}"}),
    "after a tab in a chunk": scenario_with({}, {"chunks": ["a\t", KEY[:5], KEY[5:]]}),
    "u-escaped in arguments": scenario_with(
        {"tool_calls": [{"name": "f", "arguments": '{"k": "' + ESCAPED_KEY + '"}'}]}
    ),
    "u-escaped in argument chunks": scenario_with(
        {"tool_calls": [{"name": "f", "chunks": ['{"k": "\\u00', "73k-" + KEY[3:] + '"}']}]}
    ),
    "escaped twice (JSON in JSON)": scenario_with(
        {"tool_calls": [{"name": "f", "arguments": json.dumps({"inner": f'{{"k": "{KEY}"}}'})}]}
    ),
    "in a tool name": scenario_with({"tool_calls": [{"name": KEY, "arguments": "{}"}]}),
    "in a tool call id": scenario_with(
        {"tool_calls": [{"name": "f", "id": f"call\t{KEY}", "arguments": "{}"}]}
    ),
    "in a fault message": {
        "name": "hidden-key-0123456789ab",
        "literal": True,
        "fault": {"status": 400, "message": f"bad key:\t{KEY}"},
    },
}


@pytest.mark.parametrize("scenario", HIDDEN.values(), ids=HIDDEN.keys())
def test_a_key_hidden_by_an_escape_is_refused(tmp_path: Path, scenario: dict[str, Any]) -> None:
    with pytest.raises(SecretFound):
        write_recording(tmp_path, scenario, "test")
    assert list(tmp_path.iterdir()) == []


async def test_keys_in_tool_calls_never_reach_disk(procs: Processes, tmp_path: Path) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record")
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    answers: list[tuple[Any, bool]] = []
    for where in ("arguments", "name", "id"):
        hidden = dict(call, function=dict(call["function"]))
        if where == "arguments":
            hidden["function"]["arguments"] = '{"k": "' + ESCAPED_KEY + '"}'
        elif where == "name":
            hidden["function"]["name"] = KEY
        else:
            hidden["id"] = f"call\t{KEY}"
        message = {"role": "assistant", "content": None, "tool_calls": [hidden]}
        answers.append(({"json": {"choices": [{"message": message}]}}, False))
        delta = {"index": 0, **{k: v for k, v in hidden.items() if k != "type"}}
        sse = {"choices": [{"index": 0, "delta": {"tool_calls": [delta]}}]}
        answers.append(({"sse": [sse]}, True))
    answers.append(({"json": {"choices": [{"message": {"content": f"a\t{KEY}"}}]}}, False))
    answers.append(({"json": {"choices": [{"message": {"content": f"a\n{KEY}"}}]}}, False))
    for spec, stream in answers:
        relayed = await post(recorder.base_url, ask(spec, stream))
        assert relayed == await post(upstream.base_url, ask(spec, stream))
    assert settled(recorder, len(answers)), recorder.log()
    assert recorder.log().count("refusing to write recording") == len(answers), recorder.log()
    assert recordings(out) == []
    assert KEY[3:] not in recorder.log()


# --- (9) recorded text is data, never a template -------------------------------------------------


def tool_message(text: str, i: int) -> dict[str, Any]:
    arguments = json.dumps({"q": text, "n": i})
    call = {
        "id": f"call {text}",
        "type": "function",
        "function": {"name": text, "arguments": arguments},
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def tool_events(text: str, i: int) -> list[dict[str, Any]]:
    arguments = json.dumps({"q": text, "n": i})
    half = len(arguments) // 2
    first = {"index": 0, "id": f"call {text}", "function": {"name": text, "arguments": ""}}
    parts = [first, {"index": 0, "function": {"arguments": arguments[:half]}}]
    parts.append({"index": 0, "function": {"arguments": arguments[half:]}})
    return [{"choices": [{"index": 0, "delta": {"tool_calls": [p]}}]} for p in parts]


def literal_answers() -> list[tuple[str, dict[str, Any], bool]]:
    """(kind, spec, stream) answers that hold template text everywhere."""
    found: list[tuple[str, dict[str, Any], bool]] = []
    for i, text in enumerate(TEMPLATES):
        message = {"role": "assistant", "content": f"{i}: {text}"}
        found.append(("content", {"json": {"choices": [{"message": message}]}}, False))
        events = [
            {"choices": [{"index": 0, "delta": {"content": part}}]}
            for part in (f"{i}: ", text[:3], text[3:])
        ]
        found.append(("chunks", {"sse": events}, True))
        found.append(("tool", {"json": {"choices": [{"message": tool_message(text, i)}]}}, False))
        found.append(("tool chunks", {"sse": tool_events(text, i)}, True))
        found.append(
            ("fault", {"json": {"error": {"message": f"{i}: {text}"}}, "status": 400}, False)
        )
    return found


def replayed_text(raw: bytes, stream: bool, status: int) -> Any:
    """What a client reads from an answer: content, tool calls (id, name, arguments), error."""
    if status >= 400:
        return json.loads(raw)["error"]["message"]
    if not stream:
        message = json.loads(raw)["choices"][0]["message"]
        calls = [
            (c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message.get("tool_calls") or []
        ]
        return message.get("content"), calls
    content, calls = "", {}
    for block in raw.decode().split("\n\n"):
        data = block.removeprefix("data: ").strip()
        if not data or data == "[DONE]":
            continue
        delta = json.loads(data)["choices"][0]["delta"]
        content += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            slot = calls.setdefault(call.get("index", 0), ["", "", ""])
            slot[0] += call.get("id") or ""
            slot[1] += (call.get("function") or {}).get("name") or ""
            slot[2] += (call.get("function") or {}).get("arguments") or ""
    return content, [tuple(v) for _, v in sorted(calls.items())]


async def test_recorded_template_text_replays_literally(procs: Processes, tmp_path: Path) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record")
    answers = literal_answers()
    live = []
    for _, spec, stream in answers:
        status, raw = await post(recorder.base_url, ask(spec, stream))
        live.append(replayed_text(raw, stream, status))
    assert settled(recorder, len(answers)), recorder.log()
    files = recordings(out)
    assert len(files) == len(answers), recorder.log()
    for path in files:
        assert yaml.safe_load(path.read_text("utf-8"))["scenarios"][0]["literal"] is True
    replay = procs.replay(out)
    secret = {"Authorization": "Bearer sk-replaying-client-" + "R3pl4yK3y" * 3}
    for (kind, spec, stream), expected in zip(answers, live, strict=True):
        status, raw = await post(replay.base_url, ask(spec, stream), headers=secret)
        assert replayed_text(raw, stream, status) == expected, kind
        assert b"R3pl4yK3y" not in raw, kind


def test_literal_scenarios_never_render_and_old_raw_wrappers_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old-and-new.yaml"
    scenarios = [
        {
            "name": "old-raw-wrapped",
            "match": {"last_user": {"contains": "old"}},
            "respond": {"content": "{% raw %}{{ 7 * 7 }}{% endraw %}"},
        },
        {
            "name": "literal",
            "literal": True,
            "match": {"last_user": {"contains": "new"}},
            "respond": {
                "content": "{{ 7 * 7 }}{% raw %}",
                "model": "{{ model }}",
                "headers": {"x-t": "{{ headers }}"},
                "tool_calls": [
                    {"name": "{{ x }}", "id": "{{ y }}", "arguments": {"a": "{{ 7*7 }}"}}
                ],
            },
        },
        {
            "name": "literal-chunks",
            "literal": True,
            "respond": {"tool_calls": [{"name": "f", "chunks": ['{"a": "{{', ' 7 }}"}']}]},
            "stream": {"chunks": ["{%endraw%}", "{{ 1 }}"]},
        },
    ]
    path.write_text(yaml.safe_dump({"version": 1, "scenarios": scenarios}), "utf-8")
    loaded = {s.name: s for s in load_scenarios([path], TemplateEngine(random.Random(0))).scenarios}
    assert loaded["old-raw-wrapped"].respond is not None
    assert loaded["old-raw-wrapped"].respond.content is not None
    assert loaded["old-raw-wrapped"].respond.content({}) == "{{ 7 * 7 }}"
    new = loaded["literal"]
    assert new.literal and new.respond is not None
    assert new.respond.content is not None and new.respond.content({}) == "{{ 7 * 7 }}{% raw %}"
    assert new.respond.model is not None and new.respond.model({}) == "{{ model }}"
    assert new.respond.headers["x-t"]({}) == "{{ headers }}"
    call = new.respond.tool_calls[0]
    assert call.name({}) == "{{ x }}" and call.id is not None and call.id({}) == "{{ y }}"
    assert call.arguments is not None and json.loads(call.arguments({})) == {"a": "{{ 7*7 }}"}
    chunked = loaded["literal-chunks"]
    assert chunked.chunks is not None and chunked.respond is not None
    assert [c({}) for c in chunked.chunks] == ["{%endraw%}", "{{ 1 }}"]
    chunks = chunked.respond.tool_calls[0].chunks
    assert chunks is not None and "".join(c({}) for c in chunks) == '{"a": "{{ 7 }}"}'


# --- (10) a recording that would not load is never written ---------------------------------------


def test_a_recording_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    bad = scenario_with({"tool_calls": [{"name": "f", "arguments": "{not json"}]})
    with pytest.raises(RecordingInvalid):
        write_recording(tmp_path, bad, "test")
    assert list(tmp_path.iterdir()) == []


async def test_a_folder_with_a_bad_answer_recorded_still_serves(
    procs: Processes, tmp_path: Path
) -> None:
    upstream = hostile(procs)
    out = tmp_path / "recordings"
    recorder = procs.recorder(upstream, out, mode="record")
    broken_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{no"}}
    broken = {"role": "assistant", "content": None, "tool_calls": [broken_call]}
    bad_events = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **broken_call}]}}]}
    ]
    specs = [
        ({"json": {"choices": [{"message": broken}]}}, False),
        ({"sse": bad_events}, True),
        ({"json": {"choices": [{"message": {"content": "fine"}}], "finish_reason": "odd"}}, False),
        ({"json": {"choices": [{"message": {"content": "fine"}, "finish_reason": "odd"}]}}, False),
        ({"json": {"choices": [{"message": {"content": "good"}}]}}, False),
    ]
    for spec, stream in specs:
        assert await post(recorder.base_url, ask(spec, stream)) == await post(
            upstream.base_url, ask(spec, stream)
        )
    assert settled(recorder, len(specs)), recorder.log()
    assert "would not load as a scenario file" in recorder.log()
    assert "cannot serve" not in recorder.log()
    assert 1 <= len(recordings(out)) < len(specs)
    foxmock.load_scenarios([out])
    replay = procs.replay(out)  # starts: raises if `foxmock serve` exits
    status, raw = await post(replay.base_url, ask(specs[-1][0]))
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "good"


# --- the reply does not wait for the recording ---------------------------------------------------


async def test_the_reply_does_not_wait_for_the_write(tmp_path: Path) -> None:
    """A recording is scheduled after the reply; `drain` waits for it to be written and served."""
    from foxmock.recorder import Recorder, RecorderSettings, RecordMode
    from foxmock.recorder.capture import Exchange
    from foxmock.scenarios.store import ScenarioStore

    store = ScenarioStore([], TemplateEngine(random.Random(0)))
    recorder = Recorder(RecorderSettings(RecordMode.RECORD, "http://h/v1", tmp_path), store)
    body = {"choices": [{"message": {"content": "{{ 7 * 7 }}"}}]}
    exchange = Exchange(
        request={"model": MODEL, "messages": [{"role": "user", "content": "q"}]},
        status=200,
        body=json.dumps(body).encode(),
        complete=True,
    )
    job = recorder.record(exchange, [])
    await recorder.drain(timeout=10)
    assert job.done() and job.result() is not None
    (scenario,) = store.current.scenarios
    assert scenario.literal and scenario.respond is not None
    assert scenario.respond.content is not None and scenario.respond.content({}) == "{{ 7 * 7 }}"
    recorder.close()
    assert Redactor().text("x") == "x"
    await asyncio.sleep(0)
