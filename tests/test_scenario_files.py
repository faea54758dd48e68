"""Scenario files: `foxmock validate`, `foxmock serve` on broken files, `foxmock schema`, and
`foxmock.load_scenarios` -- every problem reported as ``FILE:LINE: [key.path] message``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

import foxmock
from foxmock.scenarios import scenario_schema
from tests.support import ROOT, run_cli, write_scenarios

BUNDLED = ROOT / "scenarios"

Expected = tuple[int | None, str, str]  # (line, key path or "", message fragment)


def problem_prefix(file: Path | str, line: int | None, key: str) -> str:
    where = f"{file}:{line}" if line is not None else f"{file}"
    return f"  {where}: [{key}] " if key else f"  {where}: "


def assert_reported(output: str, file: Path | str, expected: list[Expected]) -> None:
    """Every expected problem is one line of ``output``, and nothing else is reported."""
    lines = output.splitlines()
    count = len(expected)
    assert lines[0] == f"foxmock: {count} problem{'s' if count != 1 else ''} in scenario files:"
    reported = lines[1:]
    assert len(reported) == count, output
    for line, key, fragment in expected:
        prefix = problem_prefix(file, line, key)
        matching = [r for r in reported if r.startswith(prefix) and fragment in r[len(prefix) :]]
        assert matching, f"no problem {prefix!r} ... {fragment!r} in:\n{output}"


def assert_problems(paths: list[Path], file: Path, expected: list[Expected]) -> None:
    """`foxmock validate` (exit 1, on stderr) and `load_scenarios` report exactly ``expected``."""
    result = run_cli("validate", *paths)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert_reported(result.stderr, file, expected)

    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios(paths)
    problems = caught.value.problems
    assert sorted((p.line or 0, p.key) for p in problems) == sorted(
        (line or 0, key) for line, key, _ in expected
    )
    assert {p.file for p in problems} == {str(file)}
    for problem, text in zip(problems, str(caught.value).splitlines(), strict=True):
        assert text == str(problem)


def test_bundled_scenarios_are_valid() -> None:
    loaded = foxmock.load_scenarios([BUNDLED])
    assert len(loaded) > 0
    files = sorted(BUNDLED.rglob("*.y*ml"))
    for target in (BUNDLED, *files):
        result = run_cli("validate", target)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"OK: {len(loaded)} scenarios in {len(files)} file(s)\n"
        assert result.stderr == ""


def test_several_valid_files_and_directories(tmp_path: Path) -> None:
    one = write_scenarios(tmp_path, "version: 1\nscenarios: [{name: a, respond: {}}]\n", "1.yaml")
    more = tmp_path / "more"
    more.mkdir()
    write_scenarios(
        more,
        "version: 1\nscenarios:\n  - {name: b, fault: {status: 500}}\n  - {name: c, respond: {}}\n",
        "x.yml",
    )
    result = run_cli("validate", one, more)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OK: 3 scenarios in 2 file(s)\n"


# -- one broken file per case: (YAML, [(line, key, fragment)]) -----------------------------------

BROKEN = [
    pytest.param(
        "version: 1\n"  # 1
        "scenarios: []\n"
        "defualts: {}\n",  # 3
        [(3, "defualts", "unknown key 'defualts' (did you mean 'defaults'?)")],
        id="unknown-top-level-key",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios:\n"
        "  - name: a\n"
        "    respond: {content: x}\n"
        "    colour: red\n",  # 5
        [(5, "scenarios[0].colour", "unknown key 'colour'; allowed here: name, ")],
        id="unknown-scenario-key",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios:\n"
        "  - name: a\n"  # 3
        "    respnd: {content: x}\n",  # 4
        [
            (4, "scenarios[0].respnd", "unknown key 'respnd' (did you mean 'respond'?)"),
            (3, "scenarios[0]", "needs 'respond', 'fault' or 'sequence'"),
        ],
        id="scenario-key-typo",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      last_user: hi\n"
        "      modle: foxora-1\n"  # 6
        "    respond: {content: x}\n",
        [(6, "scenarios[0].match.modle", "unknown key 'modle' (did you mean 'model'?)")],
        id="match-key-typo",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      not:\n"
        "        any:\n"
        "          - {last_usr: hi}\n"  # 7
        "    respond: {content: x}\n",
        [
            (
                7,
                "scenarios[0].match.not.any[0].last_usr",
                "unknown key 'last_usr' (did you mean 'last_user'?)",
            )
        ],
        id="nested-match-key-typo",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      last_user: {contians: weather}\n"  # 5
        "    respond: {content: x}\n",
        [
            (
                5,
                "scenarios[0].match.last_user.contians",
                "unknown key 'contians' (did you mean 'contains'?)",
            )
        ],
        id="text-operator-typo",
    ),
    pytest.param(
        "version: 1\n"
        "models: foxora-1\n"  # 2
        "scenarios:\n"
        "  - name: 5\n"  # 4
        "    priority: high\n"  # 5
        "    match:\n"
        '      stream: "yes"\n'  # 7
        "      response_format: xml\n"  # 8
        "    respond:\n"
        "      content: 42\n"  # 10
        "      finish_reason: done\n",  # 11
        [
            (2, "models", "'foxora-1' is not of type 'array'"),
            (4, "scenarios[0].name", "5 is not of type 'string'"),
            (5, "scenarios[0].priority", "'high' is not of type 'integer'"),
            (7, "scenarios[0].match.stream", "'yes' is not of type 'boolean'"),
            (8, "scenarios[0].match.response_format", "'xml' is not one of"),
            (10, "scenarios[0].respond.content", "42 is not of type"),
            (11, "scenarios[0].respond.finish_reason", "'done' is not one of"),
        ],
        id="wrong-types",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios: {}\n",  # 2
        [(2, "scenarios", "{} is not of type 'array'")],
        id="scenarios-not-a-list",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios:\n"
        "  - respond: {content: x}\n",  # 3
        [(3, "scenarios[0]", "'name' is a required property")],
        id="missing-name",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"  # 3
        "    match: {last_user: hi}\n",
        [(3, "scenarios[0]", "needs 'respond', 'fault' or 'sequence'")],
        id="missing-respond-and-fault",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      last_user:\n"
        "        ignore_case: true\n"
        '        regex: "(unclosed"\n'  # 7
        "    respond: {content: x}\n",
        [
            (
                7,
                "scenarios[0].match.last_user.regex",
                "invalid regular expression '(unclosed': missing ), unterminated subpattern",
            )
        ],
        id="bad-regex",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      any:\n"
        "        - {model: foxora-1}\n"
        "        - body:\n"
        "            metadata.user:\n"
        '              regex: "[a-"\n'  # 9
        "    respond: {content: x}\n",
        [
            (
                9,
                "scenarios[0].match.any[1].body.metadata.user.regex",
                "invalid regular expression '[a-'",
            )
        ],
        id="bad-regex-in-nested-body-path",
    ),
    pytest.param(
        'version: 1\nscenarios:\n  - name: a\n    respond:\n      content: "{{ oops }"\n',  # 5
        [(5, "scenarios[0].respond.content", "template syntax error: unexpected '}'")],
        id="template-syntax-error",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    respond:\n"
        "      content: |\n"  # 5
        "        line one\n"  # 6
        "        line two {{ oops }\n"  # 7
        "        line three\n",
        [(7, "scenarios[0].respond.content", "template syntax error: unexpected '}'")],
        id="template-syntax-error-in-block-scalar",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    respond:\n"
        "      tool_calls:\n"
        "        - name: f\n"
        '          arguments: {city: "{{ last_user | }}"}\n'  # 7
        "  - name: b\n"
        '    fault: {status: 500, message: "{% if %}x{% endif %}"}\n',  # 9
        [
            (7, "scenarios[0].respond.tool_calls[0].arguments.city", "template syntax error"),
            (9, "scenarios[1].fault.message", "template syntax error"),
        ],
        id="template-syntax-errors-in-arguments-and-fault",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    respond:\n"
        "      tool_calls:\n"
        "        - name: f\n"
        '          arguments: "{city: Paris"\n',  # 7
        [(7, "scenarios[0].respond.tool_calls[0].arguments", "arguments are not valid JSON")],
        id="arguments-string-not-json",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios:\n"
        "  - name: a\n"
        "    respond: {content: hi}\n"
        "    name: b\n",  # 5
        [(5, "", "invalid YAML: duplicate key 'name'")],
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    respond:\n"
        "      content: hi\n"
        "     bad: indent\n",  # 6
        [(6, "", "invalid YAML: ")],
        id="invalid-yaml-indentation",
    ),
    pytest.param(
        "version: 1\n"  # 1
        "scenarios:\n"
        "  - name: a\n"
        "\trespond: {content: x}\n",  # 4
        [(4, "", "invalid YAML: ")],
        id="invalid-yaml-tab",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        '  - name: "unclosed\n'  # 3
        "    respond: {content: x}\n",
        [(3, "", "invalid YAML: ")],
        id="invalid-yaml-unclosed-quote",
    ),
    pytest.param(
        "scenarios:\n"  # 1
        "  - name: a\n"
        "    respond: {content: x}\n",
        [(1, "", "'version' is a required property")],
        id="version-missing",
    ),
    pytest.param(
        "version: 2\n"  # 1
        "scenarios:\n"
        "  - name: a\n"
        "    respond: {content: x}\n",
        [(1, "version", "1")],
        id="version-2",
    ),
    # -- regressions: inputs that once escaped as Python exceptions (found by fuzzing) ----------
    pytest.param(
        "version: 1\nscenarios: []\n\x00",  # 3
        [(3, "", "invalid YAML: unacceptable character #x0000")],
        id="nul-character",
    ),
    pytest.param(
        "version: 1\nscenarios:\n  - name: a\x07b\n    respond: {}\n",  # 3
        [(3, "", "invalid YAML: unacceptable character #x0007")],
        id="control-character",
    ),
    pytest.param(
        "version: 1\nscenarios: []\nmodels: [!!float .]\n",  # 3
        [(3, "models[0]", "invalid YAML: invalid !!float value '.'")],
        id="malformed-tagged-float",
    ),
    pytest.param(
        "version: 1\nscenarios:\n  - name: a\n    respond: {}\n    description: !!timestamp\n",  # 5
        [(5, "scenarios[0].description", "invalid YAML: invalid !!timestamp value ''")],
        id="malformed-tagged-timestamp",
    ),
    pytest.param(
        "version: 1\nscenarios: []\nmodels:\n  - !!int ''\n",  # 4
        [(4, "models[0]", "invalid YAML: invalid !!int value ''")],
        id="malformed-tagged-int",
    ),
    pytest.param(
        "version: 1\nscenarios: " + "[" * 2000 + "]" * 2000 + "\n",  # 2
        [(2, "", "invalid YAML: nesting deeper than 64 levels")],
        id="yaml-nested-past-the-recursion-limit",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        '    match: {last_user: {regex: "a{4294967295}"}}\n'  # 4
        "    respond: {}\n",
        [
            (
                4,
                "scenarios[0].match.last_user.regex",
                "invalid regular expression 'a{4294967295}': the repetition number is too large",
            )
        ],
        id="regex-repetition-overflow",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        "      body:\n"
        "        model: {regex: '" + "(" * 3000 + ")" * 3000 + "'}\n"  # 6
        "    respond: {}\n",
        [(6, "scenarios[0].match.body.model.regex", "groups nested too deeply")],
        id="regex-nested-too-deep",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match: {turn: 1.5}\n"  # 4
        "    respond: {}\n",
        [(4, "scenarios[0].match.turn", "")],
        id="fractional-turn",
    ),
    pytest.param(
        "version: 1\n"
        "defaults:\n"
        "  latency: {ttft: .inf}\n"  # 3
        "scenarios:\n"
        "  - name: a\n"
        "    fault: {status: 429, retry_after: .inf}\n"  # 6
        "  - name: b\n"
        "    respond: {}\n"
        "    fault: {kind: hang, duration: " + "9" * 400 + "s, probability: .nan}\n"  # 9
        "    latency:\n"
        "      chunk_delay: {lognormal: {median: .nan, sigma: 1}}\n"  # 11
        "      tokens_per_second: .nan\n",  # 12
        [
            (3, "defaults.latency.ttft", "not a duration from 0 to 86400s (a day): inf"),
            (6, "scenarios[0].fault.retry_after", "not a duration from 0 to 86400s"),
            (9, "scenarios[1].fault.duration", "not a duration from 0 to 86400s"),
            (9, "scenarios[1].fault.probability", "not a fraction from 0 to 1"),
            (11, "scenarios[1].latency.chunk_delay.lognormal.median", "not a duration"),
            (12, "scenarios[1].latency.tokens_per_second", "not a rate"),
        ],
        id="non-finite-and-huge-durations",
    ),
    pytest.param(
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    respond: {}\n"
        "    latency:\n"
        "      ttft: {range: [0, -1]}\n"  # 6
        "      chunk_delay: {normal: {mean: 1s, stddev: -1}}\n",  # 7
        [
            (6, "scenarios[0].latency.ttft.range[1]", "-1 is less than the minimum of 0"),
            (7, "scenarios[0].latency.chunk_delay.normal.stddev", "-1 is less than the minimum"),
        ],
        id="negative-number-inside-a-delay-object",
    ),
]


def test_whole_number_floats_load_as_integers(tmp_path: Path) -> None:
    """JSON Schema counts 1.0 as an integer, so ``turn`` and ``usage`` take it as 1."""
    from foxmock.openai.request import ChatRequest
    from foxmock.server.handlers import no_match_error

    path = write_scenarios(
        tmp_path,
        "version: 1\n"
        "scenarios:\n"
        "  - name: second\n"
        "    match: {turn: 1.0}\n"
        "    respond: {usage: {completion_tokens: 5.0}}\n"
        "  - name: later\n"
        "    match: {turn: {min: 2.0, max: 3.0}}\n"
        "    respond: {}\n",
    )
    loaded = foxmock.load_scenarios([path])
    user = {"role": "user", "content": "hi"}
    said = {"role": "assistant", "content": "hello"}

    def found(turns: int) -> str | None:
        req = ChatRequest({"model": "m", "messages": [user, said] * turns + [user]})
        scenario = loaded.find(req)
        return scenario.name if scenario is not None else None

    assert [found(t) for t in range(5)] == [None, "second", "later", "later", None]
    usage = loaded.scenarios[0].respond.usage  # type: ignore[union-attr]
    assert usage == {"completion_tokens": 5} and isinstance(usage["completion_tokens"], int)
    first = ChatRequest({"model": "m", "messages": [user]})
    message = no_match_error(loaded, first).message
    assert "expected turn 1, got 0" in message and "turn in [2, 3]" in message


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_file_problems(tmp_path: Path, text: str, expected: list[Expected]) -> None:
    path = write_scenarios(tmp_path, text, "broken.yaml")
    assert_problems([path], path, expected)


MANY_PROBLEMS = """\
version: 1
models: foxora-1
scenarios:
  - name: typo
    match:
      modle: foxora-1
    respond: {content: x}
  - name: bad-regex
    match:
      any:
        - last_user: hi
        - model: {regex: "gpt-(4"}
    respond: {content: x}
  - name: bad-template
    respond:
      content: "Hello {{ name"
  - priority: 1
    respond: {content: x}
  - name: wrong-type
    priority: high
    respond: {content: x}
  - name: bad-arguments
    respond:
      tool_calls:
        - name: f
          arguments: "not json"
  - name: no-answer
    match: {last_user: x}
  - name: bad-header-regex
    match:
      headers:
        x-case: {regex: "*"}
    fault:
      status: 429
      message: "{% if %}"
