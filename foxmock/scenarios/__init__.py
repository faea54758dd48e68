"""Scenario files: data model, YAML loading with line numbers, schema, compilation."""

from foxmock.latency import parse_duration
from foxmock.scenarios.loader import load_scenarios, scenario_schema
from foxmock.scenarios.model import Fault, NearMiss, Respond, Scenario, ScenarioSet

__all__ = [
    "Fault",
    "NearMiss",
    "Respond",
    "Scenario",
    "ScenarioSet",
    "load_scenarios",
    "parse_duration",
    "scenario_schema",
]
