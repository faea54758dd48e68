"""The recorder stays out of the way: it forwards what the client sent, replays what was
recorded (a stream's usage chunk included or left out), and refuses to start on an ``--out``
it cannot write. Real processes: an upstream ``foxmock serve``, ``foxmock record``, a replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.recording_support import FoxmockProcess, Processes, running_processes, settled


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    yield from running_processes(tmp_path / "procs")


def _client(proc: FoxmockProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.base_url, api_key="sk-client", max_retries=0, timeout=30)


@pytest.mark.parametrize("mode", ["record", "record-missing", "passthrough"])
def test_a_request_foxmock_would_refuse_is_forwarded_as_sent(
    procs: Processes, tmp_path: Path, mode: str
) -> None:
    upstream = procs.upstream()
    recorder = procs.recorder(upstream, tmp_path / "out", mode=mode)
    client = _client(recorder)
    # temperature 5 is out of range: the upstream (here another foxmock) judges it, not the
    # recorder; what the client gets is the upstream's own answer
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="foxora-1",
            messages=[{"role": "user", "content": "forwarded-as-sent"}],
            temperature=5,
        )
    assert caught.value.body is not None
    assert upstream.requests_containing("forwarded-as-sent") == 1
    entry = recorder.journal()[-1]
    assert entry["scenario"].startswith(f"<{mode}: ")


def test_replay_mode_still_validates(procs: Processes, tmp_path: Path) -> None:
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "x.yaml").write_text(
        "version: 1\nscenarios:\n  - name: x\n    respond: {content: x}\n", "utf-8"
    )
    replay = procs.start(
        "record", "--port", "0", "--mode", "replay", "--out", str(tmp_path / "recordings")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        _client(replay).chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": "x"}], temperature=5
        )
    assert caught.value.param == "temperature"  # type: ignore[attr-defined]


def _stream(proc: FoxmockProcess, text: str, include_usage: bool) -> list[dict[str, Any]]:
    chunks = _client(proc).chat.completions.create(
        model="foxora-1",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    return [c.model_dump(exclude_unset=True) for c in chunks]


def _usage_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["usage"] for c in chunks if c.get("usage")]


@pytest.mark.parametrize("recorded_with_usage", [False, True])
def test_a_replayed_stream_has_the_usage_chunk_the_recording_had(
    procs: Processes, tmp_path: Path, openapi: Any, recorded_with_usage: bool
) -> None:
    out = tmp_path / "out"
    upstream = procs.upstream()
    recorder = procs.recorder(upstream, out, mode="record")
    recorded = _stream(recorder, "tell me a story", recorded_with_usage)
    assert settled(recorder, 1)
    recorder.stop()
    replay = procs.replay(out)
    replayed = _stream(replay, "tell me a story", include_usage=True)
    for chunk in replayed:
        openapi("CreateChatCompletionStreamResponse", chunk)
    if recorded_with_usage:
        (usage,) = _usage_chunks(recorded)
        (again,) = _usage_chunks(replayed)
        assert (again["prompt_tokens"], again["completion_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    else:
        assert _usage_chunks(recorded) == []
        assert _usage_chunks(replayed) == []  # no estimate of foxmock's own


def test_record_refuses_to_start_on_an_out_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", "utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "foxmock",
            "record",
            "--upstream",
            "http://127.0.0.1:9/v1",
            "--out",
            str(blocker / "recordings"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot write recordings to" in result.stderr
    assert "serving on" not in result.stdout
    assert json.dumps(str(blocker / "recordings"))[1:-1] in result.stderr


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_the_upstreams_own_fields_replay_as_recorded(
    procs: Processes, tmp_path: Path, openapi: Any, stream: bool
) -> None:
    out = tmp_path / "out"
    upstream = procs.upstream()
    recorder = procs.recorder(upstream, out, mode="record")
    body = {
        "model": "foxora-1",
        "messages": [{"role": "user", "content": "extra fields, please"}],
        "stream": stream,
    }

    def answers(proc: FoxmockProcess) -> list[dict[str, Any]]:
        response = _client(proc).chat.completions.with_raw_response.create(**body)
        if not stream:
            return [response.http_response.json()]
        lines = response.http_response.read().decode().split("\n\n")
        return [json.loads(e[6:]) for e in lines if e.startswith("data: {")]

    live = answers(recorder)
    assert settled(recorder, 1)
    recorder.stop()
    replayed = answers(procs.replay(out))
    schema = "CreateChatCompletionStreamResponse" if stream else "CreateChatCompletionResponse"
    for answer in live + replayed:
        openapi(schema, answer)
        assert answer["system_fingerprint"] == "fp_upstream_9"
        assert answer["service_tier"] == "flex"
        assert answer["x_provider"] == {"region": "eu-1"}
    assert [a["id"] for a in replayed] != [a["id"] for a in live]  # ids are foxmock's own


def test_extra_may_not_set_what_foxmock_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "version: 1\nscenarios:\n  - name: x\n    respond:\n      extra: {id: mine, choices: []}\n",
        "utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "foxmock", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "respond.extra.id" in result.stdout + result.stderr
    assert "respond.extra.choices" in result.stdout + result.stderr
