"""The Jinja2 side of templating: a bounded sandbox, compiled templates and render guards.

Imported on first use only: a scenario set whose templates are all plain substitutions
(``Hello {{ last_user }}``) never loads Jinja2 (see `foxmock.templating`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time
import uuid as _uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from foxmock.regexes import Match, Regex, RegexProblem, compile_safe
from foxmock.templating import (
    MAX_OUTPUT_CHARS,
    MAX_RANGE_STEPS,
    MAX_RENDER_SECONDS,
    TemplateError,
    to_json,
)

if TYPE_CHECKING:
    from foxmock.templating import TemplateEngine

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


def _regex(pattern: Any) -> Regex:
    try:
        return compile_safe(str(pattern))
    except RegexProblem as exc:
        raise SecurityError(str(exc)) from None


def _regex_search(value: Any, pattern: str, group: int | str = 1) -> str | None:
    match = _regex(pattern).search(str(value))
    if match is None:
        return None
    return match.group(group if match.re.groups else 0)


def _regex_replace(value: Any, pattern: str, replacement: str) -> str:
    text = str(value)
    room = [MAX_OUTPUT_CHARS - len(text)]

    def substitute(match: Match) -> str:
        out = match.expand(replacement)
        room[0] -= len(out) - len(match.group(0))
        if room[0] < 0:
            raise SecurityError(f"regex_replace would exceed {MAX_OUTPUT_CHARS} characters")
        return out

    return _regex(pattern).sub(substitute, text)


def _from_json(value: Any) -> Any:
    return json.loads(str(value))


@dataclass
class _Budget:
    deadline: float
    steps: int = 0

    def spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > MAX_RANGE_STEPS:
            raise SecurityError(f"template loops ran more than {MAX_RANGE_STEPS} steps")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"template took longer than {MAX_RENDER_SECONDS:g}s to render")


_BUDGET: ContextVar[_Budget | None] = ContextVar("foxmock_render_budget", default=None)


def _spend(steps: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(steps)


def _bounded(iterable: Any) -> Iterator[Any]:
    """Iterate ``iterable``, counting every step against the render's budget."""
    for i, value in enumerate(iterable):
        if i % 1000 == 0:
            _spend(1000)
        yield value


def _bounded_range(*args: int) -> Iterator[int]:
    """``range`` that counts every step against the render's budget."""
    return _bounded(range(*args))


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _concat(*parts: Any) -> str:
    """The ``~`` operator, refusing results over the output cap before building them."""
    texts = [str(part) for part in parts]
    if sum(len(t) for t in texts) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"concatenation would exceed {MAX_OUTPUT_CHARS} characters")
    return "".join(texts)


# names the compiled code calls; templates cannot spell them (private names are refused)
_LOOP, _CONCAT = "_foxmock_bounded", "_foxmock_concat"


