"""Faults as a client sees them: the official openai SDK against a live foxmock server.

Every fault is provoked with the SDK (``max_retries=0`` unless retries are the point), the
error the client gets is checked, the bytes on the wire are checked against OpenAI's schemas,
and after each fault the same server still answers a good request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from foxmock import Config, ScenarioError, create_app

Validate = Callable[[str, Any], None]

# timers are measured through a client in this process: its own collections must not count
pytestmark = pytest.mark.usefixtures("quiet_gc")

GOOD = "hello there"
WORDS = "one two three four five six seven eight"

# A catch-all scenario that answers everything the fault scenarios do not match.
OK_SCENARIO = """
  - name: all-good
    priority: -10
    respond:
      content: "all good"
"""


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def client(srv: Any, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", **kwargs)


def scenarios(*blocks: str) -> str:
    return "version: 1\nscenarios:\n" + "".join(blocks) + OK_SCENARIO


def fault_scenario(fault: str, *, respond: bool = True, stream: str = "{by: words}") -> str:
    """One scenario matching the user text 'break', answering WORDS, with ``fault``."""
    text = f"""
  - name: the-fault
    match:
      last_user: {{contains: break}}
    stream: {stream}
    fault: {fault}
"""
    if respond:
        text += f"""    respond:
      content: "{WORDS}"
"""
    return text


async def assert_serves(srv: Any, openapi: Validate, *, timeout: float = 5.0) -> float:
    """A good request gets a valid completion; returns how long it took."""
    started = time.perf_counter()
    async with client(srv, timeout=timeout) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="foxora-1", messages=user(GOOD)
        )
    elapsed = time.perf_counter() - started
    assert raw.http_response.status_code == 200
    body = raw.http_response.json()
    openapi("CreateChatCompletionResponse", body)
    completion = raw.parse()
    assert completion.choices[0].message.content == "all good"
    return elapsed


def sse_events(data: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE byte stream, in order."""
    events = []
    for block in data.decode("utf-8").split("\n\n"):
        lines = [line for line in block.split("\n") if line.startswith("data:")]
        if lines:
            events.append("\n".join(line[5:].lstrip(" ") for line in lines))
    return events


def check_chunk(openapi: Validate, chunk: Any) -> Any:
    """Validate an SDK stream chunk (as the fields it was sent with) and return it."""
    openapi("CreateChatCompletionStreamResponse", chunk.to_dict(mode="json"))
    return chunk


async def raw_stream(
    srv: Any, text: str = "break", **extra: Any
) -> tuple[int, bytes, BaseException | None]:
    """POST a streamed request with aiohttp; the status, every byte read, and how it ended."""
    body = {"model": "foxora-1", "messages": user(text), "stream": True, **extra}
    data = b""
    error: BaseException | None = None
    url = f"{srv.base_url}/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        status = resp.status
        assert resp.headers["content-type"].startswith("text/event-stream")
        try:
            async for piece in resp.content.iter_any():
                data += piece
        except aiohttp.ClientError as exc:
            error = exc
    return status, data, error


# --- HTTP faults -------------------------------------------------------------------------

STATUS_ERRORS = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (409, openai.ConflictError),
    (422, openai.UnprocessableEntityError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
    (529, openai.InternalServerError),
]


@pytest.mark.parametrize(("status", "error_class"), STATUS_ERRORS)
@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_http_fault_raises_the_sdk_error_for_its_status(
    start_server: Any,
    openapi: Validate,
    status: int,
    error_class: type[openai.APIStatusError],
    stream: bool,
) -> None:
    srv = await start_server(
        scenarios(
            fault_scenario(
                f"""
      status: {status}
      message: "custom failure {status} for {{{{ model }}}}"
      type: custom_type_{status}
      code: custom_code_{status}
      param: messages"""
            )
        )
    )
    async with client(srv) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(
                model="foxora-1", messages=user("please break"), stream=stream
            )
    exc = caught.value
    assert type(exc) is error_class
    assert exc.status_code == status
    body = exc.response.json()
    openapi("ErrorResponse", body)
    assert body == {
        "error": {
            "message": f"custom failure {status} for foxora-1",
            "type": f"custom_type_{status}",
            "param": "messages",
            "code": f"custom_code_{status}",
        }
    }
    assert exc.code == f"custom_code_{status}"
    assert exc.type == f"custom_type_{status}"
    assert exc.param == "messages"
    assert f"custom failure {status} for foxora-1" in exc.message
    assert exc.response.headers["content-type"].startswith("application/json")
    await assert_serves(srv, openapi)


