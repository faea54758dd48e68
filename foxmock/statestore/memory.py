"""The default store: this process's memory, bounded by a number of keys (least recent go)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote

from foxmock.statestore.base import (
    LIMITED,
    OK,
    USED_UP,
    Bucket,
    QuotaView,
    StateStore,
    Take,
    Taken,
    add,
    admit,
    trim,
    view,
)

log = logging.getLogger("foxmock")


class MemoryStore(StateStore):
    """Counters and windows in dictionaries; a take runs without awaiting, so it is atomic."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._counters: OrderedDict[str, int] = OrderedDict()
        self._windows: OrderedDict[str, list[Bucket]] = OrderedDict()
        self._warned = False

    async def take(self, take: Take, now: float) -> Taken:
        return self.take_now(take, now)

    def take_now(self, take: Take, now: float) -> Taken:
        """`take` without a coroutine."""
        count = 0
        if take.counter is not None:
            count = self._counters.get(take.counter, 0)
            if take.limit is not None and count >= take.limit:
                return Taken(USED_UP, count)
        quota = None
        if take.quota is not None:
            window = self._window(take.quota)
            quota = admit(window, take, now)
            if quota.refused_on:
                return Taken(LIMITED, count, quota)
        if take.counter is not None:
            count += 1
            self._counters[take.counter] = count
            self._counters.move_to_end(take.counter)
            self._bound(self._counters)
        return Taken(OK, count, quota)

    def _window(self, key: str) -> list[Bucket]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = []
            self._bound(self._windows)
        else:
            self._windows.move_to_end(key)
        return window

    def _bound(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_keys:
            table.popitem(last=False)
            if not self._warned:
                self._warned = True
                log.warning(
                    "state store full (%d keys, --max-state-keys): the least recently used "
                    "counters are forgotten",
                    self.max_keys,
                )

    async def charge(self, take: Take, now: float, tokens: int) -> QuotaView:
        assert take.quota is not None
        window = self._window(take.quota)
        trim(window, now, take.window)
        if tokens:
            add(window, now, take.window, 0, tokens)
        return view(window, take, now)

    async def entries(self, most: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key, count in self._counters.items():
            out.append({**_parts(key), "count": count})
        for key, window in self._windows.items():
            requests = sum(int(b[1]) for b in window)
            tokens = sum(int(b[2]) for b in window)
            out.append({**_parts(key), "requests": requests, "tokens": tokens})
        return out[:most]

    async def clear(self, scenario: str | None = None) -> int:
        if scenario is None:
            dropped = len(self._counters) + len(self._windows)
            self.clear_now()
            return dropped
        dropped = 0
        for table in (self._counters, self._windows):
            for key in [k for k in table if _parts(k)["name"] == scenario]:
                del table[key]
                dropped += 1
        return dropped

    def clear_now(self) -> None:
        self._counters.clear()
        self._windows.clear()


def _parts(key: str) -> dict[str, str]:
    """A store key as the admin shows it: kind, scenario or bucket name, scope value."""
    kind, name, scope = key.split(":", 2)
    return {
        "kind": "sequence" if kind == "seq" else "quota",
        "name": unquote(name),
        "scope": unquote(scope),
    }
