"""Per-application state, stored under a typed `web.AppKey`."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from foxmock.config import Config
from foxmock.journal import Journal
from foxmock.latency import Latency
from foxmock.matching import Text
from foxmock.replay import ReplayCache
from foxmock.scenarios.model import ScenarioSet
from foxmock.scenarios.store import ScenarioStore
from foxmock.stateful import Counting
from foxmock.templating import TemplateEngine

if TYPE_CHECKING:
    from foxmock.recorder.proxy import Recorder


@dataclass
class ServerState:
    """What handlers share: configuration, the live scenario set, the template engine, the RNG."""

    config: Config
    store: ScenarioStore
    engine: TemplateEngine
    rng: random.Random
    started: int = field(default_factory=lambda: int(time.time()))
    api_keys: frozenset[str] = frozenset()
    latency: Latency = Latency()
    journal: Journal = field(default_factory=Journal)
    recorder: Recorder | None = None
    counting: Counting | None = None  # the state store and its settings (see create_app)
    _replay: tuple[ScenarioSet, ReplayCache | None] | None = None

    @property
    def scenarios(self) -> ScenarioSet:
        """The scenario set serving right now."""
        return self.store.current

    def replay_cache(self, scenarios: ScenarioSet) -> ReplayCache | None:
        """The replay cache of ``scenarios`` (a new set starts empty); None when off for it."""
        if self._replay is None or self._replay[0] is not scenarios:
            # every answer under a server-wide quota carries its own remaining counts
            off = self.recorder is not None or (
                self.counting is not None and self.counting.quota is not None
            )
            self._replay = (scenarios, None if off else ReplayCache())
        return self._replay[1]

    def replay_stats(self) -> dict[str, Any]:
        """What the replay cache of the serving set holds: on/off, answers kept, hits."""
        cache = self.replay_cache(self.scenarios)
        if cache is None:
            return {"enabled": False, "entries": 0, "hits": 0}
        return {"enabled": True, "entries": len(cache), "hits": cache.hits}

    def model_ids(self) -> list[str]:
        """Models for ``/v1/models``: those the files list, then exact model matches."""
        ids = list(self.scenarios.models)
        for scenario in self.scenarios.scenarios:
            for predicate in scenario.match.parts:
                if isinstance(predicate, Text) and predicate.key == "model":
                    exact = predicate.matcher.exact
                    if exact is not None:
                        ids.append(exact)
        return list(dict.fromkeys(ids))


STATE = web.AppKey("foxmock_state", ServerState)
