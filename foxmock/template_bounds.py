"""Size, time and depth bounds for one template render, checked before a value is built.

Every filter, test, allowed method and operator of the sandbox goes through here: each checks
the render's deadline when it is called, and each that can make a value larger than its inputs
estimates the size of its result from its inputs first and refuses it over the limit. Long
filters (sorting, regular-expression replacement, JSON, walking big lists) check the deadline
inside too. The limits are the ``MAX_*`` settings of `foxmock.templating`.

Two measures of a value: its *weight* (the characters of its strings plus one per item of its
containers, what building it costs) and its *text size* (an upper bound of ``len(str(value))``,
what printing it costs). Both stop counting once past the limit they are asked about.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import groupby
from pprint import PrettyPrinter
from typing import IO, Any, cast

from jinja2 import pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import ignore_case, make_attrgetter, make_multi_attrgetter
from jinja2.runtime import LoopContext, Macro, Undefined
from jinja2.utils import Namespace
from markupsafe import Markup

from foxmock.templating import (
    MAX_CALL_DEPTH,
    MAX_OUTPUT_CHARS,
    MAX_RANGE_STEPS,
    MAX_RENDER_SECONDS,
    MAX_SORT_ITEMS,
    MAX_WORDS,
    MAX_WRITTEN_CHARS,
)

CAP = MAX_OUTPUT_CHARS
MAX_INT_BITS = 100_000  # integers a render may compute with (about 30,000 digits)
MAX_JSON_INDENT = 1_000  # the ``indent`` of tojson and json
_TICK_EVERY = 1024  # items a long filter walks between two looks at the clock
_ESCAPE_GROWTH = 5  # markupsafe's escape turns one character into at most five ("&#34;")
_CASE_GROWTH = 3  # str.upper and friends turn one character into at most three ("ΐ")

# -- the render's budget ---------------------------------------------------------------------


@dataclass
class Budget:
    """What one render has spent: loop steps, text written, call depth; and its deadline."""

    deadline: float
    steps: int = 0
    written: int = 0
    depth: int = 0
    weights: dict[int, tuple[Any, int]] = field(default_factory=dict)  # recent results

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"template took longer than {MAX_RENDER_SECONDS:g}s to render")

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_RANGE_STEPS:
            raise SecurityError(f"template loops ran more than {MAX_RANGE_STEPS} steps")
        self.tick()

    def remember(self, value: Any, weight: int) -> None:
        """Keep the weight of a container just built, so growing it again costs little."""
        if len(self.weights) >= 16:
            del self.weights[next(iter(self.weights))]
        self.weights[id(value)] = (value, weight)


_monotonic = time.monotonic
BUDGET: ContextVar[Budget | None] = ContextVar("foxmock_render_budget", default=None)


def start_budget() -> Budget:
    return Budget(time.monotonic() + MAX_RENDER_SECONDS)


def tick() -> None:
    """Refuse to go on past the render's deadline."""
    budget = BUDGET.get()
    if budget is not None and _monotonic() > budget.deadline:
        budget.tick()


def spend(steps: int) -> None:
    budget = BUDGET.get()
    if budget is not None:
        budget.spend(steps)


def check(what: str, size: int, limit: int = CAP, unit: str = "characters") -> int:
    """``size``, refused (naming ``what``) when it is over ``limit``."""
    if size > limit:
        shown = f" ({size})" if size < 10 * limit else ""
        raise SecurityError(f"{what} would exceed {limit} {unit}{shown}")
    return size


