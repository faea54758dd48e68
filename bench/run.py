"""foxmock's benchmark: foxmock, a bare aiohttp app and @copilotkit/aimock side by side.

    /tmp/venv/bin/python bench/run.py [--quick] [--no-aimock] [--streams C]

Every server runs pinned to core 0 (``taskset -c 0``); this script, wrk and the streaming client
run on core 1. Every figure is also given as a ratio to the bare aiohttp app (bench/bare_app.py)
measured in the same run, because the absolute numbers move with whatever else the machine is
doing. The table is printed and written to bench/results.md and bench/results.json.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from stream_client import _request as stream_request  # noqa: E402

import scenarios as spec  # noqa: E402

PY = sys.executable
SERVER_CORE, LOAD_CORE = "0", "1"
AIMOCK_PACKAGE = "@copilotkit/aimock"
AIMOCK_CACHE = Path(os.environ.get("FOXMOCK_BENCH_CACHE", Path.home() / ".cache/foxmock-bench"))
CHAT_PATH = "/v1/chat/completions"

BARE, FOXMOCK, AIMOCK = "bare aiohttp", "foxmock", "aimock"

# the targets, foxmock against the bare app
TARGETS = {
    "rps": (">= 0.85x", lambda r: r >= 0.85),
    "p99": ("<= 1.5x", lambda r: r <= 1.5),
    "streams": (">= 1.5x", lambda r: r >= 1.5),
    "gap": ("<= 5 ms", lambda ms: ms <= 5.0),
    "rss": ("<= 1.5x", lambda r: r <= 1.5),
    "scale": (">= 0.9x", lambda r: r >= 0.9),
    "startup": ("<= 1.2x", lambda r: r <= 1.2),
    "mockserver": ("<= 50 ms", lambda ms: ms <= 50.0),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes: every child is registered and killed on the way out, whatever happens


_children: list[subprocess.Popen[bytes]] = []


def _kill_all() -> None:
    for proc in _children:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def _on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def spawn(argv: list[str], core: str, logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", core, *argv], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    _children.append(proc)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# servers


@dataclass
class ServerKind:
    name: str
    argv: Callable[[int, str], list[str]]  # (port, scenario set) -> command
    health: str  # a GET path that answers 200 once up


@dataclass
class Server:
    kind: ServerKind
    port: int
    proc: subprocess.Popen[bytes]
    logfile: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self, key: str) -> int:
        """A /proc/PID/status figure in kB (VmHWM, VmRSS)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else 0

    def tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_up(server: Server, timeout: float, path: str | None = None) -> float:
    """Poll until ``path`` (default: the health path) answers 200; seconds waited."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    path = path or server.kind.health
    body = spec.chat_body(spec.TARGET_TEXT) if path == CHAT_PATH else None
    method = "POST" if body is not None else "GET"
    while True:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise RuntimeError(f"{server.kind.name} exited ({code}):\n{server.tail()}")
        try:
            status, _ = request(server.port, method, path, body, timeout=2)
            if status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{server.kind.name} not up after {timeout:.0f}s:\n{server.tail()}")
        time.sleep(0.002)


def start(kind: ServerKind, scenario_set: str, workdir: Path, timeout: float = 180) -> Server:
    port = free_port()
    logfile = workdir / f"{kind.name.split()[0]}-{port}.log"
    server = Server(kind, port, spawn(kind.argv(port, scenario_set), SERVER_CORE, logfile), logfile)
    wait_up(server, timeout)
    return server


@contextlib.contextmanager
def running(specs: list[tuple[ServerKind, str]], workdir: Path) -> Iterator[list[Server]]:
    """Start each (kind, scenario set) and wait until it answers; stop them all afterwards."""
    servers: list[Server] = []
    try:
        for kind, scenario_set in specs:
            servers.append(start(kind, scenario_set, workdir))
        yield servers
    finally:
        for server in servers:
            stop_process(server.proc)


def sanity_check(server: Server) -> None:
    """Each server must give the expected answers before its numbers mean anything."""
    status, body = request(server.port, "POST", CHAT_PATH, spec.chat_body(spec.TARGET_TEXT))
    content = json.loads(body)["choices"][0]["message"]["content"] if status == 200 else None
    if content != f"Hello {spec.TARGET_TEXT}":
        raise RuntimeError(f"{server.kind.name}: unexpected answer {status} {body[:300]!r}")
    status, body = request(server.port, "POST", CHAT_PATH, spec.chat_body(spec.STREAM_TEXT, True))
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    if status != 200 or len(events) != spec.STREAM_EVENTS or not body.rstrip().endswith(b"[DONE]"):
        raise RuntimeError(f"{server.kind.name}: unexpected stream {status}, {len(events)} events")


# ---------------------------------------------------------------------------------------------
# load generators (core 1)


def wrk(port: int, lua: Path, seconds: int) -> dict[str, Any]:
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    argv += ["-s", str(lua), f"http://127.0.0.1:{port}{CHAT_PATH}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not rps or not p99:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "requests": int(requests.group(1)) if requests else None,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def stream_client(args: list[str], timeout: float) -> dict[str, Any]:
    argv = ["taskset", "-c", LOAD_CORE, PY, str(HERE / "stream_client.py"), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"stream client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def tcp_ext() -> dict[str, int]:
    """Kernel TCP counters (listen queue overflows and drops) from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for keys, values in zip(lines[::2], lines[1::2], strict=False):
        if keys.startswith("TcpExt:"):
            return {k: int(v) for k, v in zip(keys.split()[1:], values.split()[1:], strict=True)}
    return {}


