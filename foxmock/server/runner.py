"""`Runner`: aiohttp's AppRunner, but requests that fail to parse still get an OpenAI envelope.

aiohttp answers a request it cannot parse (a bad request line, header or chunk) from its
protocol handler, before any route runs, with a text/plain 400 that quotes the offending
bytes back, credentials included. foxmock's handler class still closes the connection, but logs
one line without the request's bytes and sends a JSON envelope naming only the kind of fault.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("foxmock")


def _kind(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else "BadHttpMessage"


def parse_error_body(exc: BaseException | None) -> bytes:
    """The envelope for a request aiohttp could not parse; it never echoes what was sent."""
    return json.dumps(
        {
            "error": {
                "message": f"The request is not valid HTTP/1.1 ({_kind(exc)}); nothing was done.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_http_request",
            }
        }
    ).encode()


class _EnvelopeHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:  # as aiohttp does: too late for another response
            raise ConnectionError("a response was already sent; cannot send the error")
        # one line, without the offending bytes: they may hold credentials
        log.info("refused a request from %s: not HTTP/1.1 (%s)", request.remote, _kind(exc))
        envelope = web.Response(
            status=status, body=parse_error_body(exc), content_type="application/json"
        )
        envelope.force_close()
        return envelope


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An `aiohttp.web.AppRunner` whose connections answer unparsable requests with envelopes."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is web.Server:  # an aiohttp that builds servers differently keeps its own
            server.__class__ = _Server
        return server
