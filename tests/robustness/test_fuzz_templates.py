"""Property-based fuzzing of response templates, from the scenario file to the rendered answer.

Generated templates (literal text, ``{{ }}`` expressions over the documented variables, helpers
and filters, statements, stray ``{%``/``{{`` fragments, reaches for dunder attributes) are put in
every templated place of a scenario (content, model, headers, tool-call name, id, arguments as an
object or as text, stream chunks, a fault's message), loaded with `load_scenarios`, and rendered
by `foxmock.plan.shape` (what the server calls) for generated valid requests. Each one is either
refused at load (problems naming the file, a line and the key) or renders within a time limit to
strings no longer than the output cap, or fails with foxmock's `RenderError`; no other exception.

Bugs the fuzzing found have their own regression tests at the end of this module, and the main
property covers their inputs too.
"""

from __future__ import annotations

import copy
import json
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from foxmock import ScenarioError, load_scenarios
from foxmock.answer import RenderError
from foxmock.latency import Latency
from foxmock.openai.request import ChatRequest
from foxmock.plan import Plan, shape
from foxmock.scenarios.model import Scenario
from foxmock.templating import MAX_OUTPUT_CHARS, MAX_RENDER_SECONDS, RequestContext
from tests.robustness.conftest import FUZZ_EXAMPLES
from tests.robustness.test_fuzz import valid_requests

RENDER_LIMIT = MAX_RENDER_SECONDS * 4  # generous: a render that is bounded ends long before

# -- strategies -----------------------------------------------------------------------------------

VARIABLES = [
    "request",
    "model",
    "messages",
    "stream",
    "turn",
    "response_format",
    "tool_choice",
    "last_user",
    "last_message",
    "system",
    "tools",
    "tool_results",
    "tool_result",
    "headers",
]
NAMES = [*VARIABLES, "oops", "loop", "self", "caller", "varargs", "range", "lipsum", "cycler"]
CALLS = [
    "tool_result()",
    "tool_result('get_weather')",
    "uuid()",
    "now()",
    "now('%Y-%m-%d')",
    "random_int(1, 6)",
    "random_choice(['a', 'b'])",
    "json(request)",
    "json(tools)",
    "range(4)",
    "range(2000000)",
    "lipsum(1)",
    "namespace(a=1)",
    "dict(a=1)",
    "cycler(1, 2)",
    "joiner()",
    "undefined_function()",
]
LITERALS = [
    "[1, 2, 3]",
    "{'a': 1, 'b': [2]}",
    "none",
    "true",
    "1.5",
    "'x' * 2000000",
    "2 ** 5000",
    "2 ** 10",
    "9999999 * 9999999",
    "'{}'",
    "'{\"a\": 1}'",
]
# attributes and methods, mutating ones included (the sandbox must refuse those)
ATTRS = [
    "update",
    "append",
    "pop",
    "clear",
    "content",
    "role",
    "temperature",
    "metadata",
    "user_id",
    "name",
    "result",
    "temp_c",
    "city",
    "function",
    "0",
    "upper",
    "lower",
    "items",
    "keys",
    "values",
    "get",
    "format",
    "split",
    "join",
    "count",
    "startswith",
    "real",
    "__class__",
    "__mro__",
    "__subclasses__",
    "__globals__",
    "__init__",
    "__dict__",
    "__builtins__",
    "_private",
    "mro",
    "gi_frame",
    "func_globals",
    "f_locals",
]
INDEXES = ["0", "-1", "1", "'role'", "'content'", "'__class__'", "'_x'", "1:3", "::-1", "none"]
FILTERS = [
    "json",
    "from_json",
    "random",
    "length",
    "upper",
    "lower",
    "first",
    "last",
    "join(', ')",
    "string",
    "int",
    "float",
    "list",
    "sort",
    "reverse",
    "unique",
    "default('x')",
    "trim",
    "title",
    "tojson",
    "e",
    "safe",
    "wordcount",
    "sum",
    "abs",
    "round",
    "batch(2)",
    "slice(2)",
    "dictsort",
    "items",
    "map('upper')",
    "map(attribute='role')",
    "select",
    "selectattr('role')",
    "groupby('role')",
    "attr('__class__')",
    "attr('upper')",
    "regex_search('(\\\\w+)')",
    "regex_search('x', 2)",
    "regex_search('(')",
    "regex_replace('a', 'b')",
    "format(1)",
    "indent(2)",
    "center(300)",
    "truncate(5)",
    "wordwrap(5)",
    "xmlattr",
    "urlencode",
    "pprint",
    "filesizeformat",
    "striptags",
    "replace('a', 'b')",
    "nope",
]
OPERATORS = ["~", "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">=", "and", "or", "in"]


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


atoms = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(CALLS),
    st.sampled_from(LITERALS),
    st.integers(-3, 60).map(str),
    st.text(max_size=6).map(_string_literal),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, st.sampled_from(INDEXES)).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"{t[0]} | {t[1]}"),
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(" ".join),
        st.tuples(inner, st.integers(0, 50)).map(lambda t: f"{t[0]} * {t[1]}"),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"[{e}]"),
        inner.map(lambda e: f"{e}()"),
        inner.map(lambda e: f"{e} is defined"),
    )


