"""A fast yes-or-don't-know check of a document against the scenario schema.

Importing and building a full JSON Schema validator costs more than everything else foxmock
does at start-up, and almost every file it loads is valid. ``surely_valid`` answers True only
when the document certainly passes, using the handful of keywords the shipped schema uses; on
anything else (an error, a keyword or value it does not handle) it answers False and the loader
asks jsonschema, which finds and explains the problems. So a True here is always jsonschema's
answer too; a False only costs time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

_HANDLED = frozenset(
    {
        # assertions
        "type", "enum", "const", "properties", "additionalProperties", "required", "items",
        "minItems", "maxItems", "minLength", "minProperties", "minimum", "maximum",
        "exclusiveMinimum", "pattern", "oneOf", "anyOf", "$ref",
        # annotations, no effect on validity
        "description", "default", "title", "$schema", "$id", "$defs",
    }
)  # fmt: skip


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int)  # 1.0 is an integer to JSON Schema: left to jsonschema
    if name == "number":
        return isinstance(value, (int, float))
    return False


def _plain(value: Any) -> bool:
    """Values whose Python equality is JSON equality (no bools mixed with numbers)."""
    return isinstance(value, str) or value is None


@cache
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)


class _Checker:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def _ref(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            raise LookupError(ref)
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node  # type: ignore[no-any-return]

    def ok(self, value: Any, schema: Any) -> bool:
        if schema is True:
            return True
        if not isinstance(schema, Mapping) or not _HANDLED.issuperset(schema):
            return False
        for key, arg in schema.items():
            check = _KEYWORDS.get(key)
            if check is not None and not check(self, value, arg, schema):
                return False
        return True


def _type(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    names = arg if isinstance(arg, list) else [arg]
    return any(_is_type(value, n) for n in names)


def _enum(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    return _plain(value) and all(_plain(a) for a in arg) and value in arg


def _const(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    if _plain(value) and _plain(arg):
        return bool(value == arg)
    return type(value) is int and type(arg) is int and value == arg


def _properties(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    return all(c.ok(value[k], sub) for k, sub in arg.items() if k in value)


def _additional(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    known = schema.get("properties", {})
    extra = [k for k in value if k not in known]
    return not extra if arg is False else all(c.ok(value[k], arg) for k in extra)


def _required(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    return not isinstance(value, dict) or all(k in value for k in arg)


def _items(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    return not isinstance(value, list) or all(c.ok(v, arg) for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one_of(c: _Checker, value: Any, arg: Any, schema: Mapping[str, Any]) -> bool:
    # exactly one must pass; "don't know" on a branch cannot prove that, so it counts as a
    # failure only when some other branch passes for certain and this one is out for certain
    passing = [sub for sub in arg if c.ok(value, sub)]
    if len(passing) != 1:
        return False
    return all(sub is passing[0] or _surely_fails(c, value, sub) for sub in arg)


def _surely_fails(c: _Checker, value: Any, schema: Any) -> bool:
    """A branch that certainly rejects ``value``: a type or required key it lacks."""
    if not isinstance(schema, Mapping):
        return False
    if "$ref" in schema:
        return _surely_fails(c, value, c._ref(schema["$ref"]))
    if isinstance(value, float) and value.is_integer():
        return False  # an integer to JSON Schema, not to _is_type: no certainty either way
    if "type" in schema and not _type(c, value, schema["type"], schema):
        return True
    if "required" in schema and isinstance(value, dict):
        return any(k not in value for k in schema["required"])
    if "const" in schema and _plain(schema["const"]) and _plain(value):
        return bool(value != schema["const"])
    return False


_KEYWORDS: dict[str, Callable[[_Checker, Any, Any, Mapping[str, Any]], bool]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "minItems": lambda c, v, a, s: not isinstance(v, list) or len(v) >= a,
    "maxItems": lambda c, v, a, s: not isinstance(v, list) or len(v) <= a,
    "minLength": lambda c, v, a, s: not isinstance(v, str) or len(v) >= a,
    "minProperties": lambda c, v, a, s: not isinstance(v, dict) or len(v) >= a,
    "minimum": lambda c, v, a, s: not _number(v) or v >= a,
    "maximum": lambda c, v, a, s: not _number(v) or v <= a,
    "exclusiveMinimum": lambda c, v, a, s: not _number(v) or v > a,
    "pattern": lambda c, v, a, s: not isinstance(v, str) or _pattern(a).search(v) is not None,
    "oneOf": _one_of,
    "anyOf": lambda c, v, a, s: any(c.ok(v, sub) for sub in a),
    "$ref": lambda c, v, a, s: c.ok(v, c._ref(a)),
}


def surely_valid(document: Any, schema: Mapping[str, Any]) -> bool:
    """True only if ``document`` is valid against ``schema``; False means "ask jsonschema"."""
    try:
        return _Checker(schema).ok(document, schema)
    except (LookupError, TypeError, ValueError, re.error, RecursionError):
        return False
