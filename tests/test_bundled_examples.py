"""The Foxora docs' three examples, sent to the bundled scenarios as the docs send them.

The quick start (a system prompt and "Summarise SOLID in one paragraph."), the streaming example
("Count to five.") and a weather tool call, all with the docs' model ``gpt-4o-mini``, through the
official SDK against ``foxmock serve``'s default scenarios on a loopback port.
"""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.conftest import StartServer

MODEL = "gpt-4o-mini"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_the_docs_examples_get_sensible_answers(
    start_server: StartServer, openapi: Any
) -> None:
    server = await start_server()  # the bundled scenarios
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        models = [m.id async for m in client.models.list()]
        solid = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Summarise SOLID in one paragraph."},
            ],
        )
        counted = []
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count to five."}], stream=True
        )
        async for chunk in stream:
            openapi("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
            counted += [c.delta.content for c in chunk.choices if c.delta.content]
        weather = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert MODEL in models
    openapi("CreateChatCompletionResponse", solid.model_dump(exclude_unset=True))
    assert solid.model == MODEL
    assert (solid.choices[0].message.content or "").startswith("SOLID is a set of five")
    assert "".join(counted) == "1, 2, 3, 4, 5."
    assert len(counted) == 5  # one word per chunk
    (call,) = weather.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