expressions = st.recursive(atoms, _extend, max_leaves=6)
FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ }}",
    "{% %}",
    "{% endfor %}",
    "{% endif %}",
    "{% raw %}{{ x }}{% endraw %}",
    "{% raw %}",
    "{%- if true -%} x {%- endif -%}",
    "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(1) }}",
    "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}c{% endcall %}",
    "{% include 'other.txt' %}",
    "{% import 'x' as y %}",
    "{% from 'x' import y %}",
    "{% extends 'base' %}",
    "{% block b %}b{% endblock %}",
    "{% filter upper %}f{% endfilter %}",
    "{% with a = 1 %}{{ a }}{% endwith %}",
    "{% autoescape true %}<&>{% endautoescape %}",
    "{% do 1 %}",
    "{% break %}",
    "{% trans %}t{% endtrans %}",
    "{{ '%s' % request }}",
    "{{ '{0.__class__}'.format(request) }}",
    "{{ '{0.upper.__globals__}'.format(model) }}",
    "{{ request | attr('__class__') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ request['__class__'] }}",
    "{{ request[('__cla' ~ 'ss__')] }}",
    "{{ request | attr('_' ~ '_class__') }}",
    "{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}",
    "{% set x = 'a' * 999999 %}{{ x ~ x }}",
    "{{ 'a' | regex_search('(') }}",
    "{{ now('%') }}",
    "{{ random_int('a', 2) }}",
    "{{ '\\u00e9\\n' }}",
    "{# unclosed comment",
    "{{ 'unclosed string }}",
    "{{ 1 + }}",
    "{% if %}",
    "{% for %}",
    "{% endblock %}",
    "\n",
    "{{\n1\n}}",
    "{{- 1 -}}",
]
pieces = st.one_of(
    st.text(max_size=10),
    expressions.map(lambda e: "{{ " + e + " }}"),
    st.tuples(expressions, st.text(max_size=4)).map(
        lambda t: "{% if " + t[0] + " %}" + t[1] + "{% else %}-{% endif %}"
    ),
    expressions.map(lambda e: "{% for item in " + e + " %}{{ item }}{{ loop.index }}{% endfor %}"),
    expressions.map(lambda e: "{% set v = " + e + " %}{{ v }}"),
    st.sampled_from(FRAGMENTS),
)
templates = st.lists(pieces, min_size=1, max_size=5).map("".join)

PLACES = [
    "content",
    "model",
    "header",
    "tool-name",
    "tool-id",
    "arguments-object",
    "arguments-text",
    "tool-chunks",
    "stream-chunks",
    "fault-message",
    "stream-error-message",
]


def scenario_doc(template: str, place: str) -> dict[str, Any]:
    """A file whose one scenario carries ``template`` at ``place``."""
    scenario: dict[str, Any] = {"name": "templated", "respond": {"content": "fixed"}}
    respond = scenario["respond"]
    if place == "content":
        respond["content"] = template
    elif place == "model":
        respond["model"] = template
    elif place == "header":
        respond["headers"] = {"x-fuzz": template}
    elif place.startswith(("tool", "arguments")):
        call: dict[str, Any] = {"name": "f", "arguments": {"a": 1}}
        if place == "tool-name":
            call["name"] = template
        elif place == "tool-id":
            call["id"] = template
        elif place == "arguments-object":
            call["arguments"] = {"a": template, "b": [template, {"c": template}]}
        elif place == "arguments-text":
            call["arguments"] = template
        else:
            del call["arguments"]
            call["chunks"] = [template, "{}"]
        respond.pop("content")
        respond["tool_calls"] = [call]
    elif place == "stream-chunks":
        respond.pop("content")
        scenario["stream"] = {"chunks": [template, "!"]}
    elif place == "fault-message":
        del scenario["respond"]
        scenario["fault"] = {"status": 418, "message": template}
    else:
        scenario["fault"] = {"kind": "stream_error", "after_chunks": 1, "message": template}
    return {"version": 1, "scenarios": [scenario]}


