"""The aiohttp shell: application factory, guarded handlers and the runner."""

from foxmock.server.app import create_app
from foxmock.server.state import STATE, ServerState

__all__ = ["STATE", "ServerState", "create_app"]
