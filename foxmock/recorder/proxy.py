"""The recording proxy: forward to the upstream, relay live, capture, write, serve next time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from foxmock._exceptions import RequestError, ScenarioError
from foxmock.plan import SSE_HEADERS
from foxmock.recorder.capture import DEFAULT_MATCH, Exchange, build_scenario
from foxmock.recorder.modes import RecordMode
from foxmock.recorder.redact import Redactor, header_secrets
from foxmock.recorder.writer import SecretFound, write_recording
from foxmock.scenarios.store import ScenarioStore

log = logging.getLogger("foxmock.recorder")
# hop-by-hop and transport headers stay behind; every other client header goes upstream
DROPPED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
        "authorization",
        "expect",
    }
)


@dataclass
class RecorderSettings:
    """Where to forward, where to write, and what to keep out of recordings."""

    mode: RecordMode
    upstream: str
    directory: Path
    api_key: str | None = None
    redact: Sequence[str] = ()
    allow_secrets: bool = False
    match_on: Sequence[str] = DEFAULT_MATCH
    timeout: float = 120.0


# hop-by-hop and length headers that aiohttp sets itself on the relayed answer
RELAY_DROPPED = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)


class _SSEReader:
    """Splits relayed bytes into server-sent events, timestamping each data payload."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.buffer = b""
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.done = False
        self.error: Any = None

    def feed(self, data: bytes) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n\n", 1)
            payload = b"\n".join(
                line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:")
            )
            if not payload:
                continue
            if payload.strip() == b"[DONE]":
                self.done = True
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                self.error = f"upstream sent a chunk that is not JSON: {payload[:100]!r}"
                continue
            if isinstance(event, dict) and "error" in event:
                self.error = event
            elif isinstance(event, dict):
                self.events.append((time.perf_counter() - self.started, event))


def _upstream_error(status: int, message: str, code: str) -> RequestError:
    return RequestError(message, status=status, type="upstream_error", code=code)


class Recorder:
    """Forwards requests the mode says to forward; writes what the mode says to write."""

    def __init__(self, settings: RecorderSettings, store: ScenarioStore) -> None:
        self.settings = settings
        self.store = store
        self.redactor = Redactor(settings.redact)
        self.url = settings.upstream.rstrip("/") + "/chat/completions"

    @property
    def mode(self) -> RecordMode:
        return self.settings.mode

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_HEADERS}
        headers["Content-Type"] = "application/json"
        key = self.settings.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    def _secrets(self, request: web.Request) -> list[str]:
        known = header_secrets(request.headers.items())
        if self.settings.api_key:
            known.append(self.settings.api_key)
        return known

    async def forward(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[web.StreamResponse, str | None]:
        """Forward ``body`` upstream and answer the client with what comes back, live.

        Returns the response and the name of the recording written (None when nothing was).
        """
        exchange = Exchange(request=body, streamed=body.get("stream") is True)
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=self.settings.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=body, headers=self._headers(request)) as upstream,
            ):
                exchange.status = upstream.status
                sse = upstream.status == 200 and upstream.content_type == "text/event-stream"
                if exchange.streamed and sse:
                    reply = await self._relay_stream(request, upstream, exchange, started)
                else:
                    reply = await self._relay_body(upstream, exchange, started)
        except asyncio.CancelledError:
            # the client may hang up the moment it reads [DONE]; the stream was whole by then
            if exchange.complete and self.mode.writes:
                self._record(request, exchange)
            raise
        except asyncio.TimeoutError:
            log.error("upstream %s timed out", self.url)
            message = f"The upstream {self.url} timed out."
            raise _upstream_error(504, message, "upstream_timeout") from None
        except aiohttp.ClientError as exc:
            log.error("upstream %s failed: %s", self.url, exc)
            message = f"The upstream {self.url} could not be reached: {exc}"
            raise _upstream_error(502, message, "upstream_unavailable") from None
        name = self._record(request, exchange) if exchange.complete and self.mode.writes else None
        return reply, name

    @staticmethod
    async def _relay_body(
        upstream: aiohttp.ClientResponse, exchange: Exchange, started: float
    ) -> web.StreamResponse:
        raw = await upstream.read()
        exchange.elapsed = time.perf_counter() - started
        exchange.body = _parse(raw)
        exchange.headers = {
            k: v for k, v in upstream.headers.items() if k.lower() not in RELAY_DROPPED
        }
        exchange.complete = upstream.status == 200 or upstream.status >= 400
        return web.Response(status=upstream.status, body=raw, headers=exchange.headers)

    @staticmethod
    async def _relay_stream(
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        started: float,
    ) -> web.StreamResponse:
        """Relay the upstream's bytes as they arrive; complete once [DONE] came and no error."""
        reply = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await reply.prepare(request)
        reader = _SSEReader(started)
        exchange.events = reader.events
        try:
            async for data in upstream.content.iter_any():
                reader.feed(data)
                exchange.complete = reader.done and reader.error is None
                await reply.write(data)
            await reply.write_eof()
        except ConnectionResetError:
            if not exchange.complete:
                log.warning("the client left during a recorded stream; nothing recorded")
            return reply
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            exchange.complete = False
            log.error("upstream stream broke: %s; nothing recorded", exc)
            message = f"The upstream stream broke: {exc}"
            error = _upstream_error(502, message, "upstream_stream_broken")
            with contextlib.suppress(ConnectionResetError):
                await reply.write(b"data: " + json.dumps(error.envelope()).encode() + b"\n\n")
                await reply.write_eof()
            return reply
        if not exchange.complete:
            log.error("upstream stream ended without [DONE] or with an error; nothing recorded")
        return reply

    def _record(self, request: web.Request, exchange: Exchange) -> str | None:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            scenario = build_scenario(
                exchange,
                on=self.settings.match_on,
                redactor=self.redactor,
                upstream=self.settings.upstream,
                when=now,
            )
            path = write_recording(
                self.settings.directory,
                scenario,
                f"Recorded by foxmock from {self.settings.upstream} at {now}.\n"
                "Edit freely: this is an ordinary foxmock scenario file.",
                known_secrets=self._secrets(request),
                allow_secrets=self.settings.allow_secrets,
            )
        except SecretFound as exc:
            log.error("%s", exc)
            return None
        except (KeyError, TypeError, ValueError) as exc:
            log.error("could not turn the upstream answer into a scenario: %s", exc)
            return None
        try:
            self.store.add(path, replace=True)
        except ScenarioError as exc:
            log.error("recorded %s but cannot serve it: %s", path, exc)
        log.info("recorded %s", path)
        return str(scenario["name"])


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