class RenderTimeout(BaseException):
    """Raised by the alarm; a BaseException so that the renderer's ``except Exception`` lets it
    through."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise RenderTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_doc(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "templated.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def load_or_refuse(tmp_path: Path, doc: Any) -> Scenario | None:
    """The loaded scenario, or None when the loader refused it with well-formed problems."""
    path = write_doc(tmp_path, doc)
    try:
        return load_scenarios([path]).scenarios[0]
    except ScenarioError as exc:
        for problem in exc.problems:
            assert problem.file == str(path), problem
            assert isinstance(problem.line, int) and problem.line >= 1, problem
            assert problem.key.startswith("scenarios[0]"), problem
            assert problem.message.strip(), problem
        return None


def render(scenario: Scenario, body: dict[str, Any]) -> Plan | None:
    """What the server would send, or None when it fails with foxmock's `RenderError`."""
    req = ChatRequest(body, {"X-Fuzz": "1"})
    try:
        with time_limit(RENDER_LIMIT):
            return shape(scenario, req, RequestContext(req), random.Random(0), Latency(), 0.0)
    except RenderError as exc:
        assert "'templated'" in str(exc) and scenario.where in str(exc), exc
        return None
    except RenderTimeout:
        raise AssertionError(f"render still running after {RENDER_LIMIT:g}s") from None


def assert_bounded(plan: Plan, place: str) -> None:
    """Every rendered string is a str within the cap; bodies and events are JSON."""
    answer = plan.answer
    if answer is not None:
        texts = [answer.content or "", answer.model, *(answer.chunks or ())]
        texts += list(answer.headers.values())
        for call in answer.tool_calls:
            texts += [call["id"], call["function"]["name"]]
            if place != "arguments-object":  # known bug: test_native_arguments_are_capped
                texts.append(call["function"]["arguments"])
        for text in texts:
            assert isinstance(text, str) and len(text) <= MAX_OUTPUT_CHARS, (type(text), len(text))
    if plan.body is not None:
        json.loads(plan.body)
    for frame in plan.frames or ():
        assert frame.startswith(b"data: ")
        if frame != b"data: [DONE]\n\n":
            json.loads(frame[6:])


# -- properties -----------------------------------------------------------------------------------


# Python's compiler warns about Jinja's code for `{{ 1[0] }}`; long runs draw huge reprs
@pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore:Generating overly large repr")
@given(
    template=templates,
    place=st.sampled_from(PLACES),
    bodies=st.lists(valid_requests(), min_size=1, max_size=2),
)
@example(template="{{ ''.__class__.__mro__ }}", place="content", bodies=[{}])
@example(template="{{ request | attr('__class__') }}", place="content", bodies=[{}])
@example(template="{{ 'x' * 2000000 }}", place="arguments-object", bodies=[{}])
@example(template="{% set x = 'a' * 999999 %}{{ x ~ x }}", place="header", bodies=[{}])
@example(template="{{ oops }}", place="stream-error-message", bodies=[{}])
def test_templates_are_refused_at_load_or_render_within_bounds(
    tmp_path: Path, template: str, place: str, bodies: list[dict[str, Any]]
) -> None:
    scenario = load_or_refuse(tmp_path, scenario_doc(template, place))
    if scenario is None:
        return
    for body in bodies:
        body = body or {"model": "foxora-1", "messages": [{"role": "user", "content": "hi"}]}
        plan = render(scenario, body)
        if plan is not None:
            assert_bounded(plan, place)


def test_dunder_access_is_refused_at_load(tmp_path: Path) -> None:
    """Control for the property: the documented load-time refusal, with file, line and key."""
    doc = scenario_doc("ok\n{{ request.__class__ }}", "content")
    path = write_doc(tmp_path, doc)
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([path])
    (problem,) = caught.value.problems
    assert (problem.file, problem.key) == (str(path), "scenarios[0].respond.content")
    assert "private name '__class__'" in problem.message


