"""Record modes: what the recorder does with a request (same names in the CLI and pytest)."""

from __future__ import annotations

import enum

# what a recording can match on (``--record-match``); the CLI checks names without the recorder
MATCH_KEYS = ("model", "messages", "tools", "tool_choice", "response_format", "stream", "last_user")


class RecordMode(str, enum.Enum):
    """``replay``: recordings only; ``record``: always forward and write; ``record-missing``:
    replay what matches, forward and write the rest; ``passthrough``: forward, write nothing."""

    REPLAY = "replay"
    RECORD = "record"
    RECORD_MISSING = "record-missing"
    PASSTHROUGH = "passthrough"

    @classmethod
    def parse(cls, value: str) -> RecordMode:
        """A mode from its name (``record_missing`` is accepted too)."""
        try:
            return cls(value.strip().lower().replace("_", "-"))
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown record mode {value!r}; choose one of {names}") from None

    def forwards(self, matched: bool) -> bool:
        """Whether a request goes to the upstream, given whether a scenario matched it."""
        if self in (RecordMode.RECORD, RecordMode.PASSTHROUGH):
            return True
        return self is RecordMode.RECORD_MISSING and not matched

    @property
    def writes(self) -> bool:
        return self in (RecordMode.RECORD, RecordMode.RECORD_MISSING)