def ticking(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable``, looking at the clock every `_TICK_EVERY` items."""
    for i, item in enumerate(iterable):
        if i % _TICK_EVERY == 0:
            tick()
        yield item


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable`` as a ``for`` loop does, counting each step against the budget."""
    for i, item in enumerate(iterable):
        if i % 1000 == 0:
            spend(1000)
        yield item


# -- measures --------------------------------------------------------------------------------


def int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


_SCALARS = frozenset({int, float, bool, type(None)})


def weight(value: Any, limit: int = CAP) -> int:
    """Characters of the strings in ``value`` plus one per item, up to just past ``limit``."""
    if isinstance(value, str):
        return len(value)
    budget = BUDGET.get()
    known = budget.weights if budget is not None else {}
    total, visits, stack = 0, 0, [value]
    while stack and total <= limit and visits <= 4 * limit:  # visits: even through a cycle
        item = stack.pop()
        visits += 1
        if visits % 65536 == 0:
            tick()
        kind = type(item)
        if kind is str:
            total += len(item) or 1
        elif kind in _SCALARS:
            total += 1
        elif id(item) in known and known[id(item)][0] is item:
            total += known[id(item)][1] or 1
        elif kind is list or kind is tuple or isinstance(item, (list, tuple, set, frozenset)):
            total += 0 if item else 1
            stack.extend(item)
        elif isinstance(item, str):
            total += len(item) or 1
        elif isinstance(item, Mapping):
            total += 1
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
    return total if total > limit or not stack else limit + 1


def repr_size(text: str) -> int:
    """``len(repr(text))``, without building it all at once."""
    if text.isascii() and text.isprintable():
        both = "'" in text and '"' in text
        return len(text) + 2 + text.count("\\") + (text.count("'") if both else 0)
    step = 1 << 16
    pieces = sum(len(repr(text[i : i + step])) - 2 for i in range(0, len(text), step))
    return pieces + 2 + text.count("'")


def _scalar_size(item: Any) -> int | None:
    """``len(repr(item))`` for a value printed in one piece, None for a container."""
    if item is None or isinstance(item, bool):
        return 5
    if isinstance(item, int):
        return int(int_bits(item) * 0.30103) + 2
    if isinstance(item, float):
        return 24
    if isinstance(item, (bytes, bytearray)):
        return 4 * len(item) + 3
    if isinstance(item, Undefined):
        return 0
    if isinstance(item, (Macro, LoopContext)) or callable(item):
        return 200 + len(getattr(item, "__qualname__", "") or getattr(item, "name", "") or "")
    return None


def text_size(value: Any, limit: int = CAP) -> int:
    """An upper bound of ``len(str(value))``, up to just past ``limit``."""
    if isinstance(value, str):
        return len(value)
    scalar = _scalar_size(value)
    if scalar is not None:
        return scalar
    if weight(value, limit) > limit:
        return limit + 1  # each character and item prints as at least one character
    total, stack, visits = 0, [value], 0
    while stack and total <= limit:
        item = stack.pop()
        visits += 1
        if visits % 65536 == 0:
            tick()
        if isinstance(item, str):
            total += repr_size(item) + (8 if isinstance(item, Markup) else 0)
            continue
        scalar = _scalar_size(item)
        if scalar is not None:
            total += scalar
        elif isinstance(item, Namespace):
            total += 14
            stack.append(item._Namespace__attrs)  # its repr shows them
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item) + 40  # ", " and ": "; a view or proxy names its type
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item) + (64 if type(item) not in (list, tuple) else 0)
            stack.extend(item)
        else:
            total += 200  # a generator, a view: printed as <... at 0x...>
    return total


def value_size(value: Any, limit: int = CAP) -> int:
    """``len(str(value))`` bound, at the top level exact for strings."""
    return len(value) if isinstance(value, str) else text_size(value, limit)


# -- collecting iterables --------------------------------------------------------------------


def collect(iterable: Any, what: str = "list") -> Any:
    """``iterable`` as something sized: a sequence as it is, anything lazy as a bounded list."""
    if isinstance(iterable, (list, tuple, str, Mapping, range)):
        return iterable
    out: list[Any] = []
    total = 0
    for i, item in enumerate(iterable):
        if i % _TICK_EVERY == 0:
            tick()
        kind = type(item)
        if kind is str:
            total += len(item) or 1
        elif kind in _SCALARS:
            total += 1
        else:
            total += weight(item, CAP - total) or 1
        if total > CAP:
            raise SecurityError(f"{what} would hold more than {CAP} characters or items")
        out.append(item)
    budget = BUDGET.get()
    if budget is not None:
        budget.remember(out, total)
    return out


def _sortable(value: Any, what: str) -> Any:
    items = collect(value, what)
    if len(items) > MAX_SORT_ITEMS:
        raise SecurityError(f"{what} of {len(items)} items refused (limit {MAX_SORT_ITEMS})")
    return items


def _ticked_key(key: Callable[[Any], Any]) -> Callable[[Any], Any]:
    calls = [0]

    def ticked(item: Any) -> Any:
        calls[0] += 1
        if calls[0] % _TICK_EVERY == 0:
            tick()
        return key(item)

    return ticked


# -- operators -------------------------------------------------------------------------------


