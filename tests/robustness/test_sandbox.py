"""Jinja2 sandbox escapes and resource exhaustion: refused at load or at render, never leaking.

Each hostile template is either refused when its file loads (`foxmock.ScenarioError` naming the
file, line and key) or refused when it renders (HTTP 500 ``scenario_render_error``, an OpenAI
``ErrorResponse`` naming the scenario and its ``file:line``), in bounded time and memory, and the
server keeps serving. No response ever carries a secret from the server's environment.

Escapes and cheap refusals run against in-process servers (`start_server`). Templates that may
exhaust time or memory run against real ``foxmock`` processes under an address-space limit, all at
once in a module fixture, so that a hang or a runaway allocation cannot take the test run with it;
their peak memory is read from ``/proc``. `tests/test_templating.py` holds the first escape battery
(``test_sandbox_refuses_escapes``) and ``test_huge_renders_are_bounded``; the cases here are others.
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import foxmock
from tests.robustness.procmem import reset_peak, status_mb
from tests.support import write_scenarios

SECRET_NAME = "FOXMOCK_ROBUST_SANDBOX_SECRET"
SECRET = "sk-sandbox-secret-5b9e0c71d2"
BOUND = 10.0  # seconds any hostile render or load may take (generous: CI is noisy)
GROWTH_MB = 256  # extra peak memory a render may take (its output is capped at 1 MB)
LOAD_GROWTH_MB = 64  # extra peak memory loading a one-scenario file may take
ADDRESS_SPACE = 512 << 20  # for the processes that run exhaustion cases: running out is a failure
LEAKS = (SECRET, "root:x:0:0", "<function", "<module", "<built-in", "<class", " at 0x")
ATTEMPT_LINE = 6  # the line of "- name: attempt" in the files below


def attempt_file(template: str) -> str:
    """A file with a "ping" scenario and one scenario whose content is ``template``."""
    return f"""\
version: 1
scenarios:
  - name: ok
    match: {{last_user: ping}}
    respond: {{content: pong}}
  - name: attempt
    respond:
      content: {json.dumps(template)}