@pytest.mark.parametrize(
    ("status", "expected_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
        (529, "overloaded_error"),
    ],
)
async def test_http_fault_defaults_type_and_message(
    start_server: Any, openapi: Validate, status: int, expected_type: str
) -> None:
    srv = await start_server(scenarios(fault_scenario(f"{{status: {status}}}", respond=False)))
    async with client(srv) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    body = caught.value.response.json()
    openapi("ErrorResponse", body)
    assert caught.value.status_code == status
    assert body["error"]["type"] == expected_type
    assert body["error"]["message"] == f"foxmock fault: HTTP {status}"
    assert body["error"]["code"] is None and body["error"]["param"] is None
    await assert_serves(srv, openapi)


async def test_http_fault_custom_headers(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(
        scenarios(
            fault_scenario(
                "{status: 503, headers: {x-served-by: foxmock-test, x-should-retry: 'false'}}"
            )
        )
    )
    async with client(srv, max_retries=2) as sdk:
        started = time.perf_counter()
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
        # x-should-retry: false is obeyed by the SDK: no retry, no back-off wait.
        assert time.perf_counter() - started < 0.3
    openapi("ErrorResponse", caught.value.response.json())
    assert caught.value.response.headers["x-served-by"] == "foxmock-test"
    await assert_serves(srv, openapi)


# --- 429 with Retry-After and the SDK's retries -------------------------------------------

RATE_LIMIT_FAULT = """{status: 429, message: "Slow down", code: rate_limit_exceeded,
             retry_after: 100ms}"""


async def test_rate_limit_sends_retry_after_and_ratelimit_headers(
    start_server: Any, openapi: Validate
) -> None:
    srv = await start_server(scenarios(fault_scenario(RATE_LIMIT_FAULT, respond=False)))
    async with client(srv) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    exc = caught.value
    assert exc.status_code == 429
    openapi("ErrorResponse", exc.response.json())
    assert exc.code == "rate_limit_exceeded"
    headers = exc.response.headers
    assert headers["retry-after"] == "1"  # HTTP allows whole seconds: rounded up
    assert headers["retry-after-ms"] == "100"  # the exact value, which the SDKs prefer
    for name in (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ):
        assert name in headers, name
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["x-ratelimit-limit-requests"]) > 0
    assert headers["x-ratelimit-reset-requests"] == "0.1s"
    await assert_serves(srv, openapi)


