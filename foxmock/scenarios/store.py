"""The live scenario set: file scenarios plus run-time additions, swapped atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from foxmock._exceptions import Problem, ScenarioError
from foxmock.scenarios.loader import collect, compile_document, iter_scenario_files
from foxmock.scenarios.model import Scenario, ScenarioSet
from foxmock.scenarios.yamlnodes import Lines, YamlProblem, load_yaml
from foxmock.templating import TemplateEngine

log = logging.getLogger("foxmock")

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
    else:
        name, data = "<python>", source
        lines: Lines = {}
        if isinstance(source, str):
            name = "<inline yaml>"
            try:
                data, lines = load_yaml(source)
            except YamlProblem as exc:
                problem = Problem(name, exc.line, "", f"invalid YAML: {exc.message}")
                raise ScenarioError([problem]) from None
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


class ScenarioStore:
    """Owns what is served; every change builds a new `ScenarioSet` and swaps it in one step."""

    def __init__(self, paths: Iterable[str | Path], engine: TemplateEngine) -> None:
        self.paths = [Path(p) for p in paths]
        self.engine = engine
        self._files: list[Scenario] = []
        self._loaded: list[Scenario] = []
        self._models: list[str] = []
        self._added: dict[str, Scenario] = {}
        self._baseline: dict[str, Scenario] = {}
        self.current = ScenarioSet([])
        self.last_error: list[Problem] = []
        self._stamp: tuple[tuple[str, float, int], ...] = ()

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
        if loaded.problems:
            self._stamp = loaded.stamp
            return loaded.problems
        self._files, self._models, self._stamp = loaded.scenarios, loaded.models, loaded.stamp
        self._loaded = list(loaded.scenarios)
        self._swap()
        return []

    def reload(self) -> list[Problem]:
        """Reload the files; on problems keep serving the last good set and return them."""
        return self.reloaded(self.read())

    def reloaded(self, loaded: Loaded) -> list[Problem]:
        """`apply` a reload, logging and remembering the outcome."""
        problems = self.apply(loaded)
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

    def add(self, source: ScenarioSource, *, replace: bool = False) -> list[str]:
        """Add scenarios at run time; a clashing name is an error unless ``replace``."""
        scenarios, _ = compile_source(source, self.engine)
        taken = {s.name for s in self._files} | set(self._added)
        clashes = [s.name for s in scenarios if s.name in taken]
        if clashes and not replace:
            raise ValueError(f"scenario name(s) already in use: {', '.join(clashes)}")
        for scenario in scenarios:
            self._files = [s for s in self._files if s.name != scenario.name]
            self._added[scenario.name] = scenario
        self._swap()
        return [s.name for s in scenarios]

    def remove(self, name: str) -> bool:
        """Remove a scenario by name (from files or additions) until the next reload or reset."""
        before = len(self._files) + len(self._added)
        self._files = [s for s in self._files if s.name != name]
        self._added.pop(name, None)
        self._swap()
        return len(self._files) + len(self._added) < before

    def clear(self) -> None:
        """Serve no scenarios at all (until the next reload or reset)."""
        self._files, self._added = [], {}
        self._swap()

    def mark_baseline(self) -> None:
        """Make the current run-time additions part of what `reset` returns to."""
        self._baseline = dict(self._added)

    def reset(self) -> None:
        """Drop run-time changes since the baseline; the files as last loaded (no disk read)."""
        self._added = dict(self._baseline)
        self._files = list(self._loaded)
        self._swap()

    def _swap(self) -> None:
        # a scenario added at run time replaces a file scenario of the same name, even after
        # the files are reloaded
        files = [s for s in self._files if s.name not in self._added]
        self.current = ScenarioSet([*files, *self._added.values()], self._models)