def concat(*parts: Any) -> str:
    """The ``~`` operator, refusing results over the limit before building them."""
    total = 0
    for part in parts:
        total += value_size(part, CAP - total)
        check("concatenation", total)
    return "".join(str(part) for part in parts)


_CONVERSION = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?(?P<kind>.?)",
    re.S,
)
_WIDE = re.compile(r"\d{7,}")  # a width or precision of a million or more


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def field_size(value: Any, kind: str, width: int, precision: int) -> int:
    """Characters one %-conversion or format field may produce."""
    if kind in ("r", "a"):  # repr, or ascii (up to ten characters for one)
        size = text_size([value]) * (10 if kind == "a" else 1)
    elif kind in ("s", "") or isinstance(value, str):
        size = value_size(value)
    elif kind == "c":
        size = 1
    else:  # a number in any base, or a float: digits, sign, point, exponent
        size = int_bits(value) + 2 if isinstance(value, int) else 400 + text_size(value)
        size += precision
    return max(size, width)


def percent_size(template: str, args: Any) -> int:
    """An upper bound of ``len(template % args)``."""
    if _WIDE.search(template):
        raise SecurityError("a format width or precision of a million or more is refused")
    positional = list(args) if isinstance(args, tuple) else [args]
    total, at = len(template), 0
    for i, conversion in enumerate(_CONVERSION.finditer(template)):
        if i % _TICK_EVERY == 0:
            tick()
        numbers = []
        for part in ("width", "prec"):
            spec = conversion.group(part)
            if spec == "*":
                numbers.append(abs(_number(positional[at] if at < len(positional) else 0)))
                at += 1
            else:
                numbers.append(int(spec) if spec else 0)
        kind, key = conversion.group("kind"), conversion.group("key")
        if kind == "%":
            continue
        if key is not None and isinstance(args, Mapping):
            value = args.get(key, "")
        else:
            value = positional[at] if at < len(positional) else ""
            at += 1
        total += field_size(value, kind, numbers[0], numbers[1])
        check("%-formatting", total)
    return total


def check_format_spec(spec: str) -> tuple[int, int]:
    """The width and precision a ``format`` spec asks for, refusing huge ones."""
    if _WIDE.search(spec):
        raise SecurityError("a format width or precision of a million or more is refused")
    found = re.search(r"(\d*)(?:\.(\d+))?[a-zA-Z%]?$", spec)
    if found is None:
        return 0, 0
    return int(found.group(1) or 0), int(found.group(2) or 0)


def binop_check(operator: str, left: Any, right: Any) -> int | None:
    """Refuse ``left operator right`` when its result would be over the limits.

    Returns the weight of a list or string it makes, when that is known.
    """
    if operator == "**":
        if isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if isinstance(right, int) and int_bits(left) * abs(right) > MAX_INT_BITS:
            raise SecurityError("power too large")
    elif operator == "*":
        if int_bits(left) + int_bits(right) > MAX_INT_BITS:
            raise SecurityError("product too large")
        return _check_repetition(left, right)
    elif operator in ("/", "//", "%") and max(int_bits(left), int_bits(right)) > MAX_INT_BITS:
        raise SecurityError(f"integer too large for {operator}")
    if operator == "%" and isinstance(left, str):
        growth = _ESCAPE_GROWTH if isinstance(left, Markup) else 1
        return check("%-formatting", percent_size(left, right) * growth)
    if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, type(left)):
        return check("addition", weight(left) + weight(right), unit="items")
    return None


