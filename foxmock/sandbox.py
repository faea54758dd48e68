"""The Jinja2 side of templating: a bounded sandbox, compiled templates and render guards.

Imported on first use only: a scenario set whose templates are all plain substitutions
(``Hello {{ last_user }}``) never loads Jinja2 (see `foxmock.templating`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import types
import uuid as _uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from foxmock.regexes import Match, Regex, RegexProblem, compile_safe
from foxmock.template_bounds import (
    BUDGET,
    FILTER_BOUNDS,
    MAX_INT_BITS,
    REPLACED_FILTERS,
    allowed_methods,
    binop_check,
    binop_result,
    bounded_callable,
    bounded_dict,
    bounded_namespace,
    check,
    check_call_depth,
    check_format_spec,
    check_method_call,
    collect,
    concat,
    counted,
    field_size,
    int_bits,
    start_budget,
    strftime_size,
    tick,
    to_json,
    value_size,
    write,
)
from foxmock.templating import MAX_OUTPUT_CHARS, TemplateError

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
        tick()  # a pattern such as a.*z|a rescans the text at every match
        out = match.expand(replacement)
        room[0] -= len(out) - len(match.group(0))
        if room[0] < 0:
            raise SecurityError(f"regex_replace would exceed {MAX_OUTPUT_CHARS} characters")
        return out

    check("regex_replace", value_size(value))
    return _regex(pattern).sub(substitute, text)


def _from_json(value: Any) -> Any:
    check("from_json", value_size(value))
    return json.loads(str(value))


def _collect_for_loop(iterable: Any) -> Iterator[Any]:
    """A loop's iterable when its body reads ``loop.length``: collected under the limit."""
    return counted(collect(iterable, "loop"))


# names the compiled code calls; templates cannot spell them (private names are refused)
_LOOP, _LOOP_SIZED, _CONCAT, _WRITE = (
    "_foxmock_bounded",
    "_foxmock_collected",
    "_foxmock_concat",
    "_foxmock_write",
)
_LENGTHY = frozenset({"length", "revindex", "revindex0"})  # make a loop list its iterable


def _reads_loop_length(node: nodes.For) -> bool:
    """Whether the body may read the loop's length (or hands ``loop`` on, which might).

    ``loop`` in a nested ``for`` names that inner loop, so the walk skips nested bodies (it
    still reads their iterables, which the outer loop evaluates): each node is visited for one
    loop only, and a template of deeply nested loops costs time in proportion to its size.
    """
    stack: list[nodes.Node] = [*node.body, *node.else_]
    if node.test is not None:
        stack.append(node.test)
    while stack:
        item = stack.pop()
        if isinstance(item, nodes.For):
            stack.append(item.iter)
            continue
        if isinstance(item, nodes.Getattr) and isinstance(item.node, nodes.Name):
            if item.node.name == "loop" and item.attr in _LENGTHY:
                return True
            continue  # loop.index and friends: harmless
        if isinstance(item, nodes.Name) and item.name == "loop":
            return True  # handed on (``{% set outer = loop %}``): it might be measured later
        stack.extend(item.iter_child_nodes())
    return False


def _filter(name: str, node: Any, args: list[Any], lineno: int) -> nodes.Filter:
    """``node|name(*args)``: a hidden filter, called directly (a call would go through
    the sandbox's `call`, several times slower)."""
    return nodes.Filter(node, name, args, [], None, None, lineno=lineno)


class _Bounder(NodeTransformer):
    """Route loops through the step budget, ``~`` through the size cap, output through a count.

    Literal text is counted only where it can repeat (in loops, macros and call blocks): once,
    it is part of the source, whose size the scenario file already bounds.
    """

    def __init__(self) -> None:
        self.repeating = 0

    def _repeated(self, node: nodes.Node) -> None:
        self.repeating += 1
        try:
            self.generic_visit(node)
        finally:
            self.repeating -= 1

    def visit_For(self, node: nodes.For) -> nodes.Node:
        sized = _reads_loop_length(node)
        self._repeated(node)
        node.iter = _filter(_LOOP_SIZED if sized else _LOOP, node.iter, [], node.lineno)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self._repeated(node)
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self._repeated(node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return _filter(_CONCAT, first, rest, node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            child
            if isinstance(child, nodes.TemplateData) and not self.repeating
            else _filter(_WRITE, child, [], child.lineno)
            for child in node.nodes
        ]
        return node


class _FormatBounds:
    """``str.format`` that counts what each field adds and refuses it over the limit."""

    growth = 1
    room = MAX_OUTPUT_CHARS

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self.room = MAX_OUTPUT_CHARS - len(format_string)
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc, no-any-return]

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a"):
            check("str.format", field_size(value, conversion, 0, 0), self.room)
        return super().convert_field(value, conversion)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        tick()
        width, precision = check_format_spec(format_spec)
        kind = format_spec[-1:] if format_spec[-1:].isalpha() else ""
        self.room -= field_size(value, kind, width, precision) * self.growth
        if self.room < 0:
            raise SecurityError(f"str.format would exceed {MAX_OUTPUT_CHARS} characters")
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _Formatter(_FormatBounds, SandboxedFormatter):
    pass


