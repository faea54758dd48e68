"""Render a matched scenario into a wire-independent `Answer`, then into a ``chat.completion``."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foxmock.http_headers import header_problem
from foxmock.logprobs import choice_logprobs
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import (
    assistant_message,
    chat_completion,
    custom_call_object,
    make_id,
    tool_call_object,
)
from foxmock.openai.validation import loads_strict
from foxmock.scenarios.model import Respond, Scenario, ToolCallSpec
from foxmock.synthesis import SynthesisError, schema_errors, synthesize_valid
from foxmock.templating import MAX_OUTPUT_CHARS, TemplateError
from foxmock.tokens import count_prompt_tokens, count_tokens, split_tokens


class RenderError(Exception):
    """A scenario that failed to render; the message names the scenario and its file:line."""


@dataclass
class Answer:
    """What the assistant says, before it is shaped into a body or a stream."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[str] | None = None
    argument_chunks: list[list[str] | None] = field(default_factory=list)
    service_tier: str = "default"
    top_logprobs: int | None = None  # with logprobs: true, how many alternatives each token lists
    extra: Mapping[str, Any] = field(default_factory=dict)  # top-level fields, as written


def checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` when HTTP allows every one; else a `TemplateError` naming the first bad one
    (aiohttp would refuse it mid-response)."""
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            raise TemplateError(problem)
    return headers


def _text(render: Any, ctx: Mapping[str, Any]) -> str:
    value = render(ctx)
    return value if isinstance(value, str) else str(value)


def _tool_schema(req: ChatRequest, name: str) -> tuple[dict[str, Any] | None, bool]:
    for tool in req.body.get("tools") or []:
        function = tool.get("function") or {}
        if function.get("name") == name:
            return function.get("parameters"), bool(function.get("strict"))
    return None, False


def _synthesised(schema: dict[str, Any] | None) -> str:
    """JSON text of a value valid against ``schema`` (``{}`` without one)."""
    return json.dumps(synthesize_valid(schema) if schema else {}, ensure_ascii=False)


def _check_strict(value: Any, schema: dict[str, Any] | None, strict: bool, failure: str) -> None:
    """Raise `TemplateError` when a strict schema is given and ``value`` breaks it."""
    if strict and schema:
        errors = schema_errors(value, schema)
        if errors:
            raise TemplateError(f"{failure}: {'; '.join(errors[:3])}")


def _arguments(spec: ToolCallSpec, name: str, req: ChatRequest, ctx: Mapping[str, Any]) -> str:
    schema, strict = _tool_schema(req, name)
    if spec.arguments is None and spec.chunks is None:
        return _synthesised(schema)
    if spec.arguments is None:
        arguments = "".join(_text(c, ctx) for c in spec.chunks or ())
    else:
        try:
            value = spec.arguments(ctx)  # an object of templates renders and dumps itself
            arguments = (
                value
                if isinstance(value, str)
                else json.dumps(value, ensure_ascii=False, allow_nan=False)
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise TemplateError(
                f"tool call arguments are not a JSON value ({type(exc).__name__}: {exc})"
            ) from None
    if len(arguments) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"tool call arguments exceed {MAX_OUTPUT_CHARS} characters")
    try:
        parsed = loads_strict(arguments)
    except ValueError as exc:
        raise TemplateError(
            f"tool call arguments are not valid JSON ({exc}): {arguments[:200]!r}"
        ) from None
    _check_strict(parsed, schema, strict, f"arguments of {name!r} break its strict schema")
    return arguments


def _tool_calls(
    respond: Respond, req: ChatRequest, ctx: Mapping[str, Any], rng: random.Random
) -> list[dict[str, Any]]:
    calls = []
    for spec in respond.tool_calls:
        name = _text(spec.name, ctx)
        call_id = _text(spec.id, ctx) if spec.id else make_id("call_", rng)
        if spec.custom:
            text = _text(spec.input, ctx) if spec.input else ""
            if spec.input is None and spec.chunks:
                text = "".join(_text(c, ctx) for c in spec.chunks)
            calls.append(custom_call_object(call_id, name, text))
            continue
        arguments = _arguments(spec, name, req, ctx)
        calls.append(tool_call_object(call_id, name, arguments))
    return calls


def call_parts(call: Mapping[str, Any]) -> tuple[str, str]:
    """A tool call's name and its payload: a function's arguments, a custom tool's input."""
    if call.get("type") == "custom":
        return call["custom"]["name"], call["custom"]["input"]
    return call["function"]["name"], call["function"]["arguments"]


def _json_schema(req: ChatRequest) -> tuple[dict[str, Any] | None, bool]:
    spec = (req.body.get("response_format") or {}).get("json_schema") or {}
    return spec.get("schema"), bool(spec.get("strict"))


def _default_content(req: ChatRequest) -> str:
    """Content for a scenario that gives none: synthesised JSON when the request wants JSON."""
    if req.response_format == "json_schema":
        return _synthesised(_json_schema(req)[0])
    if req.response_format == "json_object":
        return "{}"
    return ""


def _check_json_content(req: ChatRequest, content: str) -> None:
    if req.response_format == "text":
        return
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise TemplateError(
            f"content is not valid JSON, but the request asked for response_format "
            f"{req.response_format!r} ({exc}): {content[:200]!r}"
        ) from None
    schema, strict = _json_schema(req)
    _check_strict(value, schema, strict, "content breaks the request's strict json_schema")


def _max_tokens(req: ChatRequest) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.body.get(key)
        if isinstance(value, int):
            return value
    return None


def stop_at(content: str, sequences: list[str]) -> int | None:
    """Where the first of the stop ``sequences`` starts in ``content``, or None."""
    found = [i for i in (content.find(s) for s in sequences) if i >= 0]
    return min(found) if found else None


def _cut_chunks(chunks: list[str] | None, cut: int) -> list[str] | None:
    """A scenario's ``chunks`` holding just the first ``cut`` characters of their text."""
    if chunks is None:
        return None
    kept: list[str] = []
    for chunk in chunks:
        if cut <= 0:
            break
        kept.append(chunk[:cut])
        cut -= len(chunk)
    return [c for c in kept if c]


def truncate(content: str, limit: int) -> str:
    """The first ``limit`` tokens of ``content``."""
    kept, seen = [], 0
    for piece in split_tokens(content):
        if piece.strip():
            if seen == limit:
                break
            seen += 1
        kept.append(piece)
    return "".join(kept).rstrip() if seen == limit else "".join(kept)


def render_answer(
    scenario: Scenario,
    respond: Respond,
    req: ChatRequest,
    ctx: Mapping[str, Any],
    rng: random.Random,
) -> Answer:
    """Render every template of ``respond``; raise `RenderError` naming the scenario on failure."""
    try:
        chunks = [_text(c, ctx) for c in scenario.chunks] if scenario.chunks else None
        content = _text(respond.content, ctx) if respond.content is not None else None
        if content is None and chunks is not None:
            content = "".join(chunks)
        calls = _tool_calls(respond, req, ctx, rng)
        argument_chunks = [
            [_text(c, ctx) for c in spec.chunks] if spec.chunks else None
            for spec in respond.tool_calls
        ]
        if content is None and not calls:
            content = _default_content(req)
        if content is not None and not calls:
            _check_json_content(req, content)
        model = _text(respond.model, ctx) if respond.model else req.model
        headers = checked_headers({k: _text(v, ctx) for k, v in respond.headers.items()})
    except (TemplateError, SynthesisError) as exc:
        message = exc.message if isinstance(exc, TemplateError) else str(exc)
        raise RenderError(
            f"scenario {scenario.name!r} ({scenario.where}) failed to render: {message}"
        ) from None
    finish = respond.finish_reason or ("tool_calls" if calls else "stop")
    if req.stop and content and not calls:
        cut = stop_at(content, req.stop)
        if cut is not None:
            content, chunks, finish = content[:cut], _cut_chunks(chunks, cut), "stop"
    limit = _max_tokens(req)
    # a recorded answer that was already cut (finish_reason length) keeps its exact text;
    # a recorded usage count is what the upstream counted, so it decides
    size = respond.usage.get("completion_tokens") or (count_tokens(content) if content else 0)
    if limit is not None and content and size > limit and respond.finish_reason != "length":
        content, chunks, finish = truncate(content, limit), None, "length"
    completion = count_tokens(content or "") + sum(
        sum(count_tokens(part) for part in call_parts(c)) for c in calls
    )
    prompt = count_prompt_tokens(req.message_texts, req.body.get("tools"))
    return Answer(
        content=content,
        tool_calls=calls,
        finish_reason=finish,
        model=model,
        prompt_tokens=respond.usage.get("prompt_tokens", prompt),
        completion_tokens=respond.usage.get("completion_tokens", completion),
        headers=headers,
        chunks=chunks,
        argument_chunks=argument_chunks,
        service_tier=req.service_tier,
        top_logprobs=req.top_logprobs,
        extra=respond.extra,
    )


def completion_body(answer: Answer, completion_id: str, created: int, n: int = 1) -> dict[str, Any]:
    """The ``chat.completion`` body for an answer."""
    body = chat_completion(
        completion_id=completion_id,
        created=created,
        model=answer.model,
        message=assistant_message(answer.content, answer.tool_calls),
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        n=n,
        service_tier=answer.service_tier,
        logprobs=choice_logprobs(answer.content, answer.top_logprobs),
    )
    body.update(answer.extra)
    return body
