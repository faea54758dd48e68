"""Compiled scenarios and the ordered set that matches requests against them."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from foxmock.latency import Latency
from foxmock.matching import (
    All,
    AnyOf,
    Header,
    Miss,
    Not,
    Predicate,
    Text,
    collect_needles,
    use_needles,
)
from foxmock.openai.request import ChatRequest
from foxmock.streaming import Chunking

Render = Callable[[Mapping[str, Any]], Any]
EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})  # a default no instance can change


class ToolCallSpec(NamedTuple):
    """A tool call to answer with; ``arguments`` renders to JSON text (None: synthesise).
    ``custom``: a call of a custom tool, whose ``input`` (or joined ``chunks``) is plain text."""

    name: Render
    arguments: Render | None
    id: Render | None = None
    chunks: Sequence[Render] | None = None
    custom: bool = False
    input: Render | None = None


class Respond(NamedTuple):
    """A successful answer; every field but ``finish_reason`` and ``usage`` is a template."""

    content: Render | None = None
    tool_calls: Sequence[ToolCallSpec] = ()
    finish_reason: str | None = None
    model: Render | None = None
    usage: Mapping[str, int] = EMPTY_MAPPING
    headers: Mapping[str, Render] = EMPTY_MAPPING
    extra: Mapping[str, Any] = EMPTY_MAPPING  # top-level fields of the answer, sent as written


# the fields of a chat.completion (and chunk) foxmock writes itself; ``extra`` may not set them
RESERVED_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage"})


class Fault(NamedTuple):
    """A failure to inject: an HTTP error, a broken stream or a hang, maybe only sometimes."""

    kind: str
    status: int
    message: Render
    type: str
    code: str | None
    param: str | None
    retry_after: float | None = None
    headers: Mapping[str, str] = EMPTY_MAPPING
    after_chunks: int = 0
    duration: float = 0.0
    probability: float = 1.0


class Scenario(NamedTuple):
    """One compiled scenario, with where it came from."""

    name: str
    match: All
    respond: Respond | None
    fault: Fault | None
    chunking: Chunking = Chunking()
    chunks: Sequence[Render] | None = None
    latency: Latency = Latency()
    priority: int = 0
    description: str = ""
    file: str = "<string>"
    line: int = 1
    position: int = 0  # its place in the file's scenarios list
    literal: bool = False  # answer strings are sent as written, never rendered
    usage_chunk: bool = True  # a stream asked for include_usage ends with a usage chunk
    state: Stateful | None = None  # a sequence, a use limit or a quota; None: stateless

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Scope(NamedTuple):
    """Whose counter a request advances: ``server``, ``test``, ``api_key``, or the value of a
    ``header`` or a ``body`` path (``name``)."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


class RateLimit(NamedTuple):
    """A request and token quota per minute (scaled by the time scale), counted per scope key
    in the ``bucket`` of whoever declared it: a scenario, a file, or the server."""

    requests_per_minute: int | None
    tokens_per_minute: int | None
    scope: Scope = Scope("api_key")
    bucket: str = "server"


class Stateful(NamedTuple):
    """What a scenario counts: its ``steps`` (each a scenario of its own answer; empty: the
    scenario is its one step), how many uses it has (None: unbounded) and its quota."""

    steps: Sequence[Scenario] = ()
    limit: int | None = None
    scope: Scope | None = None  # None: the server's default scope
    rate_limit: RateLimit | None = None
    after: str = "repeat"

    @property
    def counted(self) -> bool:
        """Whether requests advance a counter (a sequence or a use limit)."""
        return bool(self.steps) or self.limit is not None


class NearMiss(NamedTuple):
    """A scenario that did not match, with each predicate that failed."""

    scenario: Scenario
    misses: Sequence[Miss]
    held: int
    total: int

    def __str__(self) -> str:
        head = (
            f"{self.scenario.name} ({self.scenario.where}): "
            f"{self.held} of {self.total} conditions held"
        )
        return "\n".join([head, *(f"    - {m}" for m in self.misses)])


_ANY = None
_INDEXED = ("model", "last_user")
NEAR_MISS_SCENARIOS = 2000  # a no-match report compares at most this many scenarios ...
NEAR_MISS_SECONDS = 0.05  # ... for at most about this long, then says how many it skipped


