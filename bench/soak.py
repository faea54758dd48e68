"""Soak test: drive one ``foxmock serve`` with N mixed requests and watch its RSS and descriptors.

    /tmp/venv/bin/python bench/soak.py --requests N [--concurrency 32] [--report-every K]
        [--warmup 0.1] [--clients P] [--client raw|aiohttp] [--seed 1] [--json out.json]
        [--keep-log] [--verbose]

It starts ``foxmock serve`` on ``bench/soak_scenarios.yaml`` (pinned to core 0 when the machine
has 2 or more cores, the load on the others, as ``bench/run.py`` does), then P client processes
(default: one per remaining core, at most 4) send N requests over ``--concurrency`` keep-alive
connections in all, cycling through a fixed, seeded mix of every kind of answer:

| kind | the request | expected |
|---|---|---|
| text, template | a plain answer; a templated one (echo, ``random_int``, ``uuid``) | 200, checked |
| stream | ``stream: true`` with ``include_usage`` | 200, usage chunk, ``[DONE]`` |
| tool, tool-stream | a tool call, non-streamed and streamed | 200, the call is there |
| structured | ``response_format: json_schema``, answer synthesised from the schema | 200, valid |
| ratelimit, server-error | ``http`` faults | 429 with Retry-After, 500 |
| stream-error, no-done | stream faults | 200 with an error event; no ``[DONE]`` |
| disconnect | the server drops the stream after 3 chunks | the connection drops |
| hang | a 300 ms ``hang`` fault, the client gives up after 50 ms | a client timeout |
| abort | a paced stream the client leaves after 3 lines | aborted by the client |
| unmatched | matches no scenario | 404 ``no_scenario_matched`` |
| invalid | ``temperature: 7`` or a body that is not JSON | 400 |

Every K requests (``--report-every``, default N/40) it samples the server's ``VmRSS``, its open
file descriptors (how many are sockets, and how many of those TCP connections), its CPU share and
how full its journal is; then prints the table over time and:

- the warm-up point: ``--warmup`` of the requests (default 10%), but at least twice the journal's
  size (``GET /_foxmock/status``; 1,000 by default), so the bounded journal is full before the
  baseline is taken (the table's last column shows it filling);
- RSS drift after the warm-up in percent (the last sample and the largest one against the warm-up
  sample) and the RSS slope in KiB per 100,000 requests (least squares over those samples);
- descriptor drift: all of them under load (they include the live connections, so they move by a
  few), the non-socket ones (files, pipes: these must not move), the most connections seen, and
  the descriptors once the load has stopped against the idle server before it;
- requests/s (overall and after the warm-up), the outcome counts per kind (anything but ``ok``
  is unexpected and fails the run) and how many tracebacks the server logged.

PASS when every outcome was the expected one, the RSS peak after the warm-up is within 5% of the
warm-up sample, the non-socket descriptors are within 5%, connections never exceed the
concurrency (+8 closing) and the idle server holds no more descriptors than before the run.
Exit status 0 on PASS, 1 on FAIL.

``--client raw`` (the default) is a small asyncio HTTP/1.1 client like ``stream_client.py``'s, cheap
enough to keep the single-core server busy (about 4,500 requests/s on the 2-core development
machine, server CPU ~100%); ``--client aiohttp`` uses aiohttp's client instead (about 2,000
requests/s: it is then the bottleneck). ``--json PATH`` writes every sample and figure;
``--keep-log`` keeps the server's log (``--log-level warning``, in a temporary directory).

    python bench/soak.py --requests 100000                 # about 30 s
    nohup python bench/soak.py --requests 1000000 --json /tmp/soak_1m.json > /tmp/soak_1m.log &
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = HERE / "soak_scenarios.yaml"
sys.path.insert(0, str(HERE))
try:  # the benchmark's process helpers, when its module imports here
    from run import free_port, stop_process
except ImportError:  # pragma: no cover - run.py moved or broke: the same two helpers

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def stop_process(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


CHAT = "/v1/chat/completions"
TARGET_PCT = 5.0  # RSS and descriptors flat within this after the warm-up
SERVER_CORE = 0
HANG_TIMEOUT = 0.05  # the client gives up on the 300 ms hang after this
JOURNAL_FACTOR = 2  # the warm-up is at least this many journal sizes

# kind -> weight in the mix (the order is the cycle's; weights sum to 100)
MIX = {
    "text": 18,
    "template": 12,
    "stream": 14,
    "tool": 6,
    "tool-stream": 6,
    "structured": 6,
    "ratelimit": 4,
    "server-error": 4,
    "stream-error": 3,
    "disconnect": 3,
    "no-done": 2,
    "hang": 1,
    "abort": 5,
    "unmatched": 8,
    "invalid": 8,
}

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the requests


def request_for(kind: str, i: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of request ``i`` of ``kind``."""
    headers = {"Content-Type": "application/json", "x-soak": kind}
    user = f"request {i}: what is the weather in Lisbon?"
    body: dict[str, Any] = {"model": "foxora-1", "messages": [{"role": "user", "content": user}]}
    if kind in ("stream", "tool-stream", "stream-error", "disconnect", "no-done", "abort"):
        body["stream"] = True
    if kind == "stream":
        body["stream_options"] = {"include_usage": True}
    if kind in ("tool", "tool-stream"):
        body["tools"] = TOOLS
    if kind == "structured":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": SCHEMA},
        }
    if kind == "invalid":
        if i % 2:
            return b'{"model": "foxora-1", "messages": [', headers
        body["temperature"] = 7
    return json.dumps(body).encode(), headers


