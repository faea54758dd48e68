"""Redaction: secrets never reach a recording, and a last scan refuses anything key-like."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
# Shapes of credentials that must never be written, whatever the configuration says; each
# with the label a log line shows instead of the text that matched.
KEY_SHAPES = {
    "sk-…": re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    "Bearer …": re.compile(r"\bBearer\s+[A-Za-z0-9._\-]{16,}"),
    "AKIA…": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "gh*_…": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "xox*-…": re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
}
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
MIN_SECRET = 8  # shorter values are not scanned for: they would refuse ordinary text
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*")  # Bearer, Basic, Token, ...


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
    """What key-like text ``text`` holds: known credential values, then well-known key shapes.

    The reasons name the kind only, never a character of what was found (they are logged).
    """
    found = (
        ["a credential sent to foxmock or upstream"] if any(k and k in text for k in known) else []
    )
    for label, shape in KEY_SHAPES.items() if shapes else ():
        if shape.search(text):
            found.append(f"something shaped like a key ({label})")
    return found


def scrub(text: str, known: Sequence[str] = ()) -> str:
    """``text`` with every known credential and every key shape replaced by ``[REDACTED]``."""
    for secret in sorted((k for k in known if k), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for shape in KEY_SHAPES.values():
        text = shape.sub(REDACTED, text)
    return text


def header_secrets(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The credential values carried by request headers (to make sure none is written)."""
    values = []
    for name, value in headers:
        if name.lower() in SECRET_HEADERS:
            values.append(value)
            scheme, _, token = value.partition(" ")  # Bearer TOKEN, Basic BASE64, ...
            if token.strip() and _SCHEME.fullmatch(scheme):
                values.append(token.strip())
    return [v for v in values if len(v) >= MIN_SECRET]


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part as a Basic ``Authorization``
    header value (None when the URL has none). Anything shown or written uses the first."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    if not userinfo:  # "http://@host": nothing to send
        return urlunsplit(parts._replace(netloc=host)), None
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return urlunsplit(parts._replace(netloc=host)), "Basic " + base64.b64encode(pair).decode()


def basic_secrets(authorization: str | None) -> list[str]:
    """The values that give a Basic ``Authorization`` away: the header, its token, the password."""
    if not authorization:
        return []
    found = header_secrets([("authorization", authorization)])
    try:
        pair = base64.b64decode(authorization.partition(" ")[2], validate=True).decode()
    except ValueError:
        return found
    password = pair.partition(":")[2]
    return [*found, password] if len(password) >= MIN_SECRET else found