class RequestCounter:
    """An httpx2 event hook counting the requests the SDK actually sends."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def __call__(self, request: httpx2.Request) -> None:
        self.sent.append(time.perf_counter())

    def http_client(self) -> httpx2.AsyncClient:
        return openai.DefaultAsyncHttpxClient(event_hooks={"request": [self]})


async def test_sdk_retries_a_rate_limit_after_retry_after(
    start_server: Any, openapi: Validate
) -> None:
    # The first two attempts (retry count 0 and 1) are rate limited; the third succeeds.
    srv = await start_server(
        scenarios(
            """
  - name: limited
    match:
      headers: {x-stainless-retry-count: {equals: ["0", "1"]}}
    fault: """
            + RATE_LIMIT_FAULT
            + "\n"
        )
    )
    counter = RequestCounter()
    async with client(srv, max_retries=2, http_client=counter.http_client()) as sdk:
        started = time.perf_counter()
        raw = await sdk.chat.completions.with_raw_response.create(
            model="foxora-1", messages=user(GOOD)
        )
        elapsed = time.perf_counter() - started
    openapi("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.parse().choices[0].message.content == "all good"
    assert len(counter.sent) == 3
    gaps = [b - a for a, b in itertools.pairwise(counter.sent)]
    # The SDK waited Retry-After (0.1 s) each time, not its own back-off (>= 0.375 s).
    assert all(0.09 <= gap < 0.35 for gap in gaps), gaps
    assert 0.19 <= elapsed < 1.0


async def test_sdk_gives_up_after_max_retries(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario(RATE_LIMIT_FAULT, respond=False)))
    counter = RequestCounter()
    async with client(srv, max_retries=2, http_client=counter.http_client()) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    openapi("ErrorResponse", caught.value.response.json())
    assert len(counter.sent) == 3
    await assert_serves(srv, openapi)


# --- stream faults ------------------------------------------------------------------------


@pytest.mark.parametrize("after", [1, 3, 5])
async def test_stream_error_after_chunks(start_server: Any, openapi: Validate, after: int) -> None:
    srv = await start_server(
        scenarios(
            fault_scenario(
                f"""{{kind: stream_error, after_chunks: {after}, message: "The model crashed",
             type: server_error, code: model_crashed}}"""
            )
        )
    )
    received = []
    async with client(srv) as sdk:
        stream = await sdk.chat.completions.create(
            model="foxora-1", messages=user("break"), stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.append(check_chunk(openapi, chunk))
    exc = caught.value
    assert not isinstance(exc, openai.APIStatusError)  # the HTTP status was 200
    assert exc.message == "The model crashed"
    assert exc.body == {
        "message": "The model crashed",
        "type": "server_error",
        "param": None,
        "code": "model_crashed",
    }
    assert exc.code == "model_crashed"
    # ``after`` chunks arrive: the role chunk, then after - 1 content deltas.
    assert len(received) == after
    assert received[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in received)
    assert content == " ".join(WORDS.split()[: after - 1])
    assert all(c.choices[0].finish_reason is None for c in received)

    status, data, error = await raw_stream(srv)
    assert status == 200 and error is None
    events = sse_events(data)
    assert len(events) == after + 1
    for event in events[:-1]:
        openapi("CreateChatCompletionStreamResponse", json.loads(event))
    last = json.loads(events[-1])
    openapi("ErrorResponse", last)
    assert last["error"]["message"] == "The model crashed"
    assert b"[DONE]" not in data
    await assert_serves(srv, openapi)


async def test_stream_error_on_a_non_streamed_request_is_an_http_error(
    start_server: Any, openapi: Validate
) -> None:
    srv = await start_server(
        scenarios(fault_scenario('{kind: stream_error, status: 503, message: "Overloaded"}'))
    )
    async with client(srv) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    assert caught.value.status_code == 503
    openapi("ErrorResponse", caught.value.response.json())
    assert caught.value.response.json()["error"]["message"] == "Overloaded"
    await assert_serves(srv, openapi)


def test_stream_error_with_the_sync_client(thread_server: Any, openapi: Validate) -> None:
    srv = thread_server(
        scenarios(fault_scenario('{kind: stream_error, after_chunks: 2, message: "sync boom"}'))
    )
    received = []
    with openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model="foxora-1", messages=user("break"), stream=True)
        with pytest.raises(openai.APIError, match="sync boom"):
            for chunk in stream:
                received.append(check_chunk(openapi, chunk))
        assert len(received) == 2
        completion = sdk.chat.completions.create(model="foxora-1", messages=user(GOOD))
        openapi("CreateChatCompletionResponse", completion.to_dict(mode="json"))
        assert completion.choices[0].message.content == "all good"


@pytest.mark.parametrize("after", [0, 2, 4])
async def test_disconnect_mid_stream(start_server: Any, openapi: Validate, after: int) -> None:
    srv = await start_server(
        scenarios(fault_scenario(f"{{kind: disconnect, after_chunks: {after}}}"))
    )
    received = []
    async with client(srv) as sdk:
        stream = await sdk.chat.completions.create(
            model="foxora-1", messages=user("break"), stream=True
        )
        with pytest.raises(openai.APIConnectionError) as caught:
            async for chunk in stream:
                received.append(check_chunk(openapi, chunk))
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert isinstance(caught.value.__cause__, httpx2.TransportError)
    assert len(received) == after

    status, data, error = await raw_stream(srv)
    assert status == 200
    assert isinstance(error, aiohttp.ClientPayloadError)  # the chunked body never finished
    events = sse_events(data)
    assert len(events) == after
    for event in events:
        openapi("CreateChatCompletionStreamResponse", json.loads(event))
    await assert_serves(srv, openapi)


async def test_disconnect_without_streaming(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: disconnect}")))
    async with client(srv) as sdk:
        with pytest.raises(openai.APIConnectionError) as caught:
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    assert not isinstance(caught.value, openai.APITimeoutError)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.post(
                f"{srv.base_url}/chat/completions",
                json={"model": "foxora-1", "messages": user("break")},
            )
    await assert_serves(srv, openapi)


async def test_sdk_retries_a_disconnect(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(
        scenarios(
            """
  - name: drops-first-attempt
    match:
      headers: {x-stainless-retry-count: "0"}
    respond: {content: "never seen"}
    fault: {kind: disconnect}
