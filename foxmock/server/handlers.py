"""Route handlers: thin wrappers that parse, call the pure core, and write."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from foxmock._exceptions import RequestError
from foxmock.answer import Answer, RenderError, call_parts
from foxmock.journal import Entry
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import make_id, model_object
from foxmock.openai.validation import decode_body, validate_chat_request
from foxmock.plan import Plan, shape
from foxmock.replay import Replay, ReplayCache, replay_key
from foxmock.request_ids import REQUEST_KEY
from foxmock.scenarios.model import Scenario, ScenarioSet
from foxmock.server.auth import check_api_key
from foxmock.server.delivery import deliver
from foxmock.server.errors import (
    CLIENT_LEFT,
    BodyUnreadable,
    admit,
    as_request_error,
    error_response,
    respond_with,
)
from foxmock.server.offload import HEAVY_BODY_BYTES, off_loop
from foxmock.server.state import STATE, ServerState
from foxmock.stateful import Chosen, Counting, charge, choose, quota_headers
from foxmock.templating import RequestContext

log = logging.getLogger("foxmock")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def ready_body(request: web.Request) -> bytes | None:
    """The whole body when it is JSON by its plain Content-Type, arrived with the headers and
    is within the size limit (the usual case), taken without a coroutine (~1.5 µs less than
    `read_body`); None when `read_body` must decide."""
    content = request.content
    if (
        request.headers.get("Content-Type") != "application/json"
        or not content.is_eof()
        or content.total_bytes > request.client_max_size
    ):
        return None
    return content.read_nowait()


async def read_body(request: web.Request) -> bytes:
    """The raw body of a JSON request (what `ready_body` leaves: other spellings of the type,
    bodies still arriving or too large), or a 415 `RequestError` for another content type."""
    given = request.headers.get("Content-Type")  # the common spelling skips the full parse
    if given != "application/json" and request.content_type != "application/json":
        raise RequestError(
            f"Unsupported content type {request.content_type!r}; send 'application/json'.",
            status=415,
            code="unsupported_media_type",
        )
    if request.content.is_eof():  # all here: read() takes it, or refuses it as too large
        return await request.read()
    timeout = request.app[STATE].config.body_timeout
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except asyncio.TimeoutError:
        raise BodyUnreadable(
            f"The request body did not arrive within {timeout:g} s.",
            status=408,
            code="request_timeout",
        ) from None


def no_match_error(
    scenarios: ScenarioSet, req: ChatRequest, used_up: Sequence[str] = ()
) -> RequestError:
    """The 404 sent when no scenario matches, naming the nearest scenarios and why they missed
    (first those that matched but were used up: a sequence at its end, a ``times`` reached)."""
    summary = (
        f"model {req.model!r}, {len(req.messages)} message(s), "
        f"last user message {req.last_user[:80]!r}"
    )
    lines = [f"No foxmock scenario matched this request ({summary})."]
    if used_up:
        lines.append("Matched, but used up:")
        lines.extend(f"  - {note}" for note in used_up)
    near, skipped = scenarios.nearest(req)
    if near:
        lines.append("Nearest scenarios:")
        lines.extend(f"  {i}. {miss}" for i, miss in enumerate(near, 1))
        if skipped:
            lines.append(f"  (and {skipped} more scenarios, not compared: the report is bounded)")
    else:
        lines.append("No scenarios are loaded.")
    return RequestError("\n".join(lines), status=404, code="no_scenario_matched")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``, journaled whatever happens.

    The hottest route is its own `guard` (same front door, same envelopes): a wrapper would
    cost it a coroutine layer per request.
    """
    try:
        admit(request, check_api_key)
    except RequestError as exc:
        return error_response(exc)
    state = request.app[STATE]
    started = time.perf_counter()
    entry = state.journal.start(None, request.headers)
    request[REQUEST_KEY] = entry.request_id  # the response's x-request-id (see app.py)
    try:
        raw = ready_body(request)
        if raw is None:
            raw = await read_body(request)
        state.journal.keep(entry, raw)  # as bytes: decoded again only when read back
        scenarios = state.scenarios
        cache = state.replay_cache(scenarios)
        replay = key = None
        if cache is not None:
            key = replay_key(raw, request.headers, scenarios.header_names)
            replay = cache.get(key)
        if replay is None:
            response = await _chat(request, state, entry, raw, scenarios, cache, key)
        else:
            completion_id, created = _journal_replay(state, entry, replay)
            if replay.immediate:  # the common case: no coroutine, straight to a response
                body = replay.body_for(completion_id, created)
                response = web.Response(body=body, headers=replay.headers)
            else:
                response = await deliver(request, replay.plan(completion_id, created))
    except asyncio.CancelledError:
        entry.status, entry.error = 499, CLIENT_LEFT
        raise
    except Exception as exc:
        error = as_request_error(request, exc)
        entry.error = error.message if error is not None else CLIENT_LEFT
        response = respond_with(request, error)
        # its traceback holds this frame, which holds it: a cycle only a full collection frees,
        # keeping the request's decoded body alive meanwhile (tens of MB for a 4 MiB body)
        del error
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000
    entry.status = response.status
    return response


def _journal_replay(state: ServerState, entry: Entry, replay: Replay) -> tuple[str, int]:
    """Journal a replayed answer; return the fresh id and created time it goes out with."""
    entry.stream, entry.scenario, entry.decodes = replay.stream, replay.scenario, True
    _journal_answer(entry, replay.answer, None)
    return make_id("cmpl_", state.rng), int(time.time())