class _Bounder(NodeTransformer):
    """Route every ``for`` loop through the step budget and every ``~`` through the size cap."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.Name(_LOOP, "load"), [node.iter], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.Name(_CONCAT, "load"), list(node.nodes), [], None, None, lineno=node.lineno
        )


MAX_INT_BITS = 100_000  # integers a render may build (about 30,000 digits)
_WIDE = re.compile(r"\d{7,}")  # a width or precision of a million or more in a format string


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_format(template: Any) -> None:
    """Refuse format strings whose widths would build strings over the output cap."""
    if isinstance(template, str) and _WIDE.search(template):
        raise SecurityError("a format width or precision that large is refused")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox (no mutating the request), plus bounds on sizes, loop steps and time."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(template)
            return wrapped(*args, **kwargs)

        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if operator == "**" and isinstance(right, int) and _bits(left) * abs(right) > MAX_INT_BITS:
            raise SecurityError("power too large")
        if operator == "*" and _bits(left) + _bits(right) > MAX_INT_BITS:
            raise SecurityError("product too large")
        if operator == "%":
            _check_format(left)
        if operator == "*":
            size, times = (
                (_sized(left), right) if _sized(left) is not None else (_sized(right), left)
            )
            if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT_CHARS:
                raise SecurityError(f"repetition would exceed {MAX_OUTPUT_CHARS} items")
        if operator == "+" and (_sized(left) or 0) + (_sized(right) or 0) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"addition would exceed {MAX_OUTPUT_CHARS} items")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(0)
        return super().call(__context, __obj, *args, **kwargs)


def _width(limit: int, position: int, keyword: str) -> Callable[..., None]:
    """A check that the argument at ``position`` (or ``keyword``) is at most ``limit``."""

    def check(*args: Any, **kwargs: Any) -> None:
        value = kwargs.get(keyword, args[position] if len(args) > position else None)
        if isinstance(value, (int, float)) and value > limit:
            raise SecurityError(f"{keyword} {value} is over the limit of {limit}")

    return check


def _replace_size(value: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    text, old, new = str(value), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"replace would exceed {MAX_OUTPUT_CHARS} characters")


def _join_size(value: Any, d: Any = "", attribute: Any = None) -> None:
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is not None and len(items) * len(str(d)) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"join would exceed {MAX_OUTPUT_CHARS} characters")


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_format(value)


def _printable(value: Any) -> Any:
    """What ``{{ }}`` prints, refused before ``str()`` when it holds more than the cap."""
    if not isinstance(value, str) and _too_big(value):
        raise SecurityError(f"value to print holds more than {MAX_OUTPUT_CHARS} items")
    return value


def _sized_value(value: Any, *args: Any, **kwargs: Any) -> None:
    _printable(value)


# filters whose arguments decide how much they build: checked before they run
_FILTER_BOUNDS: dict[str, Callable[..., None]] = {
    "string": _sized_value,
    "tojson": _sized_value,
    "pprint": _sized_value,
    "center": _width(MAX_OUTPUT_CHARS, 1, "width"),
    "indent": _width(10_000, 1, "width"),
    "wordwrap": _width(MAX_OUTPUT_CHARS, 1, "width"),
    "truncate": _width(MAX_OUTPUT_CHARS, 1, "length"),
    "slice": _width(10_000, 1, "slices"),
    "batch": _width(MAX_OUTPUT_CHARS, 1, "linecount"),
    "replace": _replace_size,
    "join": _join_size,
    "format": _format_filter,
}


def _bounded_filter(function: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    passes = hasattr(function, "jinja_pass_arg")  # the context or environment comes first

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*(args[1:] if passes else args), **kwargs)
        return function(*args, **kwargs)

    bounded.__name__ = getattr(function, "__name__", "filter")
    for marker in ("jinja_pass_arg",):  # Jinja passes the context or environment by this mark
        if hasattr(function, marker):
            setattr(bounded, marker, getattr(function, marker))
    return bounded


def make_environment(engine: TemplateEngine) -> SandboxedEnvironment:
    """The sandbox with foxmock's filters and helpers; randomness from the engine's RNG."""
    rng = engine.rng
    env = _BoundedSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_printable,
    )
    env.optimized = False  # constant folding would run filters at load time, unbounded
    for name in ("lipsum", "cycler", "joiner"):  # unbounded text, or Python objects to print
        del env.globals[name]
    for name, check in _FILTER_BOUNDS.items():
        env.filters[name] = _bounded_filter(env.filters[name], check)
    env.filters.update(
        regex_search=_regex_search,
        regex_replace=_regex_replace,
        json=_bounded_filter(to_json, _sized_value),
        from_json=_from_json,
        random=lambda seq: rng.choice(list(seq)),
    )
    env.globals.update(
        uuid=lambda: str(_uuid.UUID(int=rng.getrandbits(128), version=4)),
        now=lambda fmt=None: _now(engine, fmt),
        random_int=lambda low, high: rng.randint(int(low), int(high)),
        random_choice=lambda seq: rng.choice(list(seq)),
        json=_bounded_filter(to_json, _sized_value),
        range=_bounded_range,
        **{_LOOP: _bounded, _CONCAT: _concat},
    )
    return env


def _now(engine: TemplateEngine, fmt: str | None = None) -> str:
    engine.read_clock = True
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime(fmt) if fmt else now.isoformat(timespec="seconds")


def _pick(ctx: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {name: ctx[name] for name in names if name in ctx}


def compile_template(
    env: SandboxedEnvironment, source: str, *, native: bool = False
) -> Callable[[Mapping[str, Any]], Any]:
    """Compile ``source`` in the sandbox; see `TemplateEngine.compile`."""
    whole = _WHOLE_EXPRESSION.match(source) if native else None
    try:
        tree = env.parse(source)
        _refuse_private_access(tree)
        # pass a template only the variables it names: each is computed on demand
        names = frozenset(meta.find_undeclared_variables(tree))
        if whole is not None:
            expression = _compile_expression(env, whole.group("expr"))
            return lambda ctx: _guard(lambda: expression(**_pick(ctx, names)))
        template = env.from_string(_Bounder().visit(tree))
    except TemplateError:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", exc.lineno) from None
    except Exception as exc:  # Jinja2 folds constants while compiling: anything can surface
        raise TemplateError(f"template cannot be compiled: {type(exc).__name__}: {exc}") from None
    return lambda ctx: _guard(lambda: template.render(_pick(ctx, names)))


def _compile_expression(env: SandboxedEnvironment, source: str) -> TemplateExpression:
    """``env.compile_expression``, with the loop and size bounds of whole templates."""
    expr = Parser(env, source, state="variable").parse_expression()
    tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)], lineno=1)
    return TemplateExpression(env.from_string(_Bounder().visit(tree)), False)


def _refuse_private_access(tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = str(node.arg.value)
        elif isinstance(node, nodes.Name):
            name = node.name
        else:
            continue
        if name.startswith("_"):
            raise TemplateError(
                f"template refers to private name {name!r}; templates may not reach "
                "Python internals",
                node.lineno,
            )


def _too_big(value: Any) -> bool:
    """Whether a native value holds more than the output cap (strings by length, items by 1)."""
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        seen += len(item) if isinstance(item, str) else 1
        if seen > MAX_OUTPUT_CHARS:
            return True
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _guard(render: Callable[[], Any]) -> Any:
    token = _BUDGET.set(_Budget(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        value = render()
    except SecurityError as exc:
        raise TemplateError(f"template refused by the sandbox: {exc}") from None
    except Exception as exc:  # a template may raise anything a helper raises
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None
    finally:
        _BUDGET.reset(token)
    if _too_big(value):
        raise TemplateError(f"template output exceeds {MAX_OUTPUT_CHARS} characters")
    return value
