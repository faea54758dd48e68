"""Latency models: delays drawn from a seeded RNG, turned into a no-drift chunk schedule."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_duration(value: float | int | str) -> float:
    """Seconds from ``1.5``, ``"250ms"``, ``"2s"`` or ``"1m"``."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"not a duration: {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def parse_fraction(value: float | int | str) -> float:
    """``0.1`` or ``"10%"`` -> 0.1."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _PERCENT.match(value)
    if match is None:
        raise ValueError(f"not a percentage: {value!r}")
    return float(match.group(1)) / 100


@dataclass(frozen=True)
class Delay:
    """A delay distribution: ``fixed``, ``range`` (uniform), ``normal`` or ``lognormal``."""

    kind: str
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "range":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        if self.kind == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.b))
        return self.a

    @classmethod
    def parse(cls, spec: Any) -> Delay:
        """From ``250ms``, ``{range: [a, b]}``, ``{normal: ...}`` or ``{lognormal: ...}``."""
        if not isinstance(spec, Mapping):
            return cls("fixed", parse_duration(spec))
        if "range" in spec:
            low, high = (parse_duration(v) for v in spec["range"])
            return cls("range", min(low, high), max(low, high))
        if "normal" in spec:
            n = spec["normal"]
            return cls("normal", parse_duration(n["mean"]), parse_duration(n["stddev"]))
        n = spec["lognormal"]
        return cls("lognormal", parse_duration(n["median"]), float(n["sigma"]))


@dataclass(frozen=True)
class Latency:
    """When each piece of an answer is due: first token after ``ttft``, then paced by tokens/s."""

    ttft: Delay | None = None
    tokens_per_second: float | None = None
    chunk_delay: Delay | None = None
    jitter: float | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Latency:
        spec = spec or {}
        tps = spec.get("tokens_per_second")
        return cls(
            ttft=Delay.parse(spec["ttft"]) if "ttft" in spec else None,
            tokens_per_second=float(tps) if tps else None,
            chunk_delay=Delay.parse(spec["chunk_delay"]) if "chunk_delay" in spec else None,
            jitter=parse_fraction(spec["jitter"]) if "jitter" in spec else None,
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
