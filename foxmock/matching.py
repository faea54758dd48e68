"""Request predicates, compiled once from a scenario's ``match`` block, and near-miss reports."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

from foxmock.openai.request import ChatRequest
from foxmock.regexes import Regex, RegexProblem, compile_safe, encode, glob_pattern, needle_set

_MISSING = object()

LONG_TEXT = 4096
"""Texts longer than this (in characters) remember each check's verdict, so the near-miss report
after a failed match does not search them again."""


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


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 200
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 20
_REPR.maxlevel = 4


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, costing no more than the cut text."""
    if isinstance(value, str):
        text = repr(value[:limit])
    else:
        text = repr(value) if isinstance(value, (int, float, bool, type(None))) else ""
        text = text if 0 < len(text) <= limit else _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Needles:
    """Every ``contains`` needle of a scenario set, looked for in one pass over a long text.

    One `re2.Set` search (linear in the text, whatever the number of needles) replaces one
    ``needle in text`` scan per scenario. A sentinel pattern that always matches tells a
    complete search from one RE2 gave up on (memory), which then falls back to scanning.
    """

    def __init__(self, plain: Iterable[str] = (), folded: Iterable[str] = ()) -> None:
        self._wanted = {False: sorted(set(plain)), True: sorted(set(folded))}
        self._sets: dict[bool, tuple[Any, frozenset[str], list[str]]] = {}

    def _set(self, fold: bool) -> tuple[Any, frozenset[str], list[str]]:
        """The compiled set (made on first use), the needles it knows and their order."""
        if fold not in self._sets:
            compiled, held = needle_set(self._wanted[fold])
            self._sets[fold] = (compiled, frozenset(held), held)
        return self._sets[fold]

    def wanted(self, fold: bool) -> bool:
        """Whether any needle of this kind exists."""
        return bool(self._wanted[fold])

    def found(self, data: bytes, fold: bool) -> tuple[frozenset[str], frozenset[str]] | None:
        """The needles known to the search and those among them in ``data``; None when the
        search could not be completed."""
        compiled, known, order = self._set(fold)
        hits = compiled.Match(data) or ()
        if 0 not in hits:
            return None
        return known, frozenset(order[i - 1] for i in hits if i)


class Subject:
    """One text a request offers to matchers, with each form of it derived at most once."""

    __slots__ = ("_folded", "_found", "_utf8", "needles", "text", "verdicts")

    def __init__(self, text: str, needles: Needles | None = None) -> None:
        self.text = text
        self._folded: str | None = None
        self._utf8: bytes | None = None
        long = len(text) > LONG_TEXT
        self.verdicts: dict[object, bool] | None = {} if long else None
        self.needles = needles if long else None
        self._found: dict[bool, tuple[frozenset[str], frozenset[str]] | None] = {}

    @property
    def folded(self) -> str:
        """The text case-folded (``str.casefold``), for matchers that ignore case."""
        if self._folded is None:
            self._folded = self.text.casefold()
        return self._folded

    @property
    def utf8(self) -> bytes:
        """The text as UTF-8, what RE2 searches."""
        if self._utf8 is None:
            self._utf8 = encode(self.text)
        return self._utf8

    def contains(self, needle: str, fold: bool) -> bool:
        """Whether the (folded) text holds ``needle``; one pass for all needles of a long text."""
        text = self.folded if fold else self.text
        needles = self.needles
        if needles is None or not needles.wanted(fold):
            return needle in text
        if fold not in self._found:
            self._found[fold] = needles.found(encode(text) if fold else self.utf8, fold)
        found = self._found[fold]
        if found is None or needle not in found[0]:
            return needle in text
        return needle in found[1]


_NEEDLES = "foxmock.matching.needles"


def use_needles(req: ChatRequest, needles: Needles) -> None:
    """Have long texts of ``req`` look for all of ``needles`` at once (see `Needles`)."""
    req.memo[_NEEDLES] = needles


def subject(req: ChatRequest, text: str) -> Subject:
    """The `Subject` for ``text`` (a string held by ``req``), made once per request."""
    memo = req.memo
    found: Subject | None = memo.get(id(text))
    if found is None or found.text is not text:  # holding text keeps its id unique meanwhile
        found = memo[id(text)] = Subject(text, memo.get(_NEEDLES))
    return found


Check = Callable[[Subject], bool]


def _regex(source: str, flags: int, path: tuple[str | int, ...], what: str = "") -> Regex | None:
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


def _never(_: Subject) -> bool:
    return False


def _text_op(op: str, arg: str, fold: bool) -> Check:
    """contains / startswith / endswith on the (folded) text."""
    if op == "contains":
        needle = arg.casefold() if fold else arg
        return lambda s: s.contains(needle, fold)
    method = getattr(str, op)
    if fold:
        affix = arg.casefold()
        return lambda s: bool(method(s.folded, affix))
    return lambda s: bool(method(s.text, arg))


