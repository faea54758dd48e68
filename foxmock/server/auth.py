"""Optional Bearer-key check for the OpenAI paths (run by each route's guard)."""

from __future__ import annotations

from aiohttp import web

from foxmock._exceptions import RequestError
from foxmock.server.state import STATE


def _masked(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 3) + key[-4:] if len(key) > 8 else "*" * len(key)


def check_bearer(header: str | None, keys: frozenset[str]) -> None:
    """Raise a 401 `RequestError` unless ``header`` carries one of ``keys``."""
    if not header:
        raise RequestError(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            status=401,
            code="missing_api_key",
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise RequestError(
            "The Authorization header must be 'Bearer YOUR_KEY'.",
            status=401,
            code="invalid_api_key",
        )
    if token not in keys:
        raise RequestError(
            f"Incorrect API key provided: {_masked(token)}.", status=401, code="invalid_api_key"
        )


def check_api_key(request: web.Request) -> None:
    """When keys are configured, require one on every ``/v1/`` path (known or not)."""
    keys = request.app[STATE].api_keys
    if keys and request.path.startswith("/v1/"):
        check_bearer(request.headers.get("Authorization"), keys)
