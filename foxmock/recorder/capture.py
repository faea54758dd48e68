"""Turn a captured exchange (request, answer or stream, timing) into a scenario. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from foxmock.openai.request import ChatRequest
from foxmock.recorder.redact import REDACTED, Redactor, scrub, secrets_in
from foxmock.scenarios.model import RESERVED_FIELDS

DEFAULT_MATCH = ("model", "messages", "tools")


@dataclass
class Exchange:
    """One request forwarded upstream and what came back."""

    request: dict[str, Any]
    status: int = 0
    body: Any = None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    streamed: bool = False
    elapsed: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    complete: bool = False


def _text(value: Any, what: str) -> str:
    """``value`` if it is a string; a `ValueError` naming ``what`` otherwise (the upstream's
    answer is data: a wrong type skips the recording, it never breaks the relay)."""
    if not isinstance(value, str):
        raise ValueError(f"the upstream's {what} is a {type(value).__name__}, not a string")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"the upstream's {what} is a {type(value).__name__}, not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"the upstream's {what} is a {type(value).__name__}, not a list")
    return value


def redact_json_text(text: str, redactor: Redactor) -> str:
    """``text`` redacted; if it is JSON (tool-call arguments), its decoded strings are redacted
    too (a pattern then also finds text written with ``\\u`` escapes), re-encoded only when
    that changed something."""
    out = redactor.text(text)
    if not redactor.patterns:
        return out
    try:
        value = json.loads(out)
    except (ValueError, RecursionError):
        return out
    redacted = redactor.deep(value)
    return out if redacted == value else json.dumps(redacted, ensure_ascii=False)


def _ms(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.0f}ms"


def _redacted_pattern(text: str) -> str:
    return "^" + re.escape(text).replace(re.escape(REDACTED), r"[\s\S]*?") + "$"


def _messages_match(original: list[Any], redacted: list[Any]) -> dict[str, Any]:
    """Exact equality, or per message where redaction changed a text (the span matches anything)."""
    if original == redacted:
        return {"messages": {"equals": redacted}}
    out: dict[str, Any] = {f"messages[{len(redacted)}]": {"exists": False}}
    for i, (before, after) in enumerate(zip(original, redacted, strict=True)):
        if before == after:
            out[f"messages[{i}]"] = {"equals": after}
            continue
        for key, value in after.items():
            if isinstance(value, str) and value != before.get(key):
                out[f"messages[{i}].{key}"] = {"regex": _redacted_pattern(value)}
            elif value == before.get(key):
                out[f"messages[{i}].{key}"] = {"equals": value}
            else:
                out[f"messages[{i}].{key}"] = {"exists": True}
    return out


def build_match(request: dict[str, Any], on: Sequence[str], redactor: Redactor) -> dict[str, Any]:
    """The ``match`` block for a recorded request, on the chosen keys."""
    match: dict[str, Any] = {}
    body: dict[str, Any] = {}
    for key in on:
        if key == "model":
            match["model"] = redactor.text(request["model"])
        elif key == "stream":
            match["stream"] = request.get("stream") is True
        elif key == "last_user":
            match["last_user"] = redactor.text(ChatRequest(request).last_user)
        elif key == "messages":
            body.update(_messages_match(request["messages"], redactor.deep(request["messages"])))
        elif key in request:
            body[key] = {"equals": redactor.deep(request[key])}
        else:
            body[key] = {"exists": False}
    if body:
        match["body"] = body
    return match


def assemble(events: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """Content chunks, tool calls (with their argument fragments), finish reason and usage."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish, usage, model = None, None, None
    for _, event in events:
        model = event.get("model", model)
        usage = event.get("usage") or usage
        for choice in _list(event.get("choices"), "choices"):
            choice = _object(choice, "choice")
            if choice.get("index", 0) != 0:
                continue
            delta = _object(choice.get("delta") or {}, "delta")
            if delta.get("content"):
                content.append(_text(delta["content"], "content"))
            for call in _list(delta.get("tool_calls"), "tool_calls"):
                call = _object(call, "tool call")
                index = call.get("index", 0)
                if not isinstance(index, int) or isinstance(index, bool):
                    raise ValueError("the upstream's tool call index is not an integer")
                slot = calls.setdefault(index, {"chunks": []})
                if call.get("id"):
                    slot["id"] = _text(call["id"], "tool call id")
                function = _object(call.get("function") or {}, "tool call function")
                if function.get("name"):
                    slot["name"] = _text(function["name"], "tool name")
                if function.get("arguments"):
                    slot["chunks"].append(_text(function["arguments"], "tool arguments"))
            if choice.get("finish_reason"):
                finish = _text(choice["finish_reason"], "finish_reason")
    return {
        "content": content,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish,
        "usage": usage,
        "model": model,
    }


