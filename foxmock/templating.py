"""Templates over the request, compiled once at load time.

Text with only ``{{ name }}`` holes renders here directly; anything more goes to Jinja2's sandbox
in `foxmock.sandbox`, imported the first time such a template is compiled.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from foxmock.openai.request import ChatRequest

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 1.0
MAX_RANGE_STEPS = 1_000_000  # across all range() loops of one render
MAX_WRITTEN_CHARS = 4 * MAX_OUTPUT_CHARS  # all text one render writes: output, macros, set blocks
MAX_SORT_ITEMS = 100_000  # items sort, dictsort and groupby may order
MAX_WORDS = 200_000  # words wordwrap and urlize may walk
MAX_CALL_DEPTH = 40  # nesting of macro calls and recursive loops
_MARKERS = ("{{", "{%", "{#")
# ``{{ name }}``: a template made of these and plain text renders without Jinja2
_SUBSTITUTION = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(Exception):
    """A template that cannot be compiled or rendered; ``line`` is within the template."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _substitution(source: str, native: bool) -> Callable[[Mapping[str, Any]], Any] | None:
    """A render function for text with ``{{ name }}`` holes over request variables, or None.

    It renders exactly what Jinja2 would (``str`` of each value; a lone ``{{ name }}`` in native
    mode gives the value itself) for a source that has nothing else Jinja2 would interpret.
    """
    parts = _SUBSTITUTION.split(source)
    texts, names = parts[0::2], parts[1::2]
    if any(name not in _CONTEXT for name in names):
        return None
    if any("\r" in text or any(m in text for m in _MARKERS) for text in texts):
        return None  # Jinja2 would interpret these (or normalise the line break)
    if any(text.endswith("{") for text in texts[:-1]):
        return None  # "{{{ x }}": Jinja2 reads the first two braces as the opening
    if native and len(names) == 1 and not texts[0].strip() and not texts[1].strip():
        name = names[0]

        def value(ctx: Mapping[str, Any]) -> Any:
            found = _lookup(ctx, name)
            if isinstance(found, str) and len(found) > MAX_OUTPUT_CHARS:
                raise TemplateError(f"template output exceeds {MAX_OUTPUT_CHARS} characters")
            return found

        return value

    def render(ctx: Mapping[str, Any]) -> str:
        out = [texts[0]]
        for name, text in zip(names, texts[1:], strict=True):
            out.append(str(_lookup(ctx, name)))
            out.append(text)
        value = "".join(out)
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateError(f"template output exceeds {MAX_OUTPUT_CHARS} characters")
        return value

    return render


def _lookup(ctx: Mapping[str, Any], name: str) -> Any:
    try:
        return ctx[name]
    except Exception as exc:  # as Jinja2's guard reports it
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


class TemplateEngine:
    """One sandboxed environment per server; helpers draw from the server's seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.read_clock = False  # set by now(): that render depended on the time
        self._env: SandboxedEnvironment | None = None

    @property
    def env(self) -> SandboxedEnvironment:
        """The Jinja2 sandbox, made (and Jinja2 imported) on first use."""
        if self._env is None:
            from foxmock.sandbox import make_environment

            self._env = make_environment(self)
        return self._env

    def compile(self, source: str, *, native: bool = False) -> Callable[[Mapping[str, Any]], Any]:
        """Compile ``source`` to a render function; plain text compiles to a constant.

        With ``native``, a source that is one ``{{ expression }}`` renders to the expression's
        value (a number stays a number) instead of its text.
        """
        if not any(marker in source for marker in _MARKERS):
            return lambda _ctx: source
        simple = _substitution(source, native)
        if simple is not None:
            return simple
        from foxmock.sandbox import compile_template

        return compile_template(self.env, source, native=native)


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
