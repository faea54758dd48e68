"""Replay: a byte-identical request to a deterministic scenario reuses the answer planned before.

Planning an answer (decode, validate, match, render, encode) costs far more than sending it.
Matching depends only on the body and the headers scenarios name, so those make the key. When a
render depended on nothing more, the same key always gets the same plan, save for its completion
id and created time; those are swapped in fresh on every replay, so every answer still has its
own id. That is checked, not assumed: the caller admits a plan only when the render read no clock
and no headers, drew nothing from the random generator beyond the completion id, and carried no
fault. A new scenario set (reload, admin change) comes with a new, empty cache. No I/O here.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, overload

from multidict import CIMultiDictProxy

from foxmock.answer import Answer
from foxmock.openai.responses import make_id
from foxmock.plan import Plan

MAX_ENTRIES = 256
MAX_KEY_BYTES = 64 * 1024  # longer request bodies are planned every time
MAX_ANSWER_BYTES = 256 * 1024  # so are larger answers


def _span(completion_id: str, created: int, stream: bool) -> bytes:
    """The bytes of every body or chunk that change from one answer to the next."""
    kind = "chat.completion.chunk" if stream else "chat.completion"
    return f'{completion_id}","object":"{kind}","created":{created}'.encode()


class Replay(NamedTuple):
    """A planned answer with its id and created time cut out, and what the journal records."""

    body: Any  # the validated request body, shared by the journal entries of every replay
    scenario: str
    answer: Answer
    stream: bool
    status: int
    headers: Mapping[str, str]
    delay: float
    pieces: tuple[tuple[bytes, ...], ...]  # a body, or each frame, split where the span was
    offsets: tuple[float, ...]
    immediate: bool = False  # a plain 200 body with nothing to wait for: `body_for` suffices

    def body_for(self, completion_id: str, created: int) -> bytes:
        """The body (not streamed) with ``completion_id`` and ``created`` in place."""
        return _span(completion_id, created, False).join(self.pieces[0])

    def plan(self, completion_id: str, created: int) -> Plan:
        """The plan again, with ``completion_id`` and ``created`` in place."""
        span = _span(completion_id, created, self.stream)
        return Plan(
            status=self.status,
            headers=dict(self.headers),
            body=None if self.stream else span.join(self.pieces[0]),
            frames=_Frames(span, self.pieces) if self.stream else None,
            offsets=self.offsets,
            delay=self.delay,
            answer=self.answer,
            completion_id=completion_id,
            created=created,
        )


class _Frames(Sequence[bytes]):
    """A replayed stream's frames, each put together only when it is about to be sent.

    Thousands of paced streams then share one copy of the pieces instead of holding every frame.
    """

    def __init__(self, span: bytes, pieces: tuple[tuple[bytes, ...], ...]) -> None:
        self._span, self._pieces = span, pieces

    def __len__(self) -> int:
        return len(self._pieces)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self._span.join(piece) for piece in self._pieces[index]]
        return self._span.join(self._pieces[index])


def replay_key(body: bytes, headers: CIMultiDictProxy[str], names: Sequence[str]) -> bytes:
    """The cache key: the raw body, then every value of each header some scenario matches on."""
    if not names:
        return body
    parts = [body]
    for name in names:
        values = headers.getall(name, ())
        parts.append(b"\0%d" % len(values))
        parts.extend(b"\0" + v.encode("utf-8", "surrogateescape") for v in values)
    return b"".join(parts)


def replay_of(plan: Plan, body: Any, scenario: str, stream: bool) -> Replay | None:
    """A `Replay` of ``plan``, or None when it cannot be replayed byte for byte."""
    if plan.fault is not None or plan.disconnect or plan.answer is None:
        return None
    span = _span(plan.completion_id, plan.created, stream)
    ident = plan.completion_id.encode()
    if stream:
        if plan.frames is None:
            return None
        frames, offsets = plan.frames, plan.offsets
        if all(at <= 0 for at in offsets):  # all due at once: one piece, one write
            frames, offsets = [b"".join(frames)], [0.0]
    else:
        if plan.body is None:
            return None
        frames, offsets = [plan.body], []
    if sum(len(f) for f in frames) > MAX_ANSWER_BYTES:
        return None
    # every occurrence of the id must sit in a span, or a replay would repeat an old id
    if any(frame.count(ident) != frame.count(span) for frame in frames):
        return None
    return Replay(
        body=body,
        scenario=scenario,
        answer=plan.answer,
        stream=stream,
        status=plan.status,
        headers=dict(plan.headers),
        delay=plan.delay,
        pieces=tuple(tuple(frame.split(span)) for frame in frames),
        offsets=tuple(offsets),
        immediate=not stream and plan.delay <= 0 and plan.status == 200,
    )


class ReplayCache:
    """The most recently used replays, keyed by `replay_key`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._replays: OrderedDict[bytes, Replay] = OrderedDict()
        self.refused: set[str] = set()  # scenarios once found to depend on more than the body
        self.hits = 0
        self._probe = random.Random(0)  # replays a state to see what one id draws

    def wants(self, key: bytes, scenario: str) -> bool:
        """Whether a plan of ``scenario`` for ``key`` could be kept (worth checking after)."""
        return self.max_entries > 0 and len(key) <= MAX_KEY_BYTES and scenario not in self.refused

    def offer(
        self,
        key: bytes,
        plan: Plan,
        body: Any,
        scenario: str,
        stream: bool,
        *,
        read_more: bool,
        rng_before: tuple[Any, ...],
        rng: random.Random,
    ) -> None:
        """Keep ``plan`` if it depended on the body alone, else never try ``scenario`` again.

        ``read_more``: the render read the clock or the headers. The random generator must
        have moved from ``rng_before`` by exactly one completion id's draws.
        """
        replay = None
        if not read_more and self._drew_only_an_id(rng_before, rng):
            replay = replay_of(plan, body, scenario, stream)
        if replay is None:
            self.refused.add(scenario)
        else:
            self.put(key, replay)

    def _drew_only_an_id(self, before: tuple[Any, ...], rng: random.Random) -> bool:
        self._probe.setstate(before)
        make_id("cmpl_", self._probe)
        return self._probe.getstate() == rng.getstate()

    def __len__(self) -> int:
        return len(self._replays)

    def get(self, key: bytes) -> Replay | None:
        replay = self._replays.get(key)
        if replay is not None:
            self._replays.move_to_end(key)
            self.hits += 1
        return replay

    def put(self, key: bytes, replay: Replay) -> None:
        self._replays[key] = replay
        self._replays.move_to_end(key)
        while len(self._replays) > self.max_entries:
            self._replays.popitem(last=False)
