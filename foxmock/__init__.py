"""foxmock: an offline, OpenAI-compatible mock of the Foxora chat API."""

from typing import TYPE_CHECKING, Any

from foxmock._exceptions import FoxmockError, Problem, RequestError, ScenarioError
from foxmock.config import Config
from foxmock.journal import Entry, Journal
from foxmock.scenarios import ScenarioSet, load_scenarios
from foxmock.server import create_app

if TYPE_CHECKING:
    from foxmock.testing import MockServer

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Entry",
    "FoxmockError",
    "Journal",
    "MockServer",
    "Problem",
    "RequestError",
    "ScenarioError",
    "ScenarioSet",
    "__version__",
    "create_app",
    "load_scenarios",
]


def __getattr__(name: str) -> Any:
    if name == "MockServer":  # imported on first use: `foxmock serve` does not need it
        from foxmock.testing import MockServer

        return MockServer
    raise AttributeError(f"module 'foxmock' has no attribute {name!r}")
