"""`create_app`: build the aiohttp application from a `Config`."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from foxmock.config import Config, parse_rate_limit
from foxmock.journal import Journal
from foxmock.latency import Latency
from foxmock.recorder.modes import RecordMode
from foxmock.request_ids import stamp
from foxmock.scenarios.loader import parse_scope
from foxmock.scenarios.model import RateLimit, ScenarioSet
from foxmock.scenarios.store import NeedsSharedState, ScenarioStore
from foxmock.server import handlers
from foxmock.server.admin import ADMIN_MODES, PREFIX, admin_app
from foxmock.server.auth import check_api_key
from foxmock.server.cors import CorsPolicy
from foxmock.server.cors import install as install_cors
from foxmock.server.errors import add_guarded, add_pathless, expect_handler
from foxmock.server.state import STATE, ServerState
from foxmock.server.watch import watch_ctx
from foxmock.stateful import Counting
from foxmock.statestore import open_store
from foxmock.templating import TemplateEngine

if TYPE_CHECKING:
    from foxmock.recorder.proxy import Recorder


def check_writable(directory: Path) -> None:
    """Raise `ValueError` unless recordings can be written into ``directory`` (made if absent):
    found at start, not at the first recording (a root-owned mount in a container, say)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".foxmock-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"cannot write recordings to {str(directory)!r}: {reason} (--out; the folder must "
            f"be writable by this user, uid {os.getuid()})"
        ) from None


def make_recorder(config: Config, store: ScenarioStore) -> Recorder | None:
    """The recorder a config asks for, or None (replay needs none: it only serves files)."""
    if config.record_mode is None:
        return None
    mode = RecordMode.parse(config.record_mode)
    if mode is RecordMode.REPLAY:
        return None
    if not config.upstream:
        raise ValueError(f"record mode {mode.value!r} needs an upstream URL")
    from foxmock.recorder.proxy import Recorder, RecorderSettings  # only recording servers pay

    directory = Path(config.recordings or "recordings")
    if mode.writes:
        check_writable(directory)

    settings = RecorderSettings(
        mode=mode,
        upstream=config.upstream,
        directory=directory,
        api_key=config.upstream_api_key,
        redact=config.redact,
        allow_secrets=config.allow_secrets,
        match_on=config.record_match,
        timeout=config.upstream_timeout,
        max_record_bytes=config.max_record_bytes,
    )
    return Recorder(settings, store)


def make_counting(config: Config) -> Counting:
    """The state store, default scope and server-wide quota a config asks for."""
    quota = None
    if config.rate_limit is not None:
        spec = parse_rate_limit(config.rate_limit)
        quota = RateLimit(
            spec.get("requests_per_minute"),
            spec.get("tokens_per_minute"),
            parse_scope(spec.get("scope", "api_key")),
            "server",
        )
    store = open_store(config.state, config.max_state_keys, config.state_ttl, config.state_timeout)
    return Counting(store, parse_scope(config.sequence_scope), quota)


def shared_state_check(config: Config) -> ScenarioStore.Check | None:
    """With several workers and counters in memory, refuse scenario sets that count: each
    worker would keep its own counters, and a sequence would run once per worker."""
    if config.workers <= 1 or config.state not in (None, "", "memory"):
        return None

    def check(scenarios: ScenarioSet) -> None:
        counted = [s for s in scenarios.scenarios if s.state is not None]
        if counted or config.rate_limit is not None:
            what = (
                f"scenario {counted[0].name!r} ({counted[0].where}) uses a sequence, times or "
                "a rate_limit"
                if counted
                else "--rate-limit is set"
            )
            raise NeedsSharedState(
                f"{what}, but with --workers {config.workers} and no --state each worker "
                "would count on its own; give --state redis://HOST:PORT/DB (or run one worker)"
            )

    return check


RECORDING_GRACE = 10.0  # seconds a stopping server waits for recordings still being written


def create_app(config: Config | None = None) -> web.Application:
    """Load the scenarios and return a ready application; raises `ScenarioError` on bad files."""
    config = config or Config()
    if config.admin not in ADMIN_MODES:
        raise ValueError(f"admin must be one of {', '.join(ADMIN_MODES)}, not {config.admin!r}")
    config.check()
    cors = CorsPolicy.parse(config.cors)
    rng = random.Random(config.seed)
    engine = TemplateEngine(rng)
    store = ScenarioStore(config.scenario_paths(), engine, config.max_scenarios)
    store.check = shared_state_check(config)
    counting = make_counting(config)
    store.load()
    state = ServerState(
        config=config,
        store=store,
        journal=Journal(config.journal_size, config.journal_bytes),
        engine=engine,
        rng=rng,
        api_keys=frozenset(config.api_keys),
        latency=Latency.parse(config.latency),
        counting=counting,
    )
    state.recorder = make_recorder(config, store)
    app = web.Application(client_max_size=config.max_body_bytes)  # no middleware: see errors
    app[STATE] = state
    app.on_response_prepare.append(stamp)
    chat = handlers.chat_completions  # its own guard, to spare the hottest route a layer
    app.router.add_post("/v1/chat/completions", chat, expect_handler=expect_handler)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/v1/models", handlers.list_models),
        ("GET", "/v1/models/{model}", handlers.get_model),
        ("GET", "/healthz", handlers.healthz),
    ]
    if cors is not None:  # before the catch-all, which would answer preflights with 405
        install_cors(app, cors)
    add_guarded(app.router, routes, check_api_key)
    add_pathless(app.router)
    if config.admin != "off":  # its own catch-all answers under /_foxmock/
        app.add_subapp(PREFIX, admin_app())
    if config.watch:
        app.cleanup_ctx.append(watch_ctx)
    if state.recorder is not None:
        app.on_shutdown.append(_finish_recordings)
    app.on_cleanup.append(_close_state)
    return app


async def _close_state(app: web.Application) -> None:
    counting = app[STATE].counting
    if counting is not None:
        await counting.store.close()


async def _finish_recordings(app: web.Application) -> None:
    """At shutdown, let the recordings already scheduled be written (10 s at most)."""
    recorder = app[STATE].recorder
    if recorder is not None:
        await recorder.drain(RECORDING_GRACE)
        recorder.close()