def _check_repetition(left: Any, right: Any) -> int | None:
    sequence, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, (str, list, tuple)) and isinstance(times, int) and times > 0:
        one = weight(sequence, CAP // times + 1)
        return check("repetition", one * times, unit="items")
    return None


def binop_result(result: Any, size: int | None) -> Any:
    """``result``, its weight remembered when it is a list (so growing it again costs little)."""
    if size is not None and isinstance(result, list):
        budget = BUDGET.get()
        if budget is not None:
            budget.remember(result, size)
    return result


# -- output ----------------------------------------------------------------------------------


def write(value: Any) -> Any:
    """What ``{{ }}`` and literal text write: counted, refused before ``str()`` when too big."""
    kind = type(value)
    if kind is str:
        size = len(value)
    elif kind is int:
        size = int(value.bit_length() * 0.30103) + 2
    else:
        size = 24 if kind is float else text_size(value)
    if size > CAP:
        raise SecurityError(f"value to print has more than {CAP} characters")
    budget = BUDGET.get()
    if budget is not None:
        budget.written += size
        if budget.written > MAX_WRITTEN_CHARS:
            raise SecurityError(
                f"template wrote more than {MAX_WRITTEN_CHARS} characters "
                "(output, macros and set blocks together)"
            )
    return value


class _CappedText:
    """A text stream that refuses to grow past the limit."""

    def __init__(self, what: str) -> None:
        self.what, self.size = what, 0
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.size += len(text)
        check(self.what, self.size)
        if len(self.parts) % _TICK_EVERY == 0:
            tick()
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def bounded_pformat(value: Any) -> str:
    """``pprint.pformat(value)`` built piece by piece under the limit."""
    check("pprint", text_size(value))
    out = _CappedText("pprint")
    PrettyPrinter(stream=cast("IO[str]", out)).pprint(value)
    return out.text()[:-1]


def _html_safe(text: str) -> str:
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )


def bounded_dumps(
    value: Any, indent: Any = None, *, ensure_ascii: bool, sort_keys: bool, html: bool
) -> str:
    """``json.dumps`` under the limit: directly when it is surely small, else piece by piece."""
    if indent is not None and not isinstance(indent, (int, str)):
        raise TypeError("indent must be a number or a string")
    if indent is not None and (len(indent) if isinstance(indent, str) else indent) > 1000:
        raise SecurityError(f"a JSON indent over {MAX_JSON_INDENT} is refused")
    check("JSON", weight(value))  # every character and item is at least one character of JSON
    kwargs: dict[str, Any] = {"ensure_ascii": ensure_ascii, "sort_keys": sort_keys}
    if indent is None and text_size(value) * 12 <= CAP:  # 12: an astral character as \\u pairs
        text = json.dumps(value, **kwargs)
        return _html_safe(text) if html else text
    out = _CappedText("JSON")
    for chunk in json.JSONEncoder(indent=indent, **kwargs).iterencode(value):
        out.write(_html_safe(chunk) if html else chunk)
    return out.text()


# -- filters ---------------------------------------------------------------------------------

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_WRAP_BREAKS = "\t\n\x0b\x0c\r -"  # where textwrap may cut (ASCII whitespace and hyphens)
_HTML_SPECIAL = "&<>'\""


def _lines(text: str) -> int:
    return sum(text.count(c) for c in _LINE_BREAKS) + 2


def _escaped_size(value: Any) -> int:
    if isinstance(value, Markup):
        return len(value)
    text = value if isinstance(value, str) else None
    if text is None:
        return text_size(value) * _ESCAPE_GROWTH
    return len(text) + (_ESCAPE_GROWTH - 1) * sum(text.count(c) for c in _HTML_SPECIAL)


def _case_size(value: Any) -> int:
    size = value_size(value)
    return size if isinstance(value, str) and value.isascii() else size * _CASE_GROWTH


def _check_case(what: str) -> Callable[..., Any]:
    def prepare(value: Any, *args: Any, **kwargs: Any) -> Any:
        check(what, _case_size(value))
        return value

    return prepare


