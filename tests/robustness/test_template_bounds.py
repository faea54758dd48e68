"""Template bounds under hostile templates: every builder is refused before it builds.

Each attack is a scenario template rendered through a real ``foxmock serve`` process (one process
for all of them, under an address-space limit so that a runaway allocation fails instead of
taking the machine). Each must answer 500 ``scenario_render_error`` whose message names the
mechanism that refused it (an estimate made before building, the deadline, the step or depth
budget), within a generous wall-clock bound, with the server's peak RSS (``VmHWM`` after
``clear_refs``) growing little, and the server still serving. Before these bounds, the same
templates built 6 M to 512 M characters (598-998 MiB) or ran for minutes.

Legitimate templates that use the same filters, methods and operators still render, through
the same server, to exactly what Jinja2 renders.
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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from foxmock.templating import MAX_RENDER_SECONDS
from tests.robustness.procmem import reset_peak, status_mb
from tests.support import write_scenarios

WALL_BOUND = 3.0 * MAX_RENDER_SECONDS  # seconds an attack may take end to end (deadline 1 s)
GROWTH_MB = 128  # peak RSS an attack may add (its values are capped at 1,000,000 characters)
ADDRESS_SPACE = 2 << 30

S = "{% set s = 'x' * 1000000 %}"  # one string at the limit


@dataclass(frozen=True)
class Attack:
    id: str
    template: str
    refused_by: str  # fragments of the message (any of, "|"-separated): which bound refused it


ATTACKS = [
    # join, as a filter and as a method
    Attack("join-chain", "{{ ((['x'*1000]*1000)|join)|list|join('yy') }}", "join would exceed"),
    Attack("join-items", S + "{{ [s, s, s]|join }}", "join would exceed"),
    Attack("join-method", "{{ ('x'*1000).join(['a']*1000000) }}", "join would exceed"),
    Attack(
        "join-lazy", "{{ range(10**6)|map('string')|map('center', 1000)|join }}", "join would hold"
    ),
    # indent, with a number and with a string
    Attack("indent", "{{ ('x\\n'*400000)|indent(10000) }}", "indent would exceed"),
    Attack("indent-text", "{{ ('\\n'*500000)|indent('y'*1000, true, true) }}", "indent would"),
    # %-formatting: operator and filter, many fields and wide fields
    Attack("percent-many", S + "{{ '%s%s%s' % (s, s, s) }}", "%-formatting would exceed"),
    Attack("percent-wide", "{{ ('%999999s'*100) % ((1,)*100) }}", "%-formatting would exceed"),
    Attack("percent-star", "{{ ('%*s'*100) % ((999999, 1)*100) }}", "%-formatting would exceed"),
    Attack("format-filter", S + "{{ '%s%s%s'|format(s, s, s) }}", "%-formatting would exceed"),
    Attack(
        "format-filter-map",
        "{{ (['%s']*1000)|map('format', 'x'*1000000)|join|length }}",
        "%-formatting would exceed",
    ),
    # str.format and format_map
    Attack("str-format-many", S + "{{ ('{0}'*300000).format(s) }}", "str.format would exceed"),
    Attack("str-format-wide", "{{ ('{0:>999999}'*100).format(1) }}", "str.format would exceed"),
    Attack("str-format-nested", "{{ '{0:{1}}'.format(1, 999999999) }}", "a million or more"),
    Attack("str-format-repr", "{{ '{0!r}'.format([['x'*1000]*1000]) }}", "str.format would"),
    Attack("format-map", "{{ '{a}{a}'.format_map({'a': 'x'*1000000}) }}", "str.format would"),
    # urlencode, of a string and of pairs
    Attack("urlencode", "{{ ('\\u00e9'*1000000)|urlencode }}", "urlencode would exceed"),
    Attack("urlencode-pairs", "{{ {'a': '/'*1000000}|urlencode }}", "urlencode would exceed"),
    # escaping and case changes that grow text
    Attack("tojson-escape", "{{ ('<'*1000000)|tojson }}", "JSON would exceed"),
    Attack("tojson-indent", "{{ range(10)|list|tojson(indent=10**9) }}", "JSON indent over"),
    Attack("json-nested", "{{ json([['x'*1000]*1000]) }}", "JSON would exceed"),
    Attack("escape", "{{ ('<'*1000000)|e }}", "escape would exceed"),
    Attack("xmlattr", "{{ {'a': '<'*1000000}|xmlattr }}", "xmlattr would exceed"),
    Attack("urlize", "{{ ('www.a.com '*100000)|urlize }}", "urlize would exceed"),
    Attack("upper", "{{ ('\\u00df'*1000000)|upper }}", "upper would exceed"),
    Attack("title-method", "{{ ('\\ufb03'*1000000).title() }}", "case change would exceed"),
    # padding and replacing methods
    Attack("ljust", "{{ 'x'.ljust(500000000) }}", "padding would exceed"),
    Attack("zfill", "{{ '1'.zfill(500000000) }}", "padding would exceed"),
    Attack("center-method", "{{ 'x'.center(500000000) }}", "padding would exceed"),
    Attack("expandtabs", "{{ ('\\t'*1000000).expandtabs(1000) }}", "expandtabs would exceed"),
    Attack("replace-method", "{{ ('x'*1000000).replace('x', 'x'*10) }}", "replace would exceed"),
    Attack("translate", "{{ ('x'*1000000).translate({120: 'y'*1000}) }}", "translate would"),
    Attack("now-strftime", "{{ now('%c'*500000) }}", "now would exceed"),
    # words
    Attack("wordwrap-words", "{{ ('x '*500000)|wordwrap(1) }}", "wordwrap of 500001 words"),
    Attack(
        "wordwrap-joint", "{{ ('x '*100000)|wordwrap(1, wrapstring='y'*1000) }}", "wordwrap would"
    ),
    # containers: printing, repr, pprint, sum, repetition, addition, lazy generators
    Attack("print-list", S + "{{ [s, s, s] }}", "value to print has more than"),
    Attack("string-nested", "{{ [['x'*1000]*1000]|string }}", "string would exceed"),
    Attack("concat-list", "{{ (['x'*1000]*1000) ~ '' }}", "concatenation would exceed"),
    Attack("pprint-indent", "{{ {'k'*100000: range(200)|list}|pprint }}", "pprint would exceed"),
    Attack("sum-start", "{{ ([['x']*1000]*999)|sum(start=['y'*100000])|length }}", "sum would"),
    Attack("repeat-big-list", S + "{{ ([s]*1000000)|length }}", "repetition would exceed"),
    Attack(
        "plus-growth",
        "{% set ns = namespace(l=[]) %}{% set s = 'x'*999000 %}"
        "{% for i in range(1000) %}{% set ns.l = ns.l + [s ~ i] %}{% endfor %}{{ ns.l|length }}",
        "addition would exceed",
    ),
    Attack(
        "map-list",
        "{{ range(1000)|map('string')|map('center', 1000000)|list|length }}",
        "list would hold more than",
    ),
    Attack(
        "loop-length-lazy",
        "{% for x in range(1000)|map('string')|map('center', 1000000) %}{{ loop.length }}"
        "{% endfor %}",
        "loop would hold more than",
    ),
    Attack(
        "dict-global",
        "{{ dict(range(500)|map('string')|map('center', 1000000)|batch(2))|length }}",
        "would hold more than",
    ),
    Attack(
        "namespace-global",
        "{{ namespace(range(500)|map('string')|map('center', 1000000)|batch(2)) }}",
        "would hold more than",
    ),
    Attack(
        "batch-fill", "{{ [1]|batch(1000000, 'x'*1000000)|list|length }}", "list would hold more"
    ),
    # written text: the output, and text macros and set blocks write
    Attack(
        "loop-output",
        "{% set s = 'x'*900000 %}{% for i in range(10) %}{{ s }}{% endfor %}",
        "template wrote more than 4000000",
    ),
    Attack(
        "macro-output",
        "{% macro m() %}{% for i in range(1000) %}{{ 'x'*1000 }}{% endfor %}{% endmacro %}"
        "{% for i in range(100) %}{% set y = m() %}{% endfor %}",
        "template wrote more than 4000000",
    ),
    # depth and steps
    Attack(
        "macro-recursion-big",
        "{% macro f(s) %}{{ f(s ~ 'x') }}{% endmacro %}{{ f('x'*999000) }}",
        "nested over 40 deep",
    ),
    Attack(
        "recursive-loop", "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "nested over"
    ),
    Attack(
        "recursive-loop-steps",
        "{% for x in [0]*1000 recursive %}{% if loop.depth < 3 %}{{ loop([0]*1000) }}"
        "{% endif %}{% endfor %}",
        "loops ran more than 1000000 steps|longer than 1s",  # whichever comes first
    ),
    # sorting and walking: item caps, and the deadline inside long filters
    Attack("sort-too-many", "{{ range(200000)|list|sort|length }}", "sort of 200000 items"),
    Attack(
        "groupby-too-many",
        "{{ range(150000)|list|groupby('real')|length }}",
        "groupby of 150000 items",
    ),
    Attack(
        "sort-loop",
        "{% for i in range(50) %}{{ (range(100000)|list|reverse|sort)|length }}{% endfor %}",
        "longer than 1s",
    ),
    Attack(
        "unique-loop",
        "{% set l = [0]*1000000 %}{% for i in range(50) %}{{ l|unique|list|length }}{% endfor %}",
        "longer than 1s",
    ),
    Attack(
        "max-loop",
        "{% set l = [0]*1000000 %}{% for i in range(50) %}{{ l|max }}{% endfor %}",
        "longer than 1s",
    ),
    Attack(
        "regex-replace-loop",
        "{% for i in range(2000) %}{{ ('a'*100000)|regex_replace('a', 'b')|length }}{% endfor %}",
        "longer than 1s",
    ),
    Attack("regex-rescan", "{{ ('a'*200000)|regex_replace('a.*z|a', 'b')|length }}", "longer"),
    # methods that are not offered at all
    Attack("encode", "{{ ('x'*1000000).encode('utf-32') * 100 }}", "'encode' of 'str'"),
    Attack("to-bytes", "{{ (1).to_bytes(1000000000, 'big') }}", "'to_bytes' of 'int'"),
    Attack("fromkeys", "{{ {}.fromkeys(range(10**6)) }}", "'fromkeys' of 'dict'"),
    # big integers
    Attack(
        "bigint-division",
        "{% set x = ('f'*30000)|int(base=16) %}{{ x // (x // 3) }}",
        "integer too large for //",
    ),
]

# legitimate templates over the same surface, and what Jinja2 renders for them
LEGIT = [
    ("join-attribute", "{{ messages|map(attribute='role')|join(' | ') }}", "system | user"),
    ("sort", "{{ range(5)|list|sort(reverse=true)|join(',') }}", "4,3,2,1,0"),
    ("sort-50k", "{{ range(50000)|reverse|sort|first }}", "0"),
    ("dictsort", "{{ {'b': 1, 'a': 2}|dictsort }}", "[('a', 2), ('b', 1)]"),
    (
        "groupby",
        "{{ [{'k': 'x'}, {'k': 'y'}, {'k': 'X'}]|groupby('k')|map(attribute='grouper')|join }}",
        "xy",
    ),
    ("sum-lists", "{{ [[1, 2], [3]]|sum(start=[]) }}", "[1, 2, 3]"),
    ("sum-100k-lists", "{{ ([[1]]*100000)|sum(start=[])|length }}", "100000"),
    ("sum-numbers", "{{ [1, 2, 3]|sum }}", "6"),
    ("unique", "{{ ['a', 'A', 'b']|unique|join }}", "ab"),
    ("tojson", "{{ {'b': '<x>', 'a': [1, 2]}|tojson }}", '{"a": [1, 2], "b": "\\u003cx\\u003e"}'),
    ("tojson-indent", "{{ {'a': [1]}|tojson(indent=2) }}", '{\n  "a": [\n    1\n  ]\n}'),
    ("json", "{{ json({'é': 1}) }}", '{"é": 1}'),
    ("pprint", "{{ {'a': 1, 'b': [1, 2]}|pprint }}", "{'a': 1, 'b': [1, 2]}"),
    ("percent", "{{ '%s-%05d %.2f' % ('a', 42, 1.5) }}", "a-00042 1.50"),
    ("percent-map", "{{ '%(n)s=%(v)d' % {'n': 'x', 'v': 3} }}", "x=3"),
    ("format-filter", "{{ '%s and %s'|format('a', 'b') }}", "a and b"),
    ("str-format", "{{ '{:>5}|{!r}|{x}'.format('ab', 'c', x=1) }}", "   ab|'c'|1"),
    ("format-map", "{{ '{a}-{b}'.format_map({'a': 1, 'b': 2}) }}", "1-2"),
    ("wordwrap", "{{ 'a b c d e f'|wordwrap(3) }}", "a b\nc d\ne f"),
    ("urlencode", "{{ {'q': 'a b/c'}|urlencode }} {{ 'a b/c'|urlencode }}", "q=a+b%2Fc a%20b/c"),
    (
        "loop-length",
        "{% for m in messages %}{{ loop.index }}/{{ loop.length }} {% endfor %}",
        "1/2 2/2 ",
    ),
    (
        "nested-loop-length",
        "{% for a in [1, 2] %}{% for b in [1, 2, 3] %}{{ loop.length }}{% endfor %}"
        "{{ loop.length }};{% endfor %}",
        "3332;3332;",
    ),
    (
        "outer-loop-handed-on",
        "{% for a in [1, 2] %}{% set outer = loop %}{% for b in [1] %}{{ outer.length }}"
        "{% endfor %}{% endfor %}",
        "22",
    ),
    (
        "inner-iterable-reads-outer-length",
        "{% for a in [1, 2] %}{% for b in range(loop.revindex) %}x{% endfor %}-{% endfor %}",
        "xx-x-",
    ),
    (
        "recursive-loop",
        "{% for n in [{'n': 'a', 'k': [{'n': 'b', 'k': []}]}] recursive %}{{ n.n }}"
        "({{ loop(n.k) }}){% endfor %}",
        "a(b())",
    ),
    # last_user is the case's name, as each case is matched by it
    ("macro", "{% macro greet(n) %}hi {{ n }}{% endmacro %}{{ greet(last_user) }}", "hi ok-macro"),
    (
        "call-block",
        "{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}in{% endcall %}",
        "[in]",
    ),
    ("case", "{{ ('ab ' ~ last_user)|upper|center(40)|trim|lower|title }}", "Ab Ok-Case"),
    (
        "methods",
        "{{ 'x'.join(['a', 'b']) }} {{ 'a-b'.replace('-', '+') }} {{ 'Hi'.ljust(4) }}|",
        "axb a+b Hi  |",
    ),
    ("escape", "{{ '<b>'|e }} {{ {'class': 'x'}|xmlattr }}", '&lt;b&gt;  class="x"'),
    (
        "urlize",
        "{{ 'see www.example.com'|urlize }}",
        'see <a href="https://www.example.com" rel="noopener">www.example.com</a>',
    ),
    ("now", "{{ now('%Y')|length }}", "4"),
    ("globals", "{{ dict(a=1)|tojson }} {% set ns = namespace(n=2) %}{{ ns.n }}", '{"a": 1} 2'),
    ("filter-block", "{% filter upper %}shout {{ 1 + 1 }}{% endfilter %}", "SHOUT 2"),
    ("set-block", "{% set t %}{{ 1 }}!{% endset %}{{ t * 2 }}", "1!1!"),
    (
        "build-string",
        "{% set ns = namespace(out='') %}{% for i in range(2000) %}"
        "{% set ns.out = ns.out ~ 'row ' ~ i ~ '\\n' %}{% endfor %}{{ ns.out|length }}",
        str(sum(len(f"row {i}\n") for i in range(2000))),
    ),
    (
        "build-list",
        "{% set ns = namespace(l=[]) %}{% for i in range(3000) %}{% set ns.l = ns.l + [i] %}"
        "{% endfor %}{{ ns.l|sum }}",
        str(sum(range(3000))),
    ),
]

# big but within the limits: exact lengths
BIG = [
    ("output-at-limit", "{{ 'x' * 1000000 }}", 1_000_000),
    ("percent-big-arg", "{% set s = 'y' * 600000 %}{{ '%s: %s' % (s, 'ok') }}", 600_004),
    ("format-big-arg", "{{ '{}!'.format('z' * 700000) }}", 700_001),
    ("join-big", "{{ (['ab'] * 300000)|join(',') }}", 899_999),
    ("macro-big", "{% macro m() %}{{ 'q' * 600000 }}{% endmacro %}{{ m() }}", 600_000),
]


def _scenarios() -> str:
    out = "version: 1\nscenarios:\n  - name: ok\n    match: {last_user: ping}\n"
    out += "    respond: {content: pong}\n"
    cases = [(a.id, a.template) for a in ATTACKS] + [(f"ok-{i}", t) for i, t, _ in LEGIT + BIG]
    for name, template in cases:
        out += f"  - name: {name}\n    match: {{last_user: {name}}}\n"
        out += f"    respond:\n      content: {json.dumps(template)}\n"
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@dataclass
class Server:
    proc: subprocess.Popen[str]
    base_url: str

    def chat(self, text: str, timeout: float = 60) -> tuple[int, str]:
        body = json.dumps(
            {
                "model": "foxora-1",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": text},
                ],
            }
        ).encode()
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=body,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc and RLIMIT_AS")
    path = write_scenarios(tmp_path_factory.mktemp("bounds"), _scenarios())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOXMOCK_")}
    env["MALLOC_ARENA_MAX"] = "2"
    command = [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--time-scale", "0"]
    command += ["--scenarios", str(path), "--log-level", "error"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_limit_memory,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert proc.poll() is None, f"foxmock serve exited: {line}"
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                break
        yield Server(proc, found.group(1))
    finally:
        proc.kill()
        proc.wait(10)


def _content(text: str) -> str:
    body = json.loads(text)
    content: str = body["choices"][0]["message"]["content"]
    return content


def test_every_attack_class_is_covered() -> None:
    assert len({a.id for a in ATTACKS}) == len(ATTACKS) >= 60
    assert len({name for name, _, _ in LEGIT + BIG}) == len(LEGIT) + len(BIG)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_refused_in_bounded_time_and_memory(
    server: Server, openapi: Any, attack: Attack
) -> None:
    measurable = reset_peak(server.proc.pid)
    before = status_mb(server.proc.pid, "VmRSS")
    started = time.monotonic()
    status, text = server.chat(attack.id)
    took = time.monotonic() - started
    peak = status_mb(server.proc.pid, "VmHWM")
    assert status == 500, text[:300]
    body = json.loads(text)
    openapi("ErrorResponse", body)
    assert body["error"]["code"] == "scenario_render_error"
    message = body["error"]["message"]
    assert message.startswith(f"scenario {attack.id!r} (")
    assert any(part in message for part in attack.refused_by.split("|")), message
    assert "MemoryError" not in message
    assert took < WALL_BOUND, f"{took:.2f} s"
    grew = (peak - before) if measurable and peak is not None and before is not None else None
    if grew is not None:
        assert grew < GROWTH_MB, f"peak RSS grew by {grew:.0f} MiB"
    print(f"\n{attack.id}: {took:.2f} s, peak RSS +{grew or 0:.1f} MiB: {message[-90:]}")
    assert server.chat("ping")[0] == 200


@pytest.mark.parametrize(("name", "template", "expected"), LEGIT, ids=[c[0] for c in LEGIT])
def test_legitimate_templates_render_as_jinja_does(
    server: Server, name: str, template: str, expected: str
) -> None:
    status, text = server.chat(f"ok-{name}")
    assert status == 200, text[:500]
    assert _content(text) == expected


@pytest.mark.parametrize(("name", "template", "length"), BIG, ids=[c[0] for c in BIG])
def test_big_values_within_the_limits_render(
    server: Server, name: str, template: str, length: int
) -> None:
    status, text = server.chat(f"ok-{name}")
    assert status == 200, text[:500]
    assert len(_content(text)) == length
