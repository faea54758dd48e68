"""Server configuration, built by the CLI or by Python callers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foxmock.journal import DEFAULT_JOURNAL_SIZE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 4 * 1024 * 1024


@dataclass
class Config:
    """Everything `create_app` needs; all fields have working defaults."""

    scenarios: Sequence[str | Path] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_keys: Sequence[str] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    body_timeout: float = 30.0  # a request body not complete after this many seconds gets 408
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