# ---------------------------------------------------------------------------------------------
# aimock


def ensure_aimock() -> tuple[Path | None, str]:
    """The installed aimock CLI (llmock, which takes fixture files), or None and why not."""
    cli = AIMOCK_CACHE / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return None, "node is not installed"
    if not cli.exists():
        if npm is None:
            return None, "npm is not installed"
        AIMOCK_CACHE.mkdir(parents=True, exist_ok=True)
        package_json = AIMOCK_CACHE / "package.json"
        if not package_json.exists():
            package_json.write_text('{"private": true}\n')
        log(f"installing {AIMOCK_PACKAGE} into {AIMOCK_CACHE}")
        try:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(AIMOCK_CACHE),
                    AIMOCK_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            return None, "npm install timed out"
        if done.returncode != 0 or not cli.exists():
            return None, f"npm install failed: {(done.stderr or done.stdout).strip()[-300:]}"
    meta = json.loads((cli.parent.parent / "package.json").read_text())
    return cli, f"{AIMOCK_PACKAGE}@{meta['version']}"


# ---------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Settings:
    quick: bool
    streams: int
    rounds: int  # wrk figures: this many interleaved slices per server ...
    slice_s: int  # ... of this many seconds each
    warm_s: int
    verify_s: int
    paced_rounds: int
    paced_small: int = 0  # also run this many paced streams (one round) when set
    startup_runs: int = 5
    mockserver_runs: int = 20
    deadline_s: float = 90.0


@dataclass
class Results:
    env: dict[str, Any] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def put(self, server: str, key: str, value: Any) -> None:
        self.data.setdefault(server, {})[key] = value

    def get(self, server: str, key: str) -> Any:
        return self.data.get(server, {}).get(key)


def write_inputs(workdir: Path, aimock: bool) -> dict[str, str]:
    sets: dict[str, str] = {}
    for n in (10, 1000, 10000):
        sets[f"fox{n}"] = str(spec.write_foxmock(workdir / f"foxmock-{n}", n))
        if aimock and n <= 1000:
            sets[f"aim{n}"] = str(spec.write_aimock(workdir / f"aimock-{n}.json", n))
    lua = workdir / "chat.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{spec.chat_body(spec.TARGET_TEXT).decode()}]]\n"
    )
    sets["lua"] = str(lua)
    stream_lua = workdir / "stream.lua"
    stream_lua.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{spec.chat_body(spec.STREAM_TEXT, stream=True).decode()}]]\n"
    )
    sets["stream_lua"] = str(stream_lua)
    return sets


def server_kinds(sets: dict[str, str], aimock_cli: Path | None) -> dict[str, ServerKind]:
    fox_script = Path(PY).with_name("foxmock")
    fox = [str(fox_script)] if fox_script.exists() else [PY, "-m", "foxmock"]
    kinds = {
        BARE: ServerKind(
            BARE,
            lambda port, _: [
                PY,
                str(HERE / "bare_app.py"),
                "--port",
                str(port),
                "--backlog",
                "8192",
            ],
            "/healthz",
        ),
        FOXMOCK: ServerKind(
            FOXMOCK,
            lambda port, n: [
                *fox,
                "serve",
                "--port",
                str(port),
                "--scenarios",
                sets[f"fox{n}"],
                "--log-level",
                "warning",
                "--seed",
                "1",
            ],
            "/healthz",
        ),
    }
    if aimock_cli is not None:
        kinds[AIMOCK] = ServerKind(
            AIMOCK,
            lambda port, n: [
                "node",
                str(aimock_cli),
                "-p",
                str(port),
                "-f",
                sets[f"aim{n}"],
                "--log-level",
                "warn",
            ],
            "/health",
        )
    return kinds


HZ = os.sysconf("SC_CLK_TCK")


