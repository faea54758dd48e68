"""Request predicates, compiled once from a scenario's ``match`` block, and near-miss reports."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

from foxmock.openai.request import ChatRequest
from foxmock.regexes import RegexProblem, compile_safe

_MISSING = object()


class CompileError(Exception):
    """A ``match`` block that cannot be compiled; ``path`` is relative to the block."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


_COLLECT: ContextVar[list[CompileError] | None] = ContextVar("foxmock_compile_errors", default=None)


def _report(error: CompileError) -> None:
    """Collect ``error`` when `compile_match` was asked to, else raise it."""
    found = _COLLECT.get()
    if found is None:
        raise error
    found.append(error)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _regex(
    source: str, flags: int, path: tuple[str | int, ...], what: str = ""
) -> re.Pattern[str] | None:
    """``source`` compiled (see `compile_safe`), or None after reporting why it cannot be."""
    try:
        return compile_safe(source, flags)
    except RegexProblem as problem:
        if problem.refused:
            message = f"{what or 'regular expression'} refused: {problem.reason}"
        else:
            message = f"invalid {what or f'regular expression {_short(source)}'}: {problem.reason}"
        _report(CompileError(path, message))
        return None


class TextMatcher:
    """equals / contains / startswith / endswith / regex / glob, optionally ignoring case."""

    def __init__(self, spec: str | Mapping[str, Any], path: tuple[str | int, ...] = ()) -> None:
        ops = {"equals": spec} if isinstance(spec, str) else dict(spec)
        fold = bool(ops.pop("ignore_case", False))
        self.fold = fold
        self.checks: list[tuple[str, Any, Callable[[str], bool]]] = []
        for op, arg in ops.items():
            self.checks.append((op, arg, self._compile(op, arg, fold, (*path, op))))

    @staticmethod
    def _compile(
        op: str, arg: Any, fold: bool, path: tuple[str | int, ...]
    ) -> Callable[[str], bool]:
        flags = re.IGNORECASE if fold else 0
        if op == "regex":
            pattern = _regex(arg, flags, path)
            return lambda text: pattern is not None and pattern.search(text) is not None
        if op == "glob":
            glob = _regex(fnmatch.translate(arg), flags | re.DOTALL, path, f"glob {_short(arg)}")
            return lambda text: glob is not None and glob.match(text) is not None
        if op == "equals":
            options = [arg] if isinstance(arg, str) else list(arg)
            if fold:
                folded = {o.casefold() for o in options}
                return lambda text: text.casefold() in folded
            exact = set(options)
            return lambda text: text in exact
        method = {"contains": "__contains__", "startswith": "startswith", "endswith": "endswith"}[
            op
        ]
        if fold:
            needle = arg.casefold()
            return lambda text: bool(getattr(text.casefold(), method)(needle))
        return lambda text: bool(getattr(text, method)(arg))

    def test(self, text: str) -> bool:
        return all(check(text) for _, _, check in self.checks)

    def why_not(self, text: str) -> str | None:
        """None when ``text`` matches, else a sentence saying which operator failed."""
        for op, arg, check in self.checks:
            if not check(text):
                case = " (ignoring case)" if self.fold else ""
                return f"expected {op} {_short(arg)}{case}, got {_short(text)}"
        return None

    @property
    def exact(self) -> str | None:
        """The one exact, case-sensitive text this matcher accepts, if it is that simple."""
        if len(self.checks) == 1 and not self.fold:
            op, arg, _ = self.checks[0]
            if op == "equals" and isinstance(arg, str):
                return arg
        return None


