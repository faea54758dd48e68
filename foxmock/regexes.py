"""Regular expressions from scenarios and templates, run by RE2 in time linear in the text.

Python's ``re`` backtracks and cannot be interrupted: ``(a|a)*b`` takes exponential time on 25
characters and ``.*refund.*`` quadratic time on a long miss. RE2 (the ``google-re2`` package)
never backtracks, so a search costs time proportional to the text whatever the pattern. It lacks
the constructs that only backtracking can run (backreferences, lookaround, atomic groups,
possessive quantifiers, conditionals); patterns using them are refused with a sentence saying so.

Texts are searched as UTF-8 (lone surrogates, which JSON allows, pass through unchanged), so a
matcher can encode a request text once and test it against any number of patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

MAX_PROGRAM_BYTES = 2 << 20
"""RE2's memory budget per expression (compiled program plus DFA cache); beyond it RE2 refuses
the pattern at compile time, or falls back to its slower (still linear) NFA while matching."""

NEEDLE_SET_BYTES = 64 << 20
"""RE2's memory budget for the one automaton that looks for every ``contains`` needle at once."""

_CONTINUATION = bytes(range(0x80, 0xC0))
_NO_MATCH = (-1, -1)


class RegexProblem(ValueError):
    """A pattern that cannot be used: ``refused`` (a construct RE2 lacks) or invalid."""

    def __init__(self, reason: str, *, refused: bool) -> None:
        prefix = "regular expression refused" if refused else "invalid regular expression"
        super().__init__(f"{prefix}: {reason}")
        self.reason, self.refused = reason, refused


def encode(text: str) -> bytes:
    """``text`` as the UTF-8 bytes RE2 searches (lone surrogates kept, never an error)."""
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # a span RE2 cut inside a character (an empty match): lossy
        return data.decode("utf-8", "replace")


def _char_length(data: bytes, at: int) -> int:
    """The length in bytes of the character starting at byte ``at``."""
    end = at + 1
    while end < len(data) and data[end] in _CONTINUATION:
        end += 1
    return end - at


# -- translating the Python spellings RE2 writes differently ------------------------------------

_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")
_ANY_BYTE = re.compile(r"(?<!\\)(?:\\\\)*\\C")  # \C after an even run of backslashes
MAX_GROUP_DEPTH = 100  # RE2 parses deeper nesting in quadratic time (20,000 levels: 11 s)
MAX_COUNT = 1000  # RE2's own limit on {n,m}; it reads larger counts as literal text


def _count(pattern: str, i: int) -> tuple[str, int] | None:
    """A ``{...}`` repetition count at ``pattern[i]`` as RE2 writes it, and where it ends."""
    found = _COUNT.match(pattern, i)
    if found is None:
        return None
    low, high = found.group(1), found.group(2)
    if not low and high is None:  # "{}" is literal text in both engines
        return None
    if any(len(n) > 4 or int(n) > MAX_COUNT for n in (low, high) if n):
        raise RegexProblem(
            f"repetition count {found.group()} is too large (at most {MAX_COUNT})", refused=False
        )
    return "{" + (low or "0") + ("" if high is None else "," + high) + "}", found.end()


def _python_spellings(pattern: str) -> str:
    r"""``pattern`` with ``\Z`` (end of text) as ``\z`` and ``{,n}`` as ``{0,n}``.

    Both mean the same in Python and RE2 once rewritten; RE2 would refuse ``\Z`` and read
    ``{,n}`` as literal text. Counts over `MAX_COUNT` and groups nested deeper than
    `MAX_GROUP_DEPTH` raise `RegexProblem`.
    """
    out: list[str] = []
    i, in_class, depth = 0, False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            pair = pattern[i : i + 2]
            out.append("\\z" if pair == "\\Z" and not in_class else pair)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif pattern.startswith("[:", i) and ":]" in pattern[i + 2 :]:
                end = pattern.index(":]", i + 2) + 2
                out.append(pattern[i:end])
                i = end
                continue
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a ']' first in a class is a member
                out.append("]")
                i += 1
            continue
        elif c == "(":
            depth += 1
            if depth > MAX_GROUP_DEPTH:
                raise RegexProblem(
                    f"groups nested too deeply (more than {MAX_GROUP_DEPTH})", refused=False
                )
        elif c == ")":
            depth = max(depth - 1, 0)
        elif c == "{" and (count := _count(pattern, i)):
            out.append(count[0])
            i = count[1]
            continue
        out.append(c)
        i += 1
    return "".join(out)


