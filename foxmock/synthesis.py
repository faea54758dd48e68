"""Deterministic values that satisfy a JSON Schema, and schema checks with cached validators.

How a value is chosen, first rule that applies: ``const``; the first ``enum`` value; ``default``;
the first of ``examples``; ``$ref`` is followed; ``anyOf``/``oneOf``: the first non-null branch;
``allOf``: the branches merged; then by type (the first non-null one of a list):
object -> every property in order; array -> ``max(minItems, 1)`` items (capped by ``maxItems``);
string -> by ``format`` (date-time, date, time, email, uri, uuid, ipv4, ipv6, hostname), else
the property's name, padded or cut to fit ``minLength``/``maxLength``; integer/number -> 0, moved
inside ``minimum``/``maximum`` and rounded up to ``multipleOf``; boolean -> true; null -> null.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

MAX_DEPTH = 12
MAX_ITEMS = 1000  # a schema demanding more items (minItems) is refused, not obeyed
MAX_CHARS = 100_000  # likewise for minLength
_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


class SynthesisError(Exception):
    """No valid value could be produced for a schema."""


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        raise SynthesisError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SynthesisError(f"$ref {ref!r} does not resolve")
        node = node[part]
    if not isinstance(node, dict):
        raise SynthesisError(f"$ref {ref!r} is not a schema")
    return node


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    step = 1 if integer else 0.5
    value: float = 0
    if "minimum" in schema:
        value = max(value, schema["minimum"])
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + step
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - step
    multiple = schema.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
    return int(value) if integer else float(value)


def _string(schema: dict[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), name or "text")
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if low > MAX_CHARS:
        raise SynthesisError(f"minLength {low} is more than foxmock synthesises ({MAX_CHARS})")
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None:
        text = text[:high]
    return text


def synthesize(schema: Any, root: Any = None, name: str = "", depth: int = 0) -> Any:
    """A deterministic value valid against ``schema`` (see the module docstring for the rules)."""
    if schema is True or schema is None or schema == {}:
        return name or "value"
    if not isinstance(schema, dict):
        raise SynthesisError(f"not a schema: {schema!r}")
    root = schema if root is None else root
    if depth > MAX_DEPTH:
        raise SynthesisError("schema nests too deeply (a recursive $ref?)")
    for key in ("const",):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "$ref" in schema:
        return synthesize(_resolve(schema["$ref"], root), root, name, depth + 1)
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            branches = [
                b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")
            ]
            return synthesize((branches or schema[key])[0], root, name, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            branch = _resolve(branch["$ref"], root) if "$ref" in branch else branch
            for key, value in branch.items():
                if key == "properties":
                    merged.setdefault("properties", {}).update(value)
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return synthesize(merged, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: synthesize(sub, root, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        count = max(schema.get("minItems", 0), 1)
        if count > MAX_ITEMS:
            raise SynthesisError(f"minItems {count} is more than foxmock synthesises ({MAX_ITEMS})")
        if schema.get("maxItems") is not None:
            count = min(count, schema["maxItems"])
        item_name = name[:-1] if name.endswith("s") else name
        items = schema.get("items", {})
        return [synthesize(items, root, item_name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


@lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``instance`` breaks ``schema``, as short sentences (empty when valid).

    A schema the validator cannot work with (a request's malformed schema) raises
    `SynthesisError` saying so.
    """
    try:
        validator = _validator_for(json.dumps(schema, sort_keys=True))
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]
    except Exception as exc:  # jsonschema raises many kinds on malformed schemas
        raise SynthesisError(f"the schema cannot be checked: {type(exc).__name__}: {exc}") from None


def synthesize_valid(schema: dict[str, Any]) -> Any:
    """`synthesize`, then check the result; raise `SynthesisError` when it is not valid."""
    try:
        value = synthesize(schema)
    except SynthesisError:
        raise
    except Exception as exc:  # a malformed schema: wrong types where numbers or lists belong
        raise SynthesisError(f"the schema cannot be used: {type(exc).__name__}: {exc}") from None
    errors = schema_errors(value, schema)
    if errors:
        raise SynthesisError("cannot synthesise a valid value: " + "; ".join(errors[:3]))
    return value