def _core_seconds() -> dict[str, tuple[float, float]]:
    """Per core: (seconds spent running processes, all seconds), from /proc/stat.

    Not counted as running: idle, iowait, irq and softirq (mostly the loopback traffic the
    benchmark itself makes).
    """
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name = line.split(" ", 1)[0]
        if name in (f"cpu{SERVER_CORE}", f"cpu{LOAD_CORE}"):
            ticks = [int(v) for v in line.split()[1:]]
            idle = ticks[3] + ticks[4] + ticks[5] + ticks[6]
            out[name] = ((sum(ticks) - idle) / HZ, sum(ticks) / HZ)
    return out


def _process_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime
    except (OSError, IndexError):
        return 0.0


def _our_load_seconds() -> float:
    """CPU used by this script and the load generators it ran (finished children)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWatch:
    """Who used the two cores during a measurement.

    ``other_server_core``: share of the server core used by processes other than the server;
    ``other_load_core``: share of the load core used by processes other than this script and
    its load generator (a starved wrk lowers the fastest server's figures most);
    ``server_cpu``: the server's own share of its core; ``server_cpu_s``: its CPU seconds.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cores = _core_seconds()
        self.server = _process_seconds(pid)
        self.load = _our_load_seconds()

    def stop(self) -> dict[str, float]:
        cores, server, load = _core_seconds(), _process_seconds(self.pid), _our_load_seconds()
        busy0, total0 = (
            a - b
            for a, b in zip(
                cores[f"cpu{SERVER_CORE}"], self.cores[f"cpu{SERVER_CORE}"], strict=True
            )
        )
        busy1, total1 = (
            a - b
            for a, b in zip(cores[f"cpu{LOAD_CORE}"], self.cores[f"cpu{LOAD_CORE}"], strict=True)
        )
        own, ours = server - self.server, load - self.load
        return {
            "other_server_core": max(busy0 - own, 0.0) / total0 if total0 else 0.0,
            "other_load_core": max(busy1 - ours, 0.0) / total1 if total1 else 0.0,
            "server_cpu": own / total0 if total0 else 0.0,
            "server_cpu_s": own,
        }


def wrk_interleaved(servers: list[Server], labels: list[str], lua: Path, s: Settings) -> dict:
    """wrk on every server, ``s.rounds`` slices each, alternating servers between slices.

    The machine's other load comes and goes in bursts of seconds; alternating short slices
    spreads it over all servers, and the median slice drops the worst of it.
    """
    for server in servers:
        wrk(server.port, lua, s.warm_s)
    slices: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for _ in range(s.rounds):
        for server, label in zip(servers, labels, strict=True):
            watch = CpuWatch(server.pid)
            out = wrk(server.port, lua, s.slice_s)
            out.update(watch.stop())
            slices[label].append(out)
    summary = {}
    for label, runs in slices.items():
        summary[label] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "rps_slices": [round(r["rps"]) for r in runs],
            "p99_slices_ms": [round(r["p99_ms"], 2) for r in runs],
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"]),
            "other_server_core": statistics.mean(r["other_server_core"] for r in runs),
            "other_load_core": statistics.mean(r["other_load_core"] for r in runs),
        }
    return summary


def bench_throughput(
    kinds: list[ServerKind], sets: dict[str, str], s: Settings, res: Results, workdir: Path
) -> None:
    names = [k.name for k in kinds]
    with running([(kind, "1000") for kind in kinds], workdir) as servers:
        for server in servers:
            sanity_check(server)
        for key, lua, what in (
            ("wrk", sets["lua"], "non-streaming"),
            ("unpaced", sets["stream_lua"], "unpaced streams"),
        ):
            log(
                f"{what}: wrk on {', '.join(names)}: {s.warm_s}s warm-up, then "
                f"{s.rounds} x {s.slice_s}s slices each, interleaved"
            )
            for name, out in wrk_interleaved(servers, names, Path(lua), s).items():
                res.put(name, key, out)
        for server in servers:
            log(f"unpaced streams: {s.verify_s}s of checked streams on {server.kind.name}")
            out = stream_client(
                [
                    "loop",
                    "--port",
                    str(server.port),
                    "--text",
                    spec.STREAM_TEXT,
                    "--connections",
                    "32",
                    "--duration",
                    str(s.verify_s),
                ],
                s.verify_s + 60,
            )
            res.put(server.kind.name, "checked", out)


def ensure_paced_client() -> tuple[Path | None, str]:
    """Build paced_client.c (once per source change) with the system C compiler."""
    source = HERE / "paced_client.c"
    binary = AIMOCK_CACHE / "paced_client"
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary, "C (epoll)"
    if compiler is None:
        return None, "no C compiler: the Python client is used"
    AIMOCK_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(source)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return None, f"cannot build paced_client.c: {done.stderr.strip()[-300:]}"
    return binary, "C (epoll)"


