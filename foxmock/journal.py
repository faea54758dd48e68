"""A bounded log of chat requests: what came in, what matched, what went out.

The journal is bounded twice: by entries (``maxlen``) and by the bytes of the request bodies it
keeps (``max_bytes``); the oldest entries go first. A body is kept as the bytes that arrived and
decoded again each time it is read, so a request whose JSON would parse into a large object tree
costs its size in bytes, not the tree's.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from foxmock.openai.request import ChatRequest
from foxmock.request_ids import next_request_id

DEFAULT_JOURNAL_SIZE = 1000
DEFAULT_JOURNAL_BYTES = 64 * 1024 * 1024
MASK = "***"
# Parts of header names that say the value is a credential: Authorization, X-Api-Key,
# X-Goog-Api-Key, Cookie, X-Amz-Security-Token, X-Hub-Signature, X-Session-Id, ...
CREDENTIAL_WORDS = (
    "key",
    "token",
    "secret",
    "auth",
    "cookie",
    "signature",
    "passw",
    "session",
    "credential",
    "csrf",
    "xsrf",
    "jwt",
    "bearer",
)


@functools.cache
def _credential_name() -> re.Pattern[str]:
    return re.compile("|".join(CREDENTIAL_WORDS), re.IGNORECASE)


def is_credential_header(name: str) -> bool:
    """Whether a header of this name may carry a credential (its value is never shown)."""
    if _credential_name().search(name):
        return True
    from foxmock.recorder.redact import SECRET_HEADERS  # not needed to serve

    return name.lower() in SECRET_HEADERS


def masked(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the value of every credential-like header replaced by ``***``."""
    return {k: MASK if is_credential_header(k) else v for k, v in headers.items()}


def decoded(raw: bytes) -> Any:
    """A kept body that foxmock decoded once already, decoded again (no checks to repeat)."""
    from foxmock.openai.validation import loads_strict  # only when a body is read back

    return loads_strict(raw.decode("utf-8"))


@dataclass(slots=True, repr=False)
class Entry:
    """One request to ``/v1/chat/completions`` and what foxmock did with it.

    ``raw_headers`` are the headers as received, credentials included: read ``headers`` (masked)
    for anything that may be printed. ``raw`` is the body as received, or empty when it was not
    read or was too large for the journal (``body_bytes`` still says how large it was);
    ``decodes`` says it passed foxmock's JSON checks, so it is valid JSON and ``body`` shows it.
    """

    id: int
    time: float
    raw_headers: Mapping[str, str]
    raw: bytes = b""
    body_bytes: int = 0
    decodes: bool = False
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
    request_id: str = ""  # the x-request-id its response carries
    step: int | None = None  # the sequence step (or use, for times) it got; None: not counted
    held: bool = True  # counted in its journal's bytes (False once evicted or cleared)

    @property
    def body(self) -> Any:
        """The request body decoded afresh from ``raw``; None when it is not kept or not JSON."""
        return decoded(self.raw) if self.decodes and self.raw else None

    @property
    def headers(self) -> dict[str, str]:
        """The request headers, credentials masked."""
        return masked(self.raw_headers)

    @property
    def matched(self) -> bool:
        return self.scenario is not None

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.body
        messages = body.get("messages") if isinstance(body, dict) else None
        return messages if isinstance(messages, list) else []

    @property
    def tool_results(self) -> list[str]:
        """Names of the tools whose results this request carried (by tool_call_id lookup)."""
        body = self.body
        request = ChatRequest(body if isinstance(body, dict) else {})
        return [name for name, _ in request.tool_results]

    def to_json(self) -> dict[str, Any]:
        """The entry as the admin API shows it: body decoded, credentials masked."""
        return {"body": self.body, **self.to_json_without_body()}

    def to_json_without_body(self) -> dict[str, Any]:
        """`to_json` but the body (which `journal_json` copies from ``raw`` as it is)."""
        return {
            "id": self.id,
            "request_id": self.request_id,
            "time": self.time,
            "body_bytes": self.body_bytes,
            "status": self.status,
            "scenario": self.scenario,
            "step": self.step,
            "stream": self.stream,
            "near_miss": self.near_miss,
            "error": self.error,
            "fault": self.fault,
            "content": self.content,
            "tool_calls": self.tool_calls,
            "finish_reason": self.finish_reason,
            "duration_ms": self.duration_ms,
            "headers": self.headers,
            "matched": self.matched,
        }

    def __repr__(self) -> str:
        return (
            f"Entry(id={self.id}, status={self.status}, scenario={self.scenario!r}, "
            f"step={self.step}, stream={self.stream}, body_bytes={self.body_bytes}, "
            f"headers={self.headers!r})"
        )


