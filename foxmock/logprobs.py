"""Deterministic log probabilities for an answer's tokens (``logprobs: true``).

The figures mean nothing about language: each token's log probability is a pure function of
its text, so the same answer always carries the same numbers, and its ``top_logprobs`` are
the token itself followed by less likely stand-ins, as many as were asked for.
"""

from __future__ import annotations

import zlib
from typing import Any

from foxmock.tokens import split_tokens

# stand-ins offered as the less likely alternatives (the chosen token is left out)
_ALTERNATIVES = (
    " the",
    " a",
    " and",
    ",",
    ".",
    " of",
    " to",
    " is",
    " it",
    " that",
    "\n",
    " in",
    " for",
    " on",
    " with",
    " as",
    " I",
    " you",
    " this",
    " be",
    " not",
)


def _seed(token: str) -> int:
    return zlib.crc32(token.encode("utf-8", "surrogatepass"))


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", "surrogatepass"))


def token_logprob(token: str) -> float:
    """The token's log probability: in (-2, 0), a function of its text."""
    return -((_seed(token) % 1999) + 1) / 1000


def _top(token: str, logprob: float, count: int) -> list[dict[str, Any]]:
    if count <= 0:
        return []
    top = [{"token": token, "logprob": logprob, "bytes": _bytes(token)}]
    start = _seed(token) % len(_ALTERNATIVES)
    for step in range(len(_ALTERNATIVES)):
        if len(top) == count:
            break
        other = _ALTERNATIVES[(start + step) % len(_ALTERNATIVES)]
        if other != token:
            worse = round(logprob - 1.5 * len(top) - (_seed(other) % 100) / 100, 6)
            top.append({"token": other, "logprob": worse, "bytes": _bytes(other)})
    return top


def content_logprobs(text: str | None, top: int) -> list[dict[str, Any]]:
    """``ChatCompletionTokenLogprob`` objects for the tokens of ``text`` (none for no text)."""
    out = []
    for token in split_tokens(text) if text else ():
        logprob = token_logprob(token)
        out.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": _bytes(token),
                "top_logprobs": _top(token, logprob, top),
            }
        )
    return out


def choice_logprobs(text: str | None, top: int | None) -> dict[str, Any] | None:
    """A choice's (or a chunk's) ``logprobs``: None unless they were asked for."""
    if top is None:
        return None
    return {"content": content_logprobs(text, top), "refusal": None}
