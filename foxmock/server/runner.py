"""`Runner`: aiohttp's AppRunner, but requests that fail to parse still get an OpenAI envelope.

aiohttp answers a request it cannot parse (a bad request line, header or chunk) from its
protocol handler, before any route runs, with a text/plain 400 that quotes the offending
bytes back, credentials included. foxmock's handler class still closes the connection, but logs
one line without the request's bytes and sends a JSON envelope naming only the kind of fault.
"""

from __future__ import annotations

import asyncio
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
    """Answers unparsable requests with envelopes; closes connections whose head is late."""

    __slots__ = ("_head_count", "_head_handle", "_head_timeout")

    def __init__(self, *args: Any, head_timeout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout
        self._head_handle: asyncio.TimerHandle | None = None
        self._head_count = 0

    def _arm_head_timer(self) -> None:
        """Close the connection unless a complete head arrives within ``head_timeout``."""
        if self._head_timeout > 0 and self._head_handle is None:
            self._head_count = self._request_count
            self._head_handle = self._loop.call_later(self._head_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_handle = None
        if self._request_count == self._head_count and not self._force_close:
            log.info("closed a connection: request head not complete in %ss", self._head_timeout)
            self.force_close()

    def _awaiting_head(self) -> bool:
        """True between requests: no request in progress or queued, the loop waits for one."""
        waiter = self._waiter
        idle = waiter is not None and not waiter.done()
        return idle and not self._request_in_progress and not self._messages

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_handle is None and data and self._awaiting_head():
            self._arm_head_timer()  # the first byte of a keep-alive connection's next head
        super().data_received(data)
        if self._head_handle is not None and self._request_count != self._head_count:
            self._head_handle.cancel()
            self._head_handle = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_handle is not None:
            self._head_handle.cancel()
            self._head_handle = None
        super().connection_lost(exc)

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
    head_timeout = 0.0

    def __call__(self) -> RequestHandler:
        return _EnvelopeHandler(
            self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs
        )


class Runner(web.AppRunner):
    """An `aiohttp.web.AppRunner` whose connections answer unparsable requests with envelopes.

    ``head_timeout`` (seconds, 0 for none) closes a connection whose request head is not
    complete that long after the connection opened or after the next head's first byte.
    """

    def __init__(self, app: web.Application, *, head_timeout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is web.Server:  # an aiohttp that builds servers differently keeps its own
            server.__class__ = _Server
            assert isinstance(server, _Server)
            server.head_timeout = self._head_timeout
        return server
