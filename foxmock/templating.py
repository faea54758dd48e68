"""Sandboxed Jinja2 templates over the request, compiled once at load time."""

from __future__ import annotations

import datetime as _dt
import json
import random
import re
import time
import uuid as _uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from foxmock.openai.request import ChatRequest

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 1.0
MAX_RANGE_STEPS = 1_000_000  # across all range() loops of one render
_MARKERS = ("{{", "{%", "{#")
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


class TemplateError(Exception):
    """A template that cannot be compiled or rendered; ``line`` is within the template."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _regex_search(value: Any, pattern: str, group: int | str = 1) -> str | None:
    match = re.search(pattern, str(value))
    if match is None:
        return None
    return match.group(group if match.re.groups else 0)


def _regex_replace(value: Any, pattern: str, replacement: str) -> str:
    return re.sub(pattern, replacement, str(value))


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)


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


def _bounded_range(*args: int) -> Iterator[int]:
    """``range`` that counts every step against the render's budget."""
    for i, value in enumerate(range(*args)):
        if i % 1000 == 0:
            _spend(1000)
        yield value


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, plus bounds on repetition, powers, loop steps and render time."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if operator == "*":
            size, times = (
                (_sized(left), right) if _sized(left) is not None else (_sized(right), left)
            )
            if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT_CHARS:
                raise SecurityError(f"repetition would exceed {MAX_OUTPUT_CHARS} items")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(0)
        return super().call(__context, __obj, *args, **kwargs)


def _pick(ctx: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {name: ctx[name] for name in names if name in ctx}


class TemplateEngine:
    """One sandboxed environment per server; helpers draw from the server's seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.read_clock = False  # set by now(): that render depended on the time
        env = _BoundedSandbox(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        env.filters.update(
            regex_search=_regex_search,
            regex_replace=_regex_replace,
            json=_to_json,
            from_json=_from_json,
            random=lambda seq: self.rng.choice(list(seq)),
        )
        env.globals.update(
            uuid=lambda: str(_uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            now=self._now,
            random_int=lambda low, high: self.rng.randint(int(low), int(high)),
            random_choice=lambda seq: self.rng.choice(list(seq)),
            json=_to_json,
            range=_bounded_range,
        )
        self.env = env

    def _now(self, fmt: str | None = None) -> str:
        self.read_clock = True
        now = _dt.datetime.now(_dt.timezone.utc)
        return now.strftime(fmt) if fmt else now.isoformat(timespec="seconds")

    def compile(self, source: str, *, native: bool = False) -> Callable[[Mapping[str, Any]], Any]:
        """Compile ``source`` to a render function; plain text compiles to a constant.

        With ``native``, a source that is one ``{{ expression }}`` renders to the expression's
        value (a number stays a number) instead of its text.
        """
        if not any(marker in source for marker in _MARKERS):
            return lambda _ctx: source
        whole = _WHOLE_EXPRESSION.match(source) if native else None
        try:
            tree = self.env.parse(source)
            self._refuse_private_access(tree)
            # pass a template only the variables it names: each is computed on demand
            names = frozenset(meta.find_undeclared_variables(tree))
            if whole is not None:
                expression = self.env.compile_expression(
                    whole.group("expr"), undefined_to_none=False
                )
                return lambda ctx: self._guard(lambda: expression(**_pick(ctx, names)))
            template = self.env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}", exc.lineno) from None
        return lambda ctx: self._guard(lambda: template.render(_pick(ctx, names)))

    @staticmethod
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

    @staticmethod
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
        if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS:
            raise TemplateError(f"template output exceeds {MAX_OUTPUT_CHARS} characters")
        return value


_CONTEXT: dict[str, Callable[[ChatRequest], Any]] = {
    "request": lambda r: r.body,
    "model": lambda r: r.model,
    "messages": lambda r: r.messages,
    "last_user": lambda r: r.last_user,
    "last_message": lambda r: r.last_message,
    "system": lambda r: r.system,
    "tools": lambda r: r.tools_offered,
    "tool_choice": lambda r: r.tool_choice,
    "tool_results": lambda r: [{"name": n, "result": v} for n, v in r.tool_results],
    "tool_result": lambda r: r.tool_result,
    "headers": lambda r: r.headers,
    "turn": lambda r: r.turn,
    "stream": lambda r: r.stream,
    "response_format": lambda r: r.response_format,
}


class RequestContext(Mapping[str, Any]):
    """The variables a response template sees, computed only when a template reads them."""

    def __init__(self, req: ChatRequest) -> None:
        self._req = req
        self.read_headers = False  # a template read the headers: not a function of the body

    def __getitem__(self, key: str) -> Any:
        if key == "headers":
            self.read_headers = True
        return _CONTEXT[key](self._req)

    def __iter__(self) -> Iterator[str]:
        return iter(_CONTEXT)

    def __len__(self) -> int:
        return len(_CONTEXT)

    def __contains__(self, key: object) -> bool:
        return key in _CONTEXT
