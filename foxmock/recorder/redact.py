"""Redaction: secrets never reach a recording, and a last scan refuses anything key-like."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

REDACTED = "[REDACTED]"
# Shapes of credentials that must never be written, whatever the configuration says.
KEY_SHAPES = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bBearer\s+[A-Za-z0-9._\-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
)
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "x-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
        "proxy-authorization",
    }
)


class Redactor:
    """Replaces configured patterns in every string of a recording."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [re.compile(p) for p in patterns]

    def text(self, value: str) -> str:
        for pattern in self.patterns:
            value = pattern.sub(REDACTED, value)
        return value

    def deep(self, value: Any) -> Any:
        """``value`` with every string inside it redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value


def secrets_in(text: str, known: Sequence[str] = (), shapes: bool = True) -> list[str]:
    """Key-like strings in ``text``: known credential values, then well-known key shapes."""
    found = [f"a credential sent to foxmock ({k[:4]}...)" for k in known if k and k in text]
    for shape in KEY_SHAPES if shapes else ():
        match = shape.search(text)
        if match:
            found.append(f"something shaped like a key ({match.group()[:6]}...)")
    return found


def header_secrets(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The credential values carried by request headers (to make sure none is written)."""
    values = []
    for name, value in headers:
        if name.lower() in SECRET_HEADERS:
            values.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() == "bearer":
                values.append(token.strip())
    return [v for v in values if len(v) >= 8]
