"""Render a matched scenario into a wire-independent answer, then into a ``chat.completion``."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import assistant_message, chat_completion, make_id, tool_call_object
from foxmock.scenarios.model import Respond, Scenario
from foxmock.templating import TemplateError
from foxmock.tokens import count_prompt_tokens, count_tokens


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


def _render_str(render: Any, ctx: dict[str, Any]) -> str:
    value = render(ctx)
    return value if isinstance(value, str) else str(value)


def _tool_calls(respond: Respond, ctx: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    calls = []
    for spec in respond.tool_calls:
        arguments = spec.arguments(ctx)
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        try:
            json.loads(arguments)
        except ValueError as exc:
            raise TemplateError(f"tool call arguments are not valid JSON ({exc}): {arguments[:200]!r}") from None
        call_id = _render_str(spec.id, ctx) if spec.id else make_id("call_", rng)
        calls.append(tool_call_object(call_id, _render_str(spec.name, ctx), arguments))
    return calls


def _check_json_content(req: ChatRequest, content: str | None) -> None:
    if req.response_format == "text" or content is None:
        return
    try:
        json.loads(content)
    except ValueError as exc:
        raise TemplateError(
            f"content is not valid JSON, but the request asked for response_format "
            f"{req.response_format!r} ({exc}): {content[:200]!r}"
        ) from None


def render_answer(
    scenario: Scenario, respond: Respond, req: ChatRequest, ctx: dict[str, Any], rng: random.Random
) -> Answer:
    """Render every template of ``respond``; raise `RenderError` naming the scenario on failure."""
    try:
        content = None if respond.content is None else _render_str(respond.content, ctx)
        calls = _tool_calls(respond, ctx, rng)
        _check_json_content(req, content)
        model = _render_str(respond.model, ctx) if respond.model else req.model
        headers = {k: _render_str(v, ctx) for k, v in respond.headers.items()}
    except TemplateError as exc:
        raise RenderError(
            f"scenario {scenario.name!r} ({scenario.where}) failed to render: {exc.message}"
        ) from None
    if content is None and not calls:
        content = ""
    finish = respond.finish_reason or ("tool_calls" if calls else "stop")
    completion = count_tokens(content or "") + sum(
        count_tokens(c["function"]["name"]) + count_tokens(c["function"]["arguments"]) for c in calls
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
    )


def completion_body(answer: Answer, completion_id: str, created: int, n: int = 1) -> dict[str, Any]:
    """The ``chat.completion`` body for an answer."""
    return chat_completion(
        completion_id=completion_id,
        created=created,
        model=answer.model,
        message=assistant_message(answer.content, answer.tool_calls),
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        n=n,
    )
