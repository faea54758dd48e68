"""The live scenario set: file scenarios plus run-time additions, swapped atomically."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from foxmock._exceptions import Problem, ScenarioError
from foxmock.scenarios.loader import collect, compile_document, iter_scenario_files
from foxmock.scenarios.model import Scenario, ScenarioSet
from foxmock.scenarios.yamlnodes import Lines, YamlProblem, load_yaml
from foxmock.templating import TemplateEngine

log = logging.getLogger("foxmock")
DEFAULT_MAX_SCENARIOS = 100_000

ScenarioSource = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _as_document(data: Any, lines: Lines) -> tuple[Any, Lines]:
    """Wrap a lone scenario or a list of scenarios into a version-1 document, keeping lines."""
    if isinstance(data, Mapping) and "scenarios" not in data:
        return {"version": 1, "scenarios": [dict(data)]}, {
            ("scenarios", 0, *k): v for k, v in lines.items()
        }
    if isinstance(data, Sequence) and not isinstance(data, str):
        return {"version": 1, "scenarios": list(data)}, {
            ("scenarios", *k): v for k, v in lines.items()
        }
    return data, lines


def compile_source(
    source: ScenarioSource, engine: TemplateEngine
) -> tuple[list[Scenario], list[str]]:
    """Compile scenarios from a path, YAML text, a document or scenario dict, or a list of dicts."""
    if isinstance(source, Path):
        scenarios, models, problems = collect([source], engine)
        if problems:
            raise ScenarioError(problems)
        return scenarios, models
    if not isinstance(source, str):
        return compile_parsed(source, {}, "<python>", engine)
    name = "<inline yaml>"
    try:
        data, lines = load_yaml(source)
    except YamlProblem as exc:
        raise ScenarioError([Problem(name, exc.line, "", f"invalid YAML: {exc.message}")]) from None
    return compile_parsed(data, lines, name, engine)


def compile_parsed(
    data: Any, lines: Lines, name: str, engine: TemplateEngine
) -> tuple[list[Scenario], list[str]]:
    """Compile an already parsed document, scenario or list of scenarios (``lines`` as parsed)."""
    document, lines = _as_document(data, lines)
    scenarios, models, problems = compile_document(document, lines, name, engine)
    if problems:
        raise ScenarioError(problems)
    return scenarios, models


class Loaded(NamedTuple):
    """What one read of the scenario files found."""

    stamp: tuple[tuple[str, float, int], ...]
    scenarios: list[Scenario]
    models: list[str]
    problems: list[Problem]


class Parts(NamedTuple):
    """What the served set is built from; every change makes a new one."""

    files: list[Scenario]  # file scenarios still served
    loaded: list[Scenario]  # the files as last loaded, for `reset`
    models: list[str]
    added: dict[str, Scenario]  # run-time additions by name


def serve(parts: Parts) -> ScenarioSet:
    """The set to serve: a scenario added at run time replaces a file scenario of its name."""
    files = [s for s in parts.files if s.name not in parts.added]
    return ScenarioSet([*files, *parts.added.values()], parts.models)


Edit = Callable[[Parts], Parts]


class NeedsSharedState(ValueError):
    """A scenario set that counts, on a server whose workers cannot share counters."""


class ScenarioStore:
    """Owns what is served; every change builds a new `ScenarioSet` and swaps it in one step.

    The ``*_async`` methods compile and build on a worker thread and swap on the caller's
    loop, retrying when another change landed meanwhile, so the loop never waits for them.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        engine: TemplateEngine,
        max_scenarios: int = DEFAULT_MAX_SCENARIOS,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.engine = engine
        self.max_scenarios = max_scenarios
        self._parts = Parts([], [], [], {})
        self._baseline: dict[str, Scenario] = {}
        self._version = 0
        self.current = ScenarioSet([])
        self.last_error: list[Problem] = []
        self._stamp: tuple[tuple[str, float, int], ...] = ()
        self.check: ScenarioStore.Check | None = None  # refuses a set (see app.shared_state_check)

    Check = Callable[[ScenarioSet], None]

    def load(self) -> None:
        """Load the files; raise `ScenarioError` on any problem (nothing is swapped then)."""
        problems = self.apply(self.read())
        if problems:
            raise ScenarioError(problems)

    def read(self) -> Loaded:
        """Read and compile the files without touching what is served (safe in a thread)."""
        stamp = self.stamp()
        scenarios, models, problems = collect(self.paths, self.engine)
        return Loaded(stamp, scenarios, models, problems)

    def apply(self, loaded: Loaded) -> list[Problem]:
        """Swap in what `read` found, or keep the current set when it found problems."""
        self._stamp = loaded.stamp
        if loaded.problems:
            return loaded.problems
        try:
            self._change(_loading(loaded))
        except NeedsSharedState as exc:
            return [Problem("<server>", None, "", str(exc))]
        return []

    async def apply_async(self, loaded: Loaded) -> list[Problem]:
        """`apply`, building the new set off the loop."""
        self._stamp = loaded.stamp
        if loaded.problems:
            return loaded.problems
        try:
            await self._change_async(_loading(loaded))
        except NeedsSharedState as exc:
            return [Problem("<server>", None, "", str(exc))]
        return []

    def reload(self) -> list[Problem]:
        """Reload the files; on problems keep serving the last good set and return them."""
        return self.reloaded(self.read())

    async def reload_async(self) -> list[Problem]:
        """`reload` with the reading, compiling and building off the loop."""
        loaded = await asyncio.to_thread(self.read)
        return self._remember(await self.apply_async(loaded))

    def reloaded(self, loaded: Loaded) -> list[Problem]:
        """`apply` a reload, logging and remembering the outcome."""
        return self._remember(self.apply(loaded))

    def _remember(self, problems: list[Problem]) -> list[Problem]:
        if problems:
            self.last_error = problems
            log.error(
                "reload failed, still serving the last good scenarios:\n%s",
                ScenarioError(problems),
            )
            return problems
        self.last_error = []
        log.info("reloaded %d scenarios", len(self.current))
        return []

    def stamp(self) -> tuple[tuple[str, float, int], ...]:
        """Names, modification times and sizes of the scenario files, to notice edits."""
        files, _ = iter_scenario_files(self.paths)
        out = []
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append((str(path), st.st_mtime, st.st_size))
        return tuple(out)

    def changed(self) -> bool:
        """Whether the files differ from what was last loaded."""
        return self.stamp() != self._stamp

    def compile(self, source: ScenarioSource) -> list[Scenario]:
        """Compile scenarios without touching what is served (safe in a thread)."""
        return compile_source(source, self.engine)[0]

    def add(self, source: ScenarioSource, *, replace: bool = False) -> list[str]:
        """Add scenarios at run time; a clashing name is an error unless ``replace``."""
        scenarios = self.compile(source)
        self._change(self._adding(scenarios, replace))
        return [s.name for s in scenarios]

    async def add_async(self, source: ScenarioSource, *, replace: bool = False) -> list[str]:
        """`add`, compiling and building off the loop; the swap happens on the loop."""
        return await self.add_compiled(await asyncio.to_thread(self.compile, source), replace)

    async def add_compiled(self, scenarios: Sequence[Scenario], replace: bool) -> list[str]:
        """Serve compiled scenarios, building the new set off the loop."""
        await self._change_async(self._adding(scenarios, replace))
        return [s.name for s in scenarios]

    def _adding(self, scenarios: Sequence[Scenario], replace: bool) -> Edit:
        names = {s.name for s in scenarios}
        limit = self.max_scenarios

        def edit(parts: Parts) -> Parts:
            taken = {s.name for s in parts.files} | set(parts.added)
            clashes = [s.name for s in scenarios if s.name in taken]
            if clashes and not replace:
                raise ValueError(f"scenario name(s) already in use: {', '.join(clashes)}")
            if len(taken | names) > limit:
                raise TooManyScenarios(
                    f"{len(taken | names)} scenarios would be served; at most {limit} "
                    "(--max-scenarios)"
                )
            files = [s for s in parts.files if s.name not in names]
            added = {**parts.added, **{s.name: s for s in scenarios}}
            return parts._replace(files=files, added=added)

        return edit

    def remove(self, name: str) -> bool:
        """Remove a scenario by name (from files or additions) until the next reload or reset."""
        before = len(self._parts.files) + len(self._parts.added)
        self._change(_removing(name))
        return len(self._parts.files) + len(self._parts.added) < before

    async def remove_async(self, name: str) -> bool:
        """`remove`, building the new set off the loop."""
        found = any(s.name == name for s in self._parts.files) or name in self._parts.added
        if found:
            await self._change_async(_removing(name))
        return found

    def clear(self) -> None:
        """Serve no scenarios at all (until the next reload or reset)."""
        self._change(_clearing)

    async def clear_async(self) -> None:
        """`clear` (nothing to build, so nothing to wait for)."""
        self._change(_clearing)

    def mark_baseline(self) -> None:
        """Make the current run-time additions part of what `reset` returns to."""
        self._baseline = dict(self._parts.added)

    def reset(self) -> None:
        """Drop run-time changes since the baseline; the files as last loaded (no disk read)."""
        self._change(self._resetting)

    async def reset_async(self) -> None:
        """`reset`, building the new set off the loop."""
        await self._change_async(self._resetting)

    def _resetting(self, parts: Parts) -> Parts:
        return parts._replace(files=list(parts.loaded), added=dict(self._baseline))

    def _change(self, edit: Edit) -> None:
        parts = edit(self._parts)
        self._commit(parts, serve(parts))

    async def _change_async(self, edit: Edit) -> None:
        while True:
            version = self._version
            parts = edit(self._parts)  # checks (clashes, limits) run against the latest parts
            current = await asyncio.to_thread(serve, parts)
            if version == self._version:  # nothing else changed while it was built
                self._commit(parts, current)
                return

    def _commit(self, parts: Parts, current: ScenarioSet) -> None:
        if self.check is not None:
            self.check(current)
        self._parts, self.current = parts, current
        self._version += 1


class TooManyScenarios(ValueError):
    """An addition would serve more scenarios than the store's ``max_scenarios``."""


def _loading(loaded: Loaded) -> Edit:
    def edit(parts: Parts) -> Parts:
        return parts._replace(
            files=list(loaded.scenarios), loaded=list(loaded.scenarios), models=loaded.models
        )

    return edit


def _removing(name: str) -> Edit:
    def edit(parts: Parts) -> Parts:
        added = {k: v for k, v in parts.added.items() if k != name}
        return parts._replace(files=[s for s in parts.files if s.name != name], added=added)

    return edit


def _clearing(parts: Parts) -> Parts:
    return parts._replace(files=[], added={})
