"""Project-level promises: the README's commands, the public API, spec coverage."""

from __future__ import annotations

import re
from pathlib import Path

import foxmock
from foxmock.openai.validation import KNOWN_FIELDS
from tests.support import openapi_spec

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    command = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.M)
    assert command is not None
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2, "the quick start has exactly two set-up commands"
    assert commands[1] == command.group(1)
    assert commands[0].endswith("foxmock serve")


def test_public_api_is_curated() -> None:
    for name in foxmock.__all__:
        assert hasattr(foxmock, name), name
    assert foxmock.__version__


def test_known_request_fields_cover_the_official_spec() -> None:
    schemas = openapi_spec()["components"]["schemas"]

    def properties(schema: dict) -> set[str]:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        found = set(schema.get("properties", {}))
        for key in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(key, []):
                found |= properties(part)
        return found

    spec_fields = properties(schemas["CreateChatCompletionRequest"])
    assert spec_fields <= KNOWN_FIELDS, sorted(spec_fields - KNOWN_FIELDS)
