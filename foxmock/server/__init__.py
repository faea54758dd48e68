"""The aiohttp shell: application factory, handlers and middlewares."""

from foxmock.server.app import STATE, ServerState, create_app

__all__ = ["STATE", "ServerState", "create_app"]
