"""The recording proxy: forward to the upstream, relay live, capture, write, serve next time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from foxmock._exceptions import RequestError, ScenarioError
from foxmock.plan import SSE_HEADERS
from foxmock.recorder.capture import DEFAULT_MATCH, Exchange, build_scenario
from foxmock.recorder.modes import RecordMode
from foxmock.recorder.redact import (
    Redactor,
    basic_secrets,
    header_secrets,
    scrub,
    split_credentials,
)
from foxmock.recorder.writer import SecretFound, remove_stale_temps, write_recording
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
    """Where to forward, where to write, and what to keep out of recordings.

    Credentials in ``upstream`` (``https://user:password@host/v1``) are taken out of it here and
    kept as ``upstream_auth``, a Basic ``Authorization`` value: the URL that is shown, logged,
    journaled or written never holds them.
    """

    mode: RecordMode
    upstream: str
    directory: Path
    api_key: str | None = None
    redact: Sequence[str] = ()
    allow_secrets: bool = False
    match_on: Sequence[str] = DEFAULT_MATCH
    timeout: float = 120.0
    upstream_auth: str | None = None

    def __post_init__(self) -> None:
        self.upstream, auth = split_credentials(self.upstream)
        self.upstream_auth = self.upstream_auth or auth


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
    """Forwards requests the mode says to forward; writes what the mode says to write.

    Recordings are built and written in a worker thread, one at a time and in the order the
    exchanges completed, so a large one does not stall the streams in flight.
    """

    def __init__(self, settings: RecorderSettings, store: ScenarioStore) -> None:
        self.settings = settings
        self.store = store
        self.redactor = Redactor(settings.redact)
        self.url = settings.upstream.rstrip("/") + "/chat/completions"
        self._writing = asyncio.Lock()
        self._pending: set[asyncio.Task[str | None]] = set()
        self._attempts = 0  # a log line names a recording by this number, never by its text
        if settings.api_key and settings.upstream_auth:
            log.warning("the upstream URL's credentials are not sent: the upstream key is")
        if self.mode.writes and (removed := remove_stale_temps(settings.directory)):
            log.info("removed %d temp file(s) left by killed writes", removed)

    @property
    def mode(self) -> RecordMode:
        return self.settings.mode

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_HEADERS}
        headers["Content-Type"] = "application/json"
        key = self.settings.api_key
        if key:  # what foxmock is told to send beats what the client sends
            headers["Authorization"] = f"Bearer {key}"
        elif self.settings.upstream_auth:
            headers["Authorization"] = self.settings.upstream_auth
        elif "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    def _secrets(self, request: web.Request) -> list[str]:
        known = header_secrets(request.headers.items())
        if self.settings.api_key:
            known.append(self.settings.api_key)
        return known + basic_secrets(self.settings.upstream_auth)

    async def forward(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[web.StreamResponse, str | None]:
        """Forward ``body`` upstream and answer the client with what comes back, live.

        Returns the response and the name of the recording written (None when nothing was).
        """
        exchange = Exchange(request=body, streamed=body.get("stream") is True)
        known = self._secrets(request)
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
                await self._to_the_end(self._record(exchange, known))
            raise
        except asyncio.TimeoutError:
            log.error("upstream %s timed out", self.url)
            message = f"The upstream {self.url} timed out."
            raise _upstream_error(504, message, "upstream_timeout") from None
        except aiohttp.ClientError as exc:
            log.error("upstream %s failed: %s", self.url, exc)
            message = f"The upstream {self.url} could not be reached: {exc}"
            raise _upstream_error(502, message, "upstream_unavailable") from None
        if exchange.complete and self.mode.writes:
            return reply, await self._to_the_end(self._record(exchange, known))
        return reply, None

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

    async def _to_the_end(self, work: Coroutine[Any, Any, str | None]) -> str | None:
        """Await ``work``, which runs to its end even if the caller is cancelled meanwhile (a
        client that hangs up at ``[DONE]`` cancels the handler while the recording is written)."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def _record(self, exchange: Exchange, known: list[str]) -> str | None:
        """Write ``exchange`` as a recording and serve it; its name, or None if refused."""
        self._attempts += 1
        number = self._attempts
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        async with self._writing:  # one write at a time, in order: the last answer wins
            try:
                name, path = await asyncio.to_thread(self._save, exchange, known, now)
            except SecretFound as exc:
                log.error("refusing to write recording #%d: %s", number, exc)
                return None
            except (KeyError, TypeError, ValueError) as exc:
                log.error(
                    "could not turn the upstream answer into a scenario (recording #%d): %s",
                    number,
                    scrub(str(exc), known),
                )
                return None
            except OSError as exc:
                log.error("could not write recording #%d: %s", number, scrub(str(exc), known))
                return None
            try:
                self.store.add(path, replace=True)
            except ScenarioError as exc:
                log.error("recorded %s but cannot serve it: %s", path, scrub(str(exc), known))
        log.info("recorded #%d as %s", number, path)
        return name

    def _save(self, exchange: Exchange, known: list[str], now: str) -> tuple[str, Path]:
        """Build and write the recording (blocking: runs in a worker thread)."""
        scenario = build_scenario(
            exchange,
            on=self.settings.match_on,
            redactor=self.redactor,
            upstream=self.settings.upstream,
            when=now,
            known=known,
        )
        path = write_recording(
            self.settings.directory,
            scenario,
            f"Recorded by foxmock from {self.settings.upstream} at {now}.\n"
            "Edit freely: this is an ordinary foxmock scenario file.",
            known_secrets=known,
            allow_secrets=self.settings.allow_secrets,
        )
        return str(scenario["name"]), path


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
