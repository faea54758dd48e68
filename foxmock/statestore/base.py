"""The store interface: one atomic `take` per request, a token `charge`, listing and clearing.

A take advances a sequence counter and admits a request to a quota window in one step, so a
request that is over its quota never uses a sequence step and a used-up sequence never spends
quota. Quota windows are sliding: a list of buckets ``[time, requests, tokens]``, merged when
closer together than ``resolution`` (a thousandth of the window), so a key holds at most about
a thousand buckets whatever the limits. The pure functions here are the memory store's logic;
the Redis store runs the same rules in one Lua script.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

Bucket = list[float]  # [time, requests, tokens]
OK, USED_UP, LIMITED = "ok", "used_up", "limited"


class StateUnavailable(Exception):
    """The store cannot be reached (Redis down); the request that needs it gets a 503."""


class Take(NamedTuple):
    """What one request asks of the store."""

    counter: str | None = None  # a sequence or use-limit counter to advance
    limit: int | None = None  # the uses it allows (None: unbounded)
    quota: str | None = None  # a quota window to be admitted to
    window: float = 60.0  # the window's length in seconds
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens: int = 0  # tokens the request costs at admission (its prompt)


class QuotaView(NamedTuple):
    """A quota window as one request left it: what remains, and when slots free."""

    requests_per_minute: int | None
    tokens_per_minute: int | None
    remaining_requests: int
    remaining_tokens: int
    reset_requests: float  # seconds until the oldest counted request leaves the window
    reset_tokens: float
    retry_after: float | None = None  # refused: seconds until the request would fit
    refused_on: str = ""  # "requests" or "tokens" when refused


class Taken(NamedTuple):
    """The outcome of a `Take`: ok, used_up (the counter had reached its limit) or limited."""

    outcome: str
    uses: int  # the use this request got (1-based), or the uses so far when used up
    quota: QuotaView | None = None


def counter_key(scenario: str, scope: str) -> str:
    """The store key of a scenario's counter for one scope value."""
    return f"seq:{quote(scenario, safe='')}:{quote(scope, safe='')}"


def quota_key(bucket: str, scope: str) -> str:
    """The store key of a quota bucket's window for one scope value."""
    return f"quota:{quote(bucket, safe='')}:{quote(scope, safe='')}"


def resolution(window: float) -> float:
    return window / 1000.0


def trim(log: list[Bucket], now: float, window: float) -> None:
    """Drop the buckets that have left the window."""
    start = now - window
    drop = 0
    while drop < len(log) and log[drop][0] <= start:
        drop += 1
    del log[:drop]


def add(log: list[Bucket], now: float, window: float, requests: int, tokens: int) -> None:
    """Count ``requests`` and ``tokens`` at ``now`` (into the newest bucket when close)."""
    if log and now - log[-1][0] < resolution(window):
        last = log[-1]
        last[0], last[1], last[2] = max(last[0], now), last[1] + requests, last[2] + tokens
    else:
        log.append([now, float(requests), float(tokens)])


def _frees_at(log: Sequence[Bucket], column: int, need: float, now: float, window: float) -> float:
    """Seconds until ``need`` units of ``column`` have left the window."""
    freed = 0.0
    for bucket in log:
        freed += bucket[column]
        if freed >= need:
            return max(bucket[0] + window - now, 0.0)
    return window


def _oldest(log: Sequence[Bucket], column: int, now: float, window: float) -> float:
    for bucket in log:
        if bucket[column] > 0:
            return max(bucket[0] + window - now, 0.0)
    return 0.0


def view(
    log: Sequence[Bucket], take: Take, now: float, refused: str = "", retry: float | None = None
) -> QuotaView:
    """The quota as ``log`` stands, for the rate-limit headers."""
    rpm, tpm = take.requests_per_minute, take.tokens_per_minute
    used_r = sum(b[1] for b in log)
    used_t = max(sum(b[2] for b in log), 0.0)  # a refund may outlive what it refunded
    return QuotaView(
        rpm,
        tpm,
        max(int((rpm or 0) - used_r), 0),
        max(int((tpm or 0) - used_t), 0),
        _oldest(log, 1, now, take.window),
        _oldest(log, 2, now, take.window),
        retry,
        refused,
    )


def admit(log: list[Bucket], take: Take, now: float) -> QuotaView:
    """Admit one request of ``take.tokens`` tokens to the window, or say why not and until when
    (``refused_on`` set; a request larger than the whole token quota has no retry time)."""
    trim(log, now, take.window)
    rpm, tpm = take.requests_per_minute, take.tokens_per_minute
    used_r = sum(b[1] for b in log)
    used_t = max(sum(b[2] for b in log), 0.0)
    if rpm is not None and used_r + 1 > rpm:
        retry = _frees_at(log, 1, used_r + 1 - rpm, now, take.window)
        return view(log, take, now, "requests", retry)
    if tpm is not None and used_t + take.tokens > tpm:
        if take.tokens > tpm:
            return view(log, take, now, "tokens", None)
        retry = _frees_at(log, 2, used_t + take.tokens - tpm, now, take.window)
        return view(log, take, now, "tokens", retry)
    add(log, now, take.window, 1, take.tokens)
    return view(log, take, now)


class StateStore(ABC):
    """Counters and quota windows, shared by whoever shares the store."""

    url = "memory"

    def shown(self) -> str:
        """Where the store is, fit to print (no password)."""
        return self.url

    @abstractmethod
    async def take(self, take: Take, now: float) -> Taken:
        """Atomically: refuse if the counter reached its limit; refuse if the quota is full;
        else advance the counter and admit the request."""

    @abstractmethod
    async def charge(self, take: Take, now: float, tokens: int) -> QuotaView:
        """Count ``tokens`` more in the quota window of ``take``: the answer's, less what its
        usage says the prompt was when that is less than counted at admission (negative)."""

    @abstractmethod
    async def entries(self, most: int = 1000) -> list[dict[str, Any]]:
        """Up to ``most`` counters and windows, as the admin API shows them."""

    @abstractmethod
    async def clear(self, scenario: str | None = None) -> int:
        """Forget every counter and window (or a scenario's); how many were dropped."""

    def clear_now(self) -> None:  # noqa: B027 - a store without a synchronous clear skips it
        """Forget everything at once, where the store can do it without waiting."""

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


def open_store(url: str | None, max_keys: int, ttl: float, timeout: float) -> StateStore:
    """The store ``url`` names: None or ``memory`` for this process, ``redis://...`` for Redis."""
    if url is None or url in ("", "memory"):
        from foxmock.statestore.memory import MemoryStore

        return MemoryStore(max_keys)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from foxmock.statestore.redis_store import RedisStore

        return RedisStore(url, ttl=ttl, timeout=timeout)
    raise ValueError(f"--state must be 'memory' or a redis://HOST:PORT/DB URL, not {url!r}")
