"""A bounded log of chat requests: what came in, what matched, what went out."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from foxmock.openai.request import ChatRequest

DEFAULT_JOURNAL_SIZE = 1000
DEFAULT_JOURNAL_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class Entry:
    """One request to ``/v1/chat/completions`` and what foxmock did with it."""

    id: int
    time: float
    body: Any
    raw_headers: Mapping[str, str]
    status: int = 200
    scenario: str | None = None
    stream: bool = False
    near_miss: str | None = None
    error: str | None = None
    fault: str | None = None
    content: str | None = None
    tool_calls: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    duration_ms: float = 0.0

    @property
    def headers(self) -> dict[str, str]:
        """The request headers, credentials masked."""
        from foxmock.recorder.redact import SECRET_HEADERS  # not needed to serve

        return {k: "***" if k.lower() in SECRET_HEADERS else v for k, v in self.raw_headers.items()}

    @property
    def matched(self) -> bool:
        return self.scenario is not None

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return messages if isinstance(messages, list) else []

    @property
    def tool_results(self) -> list[str]:
        """Names of the tools whose results this request carried (by tool_call_id lookup)."""
        body = self.body if isinstance(self.body, dict) else {}
        return [name for name, _ in ChatRequest(body).tool_results]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw_headers"}
        return {**out, "headers": self.headers, "matched": self.matched}


class Journal:
    """The last ``maxlen`` entries, oldest first, safe to read from another thread."""

    def __init__(
        self, maxlen: int = DEFAULT_JOURNAL_SIZE, max_bytes: int = DEFAULT_JOURNAL_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self._entries: deque[Entry] = deque(maxlen=maxlen)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.total = 0

    @property
    def maxlen(self) -> int:
        return self._entries.maxlen or 0

    def start(self, body: Any, headers: Mapping[str, str]) -> Entry:
        """Begin an entry for a request; it is appended at once and completed in place."""
        entry = Entry(next(self._ids), time.time(), body, headers)  # by position: 0.2 µs less
        with self._lock:
            self._entries.append(entry)
            self.total += 1
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __iter__(self) -> Iterator[Entry]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, *, scenario: str | None = None, matched: bool | None = None) -> list[Entry]:
        """Entries, optionally only those of one scenario, or only matched / unmatched ones."""
        return [
            e
            for e in self
            if (scenario is None or e.scenario == scenario)
            and (matched is None or e.matched == matched)
        ]

    def last(self) -> Entry:
        """The most recent entry; AssertionError when there is none."""
        entries = list(self)
        assert entries, "foxmock received no chat requests"
        return entries[-1]

    def count(self, scenario: str | None = None) -> int:
        """How many requests matched ``scenario`` (all requests when None)."""
        return len(self.entries(scenario=scenario))

    def unmatched(self) -> list[Entry]:
        """Requests that matched no scenario."""
        return self.entries(matched=False)

    def called_with_tool_result(self, tool: str) -> bool:
        """Whether some request carried a result of ``tool``."""
        return any(tool in e.tool_results for e in self)

    def assert_called(self, scenario: str, times: int | None = None) -> None:
        """Fail unless ``scenario`` answered (exactly ``times`` times, when given)."""
        seen = self.count(scenario)
        if times is None:
            assert seen > 0, f"scenario {scenario!r} was never used; {self.summary()}"
        else:
            assert seen == times, (
                f"scenario {scenario!r} was used {seen} time(s), expected {times}; {self.summary()}"
            )

    def summary(self) -> str:
        """One line per entry, for assertion messages."""
        lines = [
            f"#{e.id} {e.status} {e.scenario or 'NO MATCH'} last_user={_last_user(e)!r}"
            for e in self
        ]
        return "requests:\n  " + "\n  ".join(lines) if lines else "no requests"


def _last_user(entry: Entry) -> str:
    body = entry.body if isinstance(entry.body, dict) else {}
    return ChatRequest(body).last_user[:60]
