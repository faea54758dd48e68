"""Shape a matched request into a `Plan`: what to send, when, and how it may fail. No I/O."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from foxmock._exceptions import RequestError
from foxmock.answer import Answer, completion_body, render_answer
from foxmock.faults import MALFORMED_FRAME, fault_error, fires
from foxmock.latency import Latency
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import make_id
from foxmock.scenarios.model import Fault, Scenario
from foxmock.streaming import COMPACT, DONE, ChunkBuilder, Delta, choice_deltas, sse

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


@dataclass
class Plan:
    """A response to deliver: a body or SSE frames, their due times, and any fault."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    frames: Sequence[bytes] | None = None
    offsets: Sequence[float] = field(default_factory=list)
    delay: float = 0.0
    disconnect: bool = False
    answer: Answer | None = None
    fault: str | None = None
    completion_id: str = ""  # the id and created time in every body and chunk (replay swaps them)
    created: int = 0


def error_plan(error: RequestError, delay: float = 0.0) -> Plan:
    """A plan that answers with an OpenAI error envelope."""
    return Plan(
        status=error.status,
        headers={"content-type": "application/json", **error.headers},
        body=json.dumps(error.envelope()).encode(),
        delay=delay,
    )


@dataclass
class _Shaping:
    """One rendered answer on its way to a plan, with what decides its timing and failure."""

    scenario: Scenario
    req: ChatRequest
    ctx: Mapping[str, Any]
    answer: Answer
    latency: Latency
    scale: float
    rng: random.Random
    fault: Fault | None

    @property
    def n(self) -> int:
        return int(self.req.body.get("n") or 1)

    def timed_deltas(self) -> tuple[list[Delta], list[float]]:
        """One choice's deltas and when each is due (the n choices share the timing)."""
        answer = self.answer
        deltas = choice_deltas(
            answer.content,
            answer.chunks,
            answer.tool_calls,
            answer.finish_reason,
            self.scenario.chunking,
            answer.argument_chunks,
        )
        return deltas, self.latency.schedule([d.tokens for d in deltas], self.rng, self.scale)

    def stream(self, completion_id: str) -> Plan:
        answer, n = self.answer, self.n
        include_usage = bool((self.req.body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())
        build = ChunkBuilder(completion_id, created, answer.model, include_usage)
        deltas, times = self.timed_deltas()
        # the n choices are generated side by side: each step carries every choice's delta
        frames, offsets = [], []
        for step, at in zip(deltas, times, strict=True):
            for index in range(n):
                frames.append(build.frame(index, step.delta, step.finish))
                offsets.append(at)
        if include_usage:
            frames.append(sse(build.usage(answer.prompt_tokens, answer.completion_tokens * n)))
            offsets.append(offsets[-1])
        frames.append(DONE)
        offsets.append(offsets[-1])
        plan = Plan(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
            },
            frames=frames,
            offsets=offsets,
            created=created,
        )
        if self.fault is not None:
            self._break(plan, frames, offsets, self.fault)
        return plan

    def _break(self, plan: Plan, frames: list[bytes], offsets: list[float], fault: Fault) -> None:
        cut = min(fault.after_chunks, len(frames) - 1)
        if fault.kind == "no_done":
            del frames[-1], offsets[-1]
        elif fault.kind == "disconnect":
            del frames[cut:], offsets[cut:]
            plan.disconnect = True
        elif fault.kind in ("stream_error", "malformed_chunk"):
            tail = MALFORMED_FRAME
            if fault.kind == "stream_error":
                tail = sse(fault_error(fault, self.ctx, self.scenario.where).envelope())
            frames[cut:], offsets[cut:] = [tail], [offsets[cut]]

    def body(self, completion_id: str) -> Plan:
        created = int(time.time())
        body = COMPACT.encode(completion_body(self.answer, completion_id, created, self.n)).encode()
        delay = 0.0
        if not self.latency.is_zero:  # as long as the same answer would take to stream
            delay = self.timed_deltas()[1][-1]
        plan = Plan(
            headers={"content-type": "application/json"}, body=body, delay=delay, created=created
        )
        fault = self.fault
        if fault is None or fault.kind == "no_done":
            return plan
        if fault.kind == "disconnect":
            return Plan(body=None, delay=delay, disconnect=True)
        if fault.kind == "malformed_chunk":
            plan.body = body[: max(len(body) // 2, 1)]
            return plan
        return error_plan(fault_error(fault, self.ctx, self.scenario.where), delay)


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
    hang = fault.duration * scale if fault is not None and fault.kind == "hang" else 0.0
    shaping = _Shaping(
        scenario=scenario,
        req=req,
        ctx=ctx,
        answer=render_answer(scenario, scenario.respond, req, ctx, rng),
        latency=scenario.latency.merged_over(default_latency),
        scale=scale,
        rng=rng,
        fault=None if fault is None or fault.kind == "hang" else fault,
    )
    completion_id = make_id("cmpl_", rng)
    plan = shaping.stream(completion_id) if req.stream else shaping.body(completion_id)
    plan.delay += hang
    plan.headers.update(shaping.answer.headers)
    plan.answer = shaping.answer
    plan.fault = fault.kind if fault is not None else None
    plan.completion_id = completion_id
    return plan
