"""What HTTP allows in a response header: names that are tokens, values without control bytes."""

from __future__ import annotations

import re

# RFC 9110 token; and the characters aiohttp's writer refuses in a name or value (control
# characters other than tab: CR and LF would split the header)
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent as a response header, or None when it can."""
    if not _NAME.fullmatch(name):
        return f"response header name {name[:100]!r} is not a valid HTTP token"
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        return (
            f"response header {name!r} holds the control character {bad.group()!r} "
            f"at position {bad.start()}, which HTTP does not allow in a header value"
        )
    return None