class TextMatcher:
    """equals / contains / startswith / endswith / regex / glob, optionally ignoring case."""

    def __init__(self, spec: str | Mapping[str, Any], path: tuple[str | int, ...] = ()) -> None:
        ops = {"equals": spec} if isinstance(spec, str) else dict(spec)
        fold = bool(ops.pop("ignore_case", False))
        self.fold = fold
        self.checks: list[tuple[str, Any, Check]] = []
        for op, arg in ops.items():
            self.checks.append((op, arg, self._compile(op, arg, fold, (*path, op))))

    @staticmethod
    def _compile(op: str, arg: Any, fold: bool, path: tuple[str | int, ...]) -> Check:
        flags = re.IGNORECASE if fold else 0
        if op == "regex":
            pattern = _regex(arg, flags, path)
            return _never if pattern is None else (lambda s: pattern.found(s.utf8))
        if op == "glob":
            glob = _regex(glob_pattern(arg), flags, path, f"glob {_short(arg)}")
            return _never if glob is None else (lambda s: glob.fullmatch_bytes(s.utf8))
        if op == "equals":
            options = [arg] if isinstance(arg, str) else list(arg)
            if fold:
                folded = {o.casefold() for o in options}
                return lambda s: s.folded in folded
            exact = set(options)
            return lambda s: s.text in exact
        return _text_op(op, arg, fold)

    def _holds(self, check: Check, subject: Subject) -> bool:
        verdicts = subject.verdicts
        if verdicts is None:
            return check(subject)
        verdict = verdicts.get(check)
        if verdict is None:
            verdict = verdicts[check] = check(subject)
        return verdict

    def test(self, subject: Subject) -> bool:
        if subject.verdicts is None:
            return all(check(subject) for _, _, check in self.checks)
        return all(self._holds(check, subject) for _, _, check in self.checks)

    def why_not(self, subject: Subject) -> str | None:
        """None when the text matches, else a sentence saying which operator failed."""
        for op, arg, check in self.checks:
            if not self._holds(check, subject):
                case = " (ignoring case)" if self.fold else ""
                return f"expected {op} {_short(arg)}{case}, got {_short(subject.text)}"
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
        return self.matcher.test(subject(req, self.get(req)))

    def explain(self, req: ChatRequest) -> list[Miss]:
        reason = self.matcher.why_not(subject(req, self.get(req)))
        return [] if reason is None else [Miss(self.key, reason)]


class AnyMessage(Predicate):
    key = "any_message"

    def __init__(self, matcher: TextMatcher) -> None:
        self.matcher = matcher

    def test(self, req: ChatRequest) -> bool:
        return any(self.matcher.test(subject(req, t)) for t in req.message_texts)

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
        return value is not None and self.matcher.test(subject(req, value))

    def explain(self, req: ChatRequest) -> list[Miss]:
        value = req.headers.get(self.name)
        if value is None:
            return [Miss(self.key, "header not sent")]
        reason = self.matcher.why_not(subject(req, value))
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
        self.text: TextMatcher | None = None
        if text_ops:
            self.text = TextMatcher({**text_ops, "ignore_case": fold}, where)
        for op, arg in ops.items():
            if op == "equals":
                self.checks.append(("equals " + _short(arg), _equals(arg)))
            elif op == "exists":
                self.checks.append(("exists" if arg else "absent", _exists(bool(arg))))
            elif op in _COMPARE:
                self.checks.append((f"{op} {arg}", _compare(_COMPARE[op], arg)))

    def _text_holds(self, req: ChatRequest, value: Any) -> bool:
        text = self.text
        return text is None or (isinstance(value, str) and text.test(subject(req, value)))

    def test(self, req: ChatRequest) -> bool:
        value = lookup(req.body, self.parts)
        return self._text_holds(req, value) and all(check(value) for _, check in self.checks)

    def explain(self, req: ChatRequest) -> list[Miss]:
        value = lookup(req.body, self.parts)
        got = "nothing (path absent)" if value is _MISSING else _short(value)
        if self.text is not None and not self._text_holds(req, value):
            return [Miss(self.key, f"expected {self.text.checks[0][0]}, got {got}")]
        for want, check in self.checks:
            if not check(value):
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


def _matchers(predicate: Predicate) -> Iterator[TextMatcher]:
    """Every text matcher in ``predicate``, however deeply nested."""
    if isinstance(predicate, (Text, AnyMessage, Header)):
        yield predicate.matcher
    elif isinstance(predicate, BodyPath) and predicate.text is not None:
        yield predicate.text
    elif isinstance(predicate, (All, AnyOf)):
        for part in predicate.parts:
            yield from _matchers(part)
    elif isinstance(predicate, Not):
        yield from _matchers(predicate.inner)


def collect_needles(predicates: Iterable[Predicate]) -> Needles:
    """The `Needles` of every ``contains`` in ``predicates``."""
    plain: set[str] = set()
    folded: set[str] = set()
    for predicate in predicates:
        for matcher in _matchers(predicate):
            for op, arg, _ in matcher.checks:
                if op == "contains" and isinstance(arg, str):
                    (folded if matcher.fold else plain).add(arg.casefold() if matcher.fold else arg)
    return Needles(plain, folded)
