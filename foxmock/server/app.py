"""`create_app`: build the aiohttp application from a `Config`."""

from __future__ import annotations

import random

from aiohttp import web

from foxmock.config import Config
from foxmock.journal import Journal
from foxmock.latency import Latency
from foxmock.scenarios.store import ScenarioStore
from foxmock.server import handlers
from foxmock.server.admin import PREFIX, admin_app
from foxmock.server.auth import auth_middleware
from foxmock.server.errors import error_middleware
from foxmock.server.state import STATE, ServerState
from foxmock.server.watch import watch_ctx
from foxmock.templating import TemplateEngine


def create_app(config: Config | None = None) -> web.Application:
    """Load the scenarios and return a ready application; raises `ScenarioError` on bad files."""
    config = config or Config()
    rng = random.Random(config.seed)
    engine = TemplateEngine(rng)
    store = ScenarioStore(config.scenario_paths(), engine)
    store.load()
    state = ServerState(
        config=config,
        store=store,
        journal=Journal(config.journal_size),
        engine=engine,
        rng=rng,
        api_keys=frozenset(config.api_keys),
        latency=Latency.parse(config.latency),
    )
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware, auth_middleware],
    )
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/v1/models/{model}", handlers.get_model)
    app.router.add_get("/healthz", handlers.healthz)
    app.add_subapp(PREFIX, admin_app())
    if config.watch:
        app.cleanup_ctx.append(watch_ctx)
    return app
