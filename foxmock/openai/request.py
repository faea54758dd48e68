"""A read-only view of a validated chat request, with the facts matching and templates use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any


def _tool_part(
    item: Any, kinds: tuple[str, ...] = ("function", "custom")
) -> Mapping[str, Any] | None:
    """The ``function`` or ``custom`` object of a tool, tool call or tool choice (its ``type``
    names which; an item without one is a function), or None."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type", "function")
    inner = item.get(kind) if isinstance(kind, str) and kind in kinds else None
    return inner if isinstance(inner, dict) else None


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined by newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "refusal")
        )
    return ""


def _parse_json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class ChatRequest:
    """Derived facts about one chat completion request; each is computed at most once."""

    def __init__(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        self.body = body
        self._headers = headers or {}

    @cached_property
    def memo(self) -> dict[Any, Any]:
        """Scratch space for matchers: what they derive from this request's texts (folded
        forms, UTF-8 bytes, verdicts), computed once however many scenarios ask."""
        return {}

    @cached_property
    def headers(self) -> dict[str, str]:
        """Request headers with lower-case names."""
        return {k.lower(): v for k, v in self._headers.items()}

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @cached_property
    def message_texts(self) -> list[str]:
        return [message_text(m) for m in self.messages]

    @cached_property
    def last_message(self) -> str:
        return self.message_texts[-1] if self.messages else ""

    @cached_property
    def last_user(self) -> str:
        for message, text in zip(
            reversed(self.messages), reversed(self.message_texts), strict=False
        ):
            if message.get("role") == "user":
                return text
        return ""

    @cached_property
    def system(self) -> str:
        """System and developer messages, joined by blank lines."""
        return "\n\n".join(
            text
            for message, text in zip(self.messages, self.message_texts, strict=False)
            if message.get("role") in ("system", "developer")
        )

    @cached_property
    def turn(self) -> int:
        """How many assistant messages the conversation already holds (0 on the first call)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @cached_property
    def tools_offered(self) -> list[str]:
        """The names of the offered tools, function and custom."""
        names = []
        for tool in self.body.get("tools") or []:
            inner = _tool_part(tool)
            if inner is not None and isinstance(inner.get("name"), str):
                names.append(inner["name"])
        return names

    @cached_property
    def tool_choice(self) -> str | None:
        """``none``, ``auto``, ``required``, the name of a forced tool (function or custom),
        the mode of an ``allowed_tools`` choice (``auto`` or ``required``), or None if absent."""
        choice = self.body.get("tool_choice")
        if isinstance(choice, dict):
            inner = _tool_part(choice, ("function", "custom", "allowed_tools"))
            if inner is None:
                return None
            value = (
                inner.get("mode") if choice.get("type") == "allowed_tools" else inner.get("name")
            )
            return value if isinstance(value, str) else None
        return choice if isinstance(choice, str) else None

    @cached_property
    def service_tier(self) -> str:
        """The tier an answer reports: the one asked for, ``auto`` (or none) as ``default``."""
        tier = self.body.get("service_tier")
        return tier if isinstance(tier, str) and tier != "auto" else "default"

    @cached_property
    def top_logprobs(self) -> int | None:
        """With ``logprobs: true``, the alternatives each token lists (``top_logprobs``, 0 when
        absent); None when log probabilities were not asked for."""
        if self.body.get("logprobs") is not True:
            return None
        top = self.body.get("top_logprobs")
        return top if isinstance(top, int) and not isinstance(top, bool) else 0

    @cached_property
    def stop(self) -> list[str]:
        """The stop sequences asked for (``stop``, a string or up to four), empty ones left out."""
        stop = self.body.get("stop")
        sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
        return [s for s in sequences if isinstance(s, str) and s]

    @cached_property
    def response_format(self) -> str:
        fmt = self.body.get("response_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
            return str(fmt["type"])
        return "text"

    @cached_property
    def tool_results(self) -> list[tuple[str, Any]]:
        """(tool name, parsed result) for every tool message, oldest first."""
        names: dict[str, str] = {}
        results: list[tuple[str, Any]] = []
        for message, text in zip(self.messages, self.message_texts, strict=False):
            role = message.get("role")
            if role == "assistant":
                for call in message.get("tool_calls") or []:
                    inner = _tool_part(call)
                    if inner is not None:
                        names[str(call.get("id"))] = str(inner.get("name"))
            elif role == "tool":
                name = names.get(str(message.get("tool_call_id")), "")
                results.append((name, _parse_json_or_text(text)))
        return results

    def tool_result(self, name: str | None = None) -> Any:
        """The latest result of the named tool (or of any tool), parsed as JSON when it is JSON."""
        for tool_name, value in reversed(self.tool_results):
            if name is None or tool_name == name:
                return value
        return None