"""


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked in {text[:300]!r}"


# -- refused when the file loads: a private name anywhere in any template ------------------------


@dataclass(frozen=True)
class Placement:
    """Where in a scenario a template goes: the YAML around it, its line and its key."""

    id: str
    yaml: str  # with {t} for the template as a JSON string
    line: int
    key: str


PLACEMENTS = {
    p.id: p
    for p in [
        Placement(
            "content", "    respond:\n      content: {t}\n", 8, "scenarios[1].respond.content"
        ),
        Placement(
            "stream-chunk",
            "    respond: {{}}\n    stream:\n      chunks:\n        - plain\n        - {t}\n",
            11,
            "scenarios[1].stream.chunks[1]",
        ),
        Placement(
            "tool-arguments",
            "    respond:\n      tool_calls:\n        - name: f\n          arguments:\n"
            "            city: {t}\n",
            11,
            "scenarios[1].respond.tool_calls[0].arguments.city",
        ),
        Placement(
            "fault-message",
            "    fault:\n      status: 500\n      message: {t}\n",
            9,
            "scenarios[1].fault.message",
        ),
        Placement(
            "response-header",
            "    respond:\n      content: x\n      headers:\n        x-a: {t}\n",
            10,
            "scenarios[1].respond.headers.x-a",
        ),
        Placement("model", "    respond:\n      model: {t}\n", 8, "scenarios[1].respond.model"),
    ]
}

LOAD_REFUSED = [
    ("self-init-globals", "{{ self.__init__.__globals__ }}", "content", "__globals__"),
    ("bound-method-self", "{{ [].append.__self__ }}", "content", "__self__"),
    ("helper-globals", "{{ uuid.__globals__ }}", "content", "__globals__"),
    ("tool-result-self", "{{ tool_result.__self__.__dict__ }}", "content", "__dict__"),
    ("range-globals-os", "{{ range.__globals__['os'] }}", "content", "__globals__"),
    ("private-key-of-request", "{{ request._body }}", "content", "_body"),
    ("private-set-variable", "{% set _x = 1 %}{{ _x }}", "content", "_x"),
    ("subscript-dunder", "{{ messages[0]['__class__'] }}", "content", "__class__"),
    ("builtins", "{{ __builtins__ }}", "content", "__builtins__"),
    ("import-function", "{{ __import__('os').environ }}", "content", "__import__"),
    ("mro-in-loop", "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}", "content", "_"),
    (
        "lipsum-globals-secret",
        "{{ lipsum.__globals__.os.environ." + SECRET_NAME + " }}",
        "content",
        "__globals__",
    ),
    ("in-stream-chunk", "{{ last_user.__class__ }}", "stream-chunk", "__class__"),
    ("in-tool-arguments", "{{ model.__class__ }}", "tool-arguments", "__class__"),
    ("in-fault-message", "{{ request.__class__ }}", "fault-message", "__class__"),
    ("in-response-header", "{{ now.__globals__ }}", "response-header", "__globals__"),
    ("in-model", "{{ model.__len__() }}", "model", "__len__"),
]


def placed_file(template: str, where: Placement) -> str:
    head = "version: 1\nscenarios:\n  - name: ok\n    respond: {content: pong}\n"
    head += "    match: {last_user: ping}\n  - name: attempt\n"
    return head + where.yaml.format(t=json.dumps(template))


@pytest.mark.parametrize(
    ("template", "where", "name"),
    [pytest.param(t, w, n, id=i) for i, t, w, n in LOAD_REFUSED],
)
async def test_private_names_are_refused_at_load(
    start_server: Any, tmp_path: Path, template: str, where: str, name: str
) -> None:
    place = PLACEMENTS[where]
    path = write_scenarios(tmp_path, placed_file(template, place), "escape.yaml")
    assert json.dumps(template) in path.read_text().splitlines()[place.line - 1]
    started = time.monotonic()
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([path])
    assert time.monotonic() - started < BOUND
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), place.line, place.key)
    assert problem.message.startswith("template refers to private name ")
    assert name in problem.message
    assert f"{path}:{place.line}: [{place.key}] template refers to private name" in str(
        caught.value
    )
    with pytest.raises(foxmock.ScenarioError):
        await start_server(scenarios=[path])


def test_private_name_deep_in_a_block_template_names_its_own_line(tmp_path: Path) -> None:
    text = (
        "version: 1\nscenarios:\n  - name: attempt\n    respond:\n      content: |\n"  # 5
        "        Dear {{ last_user }},\n"  # 6
        "        {% for m in messages %}{{ m.role }}{% endfor %}\n"  # 7
        "        {{ cycler.__init__.__globals__ }}\n"  # 8
    )
    path = write_scenarios(tmp_path, text, "block.yaml")
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([path])
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (8, "scenarios[0].respond.content")


# -- refused when rendered: a 500 naming the scenario, in bounded time, nothing leaked -----------


RENDER_REFUSED = [
    # computed attribute names and the attr filter reach the sandbox's run-time check
    ("computed-dunder-item", "{{ ''['__cla'~'ss__'] }}", "'__class__' of 'str' object is unsafe"),
    (
        "hex-escaped-dunder",
        "{{ (()|attr('\\x5f\\x5fclass\\x5f\\x5f')) }}",
        "'__class__' of 'tuple' object is unsafe",
    ),
    ("attr-bound-self", "{{ [].append|attr('__self__') }}", "'__self__'"),
    ("attr-method-self", "{{ tool_result|attr('__self__') }}", "'__self__'"),
    ("attr-range-globals", "{{ range|attr('__globals__') }}", "'__globals__' of 'function'"),
    ("attr-helper-globals", "{{ uuid|attr('__globals__') }}", "'__globals__' of 'function'"),
    ("aliased-helper", "{% set f = now %}{{ f|attr('__globals__') }}", "'__globals__'"),
    ("selectattr-dunder", "{{ messages|selectattr('__class__')|list }}", "'__class__' of 'dict'"),
    ("percent-format-dunder", "{{ '%s'|format(request['__cla' ~ 'ss__']) }}", "'__class__'"),
    # format strings walk attributes through the sandbox too
    ("str-format-dunder", "{{ '{0.__class__}'.format(1) }}", "'__class__' of 'int' object"),
    ("format-map-dunder", "{{ '{a.__class__}'.format_map({'a': 1}) }}", "'__class__' of 'int'"),
    ("format-globals", "{{ '{0.__init__.__globals__}'.format(lipsum) }}", "'__init__'"),
    # Flask globals, the environment and files are simply not there
    ("flask-url-for", "{{ url_for }}", "'url_for' is undefined"),
    ("flask-flashed", "{{ get_flashed_messages }}", "'get_flashed_messages' is undefined"),
    ("request-environ", "{{ request.environ }}", "has no attribute 'environ'"),
    ("getenv", "{{ os.getenv('" + SECRET_NAME + "') }}", "'os' is undefined"),
    ("import-os", "{% import 'os' as os %}{{ os }}", "no loader for this environment"),
    ("from-import", "{% from 'os' import environ %}{{ environ }}", "no loader"),
    ("include-proc-environ", "{% include '/proc/self/environ' %}", "no loader"),
    ("extends-passwd", "{% extends '/etc/passwd' %}", "no loader"),
    ("self-reference", "{% set x = x %}{{ x }}", "'x' is undefined"),
    # bounded work
    ("repeat-1e9", "{{ 'x' * 10**9 }}", "repetition would exceed 1000000 items"),
    ("repeat-twice", "{{ 'x'*100000 * 100000 }}", "repetition would exceed 1000000 items"),
    ("list-repeat", "{{ [0] * 10**9 }}", "repetition would exceed 1000000 items"),
    ("range-loop-1e9", "{% for i in range(10**9) %}{% endfor %}done", "loops ran more than"),
    (
        "nested-loops-1e8",
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        "loops ran more than 1000000 steps",
    ),
    ("range-list-1e12", "{{ range(10**12)|list }}", "loops ran more than 1000000 steps"),
    ("range-random", "{{ range(10**9)|random }}", "loops ran more than 1000000|longer than 1s"),
    ("huge-exponent", "{{ 10**10000 }}", "exponent too large"),
    ("random-int-huge", "{{ random_int(0, 10**100000) }}", "exponent too large"),
    ("recursive-macro", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested over 40 deep"),
    ("deep-json", "{{ ('[' * 100000)|from_json }}", "RecursionError"),
    (
        "dict-growth",
        "{% set d = {} %}{% for i in range(10**6) %}{{ d.update({i: i}) }}{% endfor %}",
        "took longer than 1s|'update' of 'dict' object is unsafe",
    ),
]


async def post(srv: Any, text: str) -> tuple[int, str]:
    body = {"model": "foxora-1", "messages": user(text)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{srv.base_url}/chat/completions", json=body) as response,
    ):
        return response.status, await response.text()


def assert_render_error(text: str, path: Path, name: str, openapi: Any) -> str:
    body = json.loads(text)
    openapi("ErrorResponse", body)
    error = body["error"]
    assert (error["type"], error["code"]) == ("server_error", "scenario_render_error")
    prefix = f"scenario {name!r} ({path}:{ATTEMPT_LINE}) failed to render: "
    assert error["message"].startswith(prefix), error["message"]
    return str(error["message"])


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)


@pytest.mark.parametrize(
    ("template", "fragment"), [pytest.param(t, f, id=i) for i, t, f in RENDER_REFUSED]
)
async def test_hostile_render_is_refused_with_500(
    start_server: Any,
    openapi: Any,
    tmp_path: Path,
    secret_env: None,
    template: str,
    fragment: str,
) -> None:
    path = write_scenarios(tmp_path, attempt_file(template), "attempt.yaml")
    srv = await start_server(scenarios=[path])
    started = time.monotonic()
    status, text = await post(srv, "hello")
    took = time.monotonic() - started
    assert status == 500, text
    assert took < BOUND
    message = assert_render_error(text, path, "attempt", openapi)
    assert any(part in message for part in fragment.split("|")), message
    assert_no_leak(text)
    await assert_still_serving(srv)


async def assert_still_serving(srv: Any) -> None:
    status, text = await post(srv, "ping")
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == "pong"


async def test_bounded_oddities_render_without_leaking(
    start_server: Any, openapi: Any, tmp_path: Path, secret_env: None
) -> None:
    # Jinja's ** is left-associative: (9**9)**9, a 78-digit number; `self` is the template
    # reference, which shows nothing
    srv = await start_server(
        """\
