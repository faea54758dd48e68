"""Shared by the tests that run generated test suites with pytester."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

RUN_TIMEOUT = 180
# what a generated run must not inherit from this run: xdist, plugins, clients, foxmock keys
INHERITED = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "FOXORA_BASE_URL",
    "FOXORA_API_KEY",
    "FOXMOCK_UPSTREAM_API_KEY",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_PLUGINS",
    "PYTEST_ADDOPTS",
)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The generated runs must not see this run's xdist, plugin, client or foxmock settings."""
    for name in INHERITED:
        monkeypatch.delenv(name, raising=False)
    yield


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest on the generated project in a fresh process (the plugin loads by entry point)."""
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *args,
        timeout=RUN_TIMEOUT,
    )
