"""pytest plugin (entry point ``pytest11``): a foxmock server for every test that asks for one.

Settings resolve command line > ``@pytest.mark.foxmock(...)`` > the ``foxmock_config`` fixture >
ini options; the first source that sets a value wins, also for the scenarios served.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from foxmock.recorder import Recorder, RecorderSettings, RecordMode
from foxmock.server.app import RECORDING_GRACE
from foxmock.testing import MockServer

SETTINGS = (
    "scenarios",
    "yaml",
    "data",
    "strict",
    "expect_used",
    "time_scale",
    "seed",
    "record_mode",
    "upstream",
)
SCALARS = ("strict", "expect_used", "time_scale", "seed", "record_mode", "upstream")
_SETTINGS_KEY = pytest.StashKey[dict[str, Any]]()
_SERVER_KEY = pytest.StashKey[MockServer]()
API_KEY = "foxmock-test-key"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("foxmock", "foxmock mock LLM server")
    group.addoption(
        "--foxmock-scenarios",
        action="append",
        metavar="PATH",
        help="scenario file or directory for the foxmock fixture (repeatable)",
    )
    group.addoption(
        "--foxmock-strict",
        action="store_const",
        const=True,
        dest="foxmock_strict",
        help="fail a test whose code sent a request no scenario matched (the default)",
    )
    group.addoption(
        "--foxmock-no-strict",
        action="store_const",
        const=False,
        dest="foxmock_strict",
        help="do not fail tests on unmatched requests",
    )
    group.addoption(
        "--foxmock-time-scale",
        type=float,
        metavar="X",
        help="multiply every scenario delay by X (0 removes delays)",
    )
    group.addoption("--foxmock-seed", type=int, metavar="N", help="seed foxmock's randomness")
    group.addoption(
        "--foxmock-record-mode",
        choices=[m.value for m in RecordMode],
        help="record and replay per test: replay, record, record-missing or passthrough",
    )
    group.addoption(
        "--foxmock-upstream", metavar="URL", help="the real API to record from (base URL)"
    )
    parser.addini("foxmock_scenarios", "scenario files or directories", type="paths")
    parser.addini("foxmock_strict", "fail tests on unmatched requests", type="bool", default=True)
    parser.addini("foxmock_time_scale", "multiply every scenario delay by this", default="1")
    parser.addini("foxmock_seed", "seed foxmock's randomness", default="")
    parser.addini("foxmock_record_mode", "replay, record, record-missing or passthrough")
    parser.addini("foxmock_upstream", "the real API to record from (base URL)")
    parser.addini(
        "foxmock_recordings",
        "where recordings live (default: a 'recordings' folder beside each test file)",
        type="paths",
    )
    parser.addini("foxmock_redact", "regexes to redact from recordings", type="linelist")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "foxmock(scenarios=None, yaml=None, data=None, strict=None, expect_used=None, "
        "time_scale=None, seed=None, record_mode=None, upstream=None): foxmock settings for "
        "this test (scenario paths are relative to the test file)",
    )


def _cli(config: pytest.Config) -> dict[str, Any]:
    values = {
        "scenarios": config.getoption("foxmock_scenarios"),
        "strict": config.getoption("foxmock_strict"),
        "time_scale": config.getoption("foxmock_time_scale"),
        "seed": config.getoption("foxmock_seed"),
        "record_mode": config.getoption("foxmock_record_mode"),
        "upstream": config.getoption("foxmock_upstream"),
    }
    return {k: v for k, v in values.items() if v is not None}


def _ini(config: pytest.Config) -> dict[str, Any]:
    values: dict[str, Any] = {
        "strict": config.getini("foxmock_strict"),
        "time_scale": float(config.getini("foxmock_time_scale")),
    }
    paths = config.getini("foxmock_scenarios")
    if paths:
        values["scenarios"] = [str(p) for p in paths]
    seed = str(config.getini("foxmock_seed")).strip()
    if seed:
        values["seed"] = int(seed)
    for key in ("record_mode", "upstream"):
        value = str(config.getini(f"foxmock_{key}") or "").strip()
        if value:
            values[key] = value
    return values


def recordings_dir(item: pytest.Item) -> Path:
    """Where one test's recordings live: ``BASE/<module>/<test name>/``."""
    test_file = Path(str(item.fspath))
    bases = item.config.getini("foxmock_recordings")
    base = Path(bases[0]) if bases else test_file.parent / "recordings"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", item.name).strip("-") or "test"
    return base / test_file.stem / name


