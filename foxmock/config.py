"""Server configuration, built by the CLI or by Python callers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foxmock.journal import DEFAULT_JOURNAL_BYTES, DEFAULT_JOURNAL_SIZE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_ANSWER = 64 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024  # a larger upstream answer is relayed, not recorded
DEFAULT_HEAD_TIMEOUT = 5.0
DEFAULT_KEEPALIVE_TIMEOUT = 15.0


@dataclass
class Config:
    """Everything `create_app` needs; all fields have working defaults."""

    scenarios: Sequence[str | Path] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_keys: Sequence[str] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    body_timeout: float = 30.0  # a request body not complete after this many seconds gets 408
    # a connection whose request head is not complete this long after it opened (or after its
    # previous answer) is closed
    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT  # idle keep-alive connections close
    max_answer_bytes: int = DEFAULT_MAX_ANSWER  # one answer (all choices, all frames) at most
    journal_bytes: int = DEFAULT_JOURNAL_BYTES  # the journal's bodies together at most
    seed: int | None = None
    time_scale: float = 1.0
    latency: Mapping[str, Any] | None = None
    log_level: str = "info"
    bundled: bool = True
    journal_size: int = DEFAULT_JOURNAL_SIZE
    admin_token: str | None = None
    admin: str = "on"  # "on", "loopback" (peers on this machine only) or "off" (not mounted)
    watch: bool = False
    watch_interval: float = 0.5
    record_mode: str | None = None
    upstream: str | None = None
    upstream_api_key: str | None = None
    recordings: str | Path | None = None
    redact: Sequence[str] = ()
    allow_secrets: bool = False
    record_match: Sequence[str] = ("model", "messages", "tools")
    upstream_timeout: float = 120.0
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_scenarios: int = 100_000  # admin additions may not make more scenarios than this
    admin_hosts: Sequence[str] = ()  # Host names the admin answers besides loopback ones
    cors: Sequence[str] = ()  # origins whose web pages may call the API ("*": any); none: off
    state: str | None = None  # where counters and quotas live: None/"memory", or redis://...
    state_timeout: float = 1.0  # a state store that does not answer in this long is down
    state_ttl: float = 86400.0  # a counter unused this long is forgotten (Redis)
    max_state_keys: int = 100_000  # counters and windows kept in memory at most
    sequence_scope: str = "server"  # the scope of scenarios without their own (plugin: test)
    rate_limit: str | Mapping[str, Any] | None = None  # a quota for every answered request
    workers: int = 1  # processes serving (memory state cannot be shared between them)

    def check(self) -> None:
        """Raise `ValueError` naming the first setting that is out of range."""
        positive = {
            "body timeout": self.body_timeout,
            "head timeout": self.head_timeout,
            "keep-alive timeout": self.keepalive_timeout,
            "max answer bytes": self.max_answer_bytes,
            "journal bytes": self.journal_bytes,
            "max body bytes": self.max_body_bytes,
            "max scenarios": self.max_scenarios,
            "max record bytes": self.max_record_bytes,
            "state timeout": self.state_timeout,
            "state TTL": self.state_ttl,
            "max state keys": self.max_state_keys,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if self.journal_size < 0:
            raise ValueError(f"journal size must not be negative, not {self.journal_size!r}")

    def scenario_paths(self) -> list[Path]:
        """The scenario paths to load (recordings last); the bundled set when none are given."""
        paths = [Path(p) for p in self.scenarios]
        if self.recordings is not None:
            recordings = Path(self.recordings)
            if recordings.is_dir() and any(recordings.glob("*.y*ml")):
                paths.append(recordings)
        if paths or not self.bundled:
            return paths
        return [default_scenarios_path()]


def default_scenarios_path() -> Path:
    """Where the bundled default scenarios live (installed wheel or source checkout)."""
    here = Path(__file__).resolve().parent
    installed = here / "_bundled_scenarios"
    if installed.is_dir():
        return installed
    return here.parent / "scenarios"


def api_keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """API keys from ``FOXMOCK_API_KEYS`` (comma separated)."""
    env = os.environ if environ is None else environ
    raw = env.get("FOXMOCK_API_KEYS", "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def cors_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """CORS origins from ``FOXMOCK_CORS`` (comma separated)."""
    env = os.environ if environ is None else environ
    raw = env.get("FOXMOCK_CORS", "")
    return [o.strip() for o in raw.split(",") if o.strip()]


RATE_LIMIT_NAMES = {
    "rpm": "requests_per_minute",
    "requests_per_minute": "requests_per_minute",
    "tpm": "tokens_per_minute",
    "tokens_per_minute": "tokens_per_minute",
    "scope": "scope",
}


def parse_rate_limit(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """``rpm=60,tpm=100000,scope=api_key`` (or the YAML mapping) as a rate_limit mapping."""
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        items = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"--rate-limit: {part!r} is not NAME=VALUE (e.g. rpm=60,tpm=1000)")
            items.append((name.strip(), value.strip()))
    out: dict[str, Any] = {}
    for name, value in items:
        key = RATE_LIMIT_NAMES.get(name)
        if key is None:
            raise ValueError(f"--rate-limit: unknown name {name!r} (rpm, tpm, scope)")
        if key == "scope":
            out[key] = value
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"--rate-limit: {name} must be a whole number, not {value!r}"
            ) from None
        if number < 1:
            raise ValueError(f"--rate-limit: {name} must be at least 1, not {number}")
        out[key] = number
    if "requests_per_minute" not in out and "tokens_per_minute" not in out:
        raise ValueError("--rate-limit needs rpm=N and/or tpm=N")
    return out