class Journal:
    """The last ``maxlen`` entries whose bodies fit in ``max_bytes`` together, oldest first;
    safe to read and clear from another thread.

    Entries are started and completed on the server's loop thread, the only one that changes
    the running count of bytes; `clear` (from any thread) leaves it alone and asks for a recount,
    done the next time the count looks over the limit.
    """

    def __init__(
        self, maxlen: int = DEFAULT_JOURNAL_SIZE, max_bytes: int = DEFAULT_JOURNAL_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self._maxlen = maxlen
        self._entries: deque[Entry] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._recount = False
        self.total = 0
        self._bytes = 0  # the bodies the entries keep, together (until a recount after clear)

    @property
    def maxlen(self) -> int:
        return self._maxlen

    @property
    def kept_bytes(self) -> int:
        """The bytes of the bodies the entries keep, together (counted now)."""
        with self._lock:
            return sum(len(e.raw) for e in self._entries)

    def start(self, body: bytes | None, headers: Mapping[str, str]) -> Entry:
        """Begin an entry for a request; it is appended at once and completed in place.
        ``body`` is the raw body when it is known already; else `keep` adds it later."""
        entry = Entry(next(self._ids), time.time(), headers)  # by position: 0.2 µs less
        entry.request_id = next_request_id()
        with self._lock:
            self._entries.append(entry)
            self.total += 1
            if len(self._entries) > self._maxlen:
                self._evict_oldest()
        if body is not None:
            self.keep(entry, body)
        return entry

    def keep(self, entry: Entry, raw: bytes) -> None:
        """Attach a request's body to its entry, evicting the oldest entries to make room; a
        body larger than the whole journal is measured (``body_bytes``) but not kept."""
        size = entry.body_bytes = len(raw)
        if size > self.max_bytes:
            return
        entry.raw = raw
        if entry.held:  # no lock: only this thread adds, and a clear meanwhile asks a recount
            self._bytes += size
            if self._bytes > self.max_bytes:
                self._fit()

    def _fit(self) -> None:
        """Evict the oldest entries until the bodies kept fit in ``max_bytes``."""
        with self._lock:
            if self._recount:
                self._recount = False
                self._bytes = sum(len(e.raw) for e in self._entries)
            while self._bytes > self.max_bytes and self._entries:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        """Drop the oldest entry (the caller holds the lock)."""
        old = self._entries.popleft()
        old.held = False
        self._bytes -= len(old.raw)

    def clear(self) -> None:
        with self._lock:
            for entry in self._entries:
                entry.held = False
            self._entries.clear()
            self._recount = True

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
    body = entry.body
    return ChatRequest(body if isinstance(body, dict) else {}).last_user[:60]


def journal_json(entries: Iterable[Entry], total: int) -> Iterator[bytes]:
    """The admin API's journal document in pieces, one entry each. A body goes in as the bytes
    that arrived (valid JSON: foxmock decoded them once), never decoded again, so reading the
    journal costs its size in bytes, not a body's object tree."""
    yield b'{"entries": ['
    for i, entry in enumerate(entries):
        rest = json.dumps(entry.to_json_without_body(), default=str).encode()
        body = entry.raw if entry.decodes and entry.raw else b"null"
        yield b"".join((b", " if i else b"", b'{"body": ', body, b", ", rest[1:]))
    yield b'], "total": %d}' % total