def _index_key(scenario: Scenario) -> tuple[str | None, ...]:
    """The exact texts a scenario demands of the indexed fields (None: no exact demand)."""
    exact: dict[str, str | None] = {}
    for predicate in scenario.match.parts:
        if isinstance(predicate, Text) and predicate.key in _INDEXED:
            exact[predicate.key] = predicate.matcher.exact
    return tuple(exact.get(key, _ANY) for key in _INDEXED)


def _header_names(predicate: Predicate) -> set[str]:
    """The (lower-case) header names a match looks at, however deeply nested."""
    if isinstance(predicate, Header):
        return {predicate.name}
    if isinstance(predicate, (All, AnyOf)):
        return set().union(*(_header_names(p) for p in predicate.parts))
    if isinstance(predicate, Not):
        return _header_names(predicate.inner)
    return set()


class ScenarioSet:
    """Scenarios in match order: higher priority first, then the order they were loaded.

    Scenarios that demand an exact model or last user message are indexed by it, so a request
    is tested only against scenarios that could match it, still in match order.
    """

    def __init__(self, scenarios: Sequence[Scenario], models: Sequence[str] = ()) -> None:
        ranked = sorted(enumerate(scenarios), key=lambda pair: (-pair[1].priority, pair[0]))
        self.scenarios: list[Scenario] = [s for _, s in ranked]
        self.models: list[str] = list(dict.fromkeys(models))
        self._rank = {id(s): rank for rank, s in enumerate(self.scenarios)}
        self.stateful = any(s.state is not None for s in self.scenarios)
        self._index: dict[tuple[str | None, ...], list[int]] = {}
        for rank, scenario in enumerate(self.scenarios):
            self._index.setdefault(_index_key(scenario), []).append(rank)
        self.needles = collect_needles(s.match for s in self.scenarios)
        # every header some match looks at: a request's outcome depends on its body and these
        self.header_names = tuple(
            sorted(set().union(*(_header_names(s.match) for s in self.scenarios)))
        )

    def __len__(self) -> int:
        return len(self.scenarios)

    def _candidates(self, req: ChatRequest) -> Iterable[int]:
        model, user = req.model, req.last_user
        lists = [
            ranks
            for key in ((model, user), (model, _ANY), (_ANY, user), (_ANY, _ANY))
            if (ranks := self._index.get(key))
        ]
        if len(lists) == 1:
            return lists[0]
        return heapq.merge(*lists)

    def find(self, req: ChatRequest) -> Scenario | None:
        """The first scenario, in match order, whose match holds; or None."""
        scenarios = self.scenarios
        use_needles(req, self.needles)
        for rank in self._candidates(req):
            scenario = scenarios[rank]
            if scenario.match.test(req):
                return scenario
        return None

    def find_after(self, req: ChatRequest, scenario: Scenario) -> Scenario | None:
        """The first scenario after ``scenario`` in match order whose match holds; or None."""
        after = self._rank[id(scenario)]
        scenarios = self.scenarios
        for rank in self._candidates(req):
            if rank > after and scenarios[rank].match.test(req):
                return scenarios[rank]
        return None

    def near_misses(self, req: ChatRequest, limit: int = 3) -> list[NearMiss]:
        """The scenarios closest to matching, fewest failed conditions first."""
        return self.nearest(req, limit)[0]

    def nearest(
        self,
        req: ChatRequest,
        limit: int = 3,
        most: int = NEAR_MISS_SCENARIOS,
        seconds: float = NEAR_MISS_SECONDS,
    ) -> tuple[list[NearMiss], int]:
        """`near_misses`, comparing at most ``most`` scenarios for at most about ``seconds``;
        also how many scenarios were left uncompared (0 when all were)."""
        deadline = time.perf_counter() + seconds
        use_needles(req, self.needles)
        found: list[NearMiss] = []
        for done, scenario in enumerate(self.scenarios):
            if done >= most or time.perf_counter() > deadline:
                return _closest(found, limit), len(self.scenarios) - done
            explained = [p.explain(req) for p in scenario.match.parts]  # [] when p held
            misses = [m for reasons in explained for m in reasons]
            held = sum(1 for reasons in explained if not reasons)
            found.append(NearMiss(scenario, misses, held, len(explained)))
        return _closest(found, limit), 0


def _closest(found: Iterable[NearMiss], limit: int) -> list[NearMiss]:
    """The ``limit`` near misses with the fewest failed conditions (ties: most held, then order)."""
    return heapq.nsmallest(limit, found, key=lambda n: (len(n.misses), -n.held))
