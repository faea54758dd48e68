"""Builders for ``chat.completion`` bodies, ids and model objects."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

from foxmock.tokens import usage as usage_object

SYSTEM_FINGERPRINT = "fp_foxmock01"
_ALPHABET = string.ascii_letters + string.digits
# each random byte names a letter or digit (the first 8 of the 62 a shade more often than the
# rest); one draw of random bits and a translate cost a tenth of choosing 24 characters
_BYTE_TO_CHAR = bytes((_ALPHABET * 5)[:256], "ascii")


def make_id(prefix: str, rng: random.Random, length: int = 24) -> str:
    """A Foxora-style identifier: ``prefix`` + ``length`` random letters and digits."""
    raw = rng.getrandbits(8 * length).to_bytes(length, "little")
    return prefix + raw.translate(_BYTE_TO_CHAR).decode("ascii")


def tool_call_object(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One entry of ``message.tool_calls``."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def custom_call_object(call_id: str, name: str, text: str) -> dict[str, Any]:
    """A ``ChatCompletionMessageCustomToolCall``: a custom tool's call, its input as text."""
    return {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}


def assistant_message(
    content: str | None, tool_calls: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The assistant message of a choice."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = [dict(c) for c in tool_calls]
    return message


def chat_completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    message: Mapping[str, Any],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    n: int = 1,
    service_tier: str = "default",
    logprobs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete ``chat.completion`` object with ``n`` identical choices."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": dict(message),
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
            for i in range(n)
        ],
        "usage": usage_object(prompt_tokens, completion_tokens * n),
        "service_tier": service_tier,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def model_object(model_id: str, created: int) -> dict[str, Any]:
    """A ``model`` object for ``/v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "foxmock"}
