"""OpenAI error envelopes for every failure, and the middleware that guarantees them."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from foxmock._exceptions import RequestError
from foxmock.server.auth import check_bearer
from foxmock.server.state import STATE

log = logging.getLogger("foxmock")
_HTTP1 = (HttpVersion10, HttpVersion11)


class BodyUnreadable(RequestError):
    """The request body cannot be read to its end: answer, then close the connection."""


def _closing(request: web.Request, error: RequestError) -> web.Response:
    """``error``'s response on a connection that closes without reading the rest of the body."""
    request.content.feed_eof()  # aiohttp must neither drain the rest nor parse it as a request
    response = error_response(error)
    response.force_close()
    return response


def error_response(error: RequestError) -> web.Response:
    """A JSON response carrying ``error``'s envelope, status and headers."""
    return web.Response(
        status=error.status,
        text=json.dumps(error.envelope()),
        content_type="application/json",
        headers=error.headers,
    )


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` gets its interim answer; any other expectation a 417 envelope."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
        return None
    return error_response(
        RequestError(
            "Unsupported Expect header; only '100-continue' is understood.",
            status=417,
            param="Expect",
            code="expectation_failed",
        )
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
        if request.version not in _HTTP1:  # aiohttp reads "GET /" and "HTTP/2.0" lines as well
            raise RequestError(
                "foxmock speaks HTTP/1.0 and HTTP/1.1; the request line named another version.",
                status=400,
                code="invalid_http_request",
            )
        keys = request.app[STATE].api_keys
        if keys and request.path.startswith("/v1/"):
            check_bearer(request.headers.get("Authorization"), keys)
        return await handler(request)
    except BodyUnreadable as exc:
        return _closing(request, exc)
    except RequestError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http(request, exc))
    except RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not decode with
        reason = " ".join(str(exc).split())
        return _closing(
            request,
            BodyUnreadable(f"The request body could not be read ({reason}).", code="invalid_body"),
        )
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:  # the client left: nothing to tell it, nothing to log
        return web.Response(status=499, reason="Client Closed Request")
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
