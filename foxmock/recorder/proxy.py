"""The recording proxy: forward to the upstream, relay live, capture, write, serve next time."""

from __future__ import annotations

import asyncio
import concurrent.futures
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
from foxmock.config import DEFAULT_MAX_RECORD_BYTES
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
from foxmock.recorder.writer import (
    RecordingInvalid,
    SecretFound,
    remove_stale_temps,
    write_recording,
)
from foxmock.scenarios.model import Scenario
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

    ``max_record_bytes``: an upstream answer larger than this is relayed in full but not
    recorded (at most this much of an answer is kept in memory).

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
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        self.upstream, auth = split_credentials(self.upstream)
        self.upstream_auth = self.upstream_auth or auth


# hop-by-hop and length headers that aiohttp sets itself on the relayed answer
RELAY_DROPPED = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)


class _SSEReader:
    """Splits relayed bytes into server-sent events in one pass (each byte is scanned once),
    timestamping each data payload; the JSON is parsed later, off the request path."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.buffer = bytearray()  # the event being received: starts at an event boundary
        self._scanned = 0  # how much of ``buffer`` holds no event end
        self._cr = False  # the last chunk ended in "\r": a "\r\n" may straddle two chunks
        self.payloads: list[tuple[float, bytes]] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        if self._cr:
            data = b"\r" + data
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        self.buffer += data.replace(b"\r\n", b"\n")
        start, at = 0, max(self._scanned - 1, 0)
        while (end := self.buffer.find(b"\n\n", at)) >= 0:
            self._event(bytes(self.buffer[start:end]))
            start = at = end + 2
        if start:
            del self.buffer[:start]
        self._scanned = len(self.buffer)

    def _event(self, raw: bytes) -> None:
        payload = b"\n".join(
            line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:")
        )
        if payload.strip() == b"[DONE]":
            self.done = True
        elif payload:
            self.payloads.append((time.perf_counter() - self.started, payload))


def parse_events(payloads: Sequence[tuple[float, bytes]]) -> list[tuple[float, dict[str, Any]]]:
    """The JSON events of a stream; `ValueError` when one is not a JSON object or is an error."""
    events = []
    for at, payload in payloads:
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise ValueError("the upstream sent a stream chunk that is not JSON") from None
        if not isinstance(event, dict):
            raise ValueError("the upstream sent a stream chunk that is not a JSON object")
        if "error" in event:
            raise ValueError("the upstream's stream carried an error")
        events.append((at, event))
    return events


class _Kept:
    """At most ``limit`` bytes of what is relayed, for the recording; None once over it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.over = False

    def add(self, data: bytes) -> bool:
        """Count ``data``; False (from then on) once the total is over the limit."""
        self.size += len(data)
        if not self.over and self.size > self.limit:
            self.over = True
            log.warning(
                "the upstream answer is larger than %d bytes (max_record_bytes): relayed, "
                "not recorded",
                self.limit,
            )
        return not self.over


def _upstream_error(status: int, message: str, code: str) -> RequestError:
    return RequestError(message, status=status, type="upstream_error", code=code)


