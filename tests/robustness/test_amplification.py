"""Memory amplification and loop stalls: what one hostile request can cost a running server.

Each attack is sent to a real ``foxmock serve`` process while a probe thread asks ``/healthz``
on a kept-alive connection every few milliseconds. Per attack the test reports and bounds:

- the peak RSS above the idle figure (the kernel's high-water mark, reset before each attack
  through ``/proc/PID/clear_refs``): within ``RSS_BOUND`` for every single request;
- the longest the event loop stood still, seen as the slowest probe answer: under
  ``STALL_BOUND`` (``ADMIN_STALL_BOUND`` for admin writes) above the slowest probe answer during
  a harmless request of the same test, so a busy machine's noise is not counted as a stall.

``pytest -s`` prints the table the README's Reliability section quotes.
"""

from __future__ import annotations

import functools
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.recording_support import FoxmockProcess

HOST = "127.0.0.1"
CHAT = "/v1/chat/completions"
JSON = "application/json"
YAML = "application/yaml"
RSS_BOUND_KB = 256 * 1024
STALL_BOUND = 0.100
ADMIN_STALL_BOUND = 0.250
PROBE_EVERY = 0.005
FOUR_MIB = 4 * 1024 * 1024
CONTAINS_SCENARIOS = 1000

SCENARIOS = """\
version: 1
models: [foxora-1]
scenarios:
  - name: refund-regex
    match: {last_user: {regex: ".*refund.*"}}
    respond: {content: refund}
  - name: alternation-regex
    match: {last_user: {regex: "^(a|a)*b$"}}
    respond: {content: alternation}
  - name: nested-regex
    match: {last_user: {regex: "^(x+x+)+y$"}}
    respond: {content: nested}
  - name: echo
    priority: -100
    respond: {content: "You said: {{ last_user }}"}
"""

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def contains_scenarios() -> str:
    """Many case-insensitive `contains` scenarios that a big unmatched text must all miss."""
    rows = [
        f"  - name: contains-{i}\n"
        f"    match: {{last_user: {{contains: needle-{i:04d}, ignore_case: true}}}}\n"
        f"    respond: {{content: found {i}}}\n"
        for i in range(CONTAINS_SCENARIOS)
    ]
    return "version: 1\nscenarios:\n" + "".join(rows)