# -- why RE2 said no ----------------------------------------------------------------------------

_LACKS = "RE2, foxmock's linear-time regex engine, has no "
_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("(?=", "lookahead (?=...)"),
    ("(?!", "negative lookahead (?!...)"),
    ("(?<=", "lookbehind (?<=...)"),
    ("(?<!", "negative lookbehind (?<!...)"),
    ("(?>", "atomic groups (?>...)"),
    ("(?(", "conditionals (?(...)...)"),
    ("(?P=", "backreferences (?P=name)"),
    ("(?P>", "recursion (?P>name)"),
    ("(?#", "comments (?#...)"),
)


def _explain(pattern: str, message: str) -> RegexProblem:
    """A `RegexProblem` for RE2's complaint ``message`` about ``pattern``."""
    if message.startswith("invalid perl operator: "):
        for spelling, what in _UNSUPPORTED:
            if spelling in pattern:
                return RegexProblem(f"{_LACKS}{what}; it needs backtracking", refused=True)
        return RegexProblem(
            "unsupported group syntax "
            f"{message.removeprefix('invalid perl operator: ')!r} (RE2 knows (?:...), "
            "(?P<name>...), (?<name>...) and the flags i, m, s and U)",
            refused=True,
        )
    if message.startswith("invalid escape sequence: "):
        escape = message.removeprefix("invalid escape sequence: ")
        if escape[1:2].isdigit() and escape[1:2] != "0":
            return RegexProblem(
                f"{_LACKS}backreferences ({escape}); it needs backtracking", refused=True
            )
        if escape[1:2] in ("u", "U", "N"):
            hint = r"write the character itself or \x{hex}"
            return RegexProblem(f"{_LACKS}{escape} escapes; {hint}", refused=True)
        return RegexProblem(f"unknown escape {escape}", refused=False)
    if message.startswith("bad repetition operator: ") and message.endswith("+"):
        what = message.removeprefix("bad repetition operator: ")
        return RegexProblem(
            f"{_LACKS}possessive quantifiers ({what}); it needs backtracking", refused=True
        )
    if message.startswith("invalid repetition size"):
        return RegexProblem(f"{message} (RE2 repeats at most 1000 times)", refused=False)
    if message.startswith("pattern too large"):
        return RegexProblem(
            f"the pattern compiles to more than RE2's {MAX_PROGRAM_BYTES >> 20} MiB budget",
            refused=False,
        )
    return RegexProblem(message, refused=False)