"""
        )
    )
    counter = RequestCounter()
    async with client(srv, max_retries=1, http_client=counter.http_client()) as sdk:
        completion = await sdk.chat.completions.create(model="foxora-1", messages=user(GOOD))
    openapi("CreateChatCompletionResponse", completion.to_dict(mode="json"))
    assert completion.choices[0].message.content == "all good"
    assert len(counter.sent) == 2


@pytest.mark.parametrize("after", [0, 3])
async def test_malformed_chunk(start_server: Any, openapi: Validate, after: int) -> None:
    srv = await start_server(
        scenarios(fault_scenario(f"{{kind: malformed_chunk, after_chunks: {after}}}"))
    )
    received = []
    async with client(srv) as sdk:
        stream = await sdk.chat.completions.create(
            model="foxora-1", messages=user("break"), stream=True
        )
        with pytest.raises(json.JSONDecodeError):
            async for chunk in stream:
                received.append(check_chunk(openapi, chunk))
    assert len(received) == after

    status, data, error = await raw_stream(srv)
    assert status == 200 and error is None
    events = sse_events(data)
    assert len(events) == after + 1
    for event in events[:-1]:
        openapi("CreateChatCompletionStreamResponse", json.loads(event))
    assert events[-1] != "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[-1])
    assert b"[DONE]" not in data
    await assert_serves(srv, openapi)


async def test_malformed_body_without_streaming(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: malformed_chunk}")))
    async with client(srv) as sdk:
        with pytest.raises(json.JSONDecodeError):
            await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    url = f"{srv.base_url}/chat/completions"
    body = {"model": "foxora-1", "messages": user("break")}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("application/json")
        raw = await resp.read()
    assert raw.startswith(b"{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    await assert_serves(srv, openapi)


async def test_no_done(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: no_done}")))
    status, data, error = await raw_stream(srv, stream_options={"include_usage": True})
    assert status == 200 and error is None
    events = sse_events(data)
    assert "[DONE]" not in events and b"[DONE]" not in data
    chunks = [json.loads(e) for e in events]
    for chunk in chunks:
        openapi("CreateChatCompletionStreamResponse", chunk)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == WORDS
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8

    # The SDK reads the stream to its end and sees every chunk, with no error.
    async with client(srv) as sdk:
        stream = await sdk.chat.completions.create(
            model="foxora-1", messages=user("break"), stream=True
        )
        received = [check_chunk(openapi, chunk) async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in received) == WORDS
    assert received[-1].choices[0].finish_reason == "stop"

    # A non-streamed request is not affected.
    async with client(srv) as sdk:
        completion = await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
    openapi("CreateChatCompletionResponse", completion.to_dict(mode="json"))
    assert completion.choices[0].message.content == WORDS
    await assert_serves(srv, openapi)


# --- hang ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
async def test_hang_times_out_the_client_without_blocking_the_server(
    start_server: Any, openapi: Validate, stream: bool
) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: hang, duration: 3s}")))

    async def hung() -> float:
        started = time.perf_counter()
        async with client(srv, timeout=0.5) as sdk:
            with pytest.raises(openai.APITimeoutError):
                response = await sdk.chat.completions.create(
                    model="foxora-1", messages=user("break"), stream=stream
                )
                async for _chunk in response:  # type: ignore[union-attr]
                    pass
        return time.perf_counter() - started

    hang_task = asyncio.create_task(hung())
    await asyncio.sleep(0.15)
    assert not hang_task.done()
    # While the hang is in progress, the server answers other requests at once.
    during = await assert_serves(srv, openapi)
    assert during < 0.3
    assert not hang_task.done()
    waited = await hang_task
    assert 0.45 <= waited < 1.0
    after = await assert_serves(srv, openapi)
    assert after < 0.3


async def test_hang_then_answer_when_the_client_waits(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: hang, duration: 400ms}")))
    async with client(srv, timeout=5) as sdk:
        started = time.perf_counter()
        completion = await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
        elapsed = time.perf_counter() - started
    openapi("CreateChatCompletionResponse", completion.to_dict(mode="json"))
    assert completion.choices[0].message.content == WORDS
    assert 0.38 <= elapsed < 0.8


async def test_hang_is_scaled_by_time_scale(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(scenarios(fault_scenario("{kind: hang, duration: 3s}")), time_scale=0)
    async with client(srv, timeout=2) as sdk:
        started = time.perf_counter()
        completion = await sdk.chat.completions.create(model="foxora-1", messages=user("break"))
        assert time.perf_counter() - started < 0.3
    openapi("CreateChatCompletionResponse", completion.to_dict(mode="json"))


# --- probability --------------------------------------------------------------------------

PROBABLE = fault_scenario(
    '{status: 503, probability: 0.5, message: "flaky", code: flaky}', stream="{by: words}"
)


async def outcomes(srv: Any, openapi: Validate, count: int = 40) -> list[str]:
    """'fault' or the completion id, for ``count`` sequential requests."""
    seen = []
    async with client(srv) as sdk:
        for _ in range(count):
            try:
                raw = await sdk.chat.completions.with_raw_response.create(
                    model="foxora-1", messages=user("break")
                )
            except openai.InternalServerError as exc:
                assert exc.status_code == 503
                openapi("ErrorResponse", exc.response.json())
                assert exc.code == "flaky"
                seen.append("fault")
                continue
            body = raw.http_response.json()
            openapi("CreateChatCompletionResponse", body)
            assert body["choices"][0]["message"]["content"] == WORDS
            seen.append(body["id"])
    return seen


async def test_probability_is_a_seeded_mix(start_server: Any, openapi: Validate) -> None:
    first = await outcomes(await start_server(scenarios(PROBABLE), seed=7), openapi)
    faults = first.count("fault")
    assert 8 <= faults <= 32, first  # a mix, near half
    again = await outcomes(await start_server(scenarios(PROBABLE), seed=7), openapi)
    assert again == first  # same faults, same ids
    other = await outcomes(await start_server(scenarios(PROBABLE), seed=8), openapi)
    assert [o == "fault" for o in other] != [o == "fault" for o in first]


async def test_probability_zero_and_one(start_server: Any, openapi: Validate) -> None:
    never = await start_server(scenarios(fault_scenario("{status: 500, probability: 0}")), seed=1)
    assert "fault" not in await outcomes(never, openapi, 10)
    always = await start_server(
        scenarios(fault_scenario("{status: 503, probability: 1, code: flaky}"))
    )
    assert set(await outcomes(always, openapi, 10)) == {"fault"}


async def test_probabilistic_stream_fault(start_server: Any, openapi: Validate) -> None:
    srv = await start_server(
        scenarios(fault_scenario("{kind: stream_error, probability: 0.5, message: sometimes}")),
        seed=11,
    )
    results = []
    async with client(srv) as sdk:
        for _ in range(20):
            stream = await sdk.chat.completions.create(
                model="foxora-1", messages=user("break"), stream=True
            )
            try:
                text = "".join(
                    [check_chunk(openapi, c).choices[0].delta.content or "" async for c in stream]
                )
            except openai.APIError as exc:
                assert exc.message == "sometimes"
                results.append("fault")
            else:
                assert text == WORDS
                results.append("ok")
    assert 3 <= results.count("fault") <= 17, results
    await assert_serves(srv, openapi)


# --- scenario-file errors -----------------------------------------------------------------


def line_number(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("fault: {kind: http, message: oops}", "needs a status"),
        ("fault: {message: oops}", "needs a status"),
        ("fault: {kind: stream_error, after_chunks: 1}", "needs a respond block"),
        ("fault: {kind: disconnect}", "needs a respond block"),
        ("fault: {kind: malformed_chunk}", "needs a respond block"),
        ("fault: {kind: no_done}", "needs a respond block"),
        ("fault: {kind: hang, duration: 1s}", "needs a respond block"),
        ("fault: {status: 500, probability: 0.3}", "needs a respond block"),
    ],
)
def test_invalid_fault_names_file_and_line(tmp_path: Path, fault: str, message: str) -> None:
    text = f"""version: 1