def cycle(seed: int) -> list[str]:
    """The 100 kinds one round of the mix sends, shuffled once (seeded)."""
    kinds = [kind for kind, weight in MIX.items() for _ in range(weight)]
    random.Random(seed).shuffle(kinds)
    return kinds


def _sse_events(raw: bytes) -> list[bytes]:
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


def check(kind: str, status: int, head: bytes, raw: bytes) -> str:
    """The outcome of a finished response (``head``: its header lines, lower case)."""
    expected = {"ratelimit": 429, "server-error": 500, "unmatched": 404, "invalid": 400}
    if status != expected.get(kind, 200):
        return f"unexpected status {status}"
    if kind == "ratelimit" and b"retry-after: 2" not in head:
        return "no Retry-After"
    try:
        return _check_body(kind, raw)
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        return f"malformed body ({type(exc).__name__})"


def _check_body(kind: str, raw: bytes) -> str:
    if kind in ("text", "template", "tool", "structured"):
        message = json.loads(raw)["choices"][0]["message"]
        if kind == "text":
            good = message["content"].startswith("SOLID")
        elif kind == "template":
            good = message["content"].startswith("Echo: request ")
        elif kind == "tool":
            args = json.loads(message["tool_calls"][0]["function"]["arguments"])
            good = args == {"city": "Lisbon"}
        else:
            value = json.loads(message["content"])
            good = set(value) == {"name", "age", "tags"} and isinstance(value["age"], int)
        return "ok" if good else "wrong answer"
    if kind in ("ratelimit", "server-error", "unmatched", "invalid"):
        error = json.loads(raw)["error"]
        codes: dict[str, tuple[str, ...]] = {
            "unmatched": ("no_scenario_matched",),
            "invalid": ("invalid_json", "decimal_above_max_value"),
        }
        good = "message" in error and error.get("code") in codes.get(kind, (error.get("code"),))
        return "ok" if good else "wrong error"
    events = _sse_events(raw)
    done = bool(events) and events[-1] == b"[DONE]"
    if kind == "stream":
        good = done and b'"usage":{"prompt_tokens"' in events[-2].replace(b" ", b"")
    elif kind == "tool-stream":
        good = done and b'"tool_calls"' in raw
    elif kind == "stream-error":
        good = not done and b'"error"' in events[-1]
    elif kind == "no-done":
        good = not done and len(events) > 2
    else:
        good = False  # disconnect, hang, abort never finish normally
    return "ok" if good else "wrong stream"


