"""Faults: whether one fires (seeded), and the error it answers with."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from foxmock._exceptions import RequestError
from foxmock.scenarios.model import Fault
from foxmock.templating import TemplateError

MALFORMED_FRAME = (
    b'data: {"id": "broken", "object": "chat.completion.chunk", "choices": [{"delta": \n\n'
)


def fires(fault: Fault | None, rng: random.Random) -> bool:
    """Whether ``fault`` fires on this request (always, or with its probability)."""
    if fault is None:
        return False
    return fault.probability >= 1 or rng.random() < fault.probability


# what a 429 says of the quota, in this order: limit, remaining, reset; requests then tokens
RATE_LIMIT_HEADERS = tuple(
    f"x-ratelimit-{part}-{unit}"
    for unit in ("requests", "tokens")
    for part in ("limit", "remaining", "reset")
)
RETRY_HEADERS = ("retry-after", "retry-after-ms")


def _seconds(value: float) -> str:
    return f"{value:g}s"


def fault_error(fault: Fault, ctx: Mapping[str, Any], where: str) -> RequestError:
    """The OpenAI error a fault answers with, with Retry-After and rate-limit headers on 429."""
    try:
        message = str(fault.message(ctx))
    except TemplateError as exc:
        message = f"(fault message failed to render at {where}: {exc.message})"
    headers: dict[str, str] = {}
    retry = fault.retry_after
    if retry is not None and not math.isfinite(retry):  # refused at load; a Fault built in Python
        retry = None
    if retry is not None:
        headers["retry-after"] = str(math.ceil(retry))  # HTTP allows whole seconds
        headers["retry-after-ms"] = str(int(retry * 1000))
    if fault.status == 429:
        reset = _seconds(retry if retry is not None else 1.0)
        headers.update(
            zip(RATE_LIMIT_HEADERS, ("60", "0", reset, "150000", "0", reset), strict=True)
        )
    headers.update(fault.headers)
    return RequestError(
        message,
        status=fault.status,
        type=fault.type,
        code=fault.code,
        param=fault.param,
        headers=headers,
    )
