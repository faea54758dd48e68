"""Deterministic, offline token estimates.

A token is up to 6 word characters (a longer word is several tokens) or up to 3 punctuation
characters; whitespace attaches to the token that follows it, as in BPE tokenizers. English
prose comes out near the real ~4 characters per token; the count never needs the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

_PIECE = re.compile(r"\s*(?:\w{1,6}|[^\w\s]{1,3})|\s+$")
_TOKEN = re.compile(r"\w{1,6}|[^\w\s]{1,3}")

MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3


def split_tokens(text: str) -> list[str]:
    """Split text into approximate tokens whose concatenation is exactly ``text``."""
    pieces = _PIECE.findall(text)
    return pieces if "".join(pieces) == text else _split_slow(text)


def _split_slow(text: str) -> list[str]:
    pieces: list[str] = []
    pos = 0
    for match in _PIECE.finditer(text):
        if match.start() > pos:
            pieces.append(text[pos : match.start()])
        pieces.append(match.group())
        pos = match.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


@lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """How many approximate tokens ``text`` holds (cached: scenario texts repeat)."""
    return len(_TOKEN.findall(text))


def count_prompt_tokens(messages: Iterable[str], tools: Any = None) -> int:
    """Prompt tokens: each message's text plus a fixed overhead, plus the tool definitions."""
    total = REPLY_PRIMING
    for text in messages:
        total += MESSAGE_OVERHEAD + count_tokens(text)
    if tools:
        total += count_tokens(json.dumps(tools, separators=(",", ":")))
    return total


def usage(prompt_tokens: int, completion_tokens: int) -> Mapping[str, Any]:
    """A `CompletionUsage` object with the detail fields the API sends."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