class Miss(NamedTuple):
    """One failed predicate: its key and why it failed."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


class Predicate:
    """Base class: ``test`` is the fast path, ``explain`` the diagnostic one."""

    key = ""

    def test(self, req: ChatRequest) -> bool:
        raise NotImplementedError

    def explain(self, req: ChatRequest) -> list[Miss]:
        return [] if self.test(req) else [Miss(self.key, "did not hold")]


class Text(Predicate):
    def __init__(self, key: str, get: Callable[[ChatRequest], str], matcher: TextMatcher) -> None:
        self.key, self.get, self.matcher = key, get, matcher

    def test(self, req: ChatRequest) -> bool:
        return self.matcher.test(self.get(req))

    def explain(self, req: ChatRequest) -> list[Miss]:
        reason = self.matcher.why_not(self.get(req))
        return [] if reason is None else [Miss(self.key, reason)]


class AnyMessage(Predicate):
    key = "any_message"

    def __init__(self, matcher: TextMatcher) -> None:
        self.matcher = matcher

    def test(self, req: ChatRequest) -> bool:
        return any(self.matcher.test(t) for t in req.message_texts)

    def explain(self, req: ChatRequest) -> list[Miss]:
        if self.test(req):
            return []
        op, arg, _ = self.matcher.checks[0]
        return [Miss(self.key, f"no message matched {op} {_short(arg)}")]


class Simple(Predicate):
    """A predicate on one derived value, compared by a function."""

    def __init__(
        self, key: str, get: Callable[[ChatRequest], Any], ok: Callable[[Any], bool], want: str
    ) -> None:
        self.key, self.get, self.ok, self.want = key, get, ok, want

    def test(self, req: ChatRequest) -> bool:
        return self.ok(self.get(req))

    def explain(self, req: ChatRequest) -> list[Miss]:
        value = self.get(req)
        return (
            [] if self.ok(value) else [Miss(self.key, f"expected {self.want}, got {_short(value)}")]
        )


class Header(Predicate):
    def __init__(self, name: str, matcher: TextMatcher) -> None:
        self.name = name.lower()
        self.key = f"headers.{self.name}"
        self.matcher = matcher

    def test(self, req: ChatRequest) -> bool:
        value = req.headers.get(self.name)
        return value is not None and self.matcher.test(value)

    def explain(self, req: ChatRequest) -> list[Miss]:
        value = req.headers.get(self.name)
        if value is None:
            return [Miss(self.key, "header not sent")]
        reason = self.matcher.why_not(value)
        return [] if reason is None else [Miss(self.key, reason)]


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def parse_body_path(path: str) -> list[str | int]:
    """``a.b[0].c`` or ``a.b.0.c`` -> ``['a', 'b', 0, 'c']``."""
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(path):
        if index:
            parts.append(int(index))
        elif name.lstrip("-").isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
    return parts


def lookup(body: Any, parts: Sequence[str | int]) -> Any:
    """The value at ``parts`` in ``body``, or the module's missing marker."""
    value = body
    for part in parts:
        if isinstance(part, int) and isinstance(value, list):
            if not -len(value) <= part < len(value):
                return _MISSING
            value = value[part]
        elif isinstance(value, dict) and str(part) in value:
            value = value[str(part)]
        else:
            return _MISSING
    return value


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda v, a: _num(v) and v > a,
    "gte": lambda v, a: _num(v) and v >= a,
    "lt": lambda v, a: _num(v) and v < a,
    "lte": lambda v, a: _num(v) and v <= a,
}
_TEXT_OPS = ("contains", "startswith", "endswith", "regex", "glob")


def _equals(want: Any) -> Callable[[Any], bool]:
    return lambda value: bool(value == want)


def _exists(want: bool) -> Callable[[Any], bool]:
    return lambda value: (value is not _MISSING) == want


def _compare(op: Callable[[Any, Any], bool], arg: Any) -> Callable[[Any], bool]:
    return lambda value: op(value, arg)


class BodyPath(Predicate):
    def __init__(self, path: str, spec: Any, where: tuple[str | int, ...]) -> None:
        self.key = f"body.{path}"
        self.parts = parse_body_path(path)
        if not self.parts:
            _report(CompileError(where, f"empty body path {path!r}"))
        ops = dict(spec) if isinstance(spec, dict) else {"equals": spec}
        self.checks: list[tuple[str, Callable[[Any], bool]]] = []
        fold = bool(ops.get("ignore_case", False))
        text_ops = {k: ops[k] for k in _TEXT_OPS if k in ops}
        if text_ops:
            text = TextMatcher({**text_ops, "ignore_case": fold}, where)
            self.checks.append((text.checks[0][0], lambda v: isinstance(v, str) and text.test(v)))
        for op, arg in ops.items():
            if op == "equals":
                self.checks.append(("equals " + _short(arg), _equals(arg)))
            elif op == "exists":
                self.checks.append(("exists" if arg else "absent", _exists(bool(arg))))
            elif op in _COMPARE:
                self.checks.append((f"{op} {arg}", _compare(_COMPARE[op], arg)))

    def test(self, req: ChatRequest) -> bool:
        value = lookup(req.body, self.parts)
        return all(check(value) for _, check in self.checks)

    def explain(self, req: ChatRequest) -> list[Miss]:
        value = lookup(req.body, self.parts)
        for want, check in self.checks:
            if not check(value):
                got = "nothing (path absent)" if value is _MISSING else _short(value)
                return [Miss(self.key, f"expected {want}, got {got}")]
        return []


class All(Predicate):
    def __init__(self, key: str, parts: Sequence[Predicate]) -> None:
        self.key, self.parts = key, list(parts)

    def test(self, req: ChatRequest) -> bool:
        return all(p.test(req) for p in self.parts)

    def explain(self, req: ChatRequest) -> list[Miss]:
        return [miss for p in self.parts for miss in p.explain(req)]


class AnyOf(Predicate):
    def __init__(self, key: str, parts: Sequence[Predicate]) -> None:
        self.key, self.parts = key, list(parts)

    def test(self, req: ChatRequest) -> bool:
        return any(p.test(req) for p in self.parts)

    def explain(self, req: ChatRequest) -> list[Miss]:
        if self.test(req):
            return []
        reasons = "; ".join(str(m) for p in self.parts for m in p.explain(req))
        return [Miss(self.key, f"no alternative held ({reasons})")]


