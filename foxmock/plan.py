"""Shape a matched request into a `Plan`: what to send, when, and how it may fail. No I/O."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from foxmock._exceptions import RequestError
from foxmock.answer import Answer, RenderError, completion_body, render_answer
from foxmock.config import DEFAULT_MAX_ANSWER
from foxmock.faults import MALFORMED_FRAME, fault_error, fires
from foxmock.latency import Latency
from foxmock.logprobs import choice_logprobs
from foxmock.openai.request import ChatRequest
from foxmock.openai.responses import make_id
from foxmock.scenarios.model import Fault, Scenario
from foxmock.streaming import (
    COMPACT,
    DONE,
    ChunkBuilder,
    Delta,
    Repeated,
    Spliced,
    StepFrames,
    choice_deltas,
    sse,
)
from foxmock.tokens import usage

EAGER_FRAMES = 512  # streams of at most this many frames are built whole, as plain lists
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

    @property
    def lazy(self) -> bool:
        """Whether the frames are put together as they are sent (a large or faulted stream)."""
        return self.frames is not None and not isinstance(self.frames, list)


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
    max_answer_bytes: int = DEFAULT_MAX_ANSWER

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
        include_usage = self.scenario.usage_chunk and bool(
            (self.req.body.get("stream_options") or {}).get("include_usage")
        )
        created = int(time.time())
        build = ChunkBuilder(
            completion_id, created, answer.model, include_usage, answer.service_tier, answer.extra
        )
        deltas, times = self.timed_deltas()
        # one choice's deltas are encoded once; the n choices are generated side by side, each
        # step carrying every choice's chunk, and frames are put together as they are sent
        top = answer.top_logprobs
        if top is None:
            middles = [build.middle(step.delta, step.finish) for step in deltas]
        else:  # each chunk carries the log probabilities of its own content's tokens
            middles = [
                build.middle(
                    step.delta, step.finish, choice_logprobs(step.delta.get("content"), top)
                )
                for step in deltas
            ]
        extra = [DONE]
        if include_usage:
            extra.insert(0, sse(build.usage(answer.prompt_tokens, answer.completion_tokens * n)))
        head = build.head()
        self._check_size(
            StepFrames(head, middles, 1, extra).size(), StepFrames(head, middles, n, extra).size()
        )
        frames: Sequence[bytes] = StepFrames(head, middles, n, extra)
        offsets: Sequence[float] = Repeated(times, n, [times[-1]] * len(extra))
        if len(frames) <= EAGER_FRAMES:  # the usual small stream: plain lists are the fastest
            frames, offsets = list(frames), list(offsets)
        plan = Plan(headers=dict(SSE_HEADERS), frames=frames, offsets=offsets, created=created)
        if self.fault is not None:
            self._break(plan, self.fault)
        return plan

    def _check_size(self, one: int, total: int) -> None:
        """Refuse an answer over ``max_answer_bytes``: the scenario's fault if one choice is
        already too large (`RenderError`), the request's (400 naming ``n``) if its choices are."""
        limit = self.max_answer_bytes
        if total <= limit:
            return
        if one > limit:
            raise RenderError(
                f"scenario {self.scenario.name!r} ({self.scenario.where}) failed to render: "
                f"its answer is {one} bytes, more than the server's max_answer_bytes "
                f"({limit} bytes, --max-answer-bytes)"
            )
        raise RequestError(
            f"The answer to this request would be {total} bytes ({self.n} choices of about "
            f"{one} bytes), more than this server's max_answer_bytes limit of {limit} bytes "
            f"(--max-answer-bytes). Ask for fewer choices (n) or a shorter answer.",
            param="n",
            code="answer_too_large",
        )

    def _break(self, plan: Plan, fault: Fault) -> None:
        frames, offsets = plan.frames or [], plan.offsets
        keep = cut = min(fault.after_chunks, len(frames) - 1)
        tail: list[bytes] = []
        if fault.kind == "no_done":
            keep = len(frames) - 1
        elif fault.kind == "disconnect":
            plan.disconnect = True
        elif fault.kind in ("stream_error", "malformed_chunk"):
            tail = [MALFORMED_FRAME]
            if fault.kind == "stream_error":
                tail = [sse(fault_error(fault, self.ctx, self.scenario.where).envelope())]
        else:
            return
        plan.frames = Spliced(frames, keep, tail)
        plan.offsets = Spliced(offsets, keep, [offsets[cut]] * len(tail))

    def _body_bytes(self, completion_id: str, created: int) -> bytes:
        """The ``chat.completion`` body; its one choice is encoded once and repeated n times."""
        answer, n = self.answer, self.n
        whole = completion_body(answer, completion_id, created, 1)
        if n == 1:
            body = COMPACT.encode(whole).encode()
            self._check_size(len(body), len(body))
            return body
        one = COMPACT.encode(whole["choices"][0])
        whole["choices"] = []
        whole["usage"] = usage(answer.prompt_tokens, answer.completion_tokens * n)
        # a JSON string holds no bare quote, so the first '"choices":[]' is the key itself
        outer = COMPACT.encode(whole).split('"choices":[]', 1)
        rest = one[len('{"index":0') :]
        self._check_size(len(one) + sum(map(len, outer)), (len(one) + 4) * n + len(outer[0]))
        choices = ",".join(f'{{"index":{i}{rest}' for i in range(n))
        return f'{outer[0]}"choices":[{choices}]{outer[1]}'.encode()

    def body(self, completion_id: str) -> Plan:
        created = int(time.time())
        body = self._body_bytes(completion_id, created)
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
    max_answer_bytes: int = DEFAULT_MAX_ANSWER,
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
        max_answer_bytes=max_answer_bytes,
    )
    completion_id = make_id("cmpl_", rng)
    plan = shaping.stream(completion_id) if req.stream else shaping.body(completion_id)
    plan.delay += hang
    plan.headers.update(shaping.answer.headers)
    plan.answer = shaping.answer
    plan.fault = fault.kind if fault is not None else None
    plan.completion_id = completion_id
    return plan
