"""Regular expressions from scenario files, refused when they could backtrack for ever.

Python's ``re`` cannot be interrupted, and a pattern such as ``(a+)+$`` takes exponential time
on a near-miss like ``aaaa…!``: one such request would stall the server. A quantifier with no
upper bound inside a group that is itself repeated is the shape behind that, so it is refused
(unless made possessive, ``a++``, or atomic, ``(?>…)``, on Python 3.11+, which cannot backtrack).
"""

from __future__ import annotations

import importlib
import re
from typing import Any


def _module(new: str, old: str) -> Any:
    try:  # Python 3.11+ keeps the regex parser inside re; 3.10 has it at the top level
        return importlib.import_module(new)
    except ImportError:  # pragma: no cover
        return importlib.import_module(old)


_sre = _module("re._constants", "sre_constants")
_sre_parse = _module("re._parser", "sre_parse")

_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT}
_UNBOUNDED = _sre.MAXREPEAT


def _has_unbounded_repeat(items: Any) -> bool:
    for op, arg in items:
        if op in _REPEATS:
            _low, high, sub = arg
            if high == _UNBOUNDED or _has_unbounded_repeat(sub):
                return True
        elif (op == _sre.SUBPATTERN and _has_unbounded_repeat(arg[-1])) or (
            op == _sre.BRANCH and any(_has_unbounded_repeat(b) for b in arg[1])
        ):
            return True
    return False


def _nested(items: Any) -> bool:
    """Whether some repeat that may run more than once holds a repeat without an upper bound."""
    for op, arg in items:
        if op in _REPEATS:
            _low, high, sub = arg
            if (high > 1 and _has_unbounded_repeat(sub)) or _nested(sub):
                return True
        elif (op == _sre.SUBPATTERN and _nested(arg[-1])) or (
            op == _sre.BRANCH and any(_nested(b) for b in arg[1])
        ):
            return True
    return False


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` could take exponential time, or None when it is safe to run."""
    try:
        parsed = _sre_parse.parse(pattern)
    except Exception:  # compile() reports the real error
        return None
    if _nested(list(parsed)):
        return (
            "it repeats a group that holds an unbounded quantifier (like (a+)+), which can "
            "take exponential time on a near miss; bound the inner quantifier, or make it "
            "possessive (a++) or atomic ((?>...)) on Python 3.11+"
        )
    return None


class RegexProblem(ValueError):
    """A pattern that cannot be used: ``refused`` (a backtracking risk) or invalid."""

    def __init__(self, reason: str, *, refused: bool) -> None:
        prefix = "regular expression refused" if refused else "invalid regular expression"
        super().__init__(f"{prefix}: {reason}")
        self.reason, self.refused = reason, refused


def compile_safe(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile``, refusing backtracking risks; raises `RegexProblem` saying why.

    Besides `re.error`, `re.compile` raises OverflowError (``a{4294967295}``), RecursionError
    (a few hundred nested groups), ValueError (clashing flags) and more; all are the pattern's
    fault.
    """
    risk = backtracking_risk(pattern)
    if risk is not None:
        raise RegexProblem(risk, refused=True)
    try:
        return re.compile(pattern, flags)
    except RecursionError:
        raise RegexProblem("groups nested too deeply", refused=False) from None
    except Exception as exc:
        raise RegexProblem(str(exc) or type(exc).__name__, refused=False) from None
