"""Chunkers and the SSE encoder: an `Answer` becomes ``chat.completion.chunk`` events, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, overload

from foxmock.openai.responses import SYSTEM_FINGERPRINT
from foxmock.tokens import count_tokens, split_tokens, usage

DONE = b"data: [DONE]\n\n"
T = TypeVar("T")
# one encoder for every chunk: json.dumps with options builds a new one on each call
COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Chunking(NamedTuple):
    """How to cut text into deltas: ``tokens``, ``words`` or ``characters``, ``size`` at a time."""

    by: str = "tokens"
    size: int = 1

    def split(self, text: str) -> list[str]:
        """Cut ``text`` into pieces whose concatenation is ``text``."""
        if not text:
            return []
        if self.by == "characters":
            units: list[str] = list(text)
        elif self.by == "words":
            units = _words(text)
        else:
            units = split_tokens(text)
        size = max(self.size, 1)
        return ["".join(units[i : i + size]) for i in range(0, len(units), size)]


def _words(text: str) -> list[str]:
    """Words with the whitespace before them attached, so that joining restores the text."""
    pieces: list[str] = []
    current = ""
    for i, ch in enumerate(text):
        if ch.isspace() and current and not current.isspace() and not text[i - 1].isspace():
            pieces.append(current)
            current = ""
        current += ch
    if current:
        pieces.append(current)
    return pieces


def sse(event: Any) -> bytes:
    """One server-sent event carrying ``event`` as compact JSON."""
    return b"data: " + COMPACT.encode(event).encode() + b"\n\n"


class Delta(NamedTuple):
    """One chunk's delta, its finish reason, and how many tokens it carries (for pacing)."""

    delta: dict[str, Any]
    finish: str | None = None
    tokens: int = 0


def _compact(value: Any) -> str:
    return COMPACT.encode(value)


class ChunkBuilder:
    """Builds chunks that share one id, created time and model.

    The shared part of every frame is encoded once; a frame costs one small encode of its delta.
    """

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        service_tier: str = "default",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.base: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            **(extra or {}),
        }
        self.include_usage = include_usage
        self._head = "data: " + _compact(self.base)[:-1] + ',"choices":[{"index":'
        self._tail = "}]" + (',"usage":null' if include_usage else "") + "}\n\n"

    def frame(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """The SSE frame of one choice chunk; the same bytes as ``sse(self.choice(...))``."""
        return (
            f'{self._head}{index},"delta":{_compact(delta)},"logprobs":null,'
            f'"finish_reason":{_compact(finish)}{self._tail}'
        ).encode()

    def head(self) -> bytes:
        """What every choice frame starts with, up to its choice index."""
        return self._head.encode()

    def middle(
        self, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> bytes:
        """What a choice frame holds after its index: ``head() + index + middle`` is a frame."""
        chosen = "null" if logprobs is None else _compact(logprobs)
        return (
            f',"delta":{_compact(delta)},"logprobs":{chosen},"finish_reason":{_compact(finish)}'
            f"{self._tail}"
        ).encode()

    def choice(
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        event = {
            **self.base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if self.include_usage:
            event["usage"] = None
        return event

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {**self.base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def choice_deltas(
    content: str | None,
    content_chunks: Sequence[str] | None,
    tool_calls: Sequence[dict[str, Any]],
    finish_reason: str,
    chunking: Chunking,
    argument_chunks: Sequence[Sequence[str] | None] = (),
) -> list[Delta]:
    """The deltas of one choice: role, content, tool-call heads and fragments, finish."""
    deltas = []
    if tool_calls and not content:
        deltas.append(Delta({"role": "assistant", "content": None}))
    else:
        deltas.append(Delta({"role": "assistant", "content": "", "refusal": None}))
        parts = content_chunks if content_chunks is not None else chunking.split(content or "")
        deltas += [Delta({"content": part}, tokens=count_tokens(part) or 1) for part in parts]
    for call_index, call in enumerate(tool_calls):
        # a custom tool's call streams as a function's does, its input in place of arguments
        kind, field = (
            ("custom", "input") if call.get("type") == "custom" else ("function", "arguments")
        )
        inner = call[kind]
        head = {
            "index": call_index,
            "id": call["id"],
            "type": kind,
            kind: {"name": inner["name"], field: ""},
        }
        deltas.append(Delta({"tool_calls": [head]}, tokens=1))
        explicit = argument_chunks[call_index] if call_index < len(argument_chunks) else None
        fragments = explicit if explicit is not None else chunking.split(inner[field])
        for fragment in fragments:
            delta = {"tool_calls": [{"index": call_index, kind: {field: fragment}}]}
            deltas.append(Delta(delta, tokens=count_tokens(fragment) or 1))
    deltas.append(Delta({}, finish=finish_reason))
    return deltas


class _Computed(Sequence[T]):
    """A sequence whose items are computed on access: ``_item`` sees an index in range."""

    def _item(self, index: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index)


class StepFrames(_Computed[bytes]):
    """The choice frames of a stream, each built only when it is read.

    One choice's deltas are encoded once; frame ``i`` is step ``i // n`` of choice ``i % n``
    (every choice's chunk for a step before the next step, as the API interleaves them), so
    memory grows with one choice, never with ``n``. ``extra`` frames (usage, ``[DONE]``) follow.
    """

    def __init__(self, head: bytes, middles: Sequence[bytes], n: int, extra: Sequence[bytes]):
        self._head, self._middles, self._n, self._extra = head, middles, n, extra
        self._choice_frames = len(middles) * n

    def __len__(self) -> int:
        return self._choice_frames + len(self._extra)

    def _item(self, index: int) -> bytes:
        if index >= self._choice_frames:
            return self._extra[index - self._choice_frames]
        step, choice = divmod(index, self._n)
        return b"%s%d%s" % (self._head, choice, self._middles[step])

    def size(self) -> int:
        """The bytes of every frame together, without building any."""
        digits = sum(len(str(i)) for i in range(self._n))
        per_step = len(self._head) * self._n + digits
        return (
            len(self._middles) * per_step
            + sum(len(m) for m in self._middles) * self._n
            + sum(len(f) for f in self._extra)
        )


class Repeated(_Computed[float]):
    """Each of ``values`` ``n`` times in a row, then ``tail``; nothing copied."""

    def __init__(self, values: Sequence[float], n: int, tail: Sequence[float] = ()) -> None:
        self._values, self._n, self._tail = values, n, tail
        self._head = len(values) * n

    def __len__(self) -> int:
        return self._head + len(self._tail)

    def _item(self, index: int) -> float:
        if index >= self._head:
            return self._tail[index - self._head]
        return self._values[index // self._n]


class Spliced(_Computed[T]):
    """The first ``keep`` items of ``base``, then ``tail``: a cut stream without a copy."""

    def __init__(self, base: Sequence[T], keep: int, tail: Sequence[T] = ()) -> None:
        self._base, self._keep, self._tail = base, max(0, min(keep, len(base))), tail

    def __len__(self) -> int:
        return self._keep + len(self._tail)

    def _item(self, index: int) -> T:
        if index >= self._keep:
            return self._tail[index - self._keep]
        return self._base[index]