def paced_once(
    kind: ServerKind, s: Settings, workdir: Path, client: Path | None, streams: int
) -> dict[str, Any]:
    """One paced burst against a fresh server (so its VmHWM is this load's peak)."""
    with running([(kind, "10")], workdir) as (server,):
        idle_kb = server.status("VmRSS")
        before, watch = tcp_ext(), CpuWatch(server.pid)
        if client is not None:
            request_file = workdir / f"paced-{server.port}.http"
            request_file.write_bytes(stream_request("127.0.0.1", server.port, spec.PACED_TEXT))
            argv = [
                "taskset",
                "-c",
                LOAD_CORE,
                str(client),
                "--port",
                str(server.port),
                "--request",
                str(request_file),
                "--streams",
                str(streams),
                "--deadline",
                str(s.deadline_s),
                "--nominal-ms",
                str(spec.CHUNK_DELAY_MS),
                "--expect",
                str(len(spec.CONTENT_CHUNKS)),
            ]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=s.deadline_s + 60)
            if done.returncode != 0:
                raise RuntimeError(f"paced_client failed:\n{done.stderr[-3000:]}")
            out = json.loads(done.stdout)
        else:
            out = stream_client(
                [
                    "burst",
                    "--port",
                    str(server.port),
                    "--text",
                    spec.PACED_TEXT,
                    "--streams",
                    str(streams),
                    "--deadline",
                    str(s.deadline_s),
                ],
                s.deadline_s + 60,
            )
            out["client"] = "python"
        out.update(watch.stop())
        after = tcp_ext()
        out["idle_rss_mib"] = idle_kb / 1024
        out["peak_rss_mib"] = server.status("VmHWM") / 1024
        out["listen_overflows"] = after.get("ListenOverflows", 0) - before.get("ListenOverflows", 0)
    time.sleep(1)  # let the closed connections settle before the next server
    return out


def bench_paced(
    kinds: list[ServerKind],
    s: Settings,
    res: Results,
    workdir: Path,
    client: Path | None,
    streams: int,
    rounds_wanted: int,
    key: str,
) -> None:
    """``s.paced_rounds`` bursts per server, alternating servers; keeps the cleanest round.

    The cleanest round is the one with the least other load on the server core: noise only
    ever adds to gap errors and first-byte times. Every round is kept in results.json.
    """
    rounds: dict[str, list[dict[str, Any]]] = {kind.name: [] for kind in kinds}
    for r in range(rounds_wanted):
        for kind in kinds:
            log(
                f"paced: {streams:,} streams x {spec.STREAM_EVENTS} chunks at "
                f"{spec.CHUNK_DELAY_MS} ms on {kind.name} (round {r + 1}/{rounds_wanted})"
            )
            rounds[kind.name].append(paced_once(kind, s, workdir, client, streams))
    for name, runs in rounds.items():
        best = dict(min(runs, key=lambda run: run["other_server_core"] + run["other_load_core"]))
        best["rounds"] = [
            {
                k: run[k]
                for k in (
                    "other_server_core",
                    "other_load_core",
                    "gap_error_p99_ms",
                    "ttfb_p99_ms",
                    "peak_rss_mib",
                    "completed",
                )
            }
            for run in runs
        ]
        res.put(name, key, best)


def bench_scale(
    fox: ServerKind, sets: dict[str, str], s: Settings, res: Results, workdir: Path
) -> None:
    log(
        f"matching scale: foxmock with 10 and with 10,000 scenarios, "
        f"{s.rounds} x {s.slice_s}s slices each, interleaved"
    )
    t0 = time.perf_counter()
    with running([(fox, "10"), (fox, "10000")], workdir) as servers:
        ready_s = time.perf_counter() - t0
        for server in servers:
            sanity_check(server)
        summary = wrk_interleaved(servers, ["scale10", "scale10000"], Path(sets["lua"]), s)
    summary["scale10000"]["ready_s"] = ready_s
    for key, out in summary.items():
        res.put(FOXMOCK, key, out)


def cache_bytecode() -> str:
    """Write the bytecode of foxmock and of the bench's modules, as installing a package does.

    Without it, a checkout run with PYTHONDONTWRITEBYTECODE=1 (or from a read-only tree)
    compiles foxmock's ~45 modules from source at every start, ~35 ms that an installed
    foxmock never pays; the bare app's modules come cached with aiohttp either way.
    """
    code = (
        "import compileall, os, foxmock; "
        "ok = compileall.compile_dir(os.path.dirname(foxmock.__file__), quiet=1); "
        f"ok = compileall.compile_dir({str(HERE)!r}, quiet=1, maxlevels=0) and ok; "
        "print(os.path.dirname(foxmock.__file__) if ok else 'failed')"
    )
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    where = done.stdout.strip()
    if done.returncode != 0 or where in ("", "failed"):
        return f"not cached ({(done.stderr or where)[-200:]})"
    return f"cached for {where} and bench/"


