"""Record-and-replay test support: real ``foxmock`` processes on 127.0.0.1.

The upstream a recorder talks to is itself a ``foxmock serve`` process in its own OS process, so
stopping it really takes the "real API" away; the recorder is a ``foxmock record`` process in
front of it. Both are started with ``--port 0`` and the port is read from what they print.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/v1")

# --- secrets used by the redaction tests (long enough to count as credentials) ----------------
CLIENT_KEY = "sk-test-" + "Cl13ntK3yZ" * 4  # the key the client sends foxmock
UPSTREAM_KEY = "sk-upstream-" + "Upstr3amK3y" * 3  # --upstream-api-key given to foxmock
ORGANIZATION = "org-SecretOrganization4242"
PROJECT = "proj_SecretProject777777"
COOKIE = "session=SecretCookieValue0123456789"
ACCOUNT = "ACCT-5551234567"  # redacted from message text with --redact
ACCOUNT_REGEX = r"ACCT-\d{10}"
KEY_SHAPED = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5"  # an answer that looks like a key (30 chars)

STORY = "Once upon a time a quick fox wrote a mock server and every test was fast."
STREAM_WORDS = "one two three four five six seven eight nine ten"

# The "real API": every scenario the recorder tests need, in one file.
UPSTREAM_SCENARIOS = f"""\
version: 1
models: [foxora-1]
scenarios:
  - name: up-extras
    match: {{last_user: {{contains: extra fields}}}}
    respond:
      content: "An answer with a provider's own fields."
      extra: {{system_fingerprint: fp_upstream_9, service_tier: flex, x_provider: {{region: eu-1}}}}

  - name: up-capital
    match: {{last_user: {{contains: capital of France}}}}
    respond: {{content: "The capital of France is Paris."}}

  - name: up-story
    match: {{last_user: {{contains: story}}}}
    respond: {{content: "{STORY}"}}
    stream: {{by: words}}
    latency: {{ttft: 5ms, tokens_per_second: 200}}

  - name: up-weather-asks-tool
    match:
      tools_offered: [get_weather]
      has_tool_result: false
    respond:
      tool_calls:
        - name: get_weather
          arguments:
            city: "{{{{ last_user | regex_search('in ([A-Z][a-z]+)') or 'Paris' }}}}"
            unit: celsius
    latency: {{tokens_per_second: 200}}

  - name: up-weather-answers
    match: {{has_tool_result: get_weather}}
    respond:
      content: >-
        {{% set r = tool_result('get_weather') -%}}
        It is {{{{ r.temp_c }}}} degrees in {{{{ r.city }}}}.

  - name: up-transfer-tool
    match:
      tools_offered: [transfer]
      has_tool_result: false
    respond:
      tool_calls:
        - name: transfer
          arguments:
            account: "{{{{ last_user | regex_search('(ACCT-[0-9]+)') }}}}"
            amount: 100

  - name: up-template-markers
    match: {{last_user: {{contains: show me templates}}}}
    respond:
      content: "{{% raw %}}Write {{{{ name }}}} or {{% if x %}}, never {{# this #}}.{{% endraw %}}"

  - name: up-rate-limited
    priority: 100
    match:
      any:
        - headers: {{x-upstream-fault: "429"}}
        - last_user: {{contains: rate limit me}}
    fault:
      status: 429
      message: "Rate limit reached for requests (upstream)."
      code: rate_limit_exceeded
      retry_after: 1s

  - name: up-server-error
    priority: 100
    match:
      any:
        - headers: {{x-upstream-fault: "500"}}
        - last_user: {{contains: break the server}}
    fault:
      status: 500
      message: "The server had an error while processing your request (upstream)."

  - name: up-hang
    priority: 100
    match: {{last_user: {{contains: please hang}}}}
    respond: {{content: "too late"}}
    fault: {{kind: hang, duration: 5s}}

  - name: up-disconnect
    priority: 100
    match: {{last_user: {{contains: please disconnect}}}}
    respond: {{content: "{STREAM_WORDS}"}}
    stream: {{by: words}}
    fault: {{kind: disconnect, after_chunks: 4}}

  - name: up-stall
    priority: 100
    match: {{last_user: {{contains: stall mid-stream}}}}
    respond: {{content: "{STREAM_WORDS}"}}
    stream: {{by: words}}
    latency: {{chunk_delay: 3s}}

  - name: up-key-shaped
    priority: 100
    match: {{last_user: {{contains: show me a key}}}}
    respond: {{content: "Here is one: {KEY_SHAPED} (do not share)."}}

  - name: up-echo-headers
    priority: 100
    match: {{last_user: {{contains: echo my headers}}}}
    respond:
      content: >-
        auth={{{{ headers.get('authorization', '') }}}}
        org={{{{ headers.get('openai-organization', '') }}}}
        project={{{{ headers.get('openai-project', '') }}}}
        cookie={{{{ headers.get('cookie', '') }}}}

  - name: up-echo
    priority: -100
    respond: {{content: "Upstream says: {{{{ last_user }}}}"}}