version: 1
scenarios:
  - name: power
    match: {last_user: power}
    respond: {content: "{{ 9**9**9 }}"}
  - name: self
    match: {last_user: self}
    respond: {content: "{{ self }}"}
"""
    )
    for text, expected in [("power", str((9**9) ** 9)), ("self", "<TemplateReference None>")]:
        started = time.monotonic()
        status, body = await post(srv, text)
        assert time.monotonic() - started < BOUND
        assert status == 200, body
        openapi("CreateChatCompletionResponse", json.loads(body))
        assert json.loads(body)["choices"][0]["message"]["content"] == expected
        assert SECRET not in body


# -- the request is read-only, and Python objects do not print ---------------------------------

# Under SandboxedEnvironment these rendered, and the journal recorded the mutated body
MUTATIONS = [
    pytest.param("{{ messages.pop() }}", id="messages-pop"),
    pytest.param("{{ request.clear() }}", id="request-clear"),
    pytest.param("{{ request.update({'model': 'evil'}) }}", id="request-update"),
    pytest.param("{{ request.messages.append({'role': 'user', 'content': 'x'}) }}", id="append"),
]


@pytest.mark.parametrize("template", MUTATIONS)
async def test_templates_cannot_mutate_the_request(
    start_server: Any, tmp_path: Path, secret_env: None, template: str
) -> None:
    path = write_scenarios(tmp_path, attempt_file(template), "attempt.yaml")
    srv = await start_server(scenarios=[path])
    sent = {"model": "foxora-1", "messages": user("hello")}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{srv.base_url}/chat/completions", json=sent) as response:
            await response.read()
        async with session.get(f"{srv.url}/_foxmock/journal") as response:
            entries = (await response.json())["entries"]
    assert entries[-1]["body"] == sent
    assert_no_leak(json.dumps(entries))


REPRS = [
    pytest.param("{{ lipsum }}", id="lipsum"),
    pytest.param("{{ cycler }}", id="cycler"),
    pytest.param("{{ '%r'|format(joiner) }}", id="joiner-repr"),
    # `namespace` stays: it is how a loop carries a value out ({% set ns.total = ... %})
]


@pytest.mark.parametrize("template", REPRS)
async def test_python_objects_are_not_printed(
    start_server: Any, tmp_path: Path, secret_env: None, template: str
) -> None:
    path = write_scenarios(tmp_path, attempt_file(template), "attempt.yaml")
    srv = await start_server(scenarios=[path])
    _status, text = await post(srv, "hello")
    assert_no_leak(text)


# -- exhaustion, against real processes under an address-space limit ----------------------------


def _limits(hog: bool) -> Callable[[], None]:
    """For the child: cap its address space; a known CPU hog also yields the CPU to the rest."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if hog:
            os.nice(19)

    return apply