"""

MANY_EXPECTED: list[Expected] = [
    (2, "models", "is not of type 'array'"),
    (6, "scenarios[0].match.modle", "unknown key 'modle' (did you mean 'model'?)"),
    (12, "scenarios[1].match.any[1].model.regex", "invalid regular expression 'gpt-(4'"),
    (16, "scenarios[2].respond.content", "template syntax error"),
    (17, "scenarios[3]", "'name' is a required property"),
    (20, "scenarios[4].priority", "'high' is not of type 'integer'"),
    (26, "scenarios[5].respond.tool_calls[0].arguments", "arguments are not valid JSON"),
    (27, "scenarios[6]", "needs 'respond', 'fault' or 'sequence'"),
    (32, "scenarios[7].match.headers.x-case.regex", "invalid regular expression '*'"),
    (35, "scenarios[7].fault.message", "template syntax error"),
]


def test_every_problem_in_a_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, MANY_PROBLEMS, "many.yaml")
    source = MANY_PROBLEMS.splitlines()
    counted = {
        2: "models:",
        6: "modle:",
        12: "regex:",
        16: "content:",
        17: "- priority:",
        20: "priority: high",
        26: "arguments:",
        27: "- name: no-answer",
        32: "regex:",
        35: "message:",
    }
    assert [line for line, _, _ in MANY_EXPECTED] == list(counted)
    for line, needle in counted.items():
        assert needle in source[line - 1], (line, needle)
    assert_problems([path], path, MANY_EXPECTED)


def test_several_bad_regexes_in_one_scenario_are_all_reported(tmp_path: Path) -> None:
    path = write_scenarios(
        tmp_path,
        "version: 1\n"
        "scenarios:\n"
        "  - name: a\n"
        "    match:\n"
        '      last_user: {regex: "("}\n'  # 5
        '      model: {regex: "["}\n'  # 6
        "    respond: {content: x}\n",
        "regexes.yaml",
    )
    assert_problems(
        [path],
        path,
        [
            (5, "scenarios[0].match.last_user.regex", "invalid regular expression '('"),
            (6, "scenarios[0].match.model.regex", "invalid regular expression '['"),
        ],
    )


def test_problems_in_several_files_are_all_reported(tmp_path: Path) -> None:
    good = write_scenarios(
        tmp_path, "version: 1\nscenarios:\n  - {name: ok, respond: {}}\n", "good.yaml"
    )
    first = write_scenarios(tmp_path, "version: 2\nscenarios: []\n", "first.yaml")
    second = write_scenarios(tmp_path, "version: 1\nscenarios:\n  - name: x\n", "second.yaml")
    result = run_cli("validate", good, first, second)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "foxmock: 2 problems in scenario files:"
    assert lines[1].startswith(f"  {first}:1: [version] ")
    assert lines[2].startswith(f"  {second}:3: [scenarios[0]] ")


DUPLICATE_A = """\
version: 1
scenarios:
  - name: same
    respond: {content: a}