class _EscapeFormatter(_FormatBounds, SandboxedEscapeFormatter):
    growth = 5  # each field is escaped


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox (no mutating the request), plus bounds on sizes, steps, depth and time."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "/", "//"})

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
            return None
        if value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        template: str = value.__self__
        mapped = value.__name__ == "format_map"

        def formatted(*args: Any, **kwargs: Any) -> str:
            if mapped:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs = args[0]
                args = ()
            formatter: SandboxedFormatter = (
                _EscapeFormatter(self, escape=template.escape)
                if isinstance(template, Markup)
                else _Formatter(self)
            )
            return type(template)(formatter.vformat(template, args, kwargs))

        return formatted

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value) or isinstance(value, Macro):
            return True
        allowed = allowed_methods(obj)
        return allowed is None or attr in allowed

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        size = binop_check(operator, left, right)
        return binop_result(super().call_binop(context, operator, left, right), size)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is not None:
            budget.tick()
        if not isinstance(__obj, (Macro, LoopContext)):
            check_method_call(__obj, args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_collect_for_loop(args[0]), *args[1:])
        if budget is not None:
            budget.depth += 1
        try:
            check_call_depth(budget)
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            if budget is not None:
                budget.depth -= 1


def _width(limit: int, position: int, keyword: str) -> Callable[..., None]:
    """A check that the argument at ``position`` (or ``keyword``) is at most ``limit``."""

    def check_width(*args: Any, **kwargs: Any) -> None:
        value = kwargs.get(keyword, args[position] if len(args) > position else None)
        if isinstance(value, (int, float)) and value > limit:
            raise SecurityError(f"{keyword} {value} is over the limit of {limit}")

    return check_width


def _with_width(
    prepare: Callable[..., Any] | None, width: Callable[..., None]
) -> Callable[..., Any]:
    def both(value: Any, *args: Any, **kwargs: Any) -> Any:
        width(value, *args, **kwargs)
        return prepare(value, *args, **kwargs) if prepare is not None else value

    return both


_WIDTHS = {  # arguments that are sizes, besides what FILTER_BOUNDS estimates
    "center": _width(MAX_OUTPUT_CHARS, 1, "width"),
    "indent": _width(10_000, 1, "width"),
    "wordwrap": _width(MAX_OUTPUT_CHARS, 1, "width"),
    "truncate": _width(MAX_OUTPUT_CHARS, 1, "length"),
}


def make_environment(engine: TemplateEngine) -> SandboxedEnvironment:
    """The sandbox with foxmock's filters and helpers; randomness from the engine's RNG."""
    rng = engine.rng
    env = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.optimized = False  # constant folding would run filters at load time, unbounded
    for name in ("lipsum", "cycler", "joiner"):  # unbounded text, or Python objects to print
        del env.globals[name]
    env.filters.update(REPLACED_FILTERS)
    env.filters.update(
        regex_search=_regex_search,
        regex_replace=_regex_replace,
        json=to_json,
        from_json=_from_json,
        random=lambda seq: rng.choice(collect(seq, "random")),
    )
    for name, function in list(env.filters.items()):
        prepare = FILTER_BOUNDS.get(name)
        if name in _WIDTHS:
            prepare = _with_width(prepare, _WIDTHS[name])
        env.filters[name] = bounded_callable(cast(Callable[..., Any], function), prepare)
    for name, function in list(env.tests.items()):
        env.tests[name] = bounded_callable(cast(Callable[..., Any], function))

    def random_int(low: Any, high: Any) -> int:
        if max(int_bits(int(low)), int_bits(int(high))) > MAX_INT_BITS:
            raise SecurityError("integer too large for random_int")
        return rng.randint(int(low), int(high))

    env.globals.update(
        uuid=lambda: str(_uuid.UUID(int=rng.getrandbits(128), version=4)),
        now=lambda fmt=None: _now(engine, fmt),
        random_int=random_int,
        random_choice=lambda seq: rng.choice(collect(seq, "random_choice")),
        json=to_json,
        range=lambda *args: counted(range(*args)),
        dict=bounded_dict,
        namespace=bounded_namespace,
    )
    env.filters.update(
        {_LOOP: counted, _LOOP_SIZED: _collect_for_loop, _CONCAT: concat, _WRITE: write}
    )
    return env


def _now(engine: TemplateEngine, fmt: str | None = None) -> str:
    engine.read_clock = True
    now = _dt.datetime.now(_dt.timezone.utc)
    if not fmt:
        return now.isoformat(timespec="seconds")
    strftime_size(str(fmt))
    return now.strftime(str(fmt))


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
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter, nodes.Test)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = str(node.arg.value)
        elif isinstance(node, (nodes.Name, nodes.Filter, nodes.Test)):
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
    token = BUDGET.set(start_budget())
    try:
        value = render()
    except SecurityError as exc:
        raise TemplateError(f"template refused by the sandbox: {exc}") from None
    except Exception as exc:  # a template may raise anything a helper raises
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None
    finally:
        BUDGET.reset(token)
    if _too_big(value):
        raise TemplateError(f"template output exceeds {MAX_OUTPUT_CHARS} characters")
    return value