@dataclass(frozen=True)
class Bomb:
    """A template that tries to exhaust the server; ``server`` groups cases into processes."""

    id: str
    template: str
    server: str  # cases with the same server run one after another in one process
    bug: str | None = None  # why it is expected to fail, for xfail
    hog: bool = False  # known to spin for long: run at the lowest CPU priority


@dataclass
class Outcome:
    status: int | None = None  # None: no answer within BOUND
    text: str = ""
    seconds: float = 0.0
    grew_mb: float | None = None  # peak memory over the memory before the request
    serving_after: bool = False


def doubling(start: str, step: str, times: int) -> str:
    """A template that applies ``step`` to ``ns.v`` ``times`` times and prints its length."""
    return (
        f"{{% set ns = namespace(v={start}) %}}{{% for i in range({times}) %}}"
        f"{{% set ns.v = {step} %}}{{% endfor %}}{{{{ ns.v|length }}}}"
    )


BOMBS = [
    # bounded today: refused quickly, in little memory (one process, one after another)
    Bomb(
        "append-small",
        "{% set l = [] %}{% for i in range(10**6) %}{{ l.append(1) }}{% endfor %}{{ l|length }}",
        "bounded",
    ),
    Bomb("list-repr-over-cap", "{{ range(10**6)|list|string }}", "bounded"),
    Bomb("replace-over-cap", "{{ ('h' * 1000000)|replace('h', 'hhhhhhhhhh') }}", "bounded"),
    Bomb("power-of-a-power", "{{ (10**1000)**1000 }}", "bounded"),
    Bomb("recursive-macro", "{% macro f(n) %}{{ f(n ~ 'x') }}{% endmacro %}{{ f('') }}", "bounded"),
    Bomb("loop-output", "{% for i in range(10**6) %}xxxxxxxxxx{% endfor %}", "bounded"),
    Bomb("lipsum-1e6", "{{ lipsum(10**6) }}", "bounded"),  # took 50 s before lipsum was removed
    # memory: each would take about 500 MB unless refused (one process, one after another)
    Bomb("concat-doubling", doubling("'x'*1000000", "ns.v ~ ns.v", 9), "memory"),
    Bomb("list-doubling", doubling("[0]", "ns.v + ns.v", 26), "memory"),
    Bomb(
        "append-megabytes",
        "{% set l = [] %}{% for i in range(10**6) %}{{ l.append('x'*1000000) }}{% endfor %}",
        "memory",
    ),
    Bomb("str-format-width", "{{ '{0:>500000000}'.format(last_user) }}", "memory"),
    Bomb("percent-format-width", "{{ '%500000000s'|format(last_user) }}", "memory"),
    Bomb("center-width", "{{ last_user|center(500000000) }}", "memory"),
    Bomb("join-separator", "{{ (['x']*1000000)|join('y'*500) }}", "memory"),
    Bomb(
        "regex-replace-empty",
        "{{ ('h' * 1000000)|regex_replace('', 'x'*500) }}",
        "memory",
    ),
    # time: each spins far past BOUND in its own process, killed afterwards
    Bomb(
        "bigint-power-chain",
        "{% set a = 10**1000 %}{% set b = a**1000 %}{{ b**1000 > 0 }}",
        "power",
        hog=True,
    ),
    Bomb(
        "bigint-squaring",
        doubling("10**1000", "ns.v * ns.v", 40).replace("|length", " > 0"),
        "squaring",
        hog=True,
    ),
    # ('a' * 40 ~ '!')|regex_search('^(a+)+$') was one; on RE2 it answers at once
    Bomb("slice-1e8", "{{ range(10)|slice(10**8)|list|length }}", "slice", hog=True),
    Bomb(
        "nested-list-repr",
        doubling("'x'", "[ns.v, ns.v]", 26).replace("|length", "|string"),
        "nested",
        hog=True,
    ),
    Bomb(
        "replace-doubling",
        doubling("'x'*1000000", "ns.v|replace('x', 'xx')", 9),
        "replace",
        hog=True,
    ),
]