# -- regressions (bugs this fuzzing found, now fixed) ---------------------------------------


def _uncompilable(kind: str, depth: int) -> str:
    if kind == "parens":
        return "{{ " + "(" * depth + "1" + ")" * depth + " }}"
    if kind == "lists":
        return "{{ " + "[" * depth + "]" * depth + " }}"
    if kind == "for":
        return "{% for a in [1] %}" * depth + "x" + "{% endfor %}" * depth
    if kind == "if":
        return "{% if true %}" * depth + "x" + "{% endif %}" * depth
    # Jinja folds constant expressions while compiling; a StrictUndefined test blows up there
    return "{{ 1 if " + "(" * depth + "''.x" + ")" * depth + " else 2 }}"


@given(kind=st.sampled_from(["parens", "lists", "for", "if", "folded"]), depth=st.integers(0, 1000))
@example(kind="folded", depth=0)  # {{ 1 if ''.x else 2 }}: jinja2 UndefinedError
@example(kind="parens", depth=1000)  # RecursionError (from depth ~70 outside Hypothesis)
@example(kind="for", depth=21)  # SyntaxError: too many statically nested blocks
@example(kind="if", depth=100)  # IndentationError: too many levels of indentation
def test_templates_that_cannot_compile_are_refused_at_load(
    tmp_path: Path, kind: str, depth: int
) -> None:
    scenario = load_or_refuse(tmp_path, scenario_doc(_uncompilable(kind, depth), "content"))
    if scenario is not None:
        render(scenario, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})


@settings(max_examples=max(5, FUZZ_EXAMPLES // 20))  # each example may take a full second
@given(depth=st.integers(1, 3), width=st.integers(1, 100_000))
@example(depth=2, width=100_000)  # 10**10 iterations: hours, not MAX_RENDER_SECONDS
def test_loops_over_strings_respect_the_render_time_limit(
    tmp_path: Path, depth: int, width: int
) -> None:
    loops = f"{{% for a in 'x' * {width} %}}" * depth + "{% endfor %}" * depth
    scenario = load_or_refuse(tmp_path, scenario_doc(loops + "done", "content"))
    assert scenario is not None
    render(scenario, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})


@given(count=st.integers(1, 300))
@example(count=101)  # ['x' * 10000] * 101: 1,010,000+ characters of arguments
def test_native_arguments_are_capped(tmp_path: Path, count: int) -> None:
    template = f"{{{{ ['x' * 10000] * {count} }}}}"
    doc = scenario_doc(template, "arguments-object")
    doc["scenarios"][0]["respond"]["tool_calls"][0]["arguments"] = {"a": template}
    scenario = load_or_refuse(tmp_path, doc)
    assert scenario is not None
    plan = render(scenario, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    if plan is not None:
        assert plan.answer is not None
        arguments = plan.answer.tool_calls[0]["function"]["arguments"]
        assert len(arguments) <= MAX_OUTPUT_CHARS, len(arguments)


@given(expression=st.sampled_from(["tool_result", "uuid", "range(3)", "(10 ** 1000) ** 5"]))
@example(expression="tool_result")  # forgot the parentheses: TypeError, not a RenderError
def test_native_values_fail_as_render_errors(tmp_path: Path, expression: str) -> None:
    doc = scenario_doc("{{ " + expression + " }}", "arguments-object")
    scenario = load_or_refuse(tmp_path, doc)
    assert scenario is not None
    render(scenario, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})


@given(
    statement=st.sampled_from(
        [
            "request.update({'model': 'changed'})",
            "request.pop('model')",
            "messages.append({'role': 'user', 'content': 'injected'})",
            "request.messages.clear()",
            "tools.append('x')",
            "headers.clear()",
        ]
    )
)
@example(statement="request.update({'tools': [1]})")  # then AttributeError in _tool_schema
def test_templates_cannot_change_the_request(tmp_path: Path, statement: str) -> None:
    doc = scenario_doc("{{ " + statement + " }}ok", "content")
    doc["scenarios"][0]["respond"]["tool_calls"] = [{"name": "f"}]
    scenario = load_or_refuse(tmp_path, doc)
    assert scenario is not None
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    original = copy.deepcopy(body)
    render(scenario, body)
    assert body == original
