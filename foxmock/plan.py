"""Shape a matched request into a `Plan`: what to send, when, and how it may fail. No I/O."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foxmock._exceptions import RequestError
from foxmock.answer import Answer, completion_body, render_answer
from foxmock.faults import MALFORMED_FRAME, fault_error, fires
from foxmock.latency import Latency
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import make_id
from foxmock.scenarios.model import Fault, Scenario
from foxmock.streaming import DONE, ChunkBuilder, Delta, choice_deltas, sse


@dataclass
class Plan:
    """A response to deliver: a body or SSE frames, their due times, and any fault."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    frames: list[bytes] | None = None
    offsets: list[float] = field(default_factory=list)
    delay: float = 0.0
    disconnect: bool = False
    answer: Answer | None = None
    fault: str | None = None


def error_plan(error: RequestError, delay: float = 0.0) -> Plan:
    """A plan that answers with an OpenAI error envelope."""
    return Plan(
        status=error.status,
        headers={"content-type": "application/json", **error.headers},
        body=json.dumps(error.envelope()).encode(),
        delay=delay,
    )


def _deltas(answer: Answer, scenario: Scenario) -> list[Delta]:
    return choice_deltas(
        answer.content, answer.chunks, answer.tool_calls, answer.finish_reason, scenario.chunking
    )


def _stream_plan(
    answer: Answer,
    req: ChatRequest,
    scenario: Scenario,
    latency: Latency,
    scale: float,
    rng: random.Random,
    completion_id: str,
    fault: Fault | None,
    ctx: Mapping[str, Any],
) -> Plan:
    include_usage = bool((req.body.get("stream_options") or {}).get("include_usage"))
    build = ChunkBuilder(completion_id, int(time.time()), answer.model, include_usage)
    deltas = _deltas(answer, scenario)
    times = latency.schedule([d.tokens for d in deltas], rng, scale)
    n = req.body.get("n") or 1
    # the n choices are generated side by side: each step carries every choice's delta
    frames, offsets = [], []
    for step, at in zip(deltas, times, strict=True):
        for index in range(n):
            frames.append(sse(build.choice(index, step.delta, step.finish)))
            offsets.append(at)
    if include_usage:
        frames.append(sse(build.usage(answer.prompt_tokens, answer.completion_tokens * n)))
        offsets.append(offsets[-1])
    frames.append(DONE)
    offsets.append(offsets[-1])
    plan = Plan(
        headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
        frames=frames,
        offsets=offsets,
    )
    if fault is None:
        return plan
    cut = min(fault.after_chunks, len(frames) - 1)
    if fault.kind == "no_done":
        del frames[-1], offsets[-1]
    elif fault.kind == "disconnect":
        del frames[cut:], offsets[cut:]
        plan.disconnect = True
    elif fault.kind in ("stream_error", "malformed_chunk"):
        due = offsets[cut]
        tail = MALFORMED_FRAME
        if fault.kind == "stream_error":
            tail = sse(fault_error(fault, ctx, scenario.where).envelope())
        frames[cut:] = [tail]
        offsets[cut:] = [due]
    return plan


def _body_plan(
    answer: Answer,
    req: ChatRequest,
    latency: Latency,
    scale: float,
    rng: random.Random,
    completion_id: str,
    fault: Fault | None,
    ctx: Mapping[str, Any],
    scenario: Scenario,
) -> Plan:
    n = req.body.get("n") or 1
    body = json.dumps(
        completion_body(answer, completion_id, int(time.time()), n), ensure_ascii=False
    ).encode()
    delay = 0.0
    if not latency.is_zero:  # as long as the same answer would take to stream
        delay = latency.schedule([d.tokens for d in _deltas(answer, scenario)], rng, scale)[-1]
    plan = Plan(headers={"content-type": "application/json"}, body=body, delay=delay)
    if fault is None or fault.kind == "no_done":
        return plan
    if fault.kind == "disconnect":
        return Plan(body=None, delay=delay, disconnect=True)
    if fault.kind == "malformed_chunk":
        plan.body = body[: max(len(body) // 2, 1)]
        return plan
    return error_plan(fault_error(fault, ctx, scenario.where), delay)


def shape(
    scenario: Scenario,
    req: ChatRequest,
    ctx: Mapping[str, Any],
    rng: random.Random,
    default_latency: Latency,
    scale: float,
) -> Plan:
    """Render ``scenario`` for ``req`` and plan its delivery; faults and latency included."""
    fault = scenario.fault if fires(scenario.fault, rng) else None
    if fault is not None and fault.kind == "http":
        plan = error_plan(fault_error(fault, ctx, scenario.where))
        plan.fault = "http"
        return plan
    if scenario.respond is None:  # a fault-only scenario whose probability did not fire
        return error_plan(
            RequestError(
                f"scenario {scenario.name!r} ({scenario.where}) has no respond block",
                status=500,
                type="server_error",
                code="scenario_incomplete",
            )
        )
    fault_kind = fault.kind if fault is not None else None
    extra_delay = fault.duration * scale if fault is not None and fault.kind == "hang" else 0.0
    if fault is not None and fault.kind == "hang":
        fault = None
    answer = render_answer(scenario, scenario.respond, req, ctx, rng)
    latency = scenario.latency.merged_over(default_latency)
    completion_id = make_id("cmpl_", rng)
    if req.stream:
        plan = _stream_plan(answer, req, scenario, latency, scale, rng, completion_id, fault, ctx)
    else:
        plan = _body_plan(answer, req, latency, scale, rng, completion_id, fault, ctx, scenario)
    plan.delay += extra_delay
    plan.headers.update(answer.headers)
    plan.answer = answer
    plan.fault = fault_kind
    return plan