async def _chat(
    request: web.Request,
    state: ServerState,
    entry: Entry,
    raw: bytes,
    scenarios: ScenarioSet,
    cache: ReplayCache | None,
    key: bytes | None,
) -> web.StreamResponse:
    heavy = len(raw) > HEAVY_BODY_BYTES
    recorder = state.recorder
    # a recorder that forwards what no scenario answers forwards what foxmock would refuse too:
    # the upstream, not foxmock, judges a request foxmock does not answer
    lenient = recorder is not None and recorder.mode.forwards(False)
    if heavy:
        body, req, scenario = await off_loop(_understand, entry, raw, request, scenarios, lenient)
    else:
        body, req, scenario = _understand(entry, raw, request, scenarios, lenient)
    counting = state.counting
    chosen: Chosen | None = None
    if (
        scenario is not None
        and counting is not None
        and (scenario.state is not None or counting.quota is not None)
    ):
        assert req is not None
        entry.scenario = scenario.name  # kept if its quota refuses the request
        chosen = await choose(scenarios, req, scenario, counting, state.config.time_scale)
        scenario, entry.step = chosen.scenario, chosen.step
    if recorder is not None and recorder.mode.forwards(scenario is not None):
        response, recorded = await recorder.forward(request, body)
        entry.scenario = recorded or f"<{recorder.mode.value}: {recorder.settings.upstream}>"
        return response
    assert req is not None  # only a forwarded request goes unvalidated
    if scenario is None:
        used_up = chosen.used_up if chosen is not None else ()
        if heavy:
            error = await off_loop(no_match_error, scenarios, req, used_up)
        else:
            error = no_match_error(scenarios, req, used_up)
        entry.scenario = None
        entry.near_miss = error.message
        log.warning("%s", error.message)
        raise error
    entry.scenario = scenario.name
    # a counted answer (or one that passed a used-up scenario) depends on more than the body
    admit = (
        chosen is None
        and not heavy
        and cache is not None
        and key is not None
        and cache.wants(key, scenario.name)
    )
    rng_before = state.rng.getstate() if admit else None
    state.engine.read_clock = False
    ctx = RequestContext(req)
    cfg = state.config
    args = (scenario, req, ctx, state.rng, state.latency, cfg.time_scale, cfg.max_answer_bytes)
    try:
        plan = await off_loop(shape, *args) if heavy else shape(*args)
    except RenderError as exc:
        log.error("%s", exc)
        raise RequestError(
            str(exc), status=500, type="server_error", code="scenario_render_error"
        ) from None
    if cache is not None and key is not None and rng_before is not None and not plan.lazy:
        read_more = state.engine.read_clock or ctx.read_headers
        cache.offer(
            key,
            plan,
            body,
            scenario.name,
            req.stream,
            read_more=read_more,
            rng_before=rng_before,
            rng=state.rng,
        )
    if chosen is not None and counting is not None and chosen.take is not None:
        await _count_answer(counting, chosen, plan, int(req.body.get("n") or 1))
    _journal_answer(entry, plan.answer, plan.fault)
    return await deliver(request, plan)


async def _count_answer(counting: Counting, chosen: Chosen, plan: Plan, n: int) -> None:
    """Count the answer's tokens in its quota and say what is left in the headers."""
    answer, take = plan.answer, chosen.take
    assert take is not None
    tokens = 0
    if answer is not None:
        tokens = answer.prompt_tokens + answer.completion_tokens * n - take.tokens
    quota = await charge(counting, chosen, tokens)
    if quota is not None:
        plan.headers.update(quota_headers(quota))


def _understand(
    entry: Entry, raw: bytes, request: web.Request, scenarios: ScenarioSet, lenient: bool = False
) -> tuple[dict[str, Any], ChatRequest | None, Scenario | None]:
    """Decode, validate and match a body: the request's own CPU work, pure of I/O.

    ``lenient``: a JSON object that fails validation comes back as it is, unmatched (no
    request), for the recorder to forward; what is not a JSON object is refused still.
    """
    decoded = decode_body(raw)
    entry.decodes = True  # the journal may show the raw bytes as JSON
    try:
        body = validate_chat_request(decoded)
    except RequestError:
        if not (lenient and isinstance(decoded, dict)):
            raise
        entry.stream = decoded.get("stream") is True
        return decoded, None, None
    req = ChatRequest(body, request.headers)
    entry.stream = req.stream
    return body, req, scenarios.find(req)


def _journal_answer(entry: Entry, answer: Answer | None, fault: str | None) -> None:
    entry.fault = fault
    if answer is not None:
        entry.content = answer.content
        entry.tool_calls = [call_parts(c)[0] for c in answer.tool_calls]
        entry.finish_reason = answer.finish_reason


def _models(state: ServerState) -> list[dict[str, Any]]:
    return [model_object(m, state.started) for m in state.model_ids()]


async def list_models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models``."""
    return _json({"object": "list", "data": _models(request.app[STATE])})


async def get_model(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models/{id}``."""
    state = request.app[STATE]
    model_id = request.match_info["model"]
    for model in _models(state):
        if model["id"] == model_id:
            return _json(model)
    raise RequestError(
        f"The model '{model_id}' does not exist or you do not have access to it.",
        status=404,
        param="model",
        code="model_not_found",
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    """``GET /healthz``: liveness and how many scenarios are loaded."""
    return _json({"status": "ok", "scenarios": len(request.app[STATE].scenarios)})
