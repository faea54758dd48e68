"""Property-based fuzzing of the request validator (`validate_chat_request`).

For arbitrary JSON values and for valid requests with a field (top-level or nested) replaced,
removed or added, the validator either accepts the body, and then every fact matching and
templates read from it can be computed, or raises `RequestError` with a 4xx status, a message,
an OpenAI ``ErrorResponse`` envelope and a ``param`` that names a path in the request or a field
of ``CreateChatCompletionRequest``. Nothing else may escape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from foxmock import RequestError
from foxmock.openai.request import ChatRequest
from foxmock.openai.validation import validate_chat_request
from tests.robustness.test_fuzz import JSON, mutated_requests, valid_requests
from tests.support import openapi_spec

_PARAM_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@cache
def spec_field_names() -> frozenset[str]:
    """Every property name anywhere inside OpenAI's ``CreateChatCompletionRequest``."""
    schemas = openapi_spec()["components"]["schemas"]
    names: set[str] = set()
    seen: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.split("/")[-1] not in seen:
                seen.add(ref.split("/")[-1])
                visit(schemas[ref.split("/")[-1]])
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for value in node.values():
                visit(value)

    visit(schemas["CreateChatCompletionRequest"])
    return frozenset(names)


def assert_param_names_the_request(body: Any, param: str) -> None:
    """``param`` is a key of the body, or a path whose missing tail is made of spec field names."""
    if isinstance(body, dict) and param in body:
        return
    parts: list[str | int] = [
        int(index) if index else name for name, index in _PARAM_PART.findall(param)
    ]
    rebuilt = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    assert rebuilt == param, f"param {param!r} is not a path like messages[1].role"
    node = body
    for depth, part in enumerate(parts):
        index_ok = isinstance(part, int) and isinstance(node, list) and part < len(node)
        key_ok = isinstance(part, str) and isinstance(node, dict) and part in node
        if index_ok or key_ok:
            node = node[part]
        else:
            missing = parts[depth:]
            assert all(isinstance(p, str) and p in spec_field_names() for p in missing), (
                f"param {param!r}: {missing} is neither in the request nor a known field"
            )
            return


def derived_facts(req: ChatRequest) -> list[Any]:
    """Everything matching and templates read from an accepted request."""
    return [
        req.model,
        req.messages,
        req.stream,
        req.message_texts,
        req.last_message,
        req.last_user,
        req.system,
        req.turn,
        req.tools_offered,
        req.tool_choice,
        req.response_format,
        req.tool_results,
        req.tool_result(),
        req.tool_result("get_weather"),
        req.headers,
    ]


def check_validator(body: Any, openapi: Callable[[str, Any], None]) -> None:
    try:
        accepted = validate_chat_request(body)
    except RequestError as exc:
        assert 400 <= exc.status < 500, exc.status
        assert isinstance(exc.message, str) and exc.message.strip(), exc.message
        assert exc.code is None or isinstance(exc.code, str)
        openapi("ErrorResponse", exc.envelope())
        if exc.param is not None:
            assert_param_names_the_request(body, exc.param)
        return
    assert accepted is body
    derived_facts(ChatRequest(accepted, {"X-Test": "1"}))


@given(body=JSON)
def test_arbitrary_json_is_accepted_or_refused_with_a_request_error(
    body: Any, openapi: Callable[[str, Any], None]
) -> None:
    check_validator(body, openapi)


@given(body=st.dictionaries(st.sampled_from(["model", "messages", "stream", "tools", "n"]), JSON))
def test_objects_with_request_keys_are_accepted_or_refused(
    body: dict[str, Any], openapi: Callable[[str, Any], None]
) -> None:
    check_validator(body, openapi)


@given(body=mutated_requests())
def test_mutated_valid_requests_are_accepted_or_refused(
    body: dict[str, Any], openapi: Callable[[str, Any], None]
) -> None:
    check_validator(body, openapi)


@given(valid_requests())
def test_valid_requests_are_accepted(body: dict[str, Any]) -> None:
    """Requests OpenAI's schema accepts (see test_fuzz) pass foxmock's validator too."""
    assert validate_chat_request(body) is body
    derived_facts(ChatRequest(body))