def _finish_recordings(server: MockServer) -> None:
    """Wait for this test's recordings to be written and served, then stop recording: none
    lands in the next test's scenarios."""
    recorder = server.state.recorder
    server.state.recorder = None
    if recorder is not None:
        recorder.wait(RECORDING_GRACE)
        recorder.close()


def _attach_recordings(server: MockServer, item: pytest.Item, settings: dict[str, Any]) -> None:
    """Serve the test's recordings and, for recording modes, forward what the mode says."""
    server.state.recorder = None
    if not settings.get("record_mode"):
        return
    mode = RecordMode.parse(settings["record_mode"])
    if "sources" not in settings:  # recordings replace the bundled set, which matches anything
        server.clear()
    directory = recordings_dir(item)
    if directory.is_dir():
        for path in sorted(directory.glob("*.yaml")):
            server.add(path, replace=True)
    if mode is RecordMode.REPLAY:
        return
    upstream = settings.get("upstream")
    if not upstream:
        raise pytest.UsageError(
            f"record mode {mode.value!r} needs an upstream: --foxmock-upstream URL or the "
            "foxmock_upstream ini option"
        )
    recorder_settings = RecorderSettings(
        mode=mode,
        upstream=upstream,
        directory=directory,
        api_key=os.environ.get("FOXMOCK_UPSTREAM_API_KEY"),
        redact=item.config.getini("foxmock_redact"),
    )
    server.state.recorder = Recorder(recorder_settings, server.state.store)


def _marker(item: pytest.Item) -> dict[str, Any]:
    marker = item.get_closest_marker("foxmock")
    if marker is None:
        return {}
    unknown = set(marker.kwargs) - set(SETTINGS)
    if unknown or marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.foxmock takes keyword arguments {', '.join(SETTINGS)}; "
            f"got {sorted(unknown) or list(marker.args)}"
        )
    values = dict(marker.kwargs)
    if "scenarios" in values:
        base = Path(str(item.fspath)).parent
        values["scenarios"] = [str(base / p) for p in _as_list(values["scenarios"])]
    return values


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def resolve(*layers: dict[str, Any]) -> dict[str, Any]:
    """Merge settings, highest precedence first; scenario sources travel together."""
    out: dict[str, Any] = {}
    for layer in layers:
        if "sources" not in out and any(k in layer for k in ("scenarios", "yaml", "data")):
            out["sources"] = {k: layer[k] for k in ("scenarios", "yaml", "data") if k in layer}
        for key in SCALARS:
            if key in layer and key not in out:
                out[key] = layer[key]
    return out


@pytest.fixture
def foxmock_config() -> dict[str, Any]:
    """Override to configure the ``foxmock`` fixture (same keys as the marker)."""
    return {}


@pytest.fixture(scope="session")
def foxmock_server(pytestconfig: pytest.Config) -> Iterator[MockServer]:
    """One foxmock server per test session (per xdist worker), on a background thread."""
    settings = resolve(_cli(pytestconfig), _ini(pytestconfig))
    sources = settings.get("sources", {})
    server = MockServer(
        sources.get("scenarios", ()),
        seed=settings.get("seed"),
        time_scale=settings.get("time_scale", 1.0),
        sequence_scope="test",
    )
    with server:
        yield server