def chat(text: str, **extra: Any) -> bytes:
    return json.dumps(
        {"model": "foxora-1", "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


# --- measuring -------------------------------------------------------------------------------


class Probe(threading.Thread):
    """Asks ``/healthz`` over one kept-alive connection; records the slowest answer per window."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.slowest = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                ok = False
            took = time.monotonic() - t0
            with self._lock:
                if ok:
                    self.answers += 1
                self.slowest = max(self.slowest, took)
            time.sleep(PROBE_EVERY)
        conn.close()

    def window(self) -> None:
        """Start a new measuring window."""
        with self._lock:
            self.slowest, self.answers = 0.0, 0

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


@dataclass
class Figures:
    label: str
    status: str
    seconds: float
    rss_kb: int
    stall: float


@dataclass
class Target:
    """The server under attack, its probe and what each attack cost."""

    process: FoxmockProcess
    probe: Probe
    noise: float = 0.0
    rows: list[Figures] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {key} in /proc/{self.pid}/status")

    def measure(self, label: str, attack: Callable[[], str]) -> Figures:
        """Run one attack; its peak RSS over idle and the slowest probe answer meanwhile."""
        idle = self.status_kb("VmRSS")
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.probe.window()
        t0 = time.monotonic()
        status = attack()
        took = time.monotonic() - t0
        time.sleep(0.05)  # one more probe answer after the attack's own answer
        figures = Figures(label, status, took, self.status_kb("VmHWM") - idle, self.probe.slowest)
        self.rows.append(figures)
        assert self.process.running, f"{label}: the server died:\n{self.process.log()[-3000:]}"
        return figures


def send(port: int, method: str, path: str, body: bytes, content_type: str) -> str:
    """One request on its own connection; the status and the start of the answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data)
            if "error" in parsed:
                return f"{response.status} {parsed['error']['code']}"
            return f"{response.status} {parsed['choices'][0]['message']['content'][:60]}"
        except (ValueError, KeyError, TypeError, IndexError):
            return f"{response.status} {data[:60].decode('utf-8', 'replace')}"
    finally:
        conn.close()


def post_chat(port: int, payload: bytes) -> Callable[[], str]:
    return functools.partial(send, port, "POST", CHAT, payload, JSON)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("amplification")
    (workdir / "attacks.yaml").write_text(SCENARIOS, "utf-8")
    (workdir / "many.yaml").write_text(contains_scenarios(), "utf-8")
    args = ["serve", "--port", "0", "--scenarios", "many.yaml", "--scenarios", "attacks.yaml"]
    process = FoxmockProcess(
        [*args, "--log-level", "warning"], cwd=workdir, log=workdir / "server.log"
    )
    probe = Probe(process.port)
    probe.start()
    target = Target(process, probe)
    try:
        harmless = post_chat(process.port, chat("hello " * 2000, stream=True))
        for _ in range(20):  # warm up, and learn how slow a probe is when nothing stalls
            target.measure("warm-up", harmless)
        target.noise = max(row.stall for row in target.rows)
        target.rows.clear()
        yield target
    finally:
        probe.stop()
        process.stop()
        print_table(target)


def print_table(target: Target) -> None:
    print(f"\n--- memory and loop stalls per attack (probe noise {target.noise * 1000:.0f} ms)")
    for row in target.rows:
        print(
            f"  {row.label:<44} {row.status[:36]:<36} {row.seconds:6.2f} s  "
            f"peak RSS +{row.rss_kb / 1024:7.1f} MiB  stall {row.stall * 1000:6.0f} ms"
        )


def check(target: Target, figures: Figures, stall_bound: float = STALL_BOUND) -> None:
    assert figures.rss_kb < RSS_BOUND_KB, (
        f"{figures.label}: peak RSS {figures.rss_kb / 1024:.0f} MiB over idle"
    )
    assert figures.stall < stall_bound + target.noise, (
        f"{figures.label}: the loop stood still {figures.stall * 1000:.0f} ms "
        f"(probe noise {target.noise * 1000:.0f} ms)"
    )
    assert not figures.status.startswith("5") or "scenario_render_error" in figures.status


# --- the attacks -----------------------------------------------------------------------------

BIG_USER = "z" * 80_000

REQUEST_ATTACKS: dict[str, Callable[[], bytes]] = {
    "n=128 stream, 80 KB message": lambda: chat(BIG_USER, n=128, stream=True),
    "n=128, 80 KB message": lambda: chat(BIG_USER, n=128),
    "4 MiB of empty messages": lambda: (
        b'{"model":"foxora-1","messages":[' + b",".join([b"{}"] * (FOUR_MIB // 3 - 100)) + b"]}"
    ),
    "4 MiB of tiny user messages": lambda: json.dumps(
        {"model": "foxora-1", "messages": [{"role": "user", "content": "a"}] * 120_000}
    ).encode()[:FOUR_MIB],
    "4 MiB unmatched text vs 1,000 contains": lambda: chat("q" * (FOUR_MIB - 200)),
    "4 MiB text, streamed echo": lambda: chat("w " * (FOUR_MIB // 2 - 200), stream=True),
    "regex .*refund.* on an 80 K miss": lambda: chat("r" * 80_000),
    "regex (a|a)*b on 25 a": lambda: chat("a" * 25),
    "regex (x+x+)+y on 5,000 x": lambda: chat("x" * 5000),
    "deep JSON nesting": lambda: b'{"model":"foxora-1","messages":' + b"[" * 100_000,
    "4 MiB JSON string escapes": lambda: chat("\\u00e9" * (FOUR_MIB // 8)),
}


# Known gap: json's C decoder holds the interpreter lock for the whole body, so a 4 MiB body
# of 120,000 small objects stops the loop for its decode (~0.2 s here) even on the worker
# thread. Bounded more loosely until decoding is chunked; the README says so.
DECODE_BOUND = 0.500
LOOSER = {"4 MiB of tiny user messages": DECODE_BOUND}


@pytest.mark.parametrize("label", list(REQUEST_ATTACKS))
def test_one_request_costs_bounded_memory_and_no_stall(target: Target, label: str) -> None:
    payload = REQUEST_ATTACKS[label]()
    figures = target.measure(label, post_chat(target.process.port, payload))
    check(target, figures, LOOSER.get(label, STALL_BOUND))


def test_journal_of_refused_4mib_bodies_stays_bounded(target: Target) -> None:
    """40 refused 4 MiB bodies: the journal keeps them within its byte bound."""
    payload = REQUEST_ATTACKS["4 MiB of empty messages"]()
    start = target.status_kb("VmRSS")

    def forty() -> str:
        return [send(target.process.port, "POST", CHAT, payload, JSON) for _ in range(40)][-1]

    figures = target.measure("40 refused 4 MiB bodies", forty)
    assert figures.status.startswith("400")
    grown = target.status_kb("VmRSS") - start
    assert grown < RSS_BOUND_KB, f"RSS grew {grown / 1024:.0f} MiB over 40 refused bodies"


def test_admin_billion_laughs_put_is_refused_without_stall(target: Target) -> None:
    port = target.process.port
    for method, path in (("PUT", "/_foxmock/scenarios/x"), ("POST", "/_foxmock/scenarios")):
        attack = functools.partial(send, port, method, path, BILLION_LAUGHS.encode(), YAML)
        figures = target.measure(f"admin {method} billion laughs", attack)
        assert figures.status.startswith("4"), figures
        check(target, figures, ADMIN_STALL_BOUND)


def test_admin_adding_15000_scenarios_does_not_stall(target: Target) -> None:
    rows = [
        {
            "name": f"bulk-{i}",
            "match": {"last_user": {"equals": f"bulk {i}"}},
            "respond": {"content": f"bulk answer {i}"},
        }
        for i in range(15_000)
    ]
    payload = json.dumps(rows).encode()
    port = target.process.port
    attack = functools.partial(send, port, "POST", "/_foxmock/scenarios", payload, JSON)
    figures = target.measure("admin POST 15,000 scenarios", attack)
    assert figures.status.startswith("2"), figures
    check(target, figures, ADMIN_STALL_BOUND)
    answer = send(port, "POST", CHAT, chat("bulk 14999"), JSON)
    assert "bulk answer 14999" in answer
    reset = send(port, "POST", "/_foxmock/reset", b"", JSON)
    assert reset.startswith("2"), reset


def test_probe_saw_no_failures(target: Target) -> None:
    assert target.probe.answers > 0 and not target.probe.failures, target.probe.failures[:3]