def _python_complaint(pattern: str) -> str | None:
    """What Python's ``re`` says is wrong with ``pattern`` (its messages give positions), if
    anything; only parsed, never run.

    Besides `re.error`, `re.compile` raises OverflowError (``a{4294967295}``), RecursionError
    (a few hundred nested groups), ValueError and more; all are the pattern's fault.
    """
    try:
        re.compile(pattern)
    except RecursionError:
        return "groups nested too deeply"
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _options(*, ignore_case: bool, dot_all: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_BYTES
    options.case_sensitive = not ignore_case
    options.dot_nl = dot_all
    return options


def _re2_message(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class Regex:
    """A compiled RE2 pattern with the part of `re.Pattern` foxmock uses, on ``str`` or bytes."""

    __slots__ = ("_compiled", "groupindex", "groups", "pattern")

    def __init__(self, pattern: str, *, ignore_case: bool = False, dot_all: bool = False) -> None:
        self.pattern = pattern
        if _ANY_BYTE.search(pattern):  # one byte, not one character: would split UTF-8 text
            raise RegexProblem(r"\C (any byte) is not allowed; use . instead", refused=True)
        try:
            spelled = _python_spellings(pattern)
        except RegexProblem as bad:
            raise RegexProblem(_python_complaint(pattern) or bad.reason, refused=False) from None
        try:
            self._compiled: Any = re2.compile(
                spelled, _options(ignore_case=ignore_case, dot_all=dot_all)
            )
        except re2.error as exc:
            why = _explain(pattern, _re2_message(exc))
            if why.refused:
                raise why from None
            raise RegexProblem(_python_complaint(pattern) or why.reason, refused=False) from None
        except Exception as exc:  # e.g. a pattern holding lone surrogates
            raise RegexProblem(f"{type(exc).__name__}: {exc}", refused=False) from None
        self.groups: int = self._compiled.groups
        self.groupindex: dict[str, int] = dict(self._compiled.groupindex)

    def found(self, data: bytes) -> bool:
        """Whether the pattern occurs in ``data`` (UTF-8, see `encode`); RE2's fastest path."""
        return self._compiled.search(data) is not None

    def fullmatch_bytes(self, data: bytes) -> bool:
        """Whether the pattern matches the whole of ``data``."""
        return self._compiled.fullmatch(data) is not None

    def _search(self, data: bytes, pos: int) -> Match | None:
        found = self._compiled.search(data, pos)
        if found is None:
            return None
        return Match(self, data, tuple(found.span(g) for g in range(self.groups + 1)))

    def search(self, text: str) -> Match | None:
        """The first match in ``text``, or None."""
        return self._search(encode(text), 0)

    def sub(self, replace: Callable[[Match], str], text: str) -> str:
        """``text`` with every match replaced by ``replace(match)``, as `re.Pattern.sub`.

        Each search is linear, but a pattern such as ``a.*z|a`` rescans the rest of the text
        at every match: ``replace`` is called between searches, so it can enforce a deadline.
        """
        data = encode(text)
        out: list[bytes] = []
        pos = last = 0
        while pos <= len(data):
            match = self._search(data, pos)
            if match is None:
                break
            start, end = match.regs[0]
            out += (data[last:start], encode(replace(match)))
            last = pos = end
            if start == end:  # an empty match: step over one character before searching again
                if end >= len(data):
                    break
                pos = last = end + _char_length(data, end)
                out.append(data[end:pos])
        out.append(data[last:])
        return _decode(b"".join(out))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "b": "\b"}
_TEMPLATE_PART = re.compile(r"\\(?:g<([^>]*)>|([0-9]{1,2})|(.))|[^\\]+|\\\Z", re.S)


class Match:
    """One match: its groups as text, and `re.Match.expand`'s template language."""

    __slots__ = ("_data", "re", "regs")

    def __init__(self, regex: Regex, data: bytes, regs: tuple[tuple[int, int], ...]) -> None:
        self.re, self._data, self.regs = regex, data, regs

    def _index(self, group: int | str) -> int:
        index = self.re.groupindex.get(group) if isinstance(group, str) else group
        if index is None or not 0 <= index <= self.re.groups:
            raise IndexError(f"no such group {group!r}")
        return index

    @overload
    def group(self, group: Literal[0] = 0) -> str: ...
    @overload
    def group(self, group: int | str) -> str | None: ...
    def group(self, group: int | str = 0) -> str | None:
        """The text of ``group`` (a number or a name), or None when it did not take part."""
        span = self.regs[self._index(group)]
        return None if span == _NO_MATCH else _decode(self._data[span[0] : span[1]])

    def expand(self, template: str) -> str:
        r"""``template`` with ``\1``, ``\g<1>``, ``\g<name>`` and ``\n``-style escapes filled in."""
        out: list[str] = []
        for part in _TEMPLATE_PART.finditer(template):
            name, number, other = part.groups()
            if name is not None or number is not None:
                key: int | str = (
                    name
                    if name is not None and not name.isdigit()
                    else int(name if name is not None else number)
                )
                out.append(self.group(key) or "")
            elif other is not None:
                if other in _ESCAPES or other == "\\":
                    out.append(_ESCAPES.get(other, "\\"))
                elif other.isascii() and other.isalnum():
                    raise RegexProblem(f"bad escape \\{other} in replacement", refused=False)
                else:
                    out.append("\\" + other)
            else:
                out.append(part.group())
        return "".join(out)


def compile_safe(pattern: str, flags: int = 0) -> Regex:
    """``pattern`` compiled by RE2; raises `RegexProblem` saying why it cannot be.

    ``flags`` may hold `re.IGNORECASE` and `re.DOTALL` (the rest have no RE2 meaning here).
    """
    unknown = flags & ~(re.IGNORECASE | re.DOTALL)
    if unknown:
        raise RegexProblem(f"unsupported flags {re.RegexFlag(unknown)!r}", refused=False)
    return Regex(pattern, ignore_case=bool(flags & re.IGNORECASE), dot_all=bool(flags & re.DOTALL))


# -- shell-style globs --------------------------------------------------------------------------


def _class_char(c: str) -> str:
    if not c.isascii() or c.isalnum():  # RE2 and Python both read a non-ASCII letter as itself
        return c
    return f"\\x{ord(c):02x}"


def _glob_members(body: str) -> list[tuple[str, str]]:
    """The (low, high) ranges of a glob class body (without ``[``, ``]`` or a leading ``!``).

    Hyphens are read as `fnmatch` reads them: one that starts the body, ends it, or follows a
    range is literal; a range whose ends are reversed is dropped.
    """
    chunks: list[str] = []
    start, k = 0, 1
    while (k := body.find("-", k)) >= 0:
        chunks.append(body[start:k])
        start, k = k + 1, k + 3
    if body[start:]:
        chunks.append(body[start:])
    elif chunks:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):  # reversed ranges match nothing: drop them
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    members: list[tuple[str, str]] = []
    for k, chunk in enumerate(chunks):
        chars = list(chunk)
        if k and members:
            members.append((members.pop()[0], chars.pop(0)))
        members += [(c, c) for c in chars]
    return members