"""

DUPLICATE_B = """\
version: 1
scenarios:
  - name: other
    respond: {content: b}
  - name: same
    respond: {content: b}
  - name: other
    respond: {content: c}
"""


def test_duplicate_scenario_names_within_and_across_files(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    a = write_scenarios(directory, DUPLICATE_A, "a.yaml")
    b = write_scenarios(directory, DUPLICATE_B, "b.yaml")
    result = run_cli("validate", directory)
    assert result.returncode == 1
    assert_reported(
        result.stderr.replace(str(a), "A").replace(str(b), "B"),
        "B",
        [
            (5, "scenarios[1].name", "duplicate scenario name 'same' (first at A:3)"),
            (7, "scenarios[2].name", "duplicate scenario name 'other' (first at B:3)"),
        ],
    )
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([directory])
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(b), 5), (str(b), 7)]


def test_directory_without_yaml_and_missing_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("version: 1\nscenarios: []\n")
    missing = tmp_path / "missing.yaml"
    result = run_cli("validate", empty, missing)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "foxmock: 2 problems in scenario files:",
        f"  {empty}: no .yaml or .yml files in directory (an empty mount? put scenario files "
        "in it, or leave --scenarios out to serve the bundled ones)",
        f"  {missing}: no such file or directory",
    ]
    for path, message in ((empty, "no .yaml or .yml files"), (missing, "no such file")):
        with pytest.raises(foxmock.ScenarioError, match=message) as caught:
            foxmock.load_scenarios([path])
        assert [(p.file, p.line) for p in caught.value.problems] == [(str(path), None)]


BILLION_LAUGHS = """\
version: 1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
scenarios:
  - name: bomb
    match: {body: {x: *i}}
    respond: {content: boom}
