"""Sequences, use limits and quotas: which step a request gets, and what its quota says.

Pure decisions live in `foxmock.statestore`; this module turns a matched scenario and a request
into one `Take`, reads the outcome, and builds the rate-limit headers and errors. A scenario
whose sequence is used up (``after: pass`` or ``times``) hands the request to the next match.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from foxmock._exceptions import RequestError
from foxmock.matching import lookup, parse_body_path
from foxmock.openai.request import ChatRequest
from foxmock.scenarios.model import RateLimit, Scenario, ScenarioSet, Scope
from foxmock.statestore import QuotaView, StateStore, StateUnavailable, Take
from foxmock.statestore.base import LIMITED, USED_UP, counter_key, quota_key
from foxmock.tokens import count_prompt_tokens

MINUTE = 60.0
MAX_SCOPE_VALUE = 200  # longer scope values are kept as a hash
_HIDDEN_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


class Chosen(NamedTuple):
    """A stateful match: the step to answer with (None: no scenario left), its number, the
    quota it was admitted to, and the scenarios passed over because they were used up."""

    scenario: Scenario | None
    step: int | None = None
    take: Take | None = None
    quota: QuotaView | None = None
    used_up: tuple[str, ...] = ()


@dataclass
class Counting:
    """What a server counts with: its store, default scope, server-wide quota, and the pytest
    test running now (the ``test`` scope's key; the plugin sets it)."""

    store: StateStore
    default_scope: Scope
    quota: RateLimit | None = None
    test_id: str = ""


def window_seconds(time_scale: float) -> float:
    """A quota minute under ``--time-scale`` (0, which removes delays, keeps real minutes)."""
    return MINUTE * time_scale if time_scale > 0 else MINUTE


def _hashed(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _body_value(body: Mapping[str, Any], path: str) -> str:
    """The text at a body path (as ``match: {body: ...}`` reads paths); "" for none or a
    container."""
    value = lookup(body, parse_body_path(path))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (str, int, float)) else ""


def scope_value(scope: Scope, req: ChatRequest, test_id: str) -> str:
    """The key a request counts under for ``scope`` ("" when the request has no value)."""
    if scope.kind == "server":
        return ""
    if scope.kind == "test":
        return test_id
    if scope.kind == "api_key":
        header = req.headers.get("authorization", "") or req.headers.get("x-api-key", "")
        token = header.partition(" ")[2].strip() if " " in header else header.strip()
        return _hashed(token) if token else ""
    if scope.kind == "header":
        value = req.headers.get(scope.name, "")
        hidden = scope.name in _HIDDEN_HEADERS or len(value) > MAX_SCOPE_VALUE
        return _hashed(value) if value and hidden else value
    value = _body_value(req.body, scope.name)
    return _hashed(value) if len(value) > MAX_SCOPE_VALUE else value


def _scope_text(scope: Scope, value: str) -> str:
    if scope.kind == "server":
        return ""
    return f" for {scope} {value!r}" if value else f" for {scope} (none given)"


def _used_up_note(scenario: Scenario, scope: Scope, value: str, count: int) -> str:
    state = scenario.state
    assert state is not None
    if state.steps and state.after == "pass":
        what = f"sequence used up, {count} of {len(state.steps)} steps"
    else:
        what = f"used up, answered {count} of {state.limit} times"
    return f"{scenario.name} ({scenario.where}): {what}{_scope_text(scope, value)}"


def _take_for(
    scenario: Scenario, req: ChatRequest, counting: Counting, time_scale: float
) -> tuple[Take, Scope, str] | None:
    state = scenario.state
    quota = state.rate_limit if state is not None and state.rate_limit else counting.quota
    counted = state is not None and state.counted
    if not counted and quota is None:
        return None
    scope = (state.scope if state is not None else None) or counting.default_scope
    value = scope_value(scope, req, counting.test_id)
    take = Take()
    if counted:
        assert state is not None
        take = take._replace(counter=counter_key(scenario.name, value), limit=state.limit)
    if quota is not None:
        take = take._replace(
            quota=quota_key(quota.bucket, scope_value(quota.scope, req, counting.test_id)),
            window=window_seconds(time_scale),
            requests_per_minute=quota.requests_per_minute,
            tokens_per_minute=quota.tokens_per_minute,
            tokens=count_prompt_tokens(req.message_texts, req.body.get("tools"))
            if quota.tokens_per_minute
            else 0,
        )
    return take, scope, value


async def choose(
    scenarios: ScenarioSet,
    req: ChatRequest,
    first: Scenario,
    counting: Counting,
    time_scale: float = 1.0,
) -> Chosen:
    """The step ``first`` (or a later match, if it is used up) answers ``req`` with.

    Raises a 429 `RequestError` over a quota, and a 503 one when the store is unreachable.
    """
    used_up: list[str] = []
    scenario: Scenario | None = first
    while scenario is not None:
        planned = _take_for(scenario, req, counting, time_scale)
        if planned is None:
            return Chosen(scenario, used_up=tuple(used_up))
        take, scope, value = planned
        try:
            taken = await counting.store.take(take, time.time())
        except StateUnavailable as exc:
            raise unavailable(exc) from None
        if taken.outcome == USED_UP:
            used_up.append(_used_up_note(scenario, scope, value, taken.uses))
            scenario = scenarios.find_after(req, scenario)
            continue
        if taken.outcome == LIMITED:
            assert taken.quota is not None
            raise quota_error(scenario, taken.quota)
        state = scenario.state
        step: int | None = None
        answer = scenario
        if state is not None and state.counted:
            step = taken.uses  # the use, for times; the step of a sequence (the last repeats)
            if state.steps:
                step = min(step, len(state.steps))
                answer = state.steps[step - 1]
        return Chosen(answer, step, take if take.quota else None, taken.quota, tuple(used_up))
    return Chosen(None, used_up=tuple(used_up))


def unavailable(exc: StateUnavailable) -> RequestError:
    """The 503 for a request that needs the state store while it cannot be reached."""
    return RequestError(
        f"foxmock's state store is unavailable ({exc}); requests that use sequences or quotas "
        "are refused until it is back, all others are served.",
        status=503,
        type="server_error",
        code="state_unavailable",
        headers={"retry-after": "1"},
    )


def duration_text(seconds: float) -> str:
    """A duration as the API's reset headers write it: ``20ms``, ``1.5s``, ``6m0s``."""
    millis = max(math.ceil(round(seconds * 1000, 6)), 0)  # whole ms first, then the unit
    if millis < 1000:
        return f"{millis}ms"
    if millis < 60_000:
        return f"{millis / 1000:g}s"
    minutes, rest = divmod(millis, 60_000)
    return f"{minutes}m{rest / 1000:g}s"


def quota_headers(quota: QuotaView) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers (and Retry-After when refused) of a quota's state."""
    headers: dict[str, str] = {}
    if quota.requests_per_minute is not None:
        headers["x-ratelimit-limit-requests"] = str(quota.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(quota.remaining_requests)
        headers["x-ratelimit-reset-requests"] = duration_text(quota.reset_requests)
    if quota.tokens_per_minute is not None:
        headers["x-ratelimit-limit-tokens"] = str(quota.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(quota.remaining_tokens)
        headers["x-ratelimit-reset-tokens"] = duration_text(quota.reset_tokens)
    if quota.retry_after is not None:
        headers["retry-after"] = str(max(math.ceil(quota.retry_after), 1))
        headers["retry-after-ms"] = str(math.ceil(quota.retry_after * 1000))
    return headers


def quota_error(scenario: Scenario, quota: QuotaView) -> RequestError:
    """The 429 a request over its quota gets, worded as the API words it."""
    if quota.refused_on == "requests":
        limit, used, unit = quota.requests_per_minute, quota.requests_per_minute, "requests"
        what = "requests per min (RPM)"
        asked = 1
    else:
        limit, unit, what = quota.tokens_per_minute, "tokens", "tokens per min (TPM)"
        used = (quota.tokens_per_minute or 0) - quota.remaining_tokens
        asked = 0
    if quota.retry_after is None:
        advice = "This request is larger than the whole quota and can never fit."
    else:
        advice = f"Please try again in {duration_text(quota.retry_after)}."
    detail = f"Limit {limit}, Used {used}" + (f", Requested {asked}" if asked else "")
    return RequestError(
        f"Rate limit reached for {what} (foxmock scenario {scenario.name!r}): {detail}. {advice}",
        status=429,
        type=unit,
        code="rate_limit_exceeded",
        headers=quota_headers(quota),
    )


async def charge(counting: Counting, chosen: Chosen, tokens: int) -> QuotaView | None:
    """Count an answer's tokens in the quota it was admitted to; the quota afterwards."""
    take = chosen.take
    if take is None or not take.tokens_per_minute:
        return chosen.quota
    try:
        return await counting.store.charge(take, time.time(), tokens)
    except StateUnavailable:
        return chosen.quota  # the answer is ready: send it with the admission's figures
