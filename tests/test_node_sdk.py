"""The official ``openai`` Node SDK against a live foxmock: plain, streamed with usage, tool call.

``tests/node/stream_check.mjs`` does the talking and prints a JSON summary holding every body and
chunk the SDK received; here they are validated against OpenAI's official schemas.

The SDK is installed once per session with npm into ``~/.cache/foxmock-tests/node`` (or
``$FOXMOCK_NODE_CACHE``) and reused from there. Without ``node``/``npm`` the test is skipped; a
failing ``npm install`` is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.node

# openai 7.x needs Node >= 22; 6.x is the newest major that runs on Node 20.
NPM_PACKAGE = "openai@^6"
NPM_MAJOR = 6
SCRIPT = Path(__file__).parent / "node" / "stream_check.mjs"

SCENARIOS = r"""
version: 1
scenarios:
  - name: node-plain
    match: {last_user: node plain}
    respond: {content: "Hello from foxmock to the Node SDK."}

  - name: node-stream
    match: {last_user: node stream}
    respond: {content: "Streaming to Node, one word at a time — ünïcode included."}
    stream: {by: words}

  - name: node-weather
    match:
      tools_offered: [get_weather]
      last_user: {startswith: node weather in}
    respond:
      tool_calls:
        - name: get_weather
          arguments: {city: "{{ last_user | regex_search('in ([^ ]+)$') }}", unit: celsius}
"""


def _installed_major(prefix: Path) -> int | None:
    manifest = prefix / "node_modules" / "openai" / "package.json"
    if not manifest.is_file():
        return None
    return int(json.loads(manifest.read_text("utf-8"))["version"].split(".")[0])


@pytest.fixture(scope="session")
def node_sdk() -> tuple[str, Path]:
    """``(node executable, npm prefix holding node_modules/openai)``, installed once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the Node SDK check needs `node` and `npm` on PATH")
    default = Path.home() / ".cache" / "foxmock-tests" / "node"
    prefix = Path(os.environ.get("FOXMOCK_NODE_CACHE", default))
    prefix.mkdir(parents=True, exist_ok=True)
    if _installed_major(prefix) != NPM_MAJOR:
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), NPM_PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.fail(
                f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
        assert _installed_major(prefix) == NPM_MAJOR, "npm installed an unexpected openai version"
    return node, prefix


def run_script(node: str, prefix: Path, base_url: str) -> dict[str, Any]:
    """Run the check from the npm prefix, so that ``import OpenAI from "openai"`` resolves."""
    script = prefix / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    result = subprocess.run(
        [node, str(script), base_url],
        cwd=prefix,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"node failed:\n{result.stderr}\n{result.stdout}"
    return dict(json.loads(result.stdout))


def check_chunks(chunks: list[dict[str, Any]], openapi: Callable[[str, Any], None]) -> None:
    assert chunks
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_node_sdk_against_foxmock(
    node_sdk: tuple[str, Path],
    thread_server: Callable[..., Any],
    openapi: Callable[[str, Any], None],
) -> None:
    node, prefix = node_sdk
    server = thread_server(SCENARIOS, time_scale=0, seed=11)
    summary = run_script(node, prefix, server.base_url)
    assert summary["node_version"].startswith("v")

    completion = summary["completion"]
    openapi("CreateChatCompletionResponse", completion)
    assert completion["choices"][0]["message"]["content"] == "Hello from foxmock to the Node SDK."
    assert completion["choices"][0]["finish_reason"] == "stop"

    streamed = summary["streamed"]
    check_chunks(streamed["chunks"], openapi)
    expected = "Streaming to Node, one word at a time — ünïcode included."
    assert streamed["content"] == expected
    assert streamed["deltas"] == [
        "Streaming", " to", " Node,", " one", " word", " at", " a", " time", " —",
        " ünïcode", " included.",
    ]  # fmt: skip
    assert streamed["finish_reason"] == "stop"
    usage = streamed["usage"]
    assert usage is not None
    openapi("CompletionUsage", usage)
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert streamed["chunks"][-1]["choices"] == []
    assert all(c["usage"] is None for c in streamed["chunks"][:-1])

    tool_stream = summary["tool_stream"]
    check_chunks(tool_stream["chunks"], openapi)
    assert tool_stream["finish_reason"] == "tool_calls"
    (call,) = tool_stream["calls"]
    assert call["name"] == "get_weather"
    assert call["id"].startswith("call_")
    assert json.loads(call["arguments"]) == {"city": "Tromsø", "unit": "celsius"}

    helper = summary["helper"]
    check_chunks(helper["chunks"], openapi)
    assert helper["finish_reason"] == "tool_calls"
    (helper_call,) = helper["tool_calls"]
    assert helper_call["name"] == "get_weather"
    assert json.loads(helper_call["arguments"]) == {"city": "Tromsø", "unit": "celsius"}
    assert helper_call["id"] != call["id"], "each response has its own tool call ids"