"""

RECURSIVE_SEQUENCE = """\
version: 1
loop: &loop [*loop]
scenarios: []
"""

RECURSIVE_MAPPING = """\
version: 1
scenarios: &s
  - name: a
    respond: {content: hi}
    match: {all: *s}
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(
            BILLION_LAUGHS, "invalid YAML: document expands to more than", id="billion-laughs"
        ),
        pytest.param(
            RECURSIVE_SEQUENCE, "invalid YAML: nesting deeper than", id="recursive-sequence"
        ),
        pytest.param(
            RECURSIVE_MAPPING, "invalid YAML: nesting deeper than", id="recursive-scenarios"
        ),
    ],
)
def test_alias_bombs_fail_quickly_with_a_clear_error(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write_scenarios(tmp_path, text, "bomb.yaml")
    started = time.monotonic()
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([path])
    assert time.monotonic() - started < 5
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.line is not None and 1 <= problem.line <= len(text.splitlines())
    assert problem.message.startswith(fragment)

    started = time.monotonic()
    result = run_cli("validate", path, timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1].startswith(f"  {path}:{problem.line}: {fragment}")


# -- foxmock serve refuses broken files -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(MANY_PROBLEMS, id="many-problems"),
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param('version: 1\nscenarios:\n  - name: "unclosed\n', id="invalid-yaml"),
    ],
)
def test_serve_refuses_broken_files(tmp_path: Path, text: str) -> None:
    path = write_scenarios(tmp_path, text, "broken.yaml")
    result = run_cli("serve", "--scenarios", path, "--port", "0", "--host", "127.0.0.1")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stdout
    lines = result.stderr.splitlines()
    assert lines[0].startswith("foxmock: ") and lines[0].endswith(" in scenario files:")
    assert all(line.startswith(f"  {path}:") for line in lines[1:])
    with pytest.raises(foxmock.ScenarioError) as caught:
        foxmock.load_scenarios([path])
    assert lines[1:] == [f"  {p}" for p in caught.value.problems]