scenarios:
  - name: fine
    respond: {{content: ok}}
  - name: broken
    match: {{last_user: break}}
    {fault}
"""
    path = tmp_path / "broken.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(ScenarioError) as caught:
        create_app(Config(scenarios=[path]))
    problems = caught.value.problems
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.file == str(path)
    assert problem.line == line_number(text, "fault:")
    assert message in problem.message
    assert f"{path}:{problem.line}" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("fault: {kind: explode, status: 500}", "kind"),
        ("fault: {status: 200}", "status"),
        ("fault: {status: 500, probability: 1.5}", "probability"),
        ("fault: {status: 500, retry_after: soon}", "retry_after"),
        ("fault: {status: 500, after_chunk: 2}", "after_chunk"),
    ],
)
def test_fault_schema_errors_name_file_and_line(tmp_path: Path, fault: str, needle: str) -> None:
    text = f"""version: 1
scenarios:
  - name: broken
    respond: {{content: ok}}
    {fault}
"""
    path = tmp_path / "schema.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(ScenarioError) as caught:
        create_app(Config(scenarios=[path]))
    problems = caught.value.problems
    assert problems, "expected a problem"
    assert all(p.file == str(path) for p in problems)
    assert any(p.line == line_number(text, "fault:") for p in problems), problems
    assert needle in str(caught.value)