def _glob_class(glob: str, i: int) -> tuple[str, int] | None:
    """The RE2 class for the glob class opening at ``glob[i - 1]``, and where it ends."""
    j = i + (glob[i : i + 1] == "!")
    j += glob[j : j + 1] == "]"
    j = glob.find("]", j)
    if j < 0:
        return None
    negate = glob.startswith("!", i)
    members = _glob_members(glob[i + negate : j])
    if not members:
        return ("(?s:.)" if negate else "[^\\x00-\\x{10ffff}]"), j + 1
    spans = "".join(
        _class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
        for lo, hi in members
    )
    return f"[{'^' if negate else ''}{spans}]", j + 1


def glob_pattern(glob: str) -> str:
    """An RE2 pattern matching the whole text exactly when `fnmatch.fnmatchcase` would."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and (found := _glob_class(glob, i)) is not None:
            piece, i = found
            out.append(piece)
        else:
            out.append(_class_char(c))
    return "(?s:" + "".join(out) + ")"


def needle_set(needles: Iterable[str]) -> tuple[Any, list[str]]:
    """An `re2.Set` finding which of ``needles`` (literal texts) occur in one pass, and the
    needles it holds in pattern order from 1 (a needle RE2 cannot take is left out).

    Pattern 0 matches every text: a search whose result lacks it did not complete.
    """
    options = _options(ignore_case=False, dot_all=False)
    options.max_mem = NEEDLE_SET_BYTES
    compiled = re2.Set.SearchSet(options)
    compiled.Add(r"\z")
    held: list[str] = []
    for needle in needles:
        try:
            compiled.Add(re2.escape(encode(needle)))
        except re2.error:  # lone surrogates are not UTF-8
            continue
        held.append(needle)
    compiled.Compile()
    return compiled, held
