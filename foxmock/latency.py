"""Latency models: delays drawn from a seeded RNG, turned into a no-drift chunk schedule."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
MAX_SECONDS = 86_400.0  # a day: any longer delay is a typo (or .inf), not a latency
_LOG_MAX = math.log(MAX_SECONDS)
MAX_SIGMA = 10.0

Path = tuple[str | int, ...]
T = TypeVar("T")


class DurationError(ValueError):
    """A duration, rate, fraction or sigma foxmock refuses; ``path`` leads to it in the spec."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _at(path: Path, parse: Callable[[Any], T], value: Any) -> T:
    """``parse(value)``, with ``path`` put in front of the path of a `DurationError`."""
    try:
        return parse(value)
    except DurationError as exc:
        raise DurationError(exc.message, (*path, *exc.path)) from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: float | int | str) -> float:
    """Seconds from ``1.5``, ``"250ms"``, ``"2s"`` or ``"1m"``: at least 0, at most a day."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise DurationError(f"not a duration: {_shown(value)}")
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    if not 0 <= seconds <= MAX_SECONDS:  # also refuses NaN
        raise DurationError(f"not a duration from 0 to {MAX_SECONDS:g}s (a day): {_shown(value)}")
    return seconds


def parse_fraction(value: float | int | str) -> float:
    """``0.1`` or ``"10%"`` -> 0.1; from 0 to 1."""
    if isinstance(value, (int, float)):
        fraction = float(value)
    else:
        match = _PERCENT.match(value)
        if match is None:
            raise DurationError(f"not a percentage: {_shown(value)}")
        fraction = float(match.group(1)) / 100
    if not 0 <= fraction <= 1:
        raise DurationError(f"not a fraction from 0 to 1 (0% to 100%): {_shown(value)}")
    return fraction


def parse_sigma(value: float | int) -> float:
    """A lognormal's sigma, from 0 to 10 (already a spread of e**10, some 22000 times)."""
    sigma = float(value)
    if not 0 <= sigma <= MAX_SIGMA:
        raise DurationError(f"not a sigma from 0 to {MAX_SIGMA:g}: {_shown(value)}")
    return sigma


def parse_rate(value: float | int) -> float:
    """Tokens per second, at least one a day (a pause per token no longer than any delay)."""
    rate = float(value)
    if not 1 / MAX_SECONDS <= rate < math.inf:
        raise DurationError(f"not a rate from 1/{MAX_SECONDS:g} (one a day) up: {_shown(value)}")
    return rate


class Delay(NamedTuple):
    """A delay distribution: ``fixed``, ``range`` (uniform), ``normal`` or ``lognormal``."""

    kind: str
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "range":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        if self.kind == "lognormal":  # capped, so a large sigma cannot overflow math.exp
            return min(MAX_SECONDS, self.a * math.exp(min(rng.gauss(0.0, self.b), _LOG_MAX)))
        return self.a

    @classmethod
    def parse(cls, spec: Any) -> Delay:
        """From ``250ms``, ``{range: [a, b]}``, ``{normal: ...}`` or ``{lognormal: ...}``.

        Raises `DurationError` (its ``path`` inside ``spec``) for a value out of range.
        """
        if not isinstance(spec, Mapping):
            return cls("fixed", parse_duration(spec))
        if "range" in spec:
            low, high = (_at(("range", i), parse_duration, v) for i, v in enumerate(spec["range"]))
            return cls("range", min(low, high), max(low, high))
        if "normal" in spec:
            n = spec["normal"]
            mean = _at(("normal", "mean"), parse_duration, n["mean"])
            return cls("normal", mean, _at(("normal", "stddev"), parse_duration, n["stddev"]))
        n = spec["lognormal"]
        median = _at(("lognormal", "median"), parse_duration, n["median"])
        return cls("lognormal", median, _at(("lognormal", "sigma"), parse_sigma, n["sigma"]))


class Latency(NamedTuple):
    """When each piece of an answer is due: first token after ``ttft``, then paced by tokens/s."""

    ttft: Delay | None = None
    tokens_per_second: float | None = None
    chunk_delay: Delay | None = None
    jitter: float | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Latency:
        """From a ``latency`` block; raises `DurationError` naming the first value out of range."""
        spec = spec or {}
        tps = spec.get("tokens_per_second")
        return cls(
            ttft=_at(("ttft",), Delay.parse, spec["ttft"]) if "ttft" in spec else None,
            tokens_per_second=_at(("tokens_per_second",), parse_rate, tps) if tps else None,
            chunk_delay=_at(("chunk_delay",), Delay.parse, spec["chunk_delay"])
            if "chunk_delay" in spec
            else None,
            jitter=_at(("jitter",), parse_fraction, spec["jitter"]) if "jitter" in spec else None,
        )

    def merged_over(self, base: Latency) -> Latency:
        """This model with unset parts taken from ``base``."""
        return Latency(
            ttft=self.ttft or base.ttft,
            tokens_per_second=self.tokens_per_second or base.tokens_per_second,
            chunk_delay=self.chunk_delay or base.chunk_delay,
            jitter=self.jitter if self.jitter is not None else base.jitter,
        )

    @property
    def is_zero(self) -> bool:
        return self.ttft is None and self.tokens_per_second is None and self.chunk_delay is None

    def _jittered(self, seconds: float, rng: random.Random) -> float:
        if self.jitter and seconds:
            return max(0.0, seconds * rng.uniform(1 - self.jitter, 1 + self.jitter))
        return seconds

    def schedule(
        self, tokens: Sequence[int], rng: random.Random, scale: float = 1.0
    ) -> list[float]:
        """Offsets in seconds from the start at which each piece is due (never decreasing)."""
        if self.is_zero or scale == 0:
            return [0.0] * len(tokens)
        at = self._jittered(self.ttft.sample(rng) if self.ttft else 0.0, rng)
        offsets = []
        first_token_seen = False
        for count in tokens:
            if first_token_seen:
                gap = count / self.tokens_per_second if self.tokens_per_second else 0.0
                if self.chunk_delay is not None:
                    gap += self.chunk_delay.sample(rng)
                at += self._jittered(gap, rng)
            elif count:
                first_token_seen = True
            offsets.append(at * scale)
        return offsets