def _keep_extra(respond: dict[str, Any], answer: dict[str, Any], redactor: Redactor) -> None:
    """Keep the upstream's own top-level fields (``system_fingerprint``, ``service_tier``, a
    provider's extras) for the replay; foxmock writes the rest (id, created, choices, ...)."""
    extra = {k: v for k, v in answer.items() if k not in RESERVED_FIELDS}
    if extra:
        respond["extra"] = redactor.deep(extra)


def _stream_latency(events: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    times = [t for t, e in events if e.get("choices")]
    if not times:
        return {}
    latency: dict[str, Any] = {"ttft": _ms(times[0])}
    if len(times) > 1:
        latency["chunk_delay"] = _ms((times[-1] - times[0]) / (len(times) - 1))
    return latency


def _usage(usage: Any) -> dict[str, int]:
    if not isinstance(usage, dict):
        return {}
    return {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens") if k in usage}


def _respond_from_body(body: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    choice = _object((_list(body.get("choices"), "choices") or [{}])[0], "choice")
    message = _object(choice.get("message") or {}, "message")
    respond: dict[str, Any] = {}
    if message.get("content") is not None:
        respond["content"] = redactor.text(_text(message["content"], "content"))
    calls = []
    for call in _list(message.get("tool_calls"), "tool_calls"):
        call = _object(call, "tool call")
        function = _object(call.get("function") or {}, "tool call function")
        arguments = _text(function.get("arguments") or "{}", "tool arguments")
        out = {
            "name": redactor.text(_text(function.get("name"), "tool name")),
            "arguments": redact_json_text(arguments, redactor),
        }
        if call.get("id"):
            out["id"] = redactor.text(_text(call["id"], "tool call id"))
        calls.append(out)
    if calls:
        respond["tool_calls"] = calls
    if choice.get("finish_reason"):
        respond["finish_reason"] = _text(choice["finish_reason"], "finish_reason")
    if usage := _usage(body.get("usage")):
        respond["usage"] = usage
    return respond


def _redacted_chunks(
    chunks: Sequence[str], redactor: Redactor, json_text: bool = False
) -> list[str]:
    """Chunks as received, unless redaction changes their joined text (a secret may span
    chunks): then the redacted text as one chunk. ``json_text``: tool-call arguments, whose
    decoded strings are redacted too."""
    joined = "".join(chunks)
    redacted = redact_json_text(joined, redactor) if json_text else redactor.text(joined)
    return list(chunks) if redacted == joined else [redacted]


def _respond_from_stream(
    assembled: dict[str, Any], redactor: Redactor
) -> tuple[dict[str, Any], dict[str, Any]]:
    respond: dict[str, Any] = {}
    stream: dict[str, Any] = {}
    if assembled["content"]:
        stream["chunks"] = _redacted_chunks(assembled["content"], redactor)
    calls = []
    for call in assembled["tool_calls"]:
        out: dict[str, Any] = {"name": redactor.text(_text(call.get("name"), "tool name"))}
        if call.get("id"):
            out["id"] = redactor.text(call["id"])
        if call["chunks"]:
            out["chunks"] = _redacted_chunks(call["chunks"], redactor, json_text=True)
        else:
            out["arguments"] = "{}"
        calls.append(out)
    if calls:
        respond["tool_calls"] = calls
    if not stream and not calls:
        respond["content"] = ""
    if assembled["finish_reason"]:
        respond["finish_reason"] = assembled["finish_reason"]
    if usage := _usage(assembled["usage"]):
        respond["usage"] = usage
    else:  # the upstream sent no usage chunk: a replay sends none either
        stream["usage_chunk"] = False
    return respond, stream


def _retry_after(headers: dict[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return _ms(float(lowered["retry-after-ms"]) / 1000)
        if "retry-after" in lowered:
            return _ms(float(lowered["retry-after"]))
    except ValueError:
        return None
    return None


def _fault(status: int, body: Any, redactor: Redactor) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else json.dumps(body)
        return {"status": status, "message": redactor.text(text[:2000])}
    fault: dict[str, Any] = {"status": status}
    fault["message"] = redactor.text(str(error.get("message") or f"HTTP {status}"))
    for key in ("type", "code", "param"):
        if isinstance(error.get(key), str):
            fault[key] = error[key]
    return fault


def _answered_model(
    respond: dict[str, Any], request: dict[str, Any], model: Any, redactor: Redactor
) -> None:
    if isinstance(model, str) and model and model != request.get("model"):
        respond["model"] = redactor.text(model)


def recording_name(
    request: dict[str, Any], match: dict[str, Any], redactor: Redactor, known: Sequence[str] = ()
) -> str:
    """A stable, readable name: a slug of the last user message and a hash of the match.

    The slug never carries a credential or anything shaped like a key: those are scrubbed from
    the text first, and words are dropped from its end until the whole name is clear of them
    (so innocent text such as ``sk-SK for Slovak users`` cannot trip the scan either).
    """
    chat = ChatRequest(request)
    text = scrub(redactor.text(chat.last_user or chat.last_message), known)
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    words = slug.split("-") if slug else []
    digest = hashlib.sha256(json.dumps(match, sort_keys=True).encode()).hexdigest()[:12]
    while words and secrets_in("-".join([*words, digest]), known):
        words.pop()
    return "-".join([*(words or ["request"]), digest])


def build_scenario(
    exchange: Exchange,
    *,
    on: Sequence[str],
    redactor: Redactor,
    upstream: str,
    when: str,
    known: Sequence[str] = (),
) -> dict[str, Any]:
    """The scenario that replays ``exchange``; ``known`` credentials stay out of its name."""
    match = build_match(exchange.request, on, redactor)
    scenario: dict[str, Any] = {
        "name": recording_name(exchange.request, match, redactor, known),
        "description": f"recorded from {upstream} at {when}",
        "literal": True,  # what the upstream said is data: replayed as is, never rendered
        "match": match,
    }
    if exchange.status >= 400:
        scenario["fault"] = _fault(exchange.status, exchange.body, redactor)
        if retry := _retry_after(exchange.headers):
            scenario["fault"]["retry_after"] = retry
        scenario["latency"] = {"ttft": _ms(exchange.elapsed)}
    elif exchange.streamed:
        assembled = assemble(exchange.events)
        respond, stream = _respond_from_stream(assembled, redactor)
        _answered_model(respond, exchange.request, assembled["model"], redactor)
        first = next((e for _, e in exchange.events if e.get("choices")), {})
        _keep_extra(respond, first, redactor)
        scenario["respond"] = respond
        if stream:
            scenario["stream"] = stream
        if latency := _stream_latency(exchange.events):
            scenario["latency"] = latency
    else:
        if not isinstance(exchange.body, dict):
            raise ValueError("the upstream's answer is not a JSON object")
        respond = _respond_from_body(exchange.body, redactor)
        _answered_model(respond, exchange.request, exchange.body.get("model"), redactor)
        _keep_extra(respond, exchange.body, redactor)
        scenario["respond"] = respond
        scenario["latency"] = {"ttft": _ms(exchange.elapsed)}
    return scenario