# ---------------------------------------------------------------------------------------------
# the client processes


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that parses just enough of each response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._reset(None, 0)

    def _reset(self, waiter: asyncio.Future[None] | None, abort_after: int) -> None:
        self.buf = bytearray()
        self.waiter = waiter
        self.abort_after = abort_after  # stop after this many SSE events (0: read it all)
        self.status = 0
        self.head_end = -1
        self.head = b""
        self.length = -1  # Content-Length, or -1 when chunked
        self.keep_alive = True
        self.body = bytearray()
        self.pos = 0  # where the next chunk-size line starts
        self.complete = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes, abort_after: int) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._reset(waiter, abort_after)
        assert self.transport is not None
        self.transport.write(payload)
        return waiter

    def _done(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            self.head_end = self.pos = end + 4
            self.keep_alive = b"connection: close" not in head
            match = re.search(rb"content-length: *(\d+)", head)
            self.length = int(match.group(1)) if match else -1
        if self.length >= 0:
            if len(buf) - self.head_end >= self.length:
                self.body = buf[self.head_end : self.head_end + self.length]
                self.complete = True
                self._done()
            return
        while True:  # chunked: move every whole chunk into the body
            eol = buf.find(b"\r\n", self.pos)
            if eol < 0:
                break
            size = int(buf[self.pos : eol].split(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                break
            if size == 0:
                self.complete = True
                self._done()
                return
            self.body += buf[eol + 2 : eol + 2 + size]
            self.pos = eol + 2 + size + 2
        if self.abort_after and self.body.count(b"data: ") >= self.abort_after:
            self._done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._done()


def _wire(kind: str, i: int, port: int) -> bytes:
    body, headers = request_for(kind, i)
    head = f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _one_raw(port: int, conn: Conn | None, kind: str, i: int, stats: Counter[str]) -> Conn:
    """One request on ``conn`` (a new connection when it is gone); returns the one to reuse."""
    loop = asyncio.get_running_loop()
    if conn is None or conn.lost:
        _, conn = await loop.create_connection(Conn, "127.0.0.1", port)
    waiter = conn.send(_wire(kind, i, port), 3 if kind == "abort" else 0)
    timer = loop.call_later(HANG_TIMEOUT if kind == "hang" else 60, conn._done)
    await waiter
    timer.cancel()
    assert conn.transport is not None
    if kind == "abort" and conn.status == 200 and conn.body.count(b"data: ") >= 3:
        # a starved client may find the whole stream already there: nothing left to abort
        outcome = (
            "ok (whole stream arrived first)" if conn.complete else "ok (aborted by the client)"
        )
    elif conn.complete:
        outcome = check(kind, conn.status, conn.head, bytes(conn.body))
    elif conn.lost:
        outcome = "ok (server dropped the stream)" if kind == "disconnect" else "connection lost"
    else:
        outcome = "ok (client timeout)" if kind == "hang" else "client timeout"
    stats[f"{kind}: {outcome}"] += 1
    if not conn.complete or not conn.keep_alive:
        if i % 2:
            conn.transport.abort()  # a RST
        else:
            conn.transport.close()  # a FIN (a RST too when unread data is left)
        conn.lost = True
    return conn


async def _one_aiohttp(session: Any, url: str, kind: str, i: int, stats: Counter[str]) -> None:
    import aiohttp

    data, headers = request_for(kind, i)
    timeout = aiohttp.ClientTimeout(total=HANG_TIMEOUT if kind == "hang" else 60)
    try:
        async with session.post(url, data=data, headers=headers, timeout=timeout) as response:
            if kind == "abort":
                for _ in range(3):
                    await response.content.readline()
                response.close()  # leaves mid-stream: the connection is dropped
                outcome = "ok (aborted by the client)"
            else:
                raw = await response.read()
                head = "\r\n".join(f"{k}: {v}" for k, v in response.headers.items())
                outcome = check(kind, response.status, head.lower().encode(), raw)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        outcome = "ok (server dropped the stream)" if kind == "disconnect" else repr(exc)
    except asyncio.TimeoutError:
        outcome = "ok (client timeout)" if kind == "hang" else "client timeout"
    except aiohttp.ClientError as exc:
        outcome = f"client error {type(exc).__name__}"
    stats[f"{kind}: {outcome}"] += 1


async def _drive(
    port: int, first: int, count: int, connections: int, seed: int, client: str, progress: Any
) -> Counter[str]:
    kinds = cycle(seed)
    stats: Counter[str] = Counter()
    todo = iter(range(first, first + count))
    pending = 0

    def tick() -> None:
        nonlocal pending
        pending += 1
        if pending >= 25:  # shared-memory updates are not free: batch them
            with progress.get_lock():
                progress.value += pending
            pending = 0

    async def raw_worker() -> None:
        conn: Conn | None = None
        for i in todo:
            conn = await _one_raw(port, conn, kinds[i % len(kinds)], i, stats)
            tick()
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    if client == "raw":
        await asyncio.gather(*(raw_worker() for _ in range(connections)))
    else:
        import aiohttp

        url = f"http://127.0.0.1:{port}{CHAT}"

        async def worker() -> None:
            for i in todo:
                await _one_aiohttp(session, url, kinds[i % len(kinds)], i, stats)
                tick()

        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker() for _ in range(connections)))
    with progress.get_lock():
        progress.value += pending
    return stats


def client_main(
    port: int,
    first: int,
    count: int,
    connections: int,
    seed: int,
    client: str,
    cores: set[int] | None,
    progress: Any,
    out: Any,
) -> None:
    """One client process: ``count`` requests from number ``first`` on; sends its counts."""
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        stats = asyncio.run(_drive(port, first, count, connections, seed, client, progress))
        out.send(dict(stats))
    except BaseException as exc:  # the parent reports it
        out.send({f"client process failed: {exc!r}": 1})
        raise
    finally:
        out.close()


# ---------------------------------------------------------------------------------------------
# the server and what it holds


@dataclass
class Sample:
    requests: int
    elapsed: float
    rss_kib: int
    fds: int
    conns: int  # of those descriptors, TCP connections (any state but LISTEN)
    sockets: int  # of those descriptors, sockets of any kind (the rest are files, pipes, ...)
    cpu_pct: float  # of one core, since the previous sample
    rate: float  # requests/s since the previous sample
    journal: int
    loaded: bool = True  # False for the samples before the load and after it stopped


def _proc_figures(pid: int) -> tuple[int, int, int, int, float]:
    """VmRSS (KiB), descriptors, TCP connections, sockets and CPU seconds of process ``pid``."""
    inodes = set()
    fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed while we looked (a connection, most likely): not counted
            continue
        fds += 1
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    conns = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            conns += sum(1 for line in f if (c := line.split())[3] != "0A" and c[9] in inodes)
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return int(match.group(1)) if match else 0, fds, conns, len(inodes), cpu


def get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(port: int, workdir: Path, pin: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "foxmock", "serve", "--port", str(port)]
    argv += ["--scenarios", str(SCENARIOS), "--seed", "1", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")}

    def pin_core() -> None:
        os.sched_setaffinity(0, {SERVER_CORE})

    with (workdir / "server.log").open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=pin_core if pin else None,
        )
    atexit.register(stop_process, proc)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"foxmock exited ({proc.returncode}):\n{server_log(workdir)}")
        with contextlib.suppress(OSError, ValueError):
            if get_json(port, "/healthz").get("status") == "ok":
                return proc
        if time.monotonic() > deadline:
            raise RuntimeError(f"foxmock did not come up:\n{server_log(workdir)}")
        time.sleep(0.05)