LOAD_BOMBS = [
    Bomb("load-center", "{{ 'x'|center(50000000) }}", "load"),
    Bomb("load-format", "{{ '%50000000s'|format(1) }}", "load"),
    Bomb(
        "load-regex",
        "{{ 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'|regex_search('^(a+)+$') }}",
        "load",
    ),
    Bomb("load-slice", "{{ [1, 2]|slice(100000000)|list|length }}", "load"),
    Bomb("load-unfoldable", "{{ 'x'|center(5000000000) }}", "load"),  # folding fails: deferred
]

LOADER = """\
import json, sys, time
import foxmock
def peak_mb():  # this process's own peak (ru_maxrss would start at the forking parent's)
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
before = peak_mb()
started = time.monotonic()
try:
    foxmock.load_scenarios([sys.argv[1]])
    outcome = {"loaded": True, "problems": []}
except foxmock.ScenarioError as exc:
    problems = [[p.file, p.line, p.key, p.message] for p in exc.problems]
    outcome = {"loaded": False, "problems": problems}
outcome.update(seconds=time.monotonic() - started, grew_mb=peak_mb() - before)
print(json.dumps(outcome))
"""


@dataclass
class Server:
    """A ``foxmock serve`` process for a group of bombs."""

    name: str
    path: Path
    bombs: list[Bomb]
    proc: subprocess.Popen[str] | None = None
    base_url: str = ""
    lines: queue.Queue[str] = field(default_factory=queue.Queue)


