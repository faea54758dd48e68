"""Route handlers: thin wrappers that parse, call the pure core, and write."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from foxmock._exceptions import RequestError
from foxmock.answer import RenderError
from foxmock.journal import Entry
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import model_object
from foxmock.openai.validation import validate_chat_request
from foxmock.plan import shape
from foxmock.scenarios.model import ScenarioSet
from foxmock.server.delivery import deliver
from foxmock.server.state import STATE, ServerState
from foxmock.templating import RequestContext

log = logging.getLogger("foxmock")

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)


def _reject_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> Any:
    """The JSON body, or a 415/400 `RequestError` saying what is wrong with it."""
    if request.content_type != "application/json":
        raise RequestError(
            f"Unsupported content type {request.content_type!r}; send 'application/json'.",
            status=415,
            code="unsupported_media_type",
        )
    raw = await request.read()
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RequestError(_INVALID_JSON, code="invalid_json") from None


def no_match_error(scenarios: ScenarioSet, req: ChatRequest) -> RequestError:
    """The 404 sent when no scenario matches, naming the nearest scenarios and why they missed."""
    summary = (
        f"model {req.model!r}, {len(req.messages)} message(s), "
        f"last user message {req.last_user[:80]!r}"
    )
    lines = [f"No foxmock scenario matched this request ({summary})."]
    near = scenarios.near_misses(req)
    if near:
        lines.append("Nearest scenarios:")
        lines.extend(f"  {i}. {miss}" for i, miss in enumerate(near, 1))
    else:
        lines.append("No scenarios are loaded.")
    return RequestError("\n".join(lines), status=404, code="no_scenario_matched")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``, journaled whatever happens."""
    state = request.app[STATE]
    started = time.perf_counter()
    entry = state.journal.start(None, request.headers)
    try:
        response = await _chat(request, state, entry)
        entry.status = response.status
        return response
    except RequestError as exc:
        entry.status, entry.error = exc.status, exc.message
        raise
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000


async def _chat(request: web.Request, state: ServerState, entry: Entry) -> web.StreamResponse:
    entry.body = await read_json(request)
    body = validate_chat_request(entry.body)
    req = ChatRequest(body, request.headers)
    entry.stream = req.stream
    scenarios = state.scenarios
    scenario = scenarios.find(req)
    recorder = state.recorder
    if recorder is not None and recorder.mode.forwards(scenario is not None):
        response, recorded = await recorder.forward(request, body)
        entry.scenario = recorded or f"<{recorder.mode.value}: {recorder.settings.upstream}>"
        return response
    if scenario is None:
        error = no_match_error(scenarios, req)
        entry.near_miss = error.message
        log.warning("%s", error.message)
        raise error
    entry.scenario = scenario.name
    try:
        plan = shape(
            scenario, req, RequestContext(req), state.rng, state.latency, state.config.time_scale
        )
    except RenderError as exc:
        log.error("%s", exc)
        raise RequestError(
            str(exc), status=500, type="server_error", code="scenario_render_error"
        ) from None
    entry.fault = plan.fault
    if plan.answer is not None:
        entry.content = plan.answer.content
        entry.tool_calls = [c["function"]["name"] for c in plan.answer.tool_calls]
        entry.finish_reason = plan.answer.finish_reason
    return await deliver(request, plan)


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