def _center(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
    check("center", max(value_size(value), _number(width)))
    return value


def _indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
    check("indent", value_size(value))
    text = str(value)
    prefix = len(width) if isinstance(width, str) else _number(width)
    check("indent", len(text) + _lines(text) * prefix)
    return value


def _escape(value: Any, *args: Any, **kwargs: Any) -> Any:
    check("escape", _escaped_size(value))
    return value


def _sized(what: str) -> Callable[..., Any]:
    def prepare(value: Any, *args: Any, **kwargs: Any) -> Any:
        check(what, value_size(value))
        return value

    return prepare


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
    check("format", value_size(value))
    percent_size(str(value), kwargs or args)
    return value


def _join(value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = collect(value, "join")
    separator = value_size(d)
    total = 0
    for i, item in enumerate(items):
        if i % _TICK_EVERY == 0:
            tick()
        total += value_size(item, CAP - total) + (separator if i else 0)
        check("join", total)
    return items


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None) -> Any:
    check("replace", value_size(value))
    text = str(value)
    replace_size(text, str(old), str(new), count, "replace")
    return value


def replace_size(text: str, old: str, new: str, count: Any, what: str) -> int:
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return check(what, len(text) + hits * max(len(new) - len(old), 0))


def _truncate(value: Any, length: Any = 255, *args: Any, **kwargs: Any) -> Any:
    check("truncate", min(value_size(value), _number(length) + 100))
    return value


def _urlencode(value: Any) -> Any:
    if isinstance(value, str) or not isinstance(value, Iterable):
        _quoted_size(value, _PATH_SAFE)
        return value
    items = list(value.items()) if isinstance(value, Mapping) else collect(value, "urlencode")
    total = 0
    for i, pair in enumerate(items):
        if i % _TICK_EVERY == 0:
            tick()
        key, val = pair
        total += _quoted_size(key, _QS_SAFE) + _quoted_size(val, _QS_SAFE) + 2
        check("urlencode", total)
    return items


_QS_SAFE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~"
_PATH_SAFE = _QS_SAFE + b"/"  # a lone string keeps its slashes


def _quoted_size(value: Any, safe: bytes) -> int:
    if isinstance(value, bytes):
        return check("urlencode", 3 * len(value))
    check("urlencode", value_size(value))
    data = str(value).encode("utf-8", "surrogatepass")
    unsafe = len(data.translate(None, safe))
    return check("urlencode", len(data) + 2 * unsafe)


def _urlize(value: Any, *args: Any, **kwargs: Any) -> Any:
    check("urlize", value_size(value))
    text = str(value)
    words = _words(text, "urlize")
    extra = sum(len(str(a)) for a in (*args, *kwargs.values()) if isinstance(a, str))
    check("urlize", _escaped_size(text) * 2 + words * (80 + extra))
    return value


def _words(text: str, what: str) -> int:
    """Places a word filter may cut ``text`` at, refused over `MAX_WORDS`."""
    words = sum(text.count(c) for c in _WRAP_BREAKS) + 1
    if words > MAX_WORDS:
        raise SecurityError(f"{what} of {words} words refused (limit {MAX_WORDS})")
    return words


def _wordwrap(value: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Any:
    check("wordwrap", value_size(value))
    text = str(value)
    words = _words(text, "wordwrap")
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    joint = len(wrapstring) if isinstance(wrapstring, str) else 2
    lines = words + len(text) // max(_number(width), 1) + _lines(text)
    check("wordwrap", len(text) + lines * joint)
    return value


def _xmlattr(value: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(value, Mapping):
        total = 0
        for key, val in value.items():
            total += _escaped_size(key) + _escaped_size(val) + 4
            check("xmlattr", total)
    return value


def _width(limit: int, what: str) -> Callable[..., Any]:
    def prepare(value: Any, size: Any = 0, *args: Any, **kwargs: Any) -> Any:
        if isinstance(size, (int, float)) and size > limit:
            raise SecurityError(f"{what} of {size} is over the limit of {limit}")
        collected = collect(value, what)
        return ticking(collected) if what == "batch" else collected

    return prepare


def _collecting(what: str, *, tick: bool = False) -> Callable[..., Any]:
    """Collect a lazy input; with ``tick``, walk it watching the clock (a Python-level loop)."""

    def prepare(value: Any, *args: Any, **kwargs: Any) -> Any:
        collected = collect(value, what)
        return ticking(collected) if tick and not isinstance(collected, str) else collected

    return prepare


def _lazy(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value if isinstance(value, (str, Mapping)) else ticking(value)


# filters whose arguments decide how much they build: checked (and lazy inputs bounded) first
FILTER_BOUNDS: dict[str, Callable[..., Any]] = {
    "batch": _width(CAP, "batch"),
    "capitalize": _check_case("capitalize"),
    "center": _center,
    "e": _escape,
    "escape": _escape,
    "forceescape": _escape,
    "format": _format_filter,
    "indent": _indent,
    "join": _join,
    "list": _collecting("list"),
    "lower": _check_case("lower"),
    "map": _lazy,
    "max": _lazy,
    "min": _lazy,
    "reject": _lazy,
    "rejectattr": _lazy,
    "replace": _replace,
    "reverse": _collecting("reverse"),
    "safe": _sized("safe"),
    "select": _lazy,
    "selectattr": _lazy,
    "slice": _width(10_000, "slice"),
    "string": _sized("string"),
    "striptags": _sized("striptags"),
    "title": _check_case("title"),
    "trim": _sized("trim"),
    "truncate": _truncate,
    "unique": _collecting("unique", tick=True),
    "upper": _check_case("upper"),
    "urlencode": _urlencode,
    "urlize": _urlize,
    "wordcount": _sized("wordcount"),
    "wordwrap": _wordwrap,
    "xmlattr": _xmlattr,
}


@pass_environment
def do_sort(
    environment: Any,
    value: Any,
    reverse: bool = False,
    case_sensitive: bool = False,
    attribute: Any = None,
) -> list[Any]:
    """Jinja2's ``sort``, with a bounded input and a deadline while computing keys."""
    post = None if case_sensitive else ignore_case
    key = _ticked_key(make_multi_attrgetter(environment, attribute, postprocess=post))
    return sorted(_sortable(value, "sort"), key=key, reverse=reverse)


def do_dictsort(
    value: Any, case_sensitive: bool = False, by: str = "key", reverse: bool = False
) -> list[tuple[Any, Any]]:
    """Jinja2's ``dictsort``, bounded as `do_sort`."""
    if by not in ("key", "value"):
        from jinja2.exceptions import FilterArgumentError

        raise FilterArgumentError('You can only sort by either "key" or "value"')
    position = 0 if by == "key" else 1

    def key(item: tuple[Any, Any]) -> Any:
        return item[position] if case_sensitive else ignore_case(item[position])

    items = _sortable(list(value.items()), "dictsort")
    return sorted(items, key=_ticked_key(key), reverse=reverse)


@pass_environment
def do_groupby(
    environment: Any,
    value: Any,
    attribute: Any,
    default: Any = None,
    case_sensitive: bool = False,
) -> list[Any]:
    """Jinja2's ``groupby``, bounded as `do_sort`."""
    from jinja2.filters import _GroupTuple

    post = None if case_sensitive else ignore_case
    key = _ticked_key(make_attrgetter(environment, attribute, postprocess=post, default=default))
    ordered = sorted(_sortable(value, "groupby"), key=key)
    groups = [(k, list(values)) for k, values in groupby(ordered, key)]
    if case_sensitive:
        return [_GroupTuple(k, values) for k, values in groups]
    shown = make_attrgetter(environment, attribute, default=default)
    return [_GroupTuple(shown(values[0]), values) for _, values in groups]


@pass_environment
def do_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja2's ``sum``; lists and tuples are joined in linear time, under the limit."""
    items = collect(iterable, "sum")
    if attribute is not None:
        getter = make_attrgetter(environment, attribute)
        items = [getter(item) for item in ticking(items)]
    kind = type(start)
    if kind in (list, tuple) and all(type(item) is kind for item in items):
        check("sum", weight(start) + sum(weight(item, CAP) for item in ticking(items)))
        joined = list(start)
        for item in ticking(items):
            joined.extend(item)
        return joined if kind is list else tuple(joined)
    return sum(ticking(items), start)


def do_tojson(value: Any, indent: Any = None) -> Markup:
    """Jinja2's ``tojson`` (HTML-safe, sorted keys), under the limit."""
    return Markup(bounded_dumps(value, indent, ensure_ascii=True, sort_keys=True, html=True))


def to_json(value: Any, indent: Any = None) -> str:
    """foxmock's ``json`` filter and helper, under the limit."""
    return bounded_dumps(value, indent, ensure_ascii=False, sort_keys=False, html=False)


def do_pprint(value: Any) -> str:
    return bounded_pformat(value)


REPLACED_FILTERS: dict[str, Callable[..., Any]] = {
    "sort": do_sort,
    "dictsort": do_dictsort,
    "groupby": do_groupby,
    "sum": do_sum,
    "tojson": do_tojson,
    "pprint": do_pprint,
}


def bounded_callable(
    function: Callable[..., Any], prepare: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """``function`` (a filter or test) that checks the deadline, and ``prepare``, first."""
    passes = hasattr(function, "jinja_pass_arg")  # the context or environment comes first

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is not None and _monotonic() > budget.deadline:
            budget.tick()
        if prepare is not None and len(args) > passes:
            value = args[passes]
            prepared = prepare(*args[passes:], **kwargs)
            if prepared is not value:
                args = (*args[:passes], prepared, *args[passes + 1 :])
        return function(*args, **kwargs)

    bounded.__name__ = getattr(function, "__name__", "filter")
    if passes:
        bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


# -- methods ---------------------------------------------------------------------------------

_STR_METHODS = frozenset(
    (
        "capitalize",
        "casefold",
        "center",
        "count",
        "endswith",
        "expandtabs",
        "find",
        "format",
        "format_map",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "isidentifier",
        "islower",
        "isnumeric",
        "isprintable",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "ljust",
        "lower",
        "lstrip",
        "maketrans",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rjust",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "translate",
        "upper",
        "zfill",
    )
)
_MARKUP_METHODS = _STR_METHODS | {"striptags", "unescape"}
_SEQUENCE_METHODS = frozenset({"count", "index"})
_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
_INT_METHODS = frozenset({"bit_length", "bit_count", "conjugate", "as_integer_ratio"})
_FLOAT_METHODS = frozenset({"conjugate", "as_integer_ratio", "is_integer", "hex"})
_LOOP_METHODS = frozenset({"cycle", "changed"})


def allowed_methods(obj: Any) -> frozenset[str] | None:
    """The methods a template may call on ``obj``; None: any the sandbox allows."""
    if isinstance(obj, Markup):
        return _MARKUP_METHODS
    if isinstance(obj, str):
        return _STR_METHODS
    if isinstance(obj, (bool, int)):
        return _INT_METHODS
    if isinstance(obj, float):
        return _FLOAT_METHODS
    if isinstance(obj, (list, tuple)):
        return _SEQUENCE_METHODS
    if isinstance(obj, Mapping):
        return _MAPPING_METHODS
    if isinstance(obj, LoopContext):
        return _LOOP_METHODS
    if isinstance(obj, Namespace):
        return None  # its attributes are the values a template stored
    return frozenset()


def _pad(text: str, width: Any = 0, *args: Any) -> None:
    check("padding", max(len(text), _number(width)))


def _expandtabs(text: str, tabsize: Any = 8) -> None:
    check("expandtabs", len(text) + text.count("\t") * max(_number(tabsize), 0))


def _str_join(text: str, iterable: Any = ()) -> None:
    items = collect(iterable, "join")
    total = 0
    for i, item in enumerate(items):
        if i % _TICK_EVERY == 0:
            tick()
        total += value_size(item, CAP - total) + (len(text) if i else 0)
        check("join", total)


def _str_replace(text: str, old: Any = "", new: Any = "", count: Any = -1) -> None:
    if isinstance(old, str) and isinstance(new, str):
        replace_size(text, old, new, count, "replace")


def _translate(text: str, table: Any = None) -> None:
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    elif isinstance(table, (str, list, tuple)):
        longest = max((len(v) for v in table if isinstance(v, str)), default=1)
    else:
        longest = 1
    check("translate", len(text) * max(longest, 1))


def _case(text: str, *args: Any) -> None:
    check("case change", _case_size(text))


_METHOD_BOUNDS: dict[str, Callable[..., None]] = {
    "center": _pad,
    "ljust": _pad,
    "rjust": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "join": _str_join,
    "replace": _str_replace,
    "translate": _translate,
    "capitalize": _case,
    "casefold": _case,
    "lower": _case,
    "swapcase": _case,
    "title": _case,
    "upper": _case,
}


def check_method_call(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call of a string method whose result would be over the limit."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    bound = _METHOD_BOUNDS.get(getattr(method, "__name__", ""))
    if bound is None:
        return
    if isinstance(owner, Markup):  # Markup escapes the arguments it is given
        args = tuple(_escaped_arg(a) for a in args)
    bound(owner, *args, **kwargs)


def _escaped_arg(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        check("escape", _escaped_size(value))
        return str(Markup.escape(value))
    return value


def check_call_depth(budget: Budget | None) -> None:
    if budget is not None and budget.depth > MAX_CALL_DEPTH:
        raise SecurityError(f"macro calls and recursive loops nested over {MAX_CALL_DEPTH} deep")


def bounded_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    """The ``dict`` global, collecting a lazy argument under the limit."""
    return dict(*(collect(a, "dict") for a in args), **kwargs)


def bounded_namespace(*args: Any, **kwargs: Any) -> Namespace:
    """The ``namespace`` global, collecting a lazy argument under the limit."""
    return Namespace(*(collect(a, "namespace") for a in args), **kwargs)


def strftime_size(fmt: str) -> int:
    """An upper bound of the length of ``datetime.strftime(fmt)``."""
    return check("now", len(fmt) + 40 * fmt.count("%"))