def _bomb_file(bombs: list[Bomb]) -> str:
    out = "version: 1\nscenarios:\n  - name: ok\n    match: {last_user: ping}\n"
    out += "    respond: {content: pong}\n"
    for bomb in bombs:
        out += f"  - name: {bomb.id}\n    match: {{last_user: {bomb.id}}}\n"
        out += f"    respond:\n      content: {json.dumps(bomb.template)}\n"
    return out


def _start(server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")}
    env.update({SECRET_NAME: SECRET, "MALLOC_ARENA_MAX": "2"})
    command = [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--time-scale", "0"]
    command += ["--scenarios", str(server.path), "--log-level", "error"]
    server.proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=_limits(any(bomb.hog for bomb in server.bombs)),
    )
    proc = server.proc

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while True:
        line = server.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        found = re.search(r"serving on (http://\S+/v1)", line)
        if found:
            server.base_url = found.group(1)
            return


def _chat(base_url: str, text: str, timeout: float) -> tuple[int, str]:
    body = json.dumps({"model": "foxora-1", "messages": user(text)}).encode()
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _run(server: Server) -> dict[str, Outcome]:
    assert server.proc is not None
    pid = server.proc.pid
    results: dict[str, Outcome] = {}
    for bomb in server.bombs:
        outcome = results[bomb.id] = Outcome()
        measurable = reset_peak(pid)
        before = status_mb(pid, "VmRSS")
        started = time.monotonic()
        try:
            outcome.status, outcome.text = _chat(server.base_url, bomb.id, BOUND)
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            outcome.seconds = time.monotonic() - started
            break  # hung or dead: the rest of this process's cases get no answer
        outcome.seconds = time.monotonic() - started
        peak = status_mb(pid, "VmHWM")
        if measurable and before is not None and peak is not None:
            outcome.grew_mb = peak - before
        try:
            outcome.serving_after = _chat(server.base_url, "ping", BOUND)[0] == 200
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            break
    return results


def _spawn_load(path: Path, hog: bool) -> tuple[subprocess.Popen[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")}
    env["MALLOC_ARENA_MAX"] = "2"
    proc = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_limits(hog),
    )
    return proc, time.monotonic()


def _finish_load(proc: subprocess.Popen[str], started: float) -> dict[str, Any]:
    try:  # BOUND for the load, plus the interpreter's start-up
        out, err = proc.communicate(timeout=max(started + BOUND + 5 - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"hung": True, "seconds": time.monotonic() - started}
    if proc.returncode != 0:
        return {"crashed": err[-2000:], "seconds": time.monotonic() - started}
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def bomb_outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Outcome], dict[str, Path]]]:
    """Every bomb at once: each server group in its own process, each load in its own."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc and RLIMIT_AS")
    directory = tmp_path_factory.mktemp("bombs")
    groups: dict[str, list[Bomb]] = {}
    for bomb in BOMBS:
        groups.setdefault(bomb.server, []).append(bomb)
    servers = [
        Server(name, write_scenarios(directory, _bomb_file(bombs), f"{name}.yaml"), bombs)
        for name, bombs in groups.items()
    ]
    paths = {s.name: s.path for s in servers}
    loads = {}
    for bomb in LOAD_BOMBS:
        paths[bomb.id] = write_scenarios(directory, attempt_file(bomb.template), f"{bomb.id}.yaml")
        loads[bomb.id] = _spawn_load(paths[bomb.id], bomb.hog)
    try:
        for server in servers:
            _start(server)
        for server in servers:
            _wait_ready(server)
        with ThreadPoolExecutor(len(servers) + len(loads)) as pool:
            runs = [pool.submit(_run, server) for server in servers]
            load_runs = {name: pool.submit(_finish_load, *load) for name, load in loads.items()}
            outcomes: dict[str, Outcome] = {}
            for run in runs:
                outcomes.update(run.result())
            for name, load_run in load_runs.items():
                outcomes[name] = Outcome(text=json.dumps(load_run.result()))
        yield outcomes, paths
    finally:
        for proc, _started in loads.values():
            proc.kill()
            proc.wait(10)
        for server in servers:
            if server.proc is not None:
                server.proc.kill()
                server.proc.wait(10)


def _param(bomb: Bomb) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bomb.bug)] if bomb.bug else []
    return pytest.param(bomb, id=bomb.id, marks=marks)


def test_battery_is_big_enough() -> None:
    sizes = [len(LOAD_REFUSED), len(RENDER_REFUSED), len(MUTATIONS), len(REPRS)]
    assert sum(sizes) + len(BOMBS) + len(LOAD_BOMBS) >= 25
    assert len({b.id for b in BOMBS + LOAD_BOMBS}) == len(BOMBS) + len(LOAD_BOMBS)


@pytest.mark.parametrize("bomb", [_param(b) for b in BOMBS])
def test_exhausting_render_is_refused_in_bounded_time_and_memory(
    bomb_outcomes: tuple[dict[str, Outcome], dict[str, Path]], openapi: Any, bomb: Bomb
) -> None:
    outcomes, paths = bomb_outcomes
    outcome = outcomes.get(bomb.id, Outcome())
    assert outcome.status is not None, f"no answer within {BOUND} s ({outcome.seconds:.1f} s)"
    assert outcome.seconds < BOUND
    assert outcome.status == 500, outcome.text[:300]
    body = json.loads(outcome.text)
    openapi("ErrorResponse", body)
    assert body["error"]["code"] == "scenario_render_error"
    path = paths[bomb.server]
    line = (
        _bomb_file([b for b in BOMBS if b.server == bomb.server])
        .splitlines()
        .index(f"  - name: {bomb.id}")
        + 1
    )
    assert body["error"]["message"].startswith(
        f"scenario {bomb.id!r} ({path}:{line}) failed to render: "
    )
    assert "MemoryError" not in body["error"]["message"], "ran out of address space"
    assert_no_leak(outcome.text)
    assert outcome.serving_after
    if outcome.grew_mb is not None:
        assert outcome.grew_mb < GROWTH_MB, f"peak memory grew by {outcome.grew_mb:.0f} MB"


@pytest.mark.parametrize("bomb", [_param(b) for b in LOAD_BOMBS])
def test_constant_folding_at_load_is_bounded(
    bomb_outcomes: tuple[dict[str, Outcome], dict[str, Path]], bomb: Bomb
) -> None:
    outcomes, paths = bomb_outcomes
    result = json.loads(outcomes[bomb.id].text)
    assert not result.get("hung"), f"load still running after {result['seconds']:.0f} s"
    assert "crashed" not in result, result.get("crashed")
    assert result["seconds"] < BOUND, result
    assert result["grew_mb"] < LOAD_GROWTH_MB, f"loading grew memory: {result}"
    for file, line, key, _message in result["problems"]:  # refused: names file, line and key
        assert (file, line, key) == (str(paths[bomb.id]), 8, "scenarios[1].respond.content")
