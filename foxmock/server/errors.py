"""OpenAI error envelopes for every failure, and the middleware that guarantees them."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from foxmock._exceptions import RequestError
from foxmock.server.auth import check_bearer
from foxmock.server.state import STATE

log = logging.getLogger("foxmock")


def error_response(error: RequestError) -> web.Response:
    """A JSON response carrying ``error``'s envelope, status and headers."""
    return web.Response(
        status=error.status,
        text=json.dumps(error.envelope()),
        content_type="application/json",
        headers=error.headers,
    )


def _from_http(request: web.Request, exc: web.HTTPException) -> RequestError:
    status = exc.status
    if status == 404:
        return RequestError(
            f"Invalid URL ({request.method} {request.path})", status=404, code="unknown_url"
        )
    if status == 405:
        allowed: set[str] = set(getattr(exc, "allowed_methods", ()))
        return RequestError(
            f"Method {request.method} is not allowed for {request.path}; "
            f"use {', '.join(sorted(allowed)) or 'another method'}.",
            status=405,
            code="method_not_allowed",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    if status == 413:
        limit = request.app[STATE].config.max_body_bytes
        return RequestError(
            f"Request body too large: the limit is {limit} bytes.",
            status=413,
            code="request_too_large",
        )
    return RequestError(exc.reason or "HTTP error", status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check API keys, then turn every failure into an OpenAI error envelope (no tracebacks)."""
    try:
        keys = request.app[STATE].api_keys
        if keys and request.path.startswith("/v1/"):
            check_bearer(request.headers.get("Authorization"), keys)
        return await handler(request)
    except RequestError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http(request, exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error while handling %s %s", request.method, request.path)
        return error_response(
            RequestError(
                "foxmock hit an internal error; the server log has the details.",
                status=500,
                type="server_error",
                code="internal_error",
            )
        )
