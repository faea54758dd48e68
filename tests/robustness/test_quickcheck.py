"""The fast schema check never says yes where jsonschema says no, and says yes to real files.

``foxmock.scenarios.quickcheck.surely_valid`` lets the loader skip importing jsonschema for
files that are certainly valid. Its one promise: True implies jsonschema's verdict is valid too.
Hypothesis builds scenario-like documents (valid ones, and ones with a field swapped for any
JSON or YAML value) and checks the promise on each.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from foxmock.scenarios.loader import scenario_schema
from foxmock.scenarios.quickcheck import surely_valid

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = scenario_schema()
VALIDATOR = Draft202012Validator(SCHEMA)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e300]),
    st.text(max_size=8),
    st.sampled_from(
        ["", "20ms", "1.5s", "50%", "tokens", "words", "http", "stop", "auto", "json_schema"]
    ),
    st.dates(),
    st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["content", "name", "by", "size", "kind", "status", "regex"]),
                st.text(max_size=6),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)

BASE_SCENARIO: dict[str, Any] = {
    "name": "base",
    "priority": 1,
    "match": {"model": "foxora-1", "last_user": {"contains": "hi", "ignore_case": True}},
    "respond": {
        "content": "Hello {{ last_user }}",
        "finish_reason": "stop",
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Lisbon"}}],
    },
    "stream": {"by": "words", "size": 2},
    "latency": {"ttft": "20ms", "tokens_per_second": 50, "jitter": "10%"},
    "fault": {"kind": "http", "status": 429, "probability": 0.5, "retry_after": "2s"},
}
PATHS = [
    ("version",),
    ("models",),
    ("defaults",),
    ("scenarios", 0, "name"),
    ("scenarios", 0, "priority"),
    ("scenarios", 0, "match"),
    ("scenarios", 0, "match", "model"),
    ("scenarios", 0, "match", "last_user"),
    ("scenarios", 0, "match", "last_user", "contains"),
    ("scenarios", 0, "match", "turn"),
    ("scenarios", 0, "respond"),
    ("scenarios", 0, "respond", "content"),
    ("scenarios", 0, "respond", "finish_reason"),
    ("scenarios", 0, "respond", "tool_calls"),
    ("scenarios", 0, "respond", "tool_calls", 0, "arguments"),
    ("scenarios", 0, "respond", "tool_calls", 0, "name"),
    ("scenarios", 0, "respond", "usage"),
    ("scenarios", 0, "stream"),
    ("scenarios", 0, "stream", "by"),
    ("scenarios", 0, "stream", "size"),
    ("scenarios", 0, "latency"),
    ("scenarios", 0, "latency", "ttft"),
    ("scenarios", 0, "latency", "jitter"),
    ("scenarios", 0, "latency", "tokens_per_second"),
    ("scenarios", 0, "fault"),
    ("scenarios", 0, "fault", "kind"),
    ("scenarios", 0, "fault", "status"),
    ("scenarios", 0, "fault", "probability"),
    ("scenarios", 0, "unknown_key"),
    ("scenarios", 1),
]


def base_document() -> dict[str, Any]:
    import copy

    return {"version": 1, "models": ["foxora-1"], "scenarios": [copy.deepcopy(BASE_SCENARIO)]}


def put(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = document
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int):
        if last < len(node):
            node[last] = value
        else:
            node.append(value)


def test_the_base_document_and_shipped_files_pass_the_fast_check() -> None:
    """Real files take the fast path (else the start-up saving would be lost)."""
    assert surely_valid(base_document(), SCHEMA)
    files = [ROOT / "scenarios" / "default.yaml", ROOT / "bench" / "soak_scenarios.yaml"]
    for path in files:
        if not path.exists():
            continue
        document = yaml.safe_load(path.read_text("utf-8"))
        assert VALIDATOR.is_valid(document), path
        assert surely_valid(document, SCHEMA), path


@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_a_yes_is_always_jsonschemas_yes(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    document = base_document()
    for path, value in changes:
        put(document, path, value)
    if surely_valid(document, SCHEMA):
        assert VALIDATOR.is_valid(document), document


@given(values)
def test_any_value_as_a_whole_document(document: Any) -> None:
    if surely_valid(document, SCHEMA):
        assert VALIDATOR.is_valid(document), document


def test_known_traps_are_left_to_jsonschema() -> None:
    """Values where Python and JSON Schema disagree never get a fast yes they should not."""
    traps = [
        ("scenarios", 0, "priority", True),  # a bool is not an integer to JSON Schema
        ("scenarios", 0, "priority", 1.5),
        ("scenarios", 0, "name", datetime.date(2024, 1, 1)),  # YAML reads dates as dates
        ("scenarios", 0, "stream", "by", 1),
        ("scenarios", 0, "latency", "tokens_per_second", float("nan")),
        ("version", 1.0),  # an integer to JSON Schema: jsonschema decides
    ]
    for *path, value in traps:
        document = base_document()
        put(document, tuple(path), value)
        if surely_valid(document, SCHEMA):
            assert VALIDATOR.is_valid(document), (path, value)
        if not VALIDATOR.is_valid(document):
            assert not surely_valid(document, SCHEMA), (path, value)