def _apply(server: MockServer, item: pytest.Item, fixture_config: dict[str, Any]) -> dict[str, Any]:
    """Reset the session server for this test and apply the test's own settings."""
    cli, ini, marker = _cli(item.config), _ini(item.config), _marker(item)
    settings = resolve(cli, marker, dict(fixture_config), ini)
    server.reset()
    server.test_id = item.nodeid  # the `test` scope: every test starts its sequences at step 1
    own = resolve(marker, dict(fixture_config)).get("sources")
    if own is not None and "sources" not in resolve(cli):
        server.clear()
        for path in own.get("scenarios", ()):
            server.add(Path(path))
        for key in ("yaml", "data"):
            if own.get(key) is not None:
                server.add(own[key])
    server.state.config.time_scale = float(settings.get("time_scale", 1.0))
    if settings.get("seed") is not None:
        server.state.rng.seed(settings["seed"])
    _attach_recordings(server, item, settings)
    return settings


def _wire_environment(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in ("OPENAI", "FOXORA"):
        monkeypatch.setenv(f"{prefix}_BASE_URL", server.base_url)
        monkeypatch.setenv(f"{prefix}_API_KEY", os.environ.get(f"{prefix}_API_KEY") or API_KEY)


@pytest.fixture
def foxmock(
    foxmock_server: MockServer,
    foxmock_config: dict[str, Any],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MockServer]:
    """The session's foxmock server, reset for this test, with OPENAI_/FOXORA_ env vars set."""
    item = request.node
    item.stash[_SETTINGS_KEY] = _apply(foxmock_server, item, foxmock_config)
    item.stash[_SERVER_KEY] = foxmock_server
    _wire_environment(foxmock_server, monkeypatch)
    yield foxmock_server
    _finish_recordings(foxmock_server)
    foxmock_server.reset()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-aiohttp brings pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def foxmock_async(
        foxmock_config: dict[str, Any],
        request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch,
    ) -> AsyncIterator[MockServer]:
        """A foxmock server on the test's own event loop (for pytest-aiohttp / async tests)."""
        item = request.node
        settings = resolve(
            _cli(item.config), _marker(item), dict(foxmock_config), _ini(item.config)
        )
        sources = settings.get("sources", {})
        async with MockServer(
            sources.get("scenarios", ()),
            yaml=sources.get("yaml"),
            data=sources.get("data"),
            seed=settings.get("seed"),
            time_scale=settings.get("time_scale", 1.0),
            sequence_scope="test",
        ) as server:
            server.test_id = item.nodeid
            _attach_recordings(server, item, settings)
            item.stash[_SETTINGS_KEY] = settings
            item.stash[_SERVER_KEY] = server
            _wire_environment(server, monkeypatch)
            yield server
            recorder = server.state.recorder
            if recorder is not None:
                await recorder.drain(RECORDING_GRACE)
                recorder.close()


def strict_report(server: MockServer, settings: dict[str, Any]) -> str | None:
    """Why this test should fail: unmatched requests (strict) or expected scenarios unused."""
    problems = []
    if settings.get("strict", True):
        for entry in server.journal.unmatched():
            if entry.near_miss:
                problems.append(
                    f"request #{entry.id} matched no foxmock scenario:\n{entry.near_miss}"
                )
    expected = settings.get("expect_used")
    if expected:
        names = (
            [s.name for s in server.state.scenarios.scenarios]
            if expected is True
            else _as_list(expected)
        )
        unused = [n for n in names if server.journal.count(n) == 0]
        if unused:
            problems.append(f"expected scenario(s) never used: {', '.join(unused)}")
    return "\n\n".join(problems) if problems else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    server = item.stash.get(_SERVER_KEY, None)
    if server is None or outcome.excinfo is not None:  # type: ignore[attr-defined]
        return
    report = strict_report(server, item.stash.get(_SETTINGS_KEY, {}))
    if report:
        outcome.force_exception(  # type: ignore[attr-defined]
            pytest.fail.Exception(f"foxmock: {report}", pytrace=False)
        )