BUNDLED = "foxmock (bundled scenarios)"


def _without_scenarios(argv: list[str]) -> list[str]:
    """``foxmock serve`` as the README's first command runs it: on the bundled scenarios."""
    at = argv.index("--scenarios")
    return argv[:at] + argv[at + 2 :]


def bench_startup(kinds: list[ServerKind], s: Settings, res: Results, workdir: Path) -> None:
    log(f"start-up: {s.startup_runs} starts of each server (10 scenarios)")
    res.env["bytecode"] = cache_bytecode()
    log(f"bytecode: {res.env['bytecode']}")
    fox = next(k for k in kinds if k.name == FOXMOCK)
    bundled = ServerKind(BUNDLED, lambda port, n: _without_scenarios(fox.argv(port, n)), fox.health)
    times: dict[str, list[tuple[float, float]]] = {k.name: [] for k in [*kinds, bundled]}
    for _ in range(s.startup_runs):
        for kind in [*kinds, bundled]:
            port = free_port()
            logfile = workdir / f"startup-{kind.name.split()[0]}.log"
            t0 = time.perf_counter()
            proc = spawn(kind.argv(port, "10"), SERVER_CORE, logfile)
            server = Server(kind, port, proc, logfile)
            try:
                health = wait_up(server, 60)
                wait_up(server, 60, CHAT_PATH)
                first_chat = time.perf_counter() - t0
            finally:
                stop_process(proc)
            times[kind.name].append((first_chat, health))
    for name, pairs in times.items():
        res.put(
            FOXMOCK if name == BUNDLED else name,
            "startup_bundled" if name == BUNDLED else "startup",
            {
                "first_chat_ms": statistics.median(p[0] for p in pairs) * 1000,
                "first_health_ms": statistics.median(p[1] for p in pairs) * 1000,
                "runs_ms": [round(p[0] * 1000, 1) for p in pairs],
            },
        )
    log(f"MockServer: in-process ready, median of {s.mockserver_runs}")
    done = subprocess.run(
        [
            "taskset",
            "-c",
            SERVER_CORE,
            PY,
            str(HERE / "mockserver_ready.py"),
            "--runs",
            str(s.mockserver_runs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mockserver_ready failed:\n{done.stderr[-3000:]}")
    res.put(FOXMOCK, "mockserver", json.loads(done.stdout))


# ---------------------------------------------------------------------------------------------
# the table


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text}x" if unit == "x" else f"{text} {unit}".strip()


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def build_table(res: Results, s: Settings) -> tuple[list[str], list[list[str]]]:
    has_aimock = AIMOCK in res.data
    header = ["figure", BARE, FOXMOCK, "foxmock / bare", "target", "PASS/MISS"]
    if has_aimock:
        header += [AIMOCK, "aimock / bare"]
    rows: list[list[str]] = []

    def row(
        label: str,
        key: str | None,
        pick: Callable[[str], float | None],
        unit: str,
        digits: int,
        ratio: bool = True,
        absolute: bool = False,
    ) -> None:
        values = {name: pick(name) for name in (BARE, FOXMOCK, AIMOCK)}
        fox_ratio = _ratio(values[FOXMOCK], values[BARE]) if ratio else None
        target, verdict = "", ""
        if key is not None:
            target, check = TARGETS[key]
            measured = values[FOXMOCK] if absolute else fox_ratio
            verdict = "-" if measured is None else ("PASS" if check(measured) else "MISS")
        line = [
            label,
            _fmt(values[BARE], unit, digits),
            _fmt(values[FOXMOCK], unit, digits),
            _fmt(fox_ratio, "x", 2),
            target,
            verdict,
        ]
        if has_aimock:
            line += [
                _fmt(values[AIMOCK], unit, digits),
                _fmt(_ratio(values[AIMOCK], values[BARE]) if ratio else None, "x", 2),
            ]
        rows.append(line)

    def g(section: str, key: str) -> Callable[[str], float | None]:
        return lambda name: (res.get(name, section) or {}).get(key)

    row(
        f"non-streaming req/s (wrk -t1 -c32, 1,000 scenarios, templated answer; "
        f"median of {s.rounds} x {s.slice_s}s)",
        "rps",
        g("wrk", "rps"),
        "",
        0,
    )
    row("non-streaming p99 latency", "p99", g("wrk", "p99_ms"), "ms", 2)
    row(
        f"unpaced streams/s (50 chunks, wrk -t1 -c32; median of {s.rounds} x {s.slice_s}s)",
        "streams",
        g("unpaced", "rps"),
        "",
        0,
    )
    c = s.streams
    paced = f"paced {c:,} x 50 chunks at 20 ms"

    line_values = {}
    for name in (BARE, FOXMOCK, AIMOCK):
        out = res.get(name, "paced")
        line_values[name] = "-" if out is None else f"{out['completed']:,}/{out['streams']:,}"
    fox_done = res.get(FOXMOCK, "paced")
    verdict = (
        "-"
        if fox_done is None
        else ("PASS" if fox_done["completed"] == fox_done["streams"] else "MISS")
    )
    line = [f"{paced}: completed", line_values[BARE], line_values[FOXMOCK], "", "all", verdict]
    if has_aimock:
        line += [line_values[AIMOCK], ""]
    rows.append(line)
    row(
        f"{paced}: inter-chunk gap error p99",
        "gap",
        g("paced", "gap_error_p99_ms"),
        "ms",
        1,
        absolute=True,
    )
    row(f"{paced}: gap error p50", None, g("paced", "gap_error_p50_ms"), "ms", 1)
    row(f"{paced}: time to first byte p99", None, g("paced", "ttfb_p99_ms"), "ms", 0)
    row(f"{paced}: peak RSS (VmHWM, 10 scenarios)", "rss", g("paced", "peak_rss_mib"), "MiB", 0)
    row(
        f"{paced}: listen-queue overflows", None, g("paced", "listen_overflows"), "", 0, ratio=False
    )
    if s.paced_small and any(res.get(n, "paced_small") for n in (BARE, FOXMOCK, AIMOCK)):
        small = f"paced {s.paced_small:,} x 50 chunks at 20 ms"
        row(
            f"{small}: gap error p99 (all completed: see notes)",
            None,
            g("paced_small", "gap_error_p99_ms"),
            "ms",
            1,
        )
        row(f"{small}: time to first byte p99", None, g("paced_small", "ttfb_p99_ms"), "ms", 0)
        row(f"{small}: peak RSS", None, g("paced_small", "peak_rss_mib"), "MiB", 0)
    s10, s10k = res.get(FOXMOCK, "scale10"), res.get(FOXMOCK, "scale10000")
    if s10 and s10k:
        scale_ratio = s10k["rps"] / s10["rps"]
        _, check = TARGETS["scale"]
        line = [
            "matching scale: req/s with 10,000 vs 10 scenarios",
            "-",
            f"{s10k['rps']:,.0f} vs {s10['rps']:,.0f}",
            f"{scale_ratio:.2f}x (10k/10)",
            TARGETS["scale"][0],
            "PASS" if check(scale_ratio) else "MISS",
        ]
        if has_aimock:
            line += ["-", ""]
        rows.append(line)
    row(
        f"start to first 200 on a chat request, median of {s.startup_runs} (10 scenarios)",
        "startup",
        g("startup", "first_chat_ms"),
        "ms",
        0,
    )
    row(
        "the same on the bundled scenarios (`foxmock serve` as is; its Jinja2 templates "
        "import Jinja2 at load)",
        None,
        lambda name: {
            BARE: g("startup", "first_chat_ms")(BARE),  # the same bare start, for the ratio
            FOXMOCK: g("startup_bundled", "first_chat_ms")(FOXMOCK),
        }.get(name),
        "ms",
        0,
    )
    row(
        "start to first 200 on the health path, median",
        None,
        g("startup", "first_health_ms"),
        "ms",
        0,
    )
    ms = res.get(FOXMOCK, "mockserver")
    if ms:
        _, check = TARGETS["mockserver"]
        line = [
            f"MockServer in-process ready, median of {ms['runs']} (cold: "
            f"{ms['cold_ms']:.0f} ms, import: {ms['import_ms']:.0f} ms)",
            "-",
            f"{ms['median_ms']:.1f} ms",
            "",
            TARGETS["mockserver"][0],
            "PASS" if check(ms["median_ms"]) else "MISS",
        ]
        if has_aimock:
            line += ["-", ""]
        rows.append(line)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell or " " for cell in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _worst_noise(res: Results) -> tuple[float, str]:
    worst, where = 0.0, ""
    for name, sections in res.data.items():
        for key, section in sections.items():
            if not isinstance(section, dict):
                continue
            for run in [section]:  # the rounds not shown do not count
                for core in ("other_server_core", "other_load_core"):
                    if run.get(core, 0.0) > worst:
                        worst, where = run[core], f"{name} {key}, {core.replace('_', ' ')}"
    return worst, where


def notes(res: Results, s: Settings) -> list[str]:
    out = []
    worst, where = _worst_noise(res)
    if worst > 0.10:
        out.append(
            f"NOISY RUN: other processes took up to {worst:.0%} of a core during a measurement "
            f"({where}); compare the slices below, or run again on a quieter machine"
        )
    for name in (BARE, FOXMOCK, AIMOCK):
        parts = []
        for key, what in (("wrk", "non-streaming"), ("unpaced", "unpaced streams")):
            run = res.get(name, key)
            if not run:
                continue
            parts.append(
                f"{what} slices {run['rps_slices']} req/s, p99 {run['p99_slices_ms']} ms, "
                f"other load on the server/load core {run['other_server_core']:.0%}/"
                f"{run['other_load_core']:.0%}"
                + (f", non-2xx {run['non_2xx']}" if run["non_2xx"] else "")
                + (f", socket errors {run['socket_errors']}" if run["socket_errors"] else "")
            )
        checked = res.get(name, "checked")
        if checked:
            parts.append(
                f"checked streams (Python client, 50 events + [DONE] each): "
                f"{checked['completed']:,} ok, {checked['failed']} failed"
            )
        paced = res.get(name, "paced")
        if paced:
            parts.append(
                f"paced: {paced['connected']:,} connected in {paced['connect_s']:.2f}s, "
                f"all done in {paced['elapsed_s']:.1f}s, server CPU {paced['server_cpu']:.0%} "
                f"({paced.get('server_cpu_s', 0):.2f}s), "
                f"other load on the server/load core {paced['other_server_core']:.0%}/"
                f"{paced['other_load_core']:.0%}, client CPU {paced['client_cpu']:.0%}, "
                f"idle RSS {paced['idle_rss_mib']:.0f} MiB, gap error max "
                f"{_fmt(paced['gap_error_max_ms'], 'ms')}, TTFB p50 "
                f"{_fmt(paced['ttfb_p50_ms'], 'ms')}, outcome {paced['outcome']}"
                + (f", errors {paced['errors']}" if paced["errors"] else "")
            )
        small = res.get(name, "paced_small")
        if small:
            parts.append(
                f"paced {small['streams']:,}: {small['completed']:,} completed, gap error p50 "
                f"{_fmt(small['gap_error_p50_ms'], 'ms', 1)}, server CPU "
                f"{small['server_cpu']:.0%}, other load {small['other_server_core']:.0%}/"
                f"{small['other_load_core']:.0%}"
            )
        if paced and len(paced.get("rounds", [])) > 1:
            parts.append(
                "paced rounds (the one with least other load is shown): gap error p99 "
                + ", ".join(
                    f"{_fmt(r['gap_error_p99_ms'], 'ms', 1)} at "
                    f"{r['other_server_core']:.0%}/{r['other_load_core']:.0%} other load"
                    for r in paced["rounds"]
                )
            )
        if parts:
            out.append(f"{name}: " + "; ".join(parts))
    for n in ("10", "10000"):
        scale = res.get(FOXMOCK, f"scale{n}")
        if scale:
            out.append(
                f"foxmock with {n} scenarios: slices {scale['rps_slices']} req/s, "
                f"p99 {scale['p99_ms']:.2f} ms"
                + (f" (both servers up in {scale['ready_s']:.1f}s)" if "ready_s" in scale else "")
            )
    for name, reason in res.skipped.items():
        out.append(f"{name} skipped: {reason}")
    out.append(
        f"paced streams measured with the {res.env.get('paced_client', 'Python (asyncio)')} "
        "client on core 1; server CPU is the server's share of its core during the burst"
    )
    if res.env.get("bytecode"):
        out.append(
            f"start-up with bytecode {res.env['bytecode']} (as an installed package has it); "
            f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '') or 'unset'}"
        )
    backlog = res.env.get("foxmock_backlog")
    fox_backlog = f"backlog {backlog}" if backlog else "aiohttp's default backlog 128"
    out.append(
        f"listen backlogs, all capped by net.core.somaxconn={res.env.get('somaxconn')}: bare app "
        f"8192; foxmock serve {fox_backlog} (it has no option for it); aimock Node's default 511."
    )
    return out