"""


# A minimal OpenAI-style streaming upstream whose response stays open a moment after
# ``data: [DONE]`` (as HTTP allows: the end of the chunked body comes later). Run as its own
# process: ``python lingering_upstream.py SECONDS``.
LINGERING_UPSTREAM = """\
import asyncio
import json
import sys
import time

from aiohttp import web

LINGER = float(sys.argv[1])


def chunk(delta, finish=None):
    return {
        "id": "chatcmpl-lingering",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "foxora-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def chat(request):
    body = await request.json()
    words = ("Upstream says: " + body["messages"][-1]["content"]).split(" ")
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    events.append(chunk({}, "stop"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(b"data: " + json.dumps(event).encode() + b"\\n\\n")
    await response.write(b"data: [DONE]\\n\\n")
    await asyncio.sleep(LINGER)
    await response.write_eof()
    return response


async def main():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"lingering upstream: serving on http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


class FoxmockProcess:
    """One ``python -m foxmock serve|record ...`` process listening on a free loopback port."""

    def __init__(
        self, args: Sequence[str], *, cwd: Path, log: Path, command: Sequence[str] | None = None
    ) -> None:
        self.args = [*(command or [sys.executable, "-m", "foxmock"]), *args]
        self.log_path = log
        self._log = log.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")}
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self._wait_for_port()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            self.stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = None
                remaining = 0
            if line is not None:
                match = SERVING.search(line)
                if match:
                    return int(match.group(1))
                continue
            self.stop()
            reason = "timed out" if remaining <= 0 else f"exited with {self.proc.returncode}"
            raise RuntimeError(
                f"{' '.join(self.args)} {reason} before serving; output:\n{self.log()}"
            )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far (its log goes to stdout or stderr)."""
        if not self._log.closed:
            self._log.flush()
        return "".join(self.stdout) + self.log_path.read_text("utf-8", "replace")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def journal(self) -> list[dict[str, Any]]:
        """The chat requests this process answered (its admin journal), oldest first."""
        return list(self.get_json("/_foxmock/journal")["entries"])

    def requests_containing(self, text: str) -> int:
        """How many journaled chat requests mention ``text`` in any message."""
        count = 0
        for entry in self.journal():
            messages = (entry.get("body") or {}).get("messages") or []
            if any(text in json.dumps(m, ensure_ascii=False) for m in messages):
                count += 1
        return count

    def stop(self) -> None:
        """SIGTERM and wait (the server finishes requests in flight); SIGKILL if it will not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> FoxmockProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_upstream_scenarios(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "upstream.yaml"
    path.write_text(UPSTREAM_SCENARIOS, "utf-8")
    return path


class Processes:
    """Starts foxmock processes for one test (or module) and stops them all afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.started: list[FoxmockProcess] = []

    def start(self, *args: str, name: str = "foxmock") -> FoxmockProcess:
        log = self.workdir / f"{name}-{len(self.started)}.log"
        process = FoxmockProcess(args, cwd=self.workdir, log=log)
        self.started.append(process)
        return process

    def lingering_upstream(self, linger: float) -> FoxmockProcess:
        """An upstream that streams, sends ``[DONE]``, and ends the response ``linger`` s later."""
        script = self.workdir / "lingering_upstream.py"
        script.write_text(LINGERING_UPSTREAM, "utf-8")
        log = self.workdir / f"lingering-{len(self.started)}.log"
        process = FoxmockProcess(
            [str(linger)], cwd=self.workdir, log=log, command=[sys.executable, str(script)]
        )
        self.started.append(process)
        return process

    def upstream(self, *extra: str) -> FoxmockProcess:
        """``foxmock serve`` with the upstream scenarios: the real API the recorder talks to."""
        path = write_upstream_scenarios(self.workdir / "upstream")
        return self.start(
            "serve", "--port", "0", "--scenarios", str(path), "--seed", "7", *extra, name="upstream"
        )

    def recorder(
        self, upstream: str | FoxmockProcess | None, out: Path, *extra: str, mode: str
    ) -> FoxmockProcess:
        """``foxmock record`` in front of ``upstream`` (a URL or process), writing to ``out``."""
        args = ["record", "--port", "0", "--mode", mode, "--out", str(out)]
        if upstream is not None:
            url = upstream.base_url if isinstance(upstream, FoxmockProcess) else upstream
            args += ["--upstream", url]
        return self.start(*args, *extra, name=f"record-{mode}")

    def replay(self, scenarios: Path, *extra: str) -> FoxmockProcess:
        """A fresh ``foxmock serve`` of recorded files, with no delays."""
        return self.start(
            "serve",
            "--port",
            "0",
            "--scenarios",
            str(scenarios),
            "--time-scale",
            "0",
            *extra,
            name="replay",
        )

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


def running_processes(workdir: Path) -> Iterator[Processes]:
    """Body of a fixture: a `Processes` for ``workdir``, every process stopped afterwards."""
    processes = Processes(workdir)
    try:
        yield processes
    finally:
        processes.stop_all()


def running_upstream(workdir: Path) -> Iterator[FoxmockProcess]:
    """Body of a fixture: one upstream process, stopped afterwards."""
    processes = Processes(workdir)
    try:
        yield processes.upstream()
    finally:
        processes.stop_all()


def recordings(directory: Path) -> list[Path]:
    """The recorded scenario files (``*.yaml``) in ``directory``, sorted."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.yaml"))


def all_files(directory: Path) -> list[Path]:
    """Every file below ``directory``, hidden and temporary ones included."""
    found = []
    for root, _dirs, files in os.walk(directory):
        found.extend(Path(root) / f for f in files)
    return sorted(found)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = bool(predicate())
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# the one line a recorder logs when it is done with a recording, whether written or not
RECORDING_OUTCOME = re.compile(
    r"recorded #\d+ as |refusing to write recording #|not writing recording #"
    r"|\(recording #\d+\): .*nothing recorded|could not write recording #"
)


def settled(proc: FoxmockProcess, count: int, timeout: float = 15.0) -> bool:
    """Wait until the recorder ``proc`` is done with ``count`` recordings (written or not):
    recordings are written after the client has its answer."""
    return wait_for(lambda: len(RECORDING_OUTCOME.findall(proc.log())) >= count, timeout)


# A hostile "real API", run as its own process: ``python hostile_upstream.py``. What it answers
# is written as JSON in the last user message: {"json": ANY, "status": N} (that JSON as the
# body), {"raw": TEXT, "status": N}, {"sse": [EVENT or raw TEXT, ...], "done": true}, or sizes:
# {"big_json_mib": N} (one non-stream answer of N MiB, sent in pieces), {"big_sse_mib": N} (a
# stream of N MiB of events) and {"one_event_mib": N} (one SSE event of N MiB, in pieces).
HOSTILE_UPSTREAM = """\
import asyncio
import json

from aiohttp import web

PIECE = 256 * 1024


def chunk(content):
    return {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1,
            "model": "foxora-1",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


async def chat(request):
    body = await request.json()
    try:
        spec = json.loads(body["messages"][-1]["content"])
    except (ValueError, KeyError, TypeError):
        spec = {"json": {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}}
    status = spec.get("status", 200)
    if "json" in spec or "raw" in spec:
        text = spec["raw"] if "raw" in spec else json.dumps(spec["json"])
        return web.Response(status=status, text=text, content_type="application/json")
    stream = "big_json_mib" not in spec
    reply = web.StreamResponse(
        status=status,
        headers={"Content-Type": "text/event-stream" if stream else "application/json"},
    )
    await reply.prepare(request)
    if "sse" in spec:
        for event in spec["sse"]:
            data = event if isinstance(event, str) else json.dumps(event)
            await reply.write(b"data: " + data.encode() + b"\\n\\n")
    elif "big_json_mib" in spec:
        size = int(spec["big_json_mib"] * 1024 * 1024)
        await reply.write(b'{"choices": [{"message": {"role": "assistant", "content": "')
        for start in range(0, size, PIECE):
            await reply.write(b"a" * min(PIECE, size - start))
        await reply.write(b'"}, "finish_reason": "stop"}]}')
    elif "big_sse_mib" in spec:
        size = int(spec["big_sse_mib"] * 1024 * 1024)
        event = b"data: " + json.dumps(chunk("b" * 65536)).encode() + b"\\n\\n"
        for _ in range(0, size, len(event)):
            await reply.write(event)
    elif "one_event_mib" in spec:
        size = int(spec["one_event_mib"] * 1024 * 1024)
        head, tail = json.dumps(chunk("@")).encode().split(b"@")
        await reply.write(b"data: " + head)
        for start in range(0, size, PIECE):
            await reply.write(b"c" * min(PIECE, size - start))
        await reply.write(tail + b"\\n\\n")
    if stream and spec.get("done", True):
        await reply.write(b"data: [DONE]\\n\\n")
    await reply.write_eof()
    return reply


async def main():
    app = web.Application(client_max_size=1 << 26)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"hostile upstream: serving on http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""

# A ``foxmock record`` process whose recorder is built with a given ``max_record_bytes``:
# ``python capped_recorder.py UPSTREAM OUT MAX_RECORD_BYTES MODE``.
CAPPED_RECORDER = """\
import asyncio
import logging
import sys
from pathlib import Path

from foxmock.config import Config
from foxmock.recorder.modes import RecordMode
from foxmock.recorder.proxy import Recorder, RecorderSettings
from foxmock.server import STATE, create_app
from foxmock.server.run import serve_forever

upstream, out, cap, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s",
                    stream=sys.stdout)
config = Config(scenarios=[], recordings=str(out), bundled=False)
app = create_app(config)
state = app[STATE]
settings = RecorderSettings(RecordMode.parse(mode), upstream, out, max_record_bytes=cap)
state.recorder = Recorder(settings, state.store)


def ready(host, port):
    print(f"capped recorder: serving on http://{host}:{port}/v1", flush=True)


asyncio.run(serve_forever(app, "127.0.0.1", 0, on_ready=ready))
"""


def start_script(processes: Processes, name: str, source: str, *args: str) -> FoxmockProcess:
    """Run ``source`` as its own Python process (it prints ``serving on URL``)."""
    script = processes.workdir / f"{name}.py"
    script.write_text(source, "utf-8")
    log = processes.workdir / f"{name}-{len(processes.started)}.log"
    process = FoxmockProcess(
        list(args), cwd=processes.workdir, log=log, command=[sys.executable, str(script)]
    )
    processes.started.append(process)
    return process


def peak_rss_bytes(proc: FoxmockProcess) -> tuple[int, int]:
    """(current, peak) resident memory of ``proc``, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