@pytest.mark.parametrize("which", ["missing-file", "empty-directory"])
def test_serve_refuses_missing_paths(tmp_path: Path, which: str) -> None:
    path = tmp_path / "nothing.yaml"
    if which == "empty-directory":
        path = tmp_path / "empty"
        path.mkdir()
    result = run_cli("serve", "--scenarios", path, "--port", "0", "--host", "127.0.0.1")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"  {path}: " in result.stderr


# -- foxmock schema and --help --------------------------------------------------------------------


def test_schema_command_prints_a_valid_draft_2020_12_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    shipped = ROOT / "foxmock" / "scenario.schema.json"
    assert schema == json.loads(shipped.read_text("utf-8"))

    validator = Draft202012Validator(schema)
    files = sorted(BUNDLED.rglob("*.y*ml"))
    assert files
    for path in files:
        document = yaml.safe_load(path.read_text("utf-8"))
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == [], (path, errors)


def test_schema_accepts_every_match_key_and_rejects_unknown_ones() -> None:
    validator = Draft202012Validator(scenario_schema())
    document = yaml.safe_load(
        """\
version: 1
models: [m]
scenarios:
  - name: everything
    priority: 3
    match:
      model: {glob: "m*"}
      any_message: {contains: a, ignore_case: true}
      last_message: {regex: "x$"}
      last_user: {equals: [a, b]}
      system: {startswith: s, endswith: t}
      tools_offered: [f]
      tool_choice: {function: f}
      has_tool_result: f
      turn: {min: 1, max: 2}
      stream: false
      response_format: json_schema
      headers: {x-a: b}
      body: {"a.b[0]": {exists: true, gt: 1}, c: [1, 2], d: null}
      all: [{turn: 1}]
      any: [{turn: 2}]
      not: {stream: true}
    respond:
      content: "{{ last_user }}"
      tool_calls: [{name: f, arguments: {a: 1}, id: call_1}]
      finish_reason: tool_calls
      model: m
      usage: {prompt_tokens: 1, completion_tokens: 2}
      headers: {x-b: c}
  - name: failing
    fault: {status: 429, message: slow down, type: t, code: c, param: p, retry_after: 2s,
            headers: {x-c: d}}
"""
    )
    assert list(validator.iter_errors(document)) == []
    document["scenarios"][0]["match"]["modle"] = "m"
    assert [e.validator for e in validator.iter_errors(document)] == ["additionalProperties"]


def test_serve_help_mentions_the_main_options() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--scenarios", "--api-key", "--log-level"):
        assert option in result.stdout, option
    top = run_cli("--help")
    for command in ("serve", "validate", "schema"):
        assert command in top.stdout