def environment(s: Settings, aimock: str | None) -> dict[str, Any]:
    def cmd(argv: list[str]) -> str:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=20, cwd=ROOT
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    import aiohttp

    import foxmock

    dirty = cmd(["git", "status", "--porcelain", "--", "foxmock"])
    try:
        from foxmock.server.run import BACKLOG as backlog  # type: ignore[attr-defined]
    except ImportError:
        backlog = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "foxmock": foxmock.__version__,
        "commit": cmd(["git", "rev-parse", "--short", "HEAD"])
        + (" (foxmock/ has uncommitted changes)" if dirty else ""),
        "node": cmd(["node", "--version"]) if shutil.which("node") else None,
        "aimock": aimock,
        "wrk": cmd(["wrk", "--version"]).splitlines()[0] if shutil.which("wrk") else None,
        "cpus": os.cpu_count(),
        "somaxconn": Path("/proc/sys/net/core/somaxconn").read_text().strip(),
        "foxmock_backlog": backlog,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "mode": "quick" if s.quick else "full",
        "settings": s.__dict__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 500 paced streams")
    parser.add_argument("--streams", type=int, help="paced streams (default 5000, quick 500)")
    parser.add_argument("--no-aimock", action="store_true", help="do not install or run aimock")
    parser.add_argument(
        "--paced-client",
        choices=["c", "python"],
        default="c",
        help="paced streams: the C epoll client (built with cc; default) or the Python one",
    )
    parser.add_argument("--out", default=str(HERE), help="where results.md/.json go")
    parser.add_argument(
        "--render", metavar="JSON", help="only redraw the table from a results.json"
    )
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        res = Results(env=saved["env"], data=saved["results"], skipped=saved["skipped"])
        return report(res, Settings(**saved["env"]["settings"]), Path(args.out))
    s = (
        Settings(
            quick=True,
            streams=500,
            rounds=3,
            slice_s=1,
            warm_s=1,
            verify_s=1,
            paced_rounds=1,
            deadline_s=45,
        )
        if args.quick
        else Settings(
            quick=False,
            streams=5000,
            rounds=5,
            slice_s=2,
            warm_s=2,
            verify_s=2,
            paced_rounds=2,
            paced_small=500,
        )
    )
    if args.streams:
        s.streams = args.streams
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is required", file=sys.stderr)
            return 2
    if (os.cpu_count() or 1) < 2:
        print("bench: needs 2 cores (one for the server, one for the load)", file=sys.stderr)
        return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    if hard < 2 * s.streams + 100:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} is low for {s.streams} streams")
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    atexit.register(_kill_all)
    signal.signal(signal.SIGTERM, _on_signal)

    res = Results()
    aimock_cli, aimock_info = (None, "--no-aimock") if args.no_aimock else ensure_aimock()
    if aimock_cli is None:
        res.skipped[AIMOCK] = aimock_info
        log(f"aimock skipped: {aimock_info}")
    paced_client, paced_info = (
        ensure_paced_client() if args.paced_client == "c" else (None, "Python (asyncio)")
    )
    if paced_client is None and args.paced_client == "c":
        log(f"paced client: {paced_info}")
    res.env = environment(s, aimock_info if aimock_cli else None)
    res.env["paced_client"] = paced_info if paced_client else "Python (asyncio)"
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="foxmock-bench-"))
    try:
        sets = write_inputs(workdir, aimock_cli is not None)
        kinds = server_kinds(sets, aimock_cli)
        order = list(kinds.values())
        if AIMOCK in kinds:  # aimock must start and answer, or it is left out with the reason
            try:
                with running([(kinds[AIMOCK], "10")], workdir) as (server,):
                    sanity_check(server)
            except (RuntimeError, OSError, KeyError, ValueError) as exc:
                res.skipped[AIMOCK] = f"cannot start or answer: {str(exc)[:300]}"
                log(f"aimock skipped: {res.skipped[AIMOCK]}")
                order.remove(kinds[AIMOCK])
        bench_throughput(order, sets, s, res, workdir)
        bench_paced(order, s, res, workdir, paced_client, s.streams, s.paced_rounds, "paced")
        if s.paced_small:  # the field's figures in issue 7 are at 500 streams
            bench_paced(order, s, res, workdir, paced_client, s.paced_small, 1, "paced_small")
        bench_scale(kinds[FOXMOCK], sets, s, res, workdir)
        bench_startup(order, s, res, workdir)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        _kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    res.env["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    res.env["duration_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    raw = {"env": res.env, "results": res.data, "skipped": res.skipped}
    (out / "results.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return report(res, s, out)


def report(res: Results, s: Settings, out: Path) -> int:
    """Print the table and write results.md and results.json."""
    header, rows = build_table(res, s)
    extra = notes(res, s)
    env = res.env
    title = (
        f"foxmock benchmark ({env['mode']}, {env['date']}): CPython {env['python']}, aiohttp "
        f"{env['aiohttp']}, foxmock {env['foxmock']} at {env['commit']}"
        + (f", {env['aimock']} on Node {env['node']}" if env["aimock"] else "")
        + f"; load average {' '.join(env['loadavg_before'])} before, "
        f"{' '.join(env['loadavg_after'])} after; {env['duration_s']:.0f}s"
    )
    print()
    print(title)
    print()
    print(text_table(header, rows))
    print()
    for line in extra:
        print(f"- {line}")
    md = [
        f"<!-- written by bench/run.py{' --quick' if s.quick else ''} -->",
        "",
        title,
        "",
        markdown(header, rows),
        "",
    ] + [f"- {line}" for line in extra]
    (out / "results.md").write_text("\n".join(md) + "\n")
    payload = {
        "env": env,
        "results": res.data,
        "skipped": res.skipped,
        "table": {"header": header, "rows": rows},
        "notes": extra,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
