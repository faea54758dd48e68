"""The scenario index must pick exactly what a linear scan in match order picks."""

from __future__ import annotations

import random

from foxmock.openai.request import ChatRequest
from foxmock.scenarios.model import Scenario, ScenarioSet
from foxmock.scenarios.store import compile_source
from foxmock.templating import TemplateEngine

MODELS = ["m1", "m2", "m3"]
TEXTS = ["hi", "hello", "bye", "Hi"]


def _random_scenarios(rng: random.Random, count: int) -> list[Scenario]:
    specs = []
    for i in range(count):
        match: dict[str, object] = {}
        kind = rng.randrange(6)
        if kind in (0, 1):
            match["model"] = rng.choice(MODELS)
        if kind in (1, 2):
            match["last_user"] = rng.choice(TEXTS)
        if kind == 3:
            match["last_user"] = {"equals": rng.choice(TEXTS), "ignore_case": True}
        if kind == 4:
            match["model"] = {"glob": "m*"}
            match["last_user"] = {"contains": "h"}
        specs.append({"name": f"s{i}", "priority": rng.randrange(3), "match": match, "respond": {}})
    scenarios, _ = compile_source(specs, TemplateEngine(random.Random(0)))
    return scenarios


def _linear(scenarios: ScenarioSet, req: ChatRequest) -> Scenario | None:
    return next((s for s in scenarios.scenarios if s.match.test(req)), None)


def test_indexed_find_agrees_with_a_linear_scan() -> None:
    rng = random.Random(1234)
    for _ in range(20):
        scenarios = ScenarioSet(_random_scenarios(rng, rng.randrange(1, 40)))
        for model in [*MODELS, "other"]:
            for text in [*TEXTS, "nothing"]:
                req = ChatRequest({"model": model, "messages": [{"role": "user", "content": text}]})
                assert scenarios.find(req) is _linear(scenarios, req), (model, text)