def server_log(workdir: Path) -> str:
    return (workdir / "server.log").read_text("utf-8", "replace")


def settle(pid: int, idle_fds: int, timeout: float = 15.0) -> tuple[int, int, int]:
    """Wait until the server holds no connection (bounded); (RSS KiB, fds, connections)."""
    deadline = time.monotonic() + timeout
    while True:
        rss, fds, conns, _, _ = _proc_figures(pid)
        if (conns == 0 and fds <= idle_fds) or time.monotonic() > deadline:
            return rss, fds, conns
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# the run


def _pct(value: float, base: float) -> float:
    return 100.0 * (value - base) / base if base else 0.0


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    pin = len(cores) >= 2 and SERVER_CORE in cores
    load_cores = {c for c in cores if c != SERVER_CORE} if pin else None
    clients = args.clients or max(1, min(4, len(load_cores or cores)))
    if load_cores:
        os.sched_setaffinity(0, load_cores)
    workdir = Path(tempfile.mkdtemp(prefix="foxmock-soak-"))
    port = free_port()
    proc = start_server(port, workdir, pin)
    status = get_json(port, "/_foxmock/status")
    journal_max = int(status["journal"]["max"])
    warmup = max(int(args.requests * args.warmup), JOURNAL_FACTOR * journal_max)
    warmup = min(warmup, args.requests)
    every = args.report_every or max(1000, args.requests // 40)
    rss0, idle_fds, _, idle_sockets, cpu_prev = _proc_figures(proc.pid)
    log(
        f"foxmock pid {proc.pid} on port {port} ({'core 0' if pin else 'not pinned'}), "
        f"log in {workdir}; {args.requests:,} requests, {args.concurrency} connections in "
        f"{clients} client process(es){f' on cores {sorted(load_cores)}' if load_cores else ''}"
        f"; journal size {journal_max}, warm-up {warmup:,} requests"
    )

    ctx = multiprocessing.get_context("fork")
    progress = ctx.Value("q", 0)
    share, extra = divmod(args.requests, clients)
    conn_share = max(1, args.concurrency // clients)
    procs, pipes, first = [], [], 0
    for c in range(clients):
        count = share + (1 if c < extra else 0)
        receive, send = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=client_main,
            args=(
                port,
                first,
                count,
                conn_share,
                args.seed,
                args.client,
                load_cores,
                progress,
                send,
            ),
            daemon=True,
        )
        p.start()
        send.close()
        procs.append(p)
        pipes.append(receive)
        first += count
    started = time.monotonic()
    samples = [Sample(0, 0.0, rss0, idle_fds, 0, idle_sockets, 0.0, 0.0, 0, loaded=False)]
    marks = sorted({*range(every, args.requests, every), warmup})
    t_prev, n_prev = started, 0
    while any(p.is_alive() for p in procs) and marks:
        done = progress.value
        if done >= marks[0]:
            while marks and done >= marks[0]:
                marks.pop(0)
            now = time.monotonic()
            rss, fds, conns, sockets, cpu = _proc_figures(proc.pid)
            journal = int(get_json(port, "/_foxmock/status")["journal"]["size"])
            span = max(now - t_prev, 1e-9)
            samples.append(
                Sample(
                    done,
                    now - started,
                    rss,
                    fds,
                    conns,
                    sockets,
                    100 * (cpu - cpu_prev) / span,
                    (done - n_prev) / span,
                    journal,
                )
            )
            t_prev, n_prev, cpu_prev = now, done, cpu
            if args.verbose:
                log(f"{done:,} requests, RSS {rss / 1024:.1f} MiB, {fds} fds")
        time.sleep(0.005)
    stats: Counter[str] = Counter()
    for p, pipe in zip(procs, pipes, strict=True):
        with contextlib.suppress(EOFError):
            stats.update(pipe.recv())
        p.join()
        if p.exitcode:
            stats[f"client process exit code {p.exitcode}"] += 1
    elapsed = time.monotonic() - started
    rss, fds, conns, sockets, cpu = _proc_figures(proc.pid)
    span = max(time.monotonic() - t_prev, 1e-9)
    journal = int(get_json(port, "/_foxmock/status")["journal"]["size"])
    samples.append(
        Sample(
            args.requests,
            elapsed,
            rss,
            fds,
            conns,
            sockets,
            100 * (cpu - cpu_prev) / span,
            (args.requests - n_prev) / span,
            journal,
            loaded=False,
        )
    )
    idle_rss, idle_after, left = settle(proc.pid, idle_fds)
    still_up = proc.poll() is None
    text = server_log(workdir)
    stop_process(proc)
    return summarise(
        args,
        samples,
        stats,
        elapsed=elapsed,
        warmup=warmup,
        journal_max=journal_max,
        idle=(rss0, idle_fds),
        after=(idle_rss, idle_after, left),
        tracebacks=text.count("Traceback (most recent call last)"),
        errors_logged=text.count("Error handling request"),
        workdir=str(workdir),
        clients=clients,
        pinned=pin,
        still_up=still_up,
    )


def summarise(
    args: argparse.Namespace,
    samples: list[Sample],
    stats: Counter[str],
    *,
    elapsed: float,
    warmup: int,
    journal_max: int,
    idle: tuple[int, int],
    after: tuple[int, int, int],
    **info: Any,
) -> dict[str, Any]:
    warm = next(s for s in samples if s.requests >= warmup)
    post = [s for s in samples if s.requests >= warmup]
    loaded = [s for s in post if s.loaded] or post
    last = samples[-1]  # RSS after the last request
    last_loaded = loaded[-1]  # descriptors are compared under load: they hold the connections
    peak_rss = max(s.rss_kib for s in post)
    peak_fds = max(s.fds for s in loaded)
    other_warm = warm.fds - warm.sockets  # descriptors that are not sockets: files, pipes, ...
    other_peak = max(s.fds - s.sockets for s in post)
    other_last = last.fds - last.sockets
    steady = (last.requests - warm.requests) / (last.elapsed - warm.elapsed or 1e-9)
    slope = _slope([(s.requests, s.rss_kib) for s in post]) * 100_000  # KiB per 100k
    unexpected = {k: v for k, v in stats.items() if ": ok" not in k}
    figures = {
        "requests": args.requests,
        "elapsed_s": elapsed,
        "requests_per_s": args.requests / elapsed if elapsed else 0.0,
        "requests_per_s_after_warmup": steady,
        "warmup_requests": warmup,
        "journal_max": journal_max,
        "journal_full_at_warmup": warm.journal >= journal_max,
        "rss_idle_kib": idle[0],
        "rss_warmup_kib": warm.rss_kib,
        "rss_last_kib": last.rss_kib,
        "rss_peak_kib": peak_rss,
        "rss_drift_pct": _pct(last.rss_kib, warm.rss_kib),
        "rss_peak_drift_pct": _pct(peak_rss, warm.rss_kib),
        "rss_slope_kib_per_100k": slope,
        "fds_idle": idle[1],
        "fds_warmup": warm.fds,
        "fds_last": last_loaded.fds,
        "fds_peak": peak_fds,
        "fds_drift_pct": _pct(last_loaded.fds, warm.fds),
        "fds_peak_drift_pct": _pct(peak_fds, warm.fds),
        "conns_peak": max(s.conns for s in loaded),
        "other_fds_warmup": other_warm,
        "other_fds_peak": other_peak,
        "other_fds_last": other_last,
        "other_fds_peak_drift_pct": _pct(other_peak, other_warm),
        "rss_after_kib": after[0],
        "fds_after": after[1],
        "conns_after": after[2],
        "unexpected": sum(unexpected.values()),
    }
    checks = {
        "every outcome expected": not unexpected,
        f"RSS within {TARGET_PCT:g}% after warm-up": figures["rss_peak_drift_pct"] <= TARGET_PCT,
        f"fds other than sockets within {TARGET_PCT:g}% after warm-up": (
            figures["other_fds_peak_drift_pct"] <= TARGET_PCT
        ),
        "connections never above the concurrency (+8 closing)": (
            figures["conns_peak"] <= args.concurrency + 8
        ),
        "idle fds back to the start": after[1] <= idle[1] and after[2] == 0,
        "server still running": bool(info.get("still_up")),
    }
    return {
        "figures": figures,
        "checks": checks,
        "verdict": "PASS" if all(checks.values()) else "FAIL",
        "outcomes": dict(sorted(stats.items())),
        "samples": [asdict(s) for s in samples],
        "info": {**info, "concurrency": args.concurrency, "seed": args.seed, "client": args.client},
    }


def render(result: dict[str, Any]) -> str:
    f, info = result["figures"], result["info"]
    warm = f["rss_warmup_kib"]
    lines = [
        "| requests | elapsed s | req/s | server CPU | RSS MiB | RSS vs warm-up | fds | "
        "of them connections | journal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["samples"]:
        mark = " (warm-up)" if s["requests"] == f["warmup_requests"] else ""
        mark = mark if s["loaded"] or s["requests"] == 0 else " (end)"
        vs = f"{_pct(s['rss_kib'], warm):+.1f}%" if s["requests"] >= f["warmup_requests"] else ""
        lines.append(
            f"| {s['requests']:,}{mark} | {s['elapsed']:.1f} | {s['rate']:,.0f} | "
            f"{s['cpu_pct']:.0f}% | {s['rss_kib'] / 1024:.1f} | {vs} | {s['fds']} | "
            f"{s['conns']} | {s['journal']} |"
        )
    mib = 1024
    lines += [
        "",
        f"{f['requests']:,} requests in {f['elapsed_s']:.1f} s: {f['requests_per_s']:,.0f} "
        f"req/s overall, {f['requests_per_s_after_warmup']:,.0f} after the warm-up "
        f"({info['clients']} client process(es), {info['concurrency']} connections, "
        f"server {'pinned to core 0' if info['pinned'] else 'not pinned'})",
        f"warm-up: the first {f['warmup_requests']:,} requests; the journal holds "
        f"{f['journal_max']} entries and was "
        f"{'full' if f['journal_full_at_warmup'] else 'NOT full'} at the warm-up point",
        f"RSS: idle {f['rss_idle_kib'] / mib:.1f} MiB, warm-up {warm / mib:.1f} MiB, last "
        f"{f['rss_last_kib'] / mib:.1f} MiB ({f['rss_drift_pct']:+.2f}%), peak after warm-up "
        f"{f['rss_peak_kib'] / mib:.1f} MiB ({f['rss_peak_drift_pct']:+.2f}%), slope "
        f"{f['rss_slope_kib_per_100k']:+.0f} KiB per 100k requests; "
        f"idle after the run {f['rss_after_kib'] / mib:.1f} MiB",
        f"fds: idle {f['fds_idle']}, warm-up {f['fds_warmup']}, last under load {f['fds_last']} "
        f"({f['fds_drift_pct']:+.1f}%), peak after warm-up {f['fds_peak']} "
        f"({f['fds_peak_drift_pct']:+.1f}%; at most {f['conns_peak']} connections); "
        f"not sockets: warm-up {f['other_fds_warmup']}, peak {f['other_fds_peak']} "
        f"({f['other_fds_peak_drift_pct']:+.1f}%), last {f['other_fds_last']}; idle after the "
        f"run {f['fds_after']} ({f['conns_after']} connections)",
        f"server log: {info['errors_logged']} 'Error handling request' entries, "
        f"{info['tracebacks']} tracebacks ({info['workdir']}/server.log, kept with --keep-log)",
        "",
        "outcomes:",
    ]
    lines += [f"  {n:>9,}  {k}" for k, n in result["outcomes"].items()]
    lines.append(f"unexpected outcomes: {f['unexpected']}")
    lines.append("")
    lines += [f"  [{'x' if ok else ' '}] {name}" for name, ok in result["checks"].items()]
    lines.append(f"{result['verdict']} (target: flat within {TARGET_PCT:g}% after the warm-up)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, required=True, help="how many requests")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in all")
    parser.add_argument("--report-every", type=int, default=0, help="sample every K requests")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of requests (0.1)")
    parser.add_argument("--clients", type=int, default=0, help="client processes")
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw asyncio HTTP/1.1 (default, cheap) or aiohttp's client",
    )
    parser.add_argument("--seed", type=int, default=1, help="shuffles the mix")
    parser.add_argument("--json", type=Path, help="write every sample and figure here")
    parser.add_argument("--verbose", action="store_true", help="log every sample as it is taken")
    parser.add_argument("--keep-log", action="store_true", help="keep the server's log directory")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be positive")
    result = run(args)
    print(render(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep_log:
        shutil.rmtree(result["info"]["workdir"], ignore_errors=True)
    return 0 if result["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
