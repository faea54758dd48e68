"""Malformed scenario files: every one is refused with a problem naming its file, line and key.

``foxmock.load_scenarios`` raises `foxmock.ScenarioError` (each `Problem` has ``file``, ``line``,
``key`` and ``message``); ``foxmock validate`` prints the same as ``FILE:LINE: [key] message`` and
exits 1; ``foxmock serve --watch`` logs it and keeps serving the last good set. Besides the shapes
`tests/test_scenario_files.py` covers, this battery tries broken YAML (bytes, encodings, control
characters, documents, indentation), wrong types for every scenario key, unknown keys, hostile
regular expressions, alias bombs, very deep nesting and very large files, and measures that each is
refused in bounded time.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import foxmock
from foxmock.regexes import compile_safe
from tests.recording_support import FoxmockProcess, wait_for
from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[2]
LOAD_BOUND = 5.0  # seconds any small broken file may take to be refused (generous: CI is noisy)
CLI_TIMEOUT = 60.0

Expected = tuple[int | None, str, str]  # (line, key path or "", fragment of the message)


@dataclass(frozen=True)
class Case:
    """A broken scenario file and exactly the problems it must produce."""

    id: str
    text: str | bytes
    expected: list[Expected]

    @property
    def data(self) -> bytes:
        return self.text if isinstance(self.text, bytes) else self.text.encode("utf-8")


def scenario(*lines: str) -> str:
    """``version: 1`` and one scenario named ``a``, its keys given line by line (from line 4)."""
    return "version: 1\nscenarios:\n  - name: a\n" + "".join(f"    {line}\n" for line in lines)


OK = "respond: {content: x}"
ALLOWED_SCENARIO = "allowed here: name, description, priority, match, respond, fault, stream"

CASES = [
    # -- YAML that does not parse, or is not one document ----------------------------------------
    Case(
        "unclosed-double-quote",
        'version: 1\nscenarios:\n  - name: a\n    respond: {content: "oops}\n',
        [(4, "", "invalid YAML: while scanning a quoted scalar")],
    ),
    Case(
        "unclosed-single-quote-block",
        "version: 1\nscenarios:\n  - name: a\n    respond:\n      content: 'oops\n"
        "  - name: b\n    respond: {content: y}\n",
        [(5, "", "invalid YAML: while scanning a quoted scalar")],
    ),
    Case(
        "unclosed-bracket",
        "version: 1\nscenarios: [\n  {name: a, respond: {content: x}}\n",
        [(4, "", "invalid YAML: while parsing a flow sequence expected ',' or ']'")],
    ),
    Case(
        "unclosed-brace",
        "version: 1\nscenarios:\n  - {name: a, respond: {content: x}\n",
        [(4, "", "invalid YAML: while parsing a flow mapping expected ',' or '}'")],
    ),
    Case(
        "sequence-dedented-under-mapping",
        scenario(OK) + " - name: b\n   respond: {content: y}\n",
        [(5, "", "invalid YAML: while parsing a block mapping")],
    ),
    Case(
        "tabs-for-indentation",
        "version: 1\nscenarios:\n  - name: a\n    respond:\n\t\tcontent: x\n",
        [(5, "", "found character '\\t' that cannot start any token")],
    ),
    Case(
        "duplicate-key-nested",
        scenario("respond:", "  content: x", "  content: y"),
        [(6, "", "invalid YAML: duplicate key 'content'")],
    ),
    Case(
        "duplicate-key-in-flow-mapping",
        "version: 1\nscenarios:\n  - {name: a, respond: {content: x}, name: b}\n",
        [(3, "", "invalid YAML: duplicate key 'name'")],
    ),
    Case(
        "duplicate-top-level-key",
        "version: 1\nscenarios: []\nversion: 1\n",
        [(3, "", "invalid YAML: duplicate key 'version'")],
    ),
    Case(
        "two-documents",
        "version: 1\nscenarios: []\n---\nversion: 1\nscenarios: []\n",
        [(3, "", "invalid YAML: expected a single document in the stream but found another")],
    ),
    Case(
        "trailing-document-marker",
        "version: 1\nscenarios: []\n---\n",
        [(3, "", "invalid YAML: expected a single document")],
    ),
    Case(
        "garbage-after-document-end",
        "version: 1\nscenarios: []\n...\ngarbage: [\n",
        [(4, "", "invalid YAML: expected '<document start>'")],
    ),
    Case(
        "unknown-tag",
        "version: 1\nscenarios:\n  - name: !foo bar\n    respond: {content: x}\n",
        [(3, "", "invalid YAML: could not determine a constructor for the tag '!foo'")],
    ),
    Case(
        "python-object-tag-is-not-executed",
        "version: 1\nscenarios:\n  - name: !!python/object/apply:os.system ['echo PWNED']\n"
        "    respond: {content: x}\n",
        [(3, "scenarios[0].name", "is not of type 'string'")],
    ),
    Case(
        "complex-mapping-key",
        scenario(OK, "? [a, b]", ": 1"),
        [(5, "", "invalid YAML: mapping keys must be plain scalars")],
    ),
    Case(
        "self-referencing-alias-undefined",
        "version: 1\nscenarios: *s\n",
        [(2, "", "invalid YAML: found undefined alias 's'")],
    ),
    Case(
        "self-referencing-mapping",
        "version: 1\nloop: &a {b: *a}\nscenarios: []\n",
        [(2, "", "invalid YAML: nesting deeper than 64 levels")],
    ),
    Case(
        "nesting-100-levels",
        "version: 1\nx: " + "[" * 100 + "]" * 100 + "\nscenarios: []\n",
        [(2, "", "invalid YAML: nesting deeper than 64 levels")],
    ),
    Case(
        "nesting-400-levels-of-mappings",
        "version: 1\nx: " + "{a: " * 400 + "1" + "}" * 400 + "\nscenarios: []\n",
        [(2, "", "invalid YAML: nesting deeper than 64 levels")],
    ),
    # -- not a mapping at the top, or nothing at all -----------------------------------------------
    Case("empty-file", "", [(1, "", "None is not of type 'object'")]),
    Case("only-comments", "# nothing\n# here\n", [(1, "", "None is not of type 'object'")]),
    Case("only-document-marker", "---\n", [(2, "", "None is not of type 'object'")]),
    Case("top-level-scalar", "hello\n", [(1, "", "'hello' is not of type 'object'")]),
    Case("top-level-list", "- a\n- b\n", [(1, "", "['a', 'b'] is not of type 'object'")]),
    Case("version-only", "version: 1\n", [(1, "", "'scenarios' is a required property")]),
    # -- bytes and encodings -----------------------------------------------------------------------
    Case(
        "binary-garbage",
        bytes(range(256)) * 4,
        [(2, "", "not UTF-8 text: byte 0x80 cannot be decoded")],  # after the 0x0a at 10
    ),
    Case(
        "utf-16",
        "version: 1\nscenarios: []\n".encode("utf-16"),
        [(1, "", "not UTF-8 text: byte 0xff cannot be decoded")],
    ),
    Case(
        "bom-then-unknown-key",
        b"\xef\xbb\xbf" + scenario(OK, "colour: red").encode(),
        [(5, "scenarios[0].colour", f"unknown key 'colour'; {ALLOWED_SCENARIO}")],
    ),
    Case(
        "crlf-line-endings",
        scenario(OK, "colour: red").replace("\n", "\r\n"),
        [(5, "scenarios[0].colour", "unknown key 'colour'")],
    ),
    Case(
        "cr-only-line-endings",
        scenario(OK, "colour: red").replace("\n", "\r"),
        [(5, "scenarios[0].colour", "unknown key 'colour'")],
    ),
    # -- wrong types, key by key -------------------------------------------------------------------
    Case(
        "name-wrong-types",
        "version: 1\nscenarios:\n  - {name: '', respond: {}}\n  - {name: null, respond: {}}\n"
        "  - {name: 2024-01-01, respond: {}}\n  - {name: [a], respond: {}}\n",
        [
            (3, "scenarios[0].name", "'' should be non-empty"),
            (4, "scenarios[1].name", "None is not of type 'string'"),
            (5, "scenarios[2].name", "datetime.date(2024, 1, 1) is not of type 'string'"),
            (6, "scenarios[3].name", "['a'] is not of type 'string'"),
        ],
    ),
    Case(
        "version-wrong-types",
        "version: '1'\nscenarios: []\n",
        [(1, "version", "must be 1, got '1'")],
    ),
    Case(
        "models-and-description-wrong-types",
        "version: 1\nmodels: [1, foxora-1]\nscenarios:\n  - name: a\n    description: 5\n"
        "    respond: {content: x}\n",
        [
            (2, "models[0]", "1 is not of type 'string'"),
            (5, "scenarios[0].description", "5 is not of type 'string'"),
        ],
    ),
    Case(
        "priority-wrong-types",
        "version: 1\nscenarios:\n  - {name: a, priority: 1.5, respond: {}}\n"
        "  - {name: b, priority: true, respond: {}}\n  - {name: c, priority: .inf, respond: {}}\n"
        "  - {name: d, priority: [1], respond: {}}\n",
        [
            (3, "scenarios[0].priority", "1.5 is not of type 'integer'"),
            (4, "scenarios[1].priority", "True is not of type 'integer'"),
            (5, "scenarios[2].priority", "inf is not of type 'integer'"),
            (6, "scenarios[3].priority", "[1] is not of type 'integer'"),
        ],
    ),
    Case(
        "scenario-items-not-mappings",
        "version: 1\nscenarios:\n  - just-a-string\n  -\n  - [1]\n",
        [
            (3, "scenarios[0]", "'just-a-string' is not of type 'object'"),
            (4, "scenarios[1]", "None is not of type 'object'"),
            (5, "scenarios[2]", "[1] is not of type 'object'"),
        ],
    ),
    Case(
        "match-block-wrong-types",
        scenario(
            "match:",
            "  last_user: 5",  # 5
            "  stream: 'yes'",
            "  turn: first",
            "  tools_offered: 3",
            "  tool_choice: maybe",
            "  has_tool_result: 3",  # 10
            "  headers: [x-a]",
            "  body: {temperature: {gt: hot}}",
            "  all: {model: x}",
            "  not: [x]",
            "  response_format: xml",  # 15
            OK,
        ),
        [
            (5, "scenarios[0].match.last_user", "5 is not of type 'string'"),
            (6, "scenarios[0].match.stream", "'yes' is not of type 'boolean'"),
            (7, "scenarios[0].match.turn", "'first' is not of type 'integer'"),
            (8, "scenarios[0].match.tools_offered", "3 is not of type"),
            (9, "scenarios[0].match.tool_choice", "'maybe' is not one of"),
            (10, "scenarios[0].match.has_tool_result", "3 is not of type"),
            (11, "scenarios[0].match.headers", "['x-a'] is not of type 'object'"),
            (12, "scenarios[0].match.body.temperature.gt", "'hot' is not of type 'number'"),
            (13, "scenarios[0].match.all", "{'model': 'x'} is not of type 'array'"),
            (14, "scenarios[0].match.not", "['x'] is not of type 'object'"),
            (15, "scenarios[0].match.response_format", "'xml' is not one of"),
        ],
    ),
    Case(
        "text-matcher-wrong-types",
        scenario(
            "match:",
            "  last_user: {}",  # 5
            "  system: {contains: x, ignore_case: 'yes'}",
            "  model: {regex: 5}",
            "  any_message: {equals: {a: 1}}",
            OK,
        ),
        [
            (5, "scenarios[0].match.last_user", "{} should be non-empty"),
            (6, "scenarios[0].match.system.ignore_case", "'yes' is not of type 'boolean'"),
            (7, "scenarios[0].match.model.regex", "5 is not of type 'string'"),
            (8, "scenarios[0].match.any_message.equals", "is not of type"),
        ],
    ),
    Case(
        "match-and-respond-not-mappings",
        "version: 1\nscenarios:\n  - {name: a, match: [1], respond: {}}\n"
        "  - {name: b, match: hello, respond: hello}\n",
        [
            (3, "scenarios[0].match", "[1] is not of type 'object'"),
            (4, "scenarios[1].match", "'hello' is not of type 'object'"),
            (4, "scenarios[1].respond", "'hello' is not of type 'object'"),
        ],
    ),
    Case(
        "respond-fields-wrong-types",
        scenario(
            "respond:",
            "  content: 42",  # 5
            "  finish_reason: 5",
            "  model: 4",
            "  usage: {prompt_tokens: many}",
            "  headers: [a]",
        ),
        [
            (5, "scenarios[0].respond.content", "42 is not of type"),
            (6, "scenarios[0].respond.finish_reason", "5 is not one of"),
            (7, "scenarios[0].respond.model", "4 is not of type 'string'"),
            (8, "scenarios[0].respond.usage.prompt_tokens", "'many' is not of type 'integer'"),
            (9, "scenarios[0].respond.headers", "['a'] is not of type 'object'"),
        ],
    ),
    Case(
        "tool-calls-wrong-types",
        "version: 1\nscenarios:\n  - {name: a, respond: {tool_calls: get_weather}}\n"
        "  - {name: b, respond: {tool_calls: [{arguments: {}}]}}\n"
        "  - {name: c, respond: {tool_calls: [{name: f, arguments: 5}]}}\n",
        [
            (3, "scenarios[0].respond.tool_calls", "'get_weather' is not of type 'array'"),
            (4, "scenarios[1].respond.tool_calls[0]", "'name' is a required property"),
            (5, "scenarios[2].respond.tool_calls[0].arguments", "5 is not of type 'object'"),
        ],
    ),
    Case(
        "stream-wrong-types",
        "version: 1\nscenarios:\n  - {name: a, respond: {}, stream: words}\n"
        "  - {name: b, respond: {}, stream: {size: 0}}\n"
        "  - {name: c, respond: {}, stream: {by: lines}}\n"
        "  - {name: d, respond: {}, stream: {chunks: [1]}}\n",
        [
            (3, "scenarios[0].stream", "'words' is not of type 'object'"),
            (4, "scenarios[1].stream.size", "0 is less than the minimum of 1"),
            (5, "scenarios[2].stream.by", "'lines' is not one of ['tokens', 'words'"),
            (6, "scenarios[3].stream.chunks[0]", "1 is not of type 'string'"),
        ],
    ),
    Case(
        "latency-wrong-types",
        "version: 1\nscenarios:\n  - {name: a, respond: {}, latency: fast}\n"
        "  - {name: b, respond: {}, latency: {ttft: 5 parsecs}}\n"
        "  - {name: c, respond: {}, latency: {ttft: -5ms}}\n"
        "  - {name: d, respond: {}, latency: {tokens_per_second: 0}}\n"
        "  - {name: e, respond: {}, latency: {jitter: lots}}\n"
        "  - {name: f, respond: {}, latency: {ttft: 1e308s}}\n",
        [
            (3, "scenarios[0].latency", "'fast' is not of type 'object'"),
            (4, "scenarios[1].latency.ttft", "'5 parsecs' does not match"),
            (5, "scenarios[2].latency.ttft", "'-5ms' does not match"),
            (6, "scenarios[3].latency.tokens_per_second", "less than or equal to the minimum"),
            (7, "scenarios[4].latency.jitter", "'lots' does not match"),
            (8, "scenarios[5].latency.ttft", "'1e308s' does not match"),
        ],
    ),
    Case(
        "fault-wrong-types",
        "version: 1\nscenarios:\n  - {name: a, fault: {status: abc}}\n"
        "  - {name: b, fault: {status: 200}}\n"
        "  - {name: c, fault: {kind: explode, status: 500}}\n"
        "  - {name: d, respond: {}, fault: {status: 500, probability: 2}}\n"
        "  - {name: e, respond: {}, fault: {kind: disconnect, after_chunks: -1}}\n"
        "  - {name: f, fault: {status: 429, retry_after: soon}}\n"
        "  - {name: g, respond: {}, fault: {kind: hang, duration: forever}}\n"
        "  - {name: h, fault: {status: 500, message: 5, headers: {x: 1}}}\n",
        [
            (3, "scenarios[0].fault.status", "'abc' is not of type 'integer'"),
            (4, "scenarios[1].fault.status", "200 is less than the minimum of 400"),
            (5, "scenarios[2].fault.kind", "'explode' is not one of ['http', 'stream_error'"),
            (6, "scenarios[3].fault.probability", "2 is greater than the maximum of 1"),
            (7, "scenarios[4].fault.after_chunks", "-1 is less than the minimum of 0"),
            (8, "scenarios[5].fault.retry_after", "'soon' does not match"),
            (9, "scenarios[6].fault.duration", "'forever' does not match"),
            (10, "scenarios[7].fault.message", "5 is not of type 'string'"),
            (10, "scenarios[7].fault.headers.x", "1 is not of type 'string'"),
        ],
    ),
    Case(
        "defaults-wrong-types",
        "version: 1\ndefaults: {latency: {ttft: nope}, colour: 1}\nscenarios: []\n",
        [
            (2, "defaults.colour", "unknown key 'colour'; allowed here: stream, latency"),
            (2, "defaults.latency.ttft", "'nope' does not match"),
        ],
    ),
    # -- unknown keys, with a suggestion when one is close ----------------------------------------
    Case(
        "unknown-keys-did-you-mean",
        scenario(
            "priorty: 1",  # 4
            "respond: {contnet: x}",
            "latency: {ttfb: 1s}",
            "stream: {size: 1, bye: words}",
            "fault: {status: 500, stauts: 1, probability: 0.5}",
        ),
        [
            (4, "scenarios[0].priorty", "unknown key 'priorty' (did you mean 'priority'?)"),
            (5, "scenarios[0].respond.contnet", "unknown key 'contnet' (did you mean 'content'?)"),
            (6, "scenarios[0].latency.ttfb", "unknown key 'ttfb' (did you mean 'ttft'?)"),
            (7, "scenarios[0].stream.bye", "unknown key 'bye' (did you mean 'by'?)"),
            (8, "scenarios[0].fault.stauts", "unknown key 'stauts' (did you mean 'status'?)"),
        ],
    ),
    Case(
        "unknown-non-string-keys",
        scenario(OK, "1: 2", "1.5: x", "~: 3"),
        [
            (5, "scenarios[0].1", "unknown key 1; allowed here: name,"),
            (6, "scenarios[0].1.5", "unknown key 1.5; allowed here: name,"),
            (7, "scenarios[0].None", "unknown key None; allowed here: name,"),
        ],
    ),
    # -- regular expressions that do not compile ---------------------------------------------------
    Case(
        "bad-regexes",
        scenario(
            "match:",
            "  system: {regex: '*abc'}",  # 5
            "  last_user: {regex: '(?<=a+)b'}",
            "  last_message: {regex: 'a**'}",
            "  model: {regex: '(a)\\1'}",
            '  any_message: {regex: "a\\\\"}',
            OK,
        ),
        [
            (5, "scenarios[0].match.system.regex", "nothing to repeat at position 0"),
            (6, "scenarios[0].match.last_user.regex", "has no lookbehind"),
            (7, "scenarios[0].match.last_message.regex", "multiple repeat at position 2"),
            (8, "scenarios[0].match.model.regex", "has no backreferences"),
            (9, "scenarios[0].match.any_message.regex", "bad escape (end of pattern)"),
        ],
    ),
    # -- templates that do not compile, wherever templates are ------------------------------------
    Case(
        "template-errors-everywhere",
        "version: 1\nscenarios:\n"
        "  - name: a\n"
        "    respond:\n"
        "      model: '{{ 1 +}}'\n"  # 5
        "      headers: {x-a: '{{ }}'}\n"  # 6
        "      tool_calls:\n"
        "        - name: '{{ x }'\n"  # 8
        "          id: '{% if %}'\n"  # 9
        "  - name: b\n"
        "    respond: {}\n"
        "    stream:\n"
        "      chunks:\n"
        "        - ok\n"
        "        - '{{ broken'\n"  # 15
        "  - name: c\n"
        "    respond:\n"
        "      content: |\n"  # 18
        "        one\n"
        "        two\n"
        "        three {% for x in y %}\n",  # 21: the unclosed block
        [
            (5, "scenarios[0].respond.model", "template syntax error: unexpected"),
            (
                6,
                "scenarios[0].respond.headers.x-a",
                "template syntax error: Expected an expression",
            ),
            (8, "scenarios[0].respond.tool_calls[0].name", "template syntax error: unexpected '}'"),
            (9, "scenarios[0].respond.tool_calls[0].id", "template syntax error: Expected an"),
            (15, "scenarios[1].stream.chunks[1]", "template syntax error: unexpected end of"),
            (21, "scenarios[2].respond.content", "template syntax error: Unexpected end of"),
        ],
    ),
    Case(
        "template-unknown-filter-unclosed-raw-and-comment",
        "version: 1\nscenarios:\n"
        "  - {name: a, respond: {content: '{{ x | nosuchfilter }}'}}\n"
        "  - {name: b, respond: {content: '{% raw %}x'}}\n"
        "  - {name: c, respond: {content: '{# x'}}\n"
        "  - {name: d, respond: {content: 'x{% endfor %}'}}\n",
        [
            (3, "scenarios[0].respond.content", "No filter named 'nosuchfilter'"),
            (4, "scenarios[1].respond.content", "Missing end of raw directive"),
            (5, "scenarios[2].respond.content", "Missing end of comment tag"),
            (6, "scenarios[3].respond.content", "Encountered unknown tag 'endfor'"),
        ],
    ),
    Case(
        "template-private-name-in-block-scalar",
        scenario("respond:", "  content: |", "    one", "    two {{ _secret }}"),
        [(7, "scenarios[0].respond.content", "template refers to private name '_secret'")],
    ),
]


def case_ids() -> list[str]:
    return [case.id for case in CASES]


def write_case(directory: Path, case: Case) -> Path:
    path = directory / f"{case.id}.yaml"
    path.write_bytes(case.data)
    return path


def load_problems(path: Path) -> tuple[list[foxmock.Problem], float]:
    """The problems `load_scenarios` reports for ``path``, and how long it took."""
    started = time.monotonic()
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([path])
    return caught.value.problems, time.monotonic() - started


def test_battery_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len(set(case_ids())) == len(CASES)
    assert sum(len(case.expected) for case in CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_broken_file_names_file_line_and_key(tmp_path: Path, case: Case) -> None:
    path = write_case(tmp_path, case)
    problems, took = load_problems(path)
    assert took < LOAD_BOUND
    assert {p.file for p in problems} == {str(path)}
    got = sorted((p.line or 0, p.key) for p in problems)
    assert got == sorted((line or 0, key) for line, key, _ in case.expected), problems
    for line, key, fragment in case.expected:
        assert any(p.line == line and p.key == key and fragment in p.message for p in problems), (
            f"no problem at {line} [{key}] containing {fragment!r} in {problems}"
        )
    for problem in problems:
        assert problem.message and "Traceback" not in problem.message
        if problem.line is not None:  # at most the line after the last one (end of stream)
            last = max(case.data.count(b"\n"), case.data.count(b"\r"), 1)
            assert 1 <= problem.line <= last + 1


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], str, int]:
    """Every case file, checked by one real ``foxmock validate`` run (stderr, exit code)."""
    directory = tmp_path_factory.mktemp("broken")
    paths = {case.id: write_case(directory, case) for case in CASES}
    result = run_cli("validate", *paths.values(), timeout=CLI_TIMEOUT)
    assert result.stdout == ""
    return paths, result.stderr, result.returncode


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_validate_prints_file_line_key_and_message(
    validated: tuple[dict[str, Path], str, int], case: Case
) -> None:
    paths, stderr, returncode = validated
    assert returncode == 1
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == f"foxmock: {len(lines) - 1} problems in scenario files:"
    path = paths[case.id]
    # every file names its scenario "a": across files those are also duplicate names
    reported = [
        line
        for line in lines
        if line.startswith(f"  {path}:") and "duplicate scenario name" not in line
    ]
    assert len(reported) == len(case.expected), reported
    for line, key, fragment in case.expected:
        where = f"  {path}:{line}:" if line is not None else f"  {path}:"
        prefix = f"{where} [{key}] " if key else f"{where} "
        assert any(r.startswith(prefix) and fragment in r for r in reported), (prefix, reported)


# -- crashes instead of problems: each escapes `load_scenarios` as a raw exception ---------------

# Each of these once escaped `load_scenarios` as a raw exception (ReaderError, RecursionError,
# OverflowError), so `foxmock validate` printed a traceback and a --watch reload killed the watcher.
CRASHES = [
    pytest.param(scenario(OK, "description: a\x00b"), (5, 5), id="nul-byte"),
    pytest.param(scenario(OK, "description: a\x1b[31mb"), (5, 5), id="escape-control-character"),
    pytest.param(
        "version: 1\nx: " + "[" * 10_000 + "]" * 10_000 + "\nscenarios: []\n",
        (2, 2),
        id="nesting-10k-flow-sequences",
    ),
    pytest.param(  # reported somewhere inside the nesting (where PyYAML's recursion ran out)
        "version: 1\nx:\n"
        + "".join("  " * i + "  a:\n" for i in range(10_000))
        + "scenarios: []\n",
        (3, 10_002),
        id="nesting-10k-block-mappings",
    ),
    pytest.param(
        scenario("match: {last_user: {regex: 'a{99999999999}'}}", OK),
        (4, 4),
        id="regex-repeat-count-overflow",
    ),
]


@pytest.mark.parametrize(("text", "lines"), CRASHES)
def test_unloadable_text_is_a_problem_not_a_crash(
    tmp_path: Path, text: str, lines: tuple[int, int]
) -> None:
    path = tmp_path / "crash.yaml"
    path.write_text(text, "utf-8")
    started = time.monotonic()
    try:
        foxmock.load_scenarios([path])
    except foxmock.ScenarioError as exc:
        (problem,) = exc.problems
        assert problem.file == str(path)
        assert problem.line is not None and lines[0] <= problem.line <= lines[1], problem
    else:
        raise AssertionError("loaded")
    assert time.monotonic() - started < LOAD_BOUND


def test_validate_reports_a_nul_byte_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_text(scenario(OK, "description: a\x00b"), "utf-8")
    result = run_cli("validate", path, timeout=CLI_TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert result.stderr.splitlines()[1].startswith(f"  {path}:5: ")


def test_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(scenario(OK, "description: caf\xe9").encode("latin-1"))
    (problem,), _ = load_problems(path)
    assert "UTF-8" in problem.message
    assert problem.line == 5


# -- alias bombs and large files: refused (or loaded) in bounded time and memory ----------------


def laughs(levels: int, width: int, shape: str) -> str:
    """A billion-laughs document: ``levels`` anchors, each ``width`` aliases of the previous."""
    out = ["version: 1", "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        prev = f"a{level - 1}"
        if shape == "seq":
            body = "[" + ", ".join([f"*{prev}"] * width) + "]"
        elif shape == "map":
            body = "{" + ", ".join(f"k{i}: *{prev}" for i in range(width)) + "}"
        else:  # merge keys plus aliases
            body = (
                f"{{<<: {{m: *{prev}}}, " + ", ".join(f"k{i}: *{prev}" for i in range(width)) + "}"
            )
        out.append(f"a{level}: &a{level} {body}")
    out.append("scenarios:")
    out.append("  - name: bomb")
    out.append("    respond:")
    out.append(f"      tool_calls: [{{name: f, arguments: {{x: *a{levels}}}}}]")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("shape", ["seq", "map", "merge"])
def test_billion_laughs_nine_levels_fails_fast(tmp_path: Path, shape: str) -> None:
    text = laughs(9, 10, shape)  # 10**9 values if expanded
    path = tmp_path / "laughs.yaml"
    path.write_text(text, "utf-8")
    (problem,), took = load_problems(path)
    assert took < LOAD_BOUND
    assert problem.file == str(path)
    assert problem.line is not None and 1 <= problem.line <= text.count("\n")
    assert problem.message.startswith("invalid YAML: document expands to more than 200000 values")


def test_a_5_mb_string_loads_in_bounded_time(tmp_path: Path) -> None:
    # there is no size limit: measured on 2 cores, 5 MB loads in ~2 s, 50 MB in ~22 s (184 MB)
    path = tmp_path / "big.yaml"
    big = "x" * 5_000_000
    path.write_text(scenario("respond:", f'  content: "{big}"', "colour: red"), "utf-8")
    (problem,), took = load_problems(path)
    assert took < 30
    assert (problem.line, problem.key) == (6, "scenarios[0].colour")


@pytest.mark.skipif(
    not os.environ.get("FOXMOCK_HUGE_FILES"),
    reason="takes ~70 s and ~1.5 GB; run with FOXMOCK_HUGE_FILES=1",
)
def test_a_20_mb_file_of_scenarios_is_refused(tmp_path: Path) -> None:
    one = "  - name: s{i}\n    match: {{last_user: 'w{i}'}}\n    respond: {{content: x}}\n"
    path = tmp_path / "huge.yaml"
    with path.open("w") as out:
        out.write("version: 1\nscenarios:\n")
        for i in range(220_000):
            out.write(one.format(i=i))
    (problem,), took = load_problems(path)
    print(f"20 MB file refused after {took:.1f} s: {problem}")
    assert "more than 200000 values" in problem.message


# -- catastrophic backtracking: refused at load, never run against a request --------------------

EVIL_REGEX = scenario("match: {last_user: {regex: '^(a+)+$'}}", "respond: {content: evil}")


def test_catastrophic_regex_shape_loads_and_runs_in_linear_time(tmp_path: Path) -> None:
    """Python's backtracking engine takes exponential time for ``^(a+)+$`` on a near miss;
    RE2 (foxmock's engine) takes time in proportion to the text, so the shape is allowed."""
    path = tmp_path / "evil.yaml"
    path.write_text(EVIL_REGEX, "utf-8")
    assert len(foxmock.load_scenarios([path])) == 1
    started = time.monotonic()
    assert compile_safe("^(a+)+$").search("a" * 100_000 + "!") is None
    assert time.monotonic() - started < 1.0  # measured: under 1 ms; Python's re: never ends


def post_chat(base_url: str, text: str, timeout: float) -> tuple[int, dict[str, Any]]:
    body = {"model": "foxora-1", "messages": [{"role": "user", "content": text}]}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def processes() -> Iterator[list[FoxmockProcess]]:
    started: list[FoxmockProcess] = []
    yield started
    for process in started:
        process.proc.kill()  # a process stuck in a regex or a reload cannot finish its requests
        process.stop()


def serve(
    processes: list[FoxmockProcess], tmp_path: Path, path: Path, *extra: str
) -> FoxmockProcess:
    process = FoxmockProcess(
        ["serve", "--port", "0", "--time-scale", "0", "--scenarios", str(path), *extra],
        cwd=tmp_path,
        log=tmp_path / f"foxmock-{len(processes)}.log",
    )
    processes.append(process)
    return process


# -- hot reload: broken edits are logged with file:line and the last good set keeps serving -------

GOOD = scenario("match: {last_user: hello}", "respond: {content: '%s'}")

BROKEN_EDITS = [
    ("billion-laughs", laughs(9, 10, "seq"), 2, "document expands to more than"),
    ("bad-regex", scenario("match: {last_user: {regex: '(unclosed'}}", OK), 4, "regular expr"),
    ("template-error", scenario("respond: {content: '{{ oops }'}"), 4, "template syntax error"),
    ("invalid-yaml", "version: 1\nscenarios: [\n  {name: a,\n", 4, "invalid YAML"),
    ("empty", "", 1, "None is not of type 'object'"),
    ("unknown-key", scenario(OK, "colour: red"), 5, "unknown key 'colour'"),
]


def reload_errors(server: FoxmockProcess) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = server.get_json("/_foxmock/status")["reload_error"]
    return errors


def answer(server: FoxmockProcess) -> Any:
    status, body = post_chat(server.base_url, "hello", 10)
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


def logged_since(server: FoxmockProcess, start: int, fragment: str) -> Callable[[], bool]:
    return lambda: fragment in server.log()[start:]


def rewrite(path: Path, text: str) -> None:
    """Replace the file; nudge its mtime so even a same-size edit is a change."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, "utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_watch_keeps_the_last_good_set_through_broken_edits(
    processes: list[FoxmockProcess], tmp_path: Path
) -> None:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    path = directory / "file.yaml"
    path.write_text(GOOD % "good one", "utf-8")
    server = serve(processes, tmp_path, path, "--watch")
    assert answer(server) == "good one"

    for name, text, line, fragment in BROKEN_EDITS:
        logged = len(server.log())
        rewrite(path, text)
        assert wait_for(logged_since(server, logged, fragment), timeout=10), (
            f"{name}: not logged:\n{server.log()[logged:]}"
        )
        log = server.log()[logged:]
        assert "reload failed, still serving the last good scenarios" in log
        assert f"{path}:{line}: " in log, (name, log)
        assert [(e["file"], e["line"]) for e in reload_errors(server)] == [(str(path), line)]
        assert "Traceback" not in log
        assert answer(server) == "good one", name
        assert server.running

    rewrite(path, GOOD % "good two")
    assert wait_for(lambda: answer(server) == "good two", timeout=10)
    assert reload_errors(server) == []


def test_watch_survives_an_edit_that_crashes_the_loader(
    processes: list[FoxmockProcess], tmp_path: Path
) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(GOOD % "good one", "utf-8")
    server = serve(processes, tmp_path, path, "--watch")
    assert answer(server) == "good one"
    logged = len(server.log())
    rewrite(path, scenario(OK, "description: a\x00b"))
    wait_for(lambda: len(server.log()) > logged, timeout=1.5)  # polled every 0.5 s
    assert answer(server) == "good one"
    rewrite(path, GOOD % "good two")
    assert wait_for(lambda: answer(server) == "good two", timeout=5)


def test_watch_serves_while_a_large_edit_loads(
    processes: list[FoxmockProcess], tmp_path: Path
) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(GOOD % "good one", "utf-8")
    server = serve(processes, tmp_path, path, "--watch")
    assert answer(server) == "good one"
    one = "  - name: s{i}\n    match: {{last_user: 'w{i}'}}\n"
    one += "    respond: {{content: '{{{{ model }}}}'}}\n"
    big = "version: 1\nscenarios:\n" + "".join(one.format(i=i) for i in range(4000)) + "  - x\n"

    worst = 0.0
    stop = threading.Event()

    def probe() -> None:
        nonlocal worst
        while not stop.is_set():
            started = time.monotonic()
            urllib.request.urlopen(f"{server.url}/healthz", timeout=30).read()
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.02)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    logged = len(server.log())
    rewrite(path, big)
    wait_for(lambda: "reload failed" in server.log()[logged:], timeout=20)
    stop.set()
    thread.join(30)
    assert answer(server) == "good one"
    assert worst < 1.0, f"/healthz stalled for {worst:.1f} s during the reload"
