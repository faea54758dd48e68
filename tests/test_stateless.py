"""Matching is stateless: turns of one agent loop can go to different foxmock processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

SCENARIOS = """
version: 1
scenarios:
  - name: ask-for-weather
    match: {tools_offered: [get_weather], has_tool_result: false, turn: 0}
    respond:
      tool_calls:
        - name: get_weather
          arguments: {city: "{{ last_user | regex_search('in ([A-Z][a-z]+)') }}"}
  - name: answer-with-weather
    match: {has_tool_result: get_weather, turn: 1}
    respond:
      content: "{{ tool_result('get_weather').city }}: {{ tool_result('get_weather').temp_c }} C"
  - name: follow-up
    match: {turn: {min: 2}, last_user: {contains: umbrella}}
    respond: {content: "Turn {{ turn }}: take one if it is under 10 C."}
"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _start(path: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--scenarios", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"serving on (http://\S+/v1)", line)
        if found:
            return process, found.group(1)
    raise AssertionError(f"foxmock did not start (exit {process.wait()})")


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[str]]:
    path = tmp_path / "loop.yaml"
    path.write_text(SCENARIOS, "utf-8")
    started = [_start(path), _start(path)]
    yield [url for _, url in started]
    for process, _ in started:
        process.terminate()
        process.wait(10)


def test_alternate_turns_of_one_agent_loop_between_two_processes(
    two_servers: list[str], openapi: Any
) -> None:
    first, second = (openai.OpenAI(base_url=u, api_key="x", max_retries=0) for u in two_servers)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]

    raw = first.chat.completions.with_raw_response.create(
        model="foxora-1", messages=messages, tools=TOOLS
    )
    openapi("CreateChatCompletionResponse", raw.http_response.json())
    call = raw.parse().choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"city": "Oslo", "temp_c": 7}'},
    ]

    raw = second.chat.completions.with_raw_response.create(
        model="foxora-1", messages=messages, tools=TOOLS
    )
    openapi("CreateChatCompletionResponse", raw.http_response.json())
    answer = raw.parse().choices[0].message.content
    assert answer == "Oslo: 7 C"
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Do I need an umbrella?"},
    ]

    for client in (first, second):  # the third turn gets the same answer from either process
        reply = client.chat.completions.create(model="foxora-1", messages=messages, tools=TOOLS)
        assert reply.choices[0].message.content == "Turn 2: take one if it is under 10 C."