class Not(Predicate):
    def __init__(self, key: str, inner: Predicate) -> None:
        self.key, self.inner = key, inner

    def test(self, req: ChatRequest) -> bool:
        return not self.inner.test(req)

    def explain(self, req: ChatRequest) -> list[Miss]:
        return [] if self.test(req) else [Miss(self.key, "the negated condition held")]


def _tools_offered(spec: Any) -> Predicate:
    if isinstance(spec, bool):
        return Simple(
            "tools_offered",
            lambda r: r.tools_offered,
            lambda v: bool(v) == spec,
            "some tools" if spec else "no tools",
        )
    wanted = list(spec)
    return Simple(
        "tools_offered",
        lambda r: r.tools_offered,
        lambda v: all(n in v for n in wanted),
        f"tools {wanted} offered",
    )


def _tool_choice(spec: Any) -> Predicate:
    if isinstance(spec, dict):
        name = spec["function"]
        return Simple(
            "tool_choice",
            lambda r: r.tool_choice,
            lambda v: v == name,
            f"a forced call of {name!r}",
        )
    want = None if spec == "absent" else spec
    return Simple("tool_choice", lambda r: r.tool_choice, lambda v: v == want, repr(spec))


def _has_tool_result(spec: Any) -> Predicate:
    def names(r: ChatRequest) -> list[str]:
        return [name for name, _ in r.tool_results]

    if isinstance(spec, bool):
        return Simple(
            "has_tool_result",
            names,
            lambda v: bool(v) == spec,
            "a tool result" if spec else "no tool result",
        )
    return Simple("has_tool_result", names, lambda v: spec in v, f"a result of tool {spec!r}")


def _whole(value: Any, where: tuple[str | int, ...]) -> int | None:
    """``value`` as an int: JSON Schema's integers include floats such as 1.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    _report(CompileError(where, f"expected a whole number, got {_short(value)}"))
    return None


def _turn(spec: Any, where: tuple[str | int, ...]) -> Predicate:
    if not isinstance(spec, Mapping):
        turn = _whole(spec, where)
        return Simple("turn", lambda r: r.turn, lambda v: v == turn, f"turn {turn}")
    low = _whole(spec.get("min", 0), (*where, "min")) or 0
    high = None if spec.get("max") is None else _whole(spec["max"], (*where, "max"))
    return Simple(
        "turn",
        lambda r: r.turn,
        lambda v: v >= low and (high is None or v <= high),
        f"turn in [{low}, {'...' if high is None else high}]",
    )


_TEXT_FIELDS: dict[str, Callable[[ChatRequest], str]] = {
    "model": lambda r: r.model,
    "last_message": lambda r: r.last_message,
    "last_user": lambda r: r.last_user,
    "system": lambda r: r.system,
}


def _one(key: str, spec: Any, path: tuple[str | int, ...]) -> Predicate:
    where = (*path, key)
    if key in _TEXT_FIELDS:
        return Text(key, _TEXT_FIELDS[key], TextMatcher(spec, where))
    if key == "any_message":
        return AnyMessage(TextMatcher(spec, where))
    if key == "tools_offered":
        return _tools_offered(spec)
    if key == "tool_choice":
        return _tool_choice(spec)
    if key == "has_tool_result":
        return _has_tool_result(spec)
    if key == "turn":
        return _turn(spec, where)
    if key == "stream":
        return Simple("stream", lambda r: r.stream, lambda v: v == spec, repr(spec))
    if key == "response_format":
        return Simple(
            "response_format", lambda r: r.response_format, lambda v: v == spec, repr(spec)
        )
    if key == "headers":
        return All(key, [Header(n, TextMatcher(m, (*where, n))) for n, m in spec.items()])
    if key == "body":
        return All(key, [BodyPath(p, m, (*where, p)) for p, m in spec.items()])
    if key == "all":
        return All(key, [compile_match(m, (*where, i)) for i, m in enumerate(spec)])
    if key == "any":
        return AnyOf(key, [compile_match(m, (*where, i)) for i, m in enumerate(spec)])
    if key == "not":
        return Not(key, compile_match(spec, where))
    raise CompileError(where, f"unknown match key {key!r}")


def compile_match(
    spec: Mapping[str, Any] | None,
    path: tuple[str | int, ...] = (),
    errors: list[CompileError] | None = None,
) -> All:
    """Compile a ``match`` block (already checked against the schema) into a predicate.

    Problems raise `CompileError`, or, when ``errors`` is given, are all appended to it.
    """
    if errors is None:  # nested blocks report to whatever collector is active
        return All("match", [_one(key, value, path) for key, value in (spec or {}).items()])
    token = _COLLECT.set(errors)
    try:
        return compile_match(spec, path)
    finally:
        _COLLECT.reset(token)