class Recorder:
    """Forwards requests the mode says to forward; writes what the mode says to write.

    The client gets the upstream's answer first; recordings are built, checked and written
    afterwards on one worker thread, one at a time and in the order the exchanges completed,
    so neither a large answer nor a slow disk holds up a reply or the streams in flight.
    """

    def __init__(self, settings: RecorderSettings, store: ScenarioStore) -> None:
        self.settings = settings
        self.store = store
        self.redactor = Redactor(settings.redact)
        self.url = settings.upstream.rstrip("/") + "/chat/completions"
        # one thread: writes in order; work it was given finishes even if the loop goes away
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "foxmock-recorder")
        self._pending: set[concurrent.futures.Future[str | None]] = set()
        self._forwarding = 0  # exchanges in flight, each of which may schedule a recording
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
        """Forward ``body`` upstream and answer the client with what comes back, live (see
        `_forward`); counted in flight until the recording it may schedule is scheduled."""
        self._forwarding += 1
        try:
            return await self._forward(request, body)
        finally:
            self._forwarding -= 1

    async def _forward(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[web.StreamResponse, str | None]:
        """Forward ``body`` upstream and answer the client with what comes back, live.

        The reply is written before anything is recorded: the recording is scheduled after it
        (see `record`), so the name returned is always None.
        """
        exchange = Exchange(request=body, streamed=body.get("stream") is True)
        known = self._secrets(request)
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=self.settings.timeout)
        kept = _Kept(self.settings.max_record_bytes)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=body, headers=self._headers(request)) as upstream,
            ):
                exchange.status = upstream.status
                sse = upstream.status == 200 and upstream.content_type == "text/event-stream"
                if exchange.streamed and sse:
                    reply = await self._relay_stream(request, upstream, exchange, started, kept)
                else:
                    exchange.streamed = False  # what came back is one body: recorded as one
                    reply = await self._relay_body(request, upstream, exchange, started, kept)
        except asyncio.CancelledError:
            # the client may hang up the moment it reads [DONE]; the stream was whole by then
            self._maybe_record(exchange, known, kept)
            raise
        except asyncio.TimeoutError:
            log.error("upstream %s timed out", self.url)
            message = f"The upstream {self.url} timed out."
            raise _upstream_error(504, message, "upstream_timeout") from None
        except aiohttp.ClientError as exc:
            log.error("upstream %s failed: %s", self.url, exc)
            message = f"The upstream {self.url} could not be reached: {exc}"
            raise _upstream_error(502, message, "upstream_unavailable") from None
        if not exchange.streamed:
            with contextlib.suppress(ConnectionResetError):  # a cut answer stays cut
                if not reply.prepared:
                    await reply.prepare(request)
                await reply.write_eof()
        self._maybe_record(exchange, known, kept)  # after the reply: it never waits for this
        return reply, None

    def _maybe_record(self, exchange: Exchange, known: list[str], kept: _Kept) -> None:
        if exchange.complete and not kept.over and self.mode.writes:
            self.record(exchange, known)

    @staticmethod
    async def _relay_body(
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        started: float,
        kept: _Kept,
    ) -> web.StreamResponse:
        """Relay the upstream's status, headers and bytes as they arrive, keeping at most
        ``kept.limit`` bytes for the recording; complete once the whole body came."""
        exchange.headers = {
            k: v for k, v in upstream.headers.items() if k.lower() not in RELAY_DROPPED
        }
        reply = web.StreamResponse(status=upstream.status, headers=exchange.headers)
        body = bytearray()
        try:
            async for data in upstream.content.iter_any():
                if not reply.prepared:
                    await reply.prepare(request)
                if kept.add(data):
                    body += data
                elif body:
                    body = bytearray()  # over the limit: not recorded, not held
                await reply.write(data)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if not reply.prepared:
                raise  # nothing relayed yet: the client gets a 502 or 504
            log.error("upstream answer broke: %s; nothing recorded", exc)
            if request.transport is not None:
                request.transport.close()  # the client sees a cut answer, never a whole one
            return reply
        except ConnectionResetError:
            log.warning("the client left during a recorded answer; nothing recorded")
            return reply
        exchange.elapsed = time.perf_counter() - started
        exchange.body = bytes(body)
        exchange.complete = upstream.status == 200 or upstream.status >= 400
        return reply  # ended by `forward` once the upstream connection is released

    @staticmethod
    async def _relay_stream(
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        started: float,
        kept: _Kept,
    ) -> web.StreamResponse:
        """Relay the upstream's bytes as they arrive; complete once [DONE] came."""
        reply = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await reply.prepare(request)
        reader = _SSEReader(started)
        try:
            async for data in upstream.content.iter_any():
                if kept.add(data):
                    reader.feed(data)
                    exchange.complete = reader.done
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
        finally:
            exchange.body = reader.payloads  # parsed into events by the recording
        if not exchange.complete and not kept.over:
            log.error("upstream stream ended without [DONE]; nothing recorded")
        return reply

    def record(self, exchange: Exchange, known: list[str]) -> concurrent.futures.Future[str | None]:
        """Schedule writing ``exchange`` as a recording, then serving it. Returns at once; the
        future's result is the recording's name, or None when it was refused or skipped.

        Scheduled work runs to its end even if the client left or the server is stopping (a
        pending write is finished before the process exits; see also `drain`).
        """
        self._attempts += 1
        number = self._attempts
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        loop = asyncio.get_running_loop()
        job = self._writer.submit(self._save, exchange, known, now, number, loop)
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)
        return job

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the exchanges in flight are over and every recording they scheduled is
        written and served (for a clean shutdown: then `close`); after ``timeout`` seconds the
        rest still finish on their thread."""
        deadline = time.monotonic() + timeout
        while self._forwarding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        jobs = [asyncio.wrap_future(job) for job in list(self._pending)]
        if jobs:
            await asyncio.wait(jobs, timeout=max(deadline - time.monotonic(), 0.0))

    def wait(self, timeout: float = 10.0) -> None:
        """`drain` for a caller outside the server's loop (which must keep running meanwhile)."""
        deadline = time.monotonic() + timeout
        while self._forwarding and time.monotonic() < deadline:
            time.sleep(0.01)
        remaining = max(deadline - time.monotonic(), 0.0)
        concurrent.futures.wait(list(self._pending), timeout=remaining)

    def close(self) -> None:
        """Stop taking recordings; those scheduled still finish on their thread."""
        self._writer.shutdown(wait=False)

    def _save(
        self,
        exchange: Exchange,
        known: list[str],
        now: str,
        number: int,
        loop: asyncio.AbstractEventLoop,
    ) -> str | None:
        """Build, check and write the recording, then have ``loop`` serve it (worker thread).

        The upstream's answer is data: whatever its shape, a problem skips this recording
        with a log line and never reaches the client, who already has the answer.
        """
        try:
            if exchange.streamed:
                exchange.events = parse_events(exchange.body or [])
            else:
                exchange.body = _parse(exchange.body or b"")
            scenario = build_scenario(
                exchange,
                on=self.settings.match_on,
                redactor=self.redactor,
                upstream=self.settings.upstream,
                when=now,
                known=known,
            )
            path, scenarios = write_recording(
                self.settings.directory,
                scenario,
                f"Recorded by foxmock from {self.settings.upstream} at {now}.\n"
                "Edit freely: this is an ordinary foxmock scenario file.",
                known_secrets=known,
                allow_secrets=self.settings.allow_secrets,
                engine=self.store.engine,
            )
        except SecretFound as exc:
            log.error("refusing to write recording #%d: %s", number, exc)
            return None
        except RecordingInvalid as exc:
            log.warning(
                "not writing recording #%d: it would not load as a scenario file, so "
                "replaying the folder would fail: %s",
                number,
                scrub(str(exc), known),
            )
            return None
        except OSError as exc:
            log.error("could not write recording #%d: %s", number, scrub(str(exc), known))
            return None
        except Exception as exc:  # any upstream shape: skip the recording, never raise
            log.warning(
                "could not turn the upstream answer into a scenario (recording #%d): %s; "
                "nothing recorded",
                number,
                scrub(str(exc), known)[:500],
            )
            return None
        self._serve_from_thread(loop, scenarios, path, number, known)
        log.info("recorded #%d as %s", number, path)
        return str(scenario["name"])

    def _serve_from_thread(
        self,
        loop: asyncio.AbstractEventLoop,
        scenarios: list[Scenario],
        path: Path,
        number: int,
        known: list[str],
    ) -> None:
        """Serve ``scenarios`` on ``loop`` and wait for it (in order), unless the loop is gone."""
        if loop.is_closed():
            return
        work = self._serve(scenarios, path, known)
        try:
            served = asyncio.run_coroutine_threadsafe(work, loop)
        except RuntimeError:  # closed meanwhile: the server is gone, the file is written
            work.close()
            return
        while not loop.is_closed():
            try:
                served.result(timeout=0.1)
                return
            except concurrent.futures.TimeoutError:
                continue
            except (concurrent.futures.CancelledError, RuntimeError):
                return
        served.cancel()

    async def _serve(self, scenarios: list[Scenario], path: Path, known: list[str]) -> None:
        try:
            await self.store.add_compiled(scenarios, replace=True)
        except (ScenarioError, ValueError) as exc:
            log.error("recorded %s but cannot serve it: %s", path, scrub(str(exc), known))


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")
