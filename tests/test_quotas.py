"""Quotas: ``rate_limit`` per scenario, per file (``defaults``) and server-wide (``--rate-limit``).

Every test that counts runs against both state stores (``state_url``: memory and a real Redis).
Tests that never wait use real minutes (``time_scale=1``), so a slow machine cannot slide the
window under them; tests that wait for the window use a scaled one of a second or two.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from foxmock.testing import MockServer
from tests.support import ROOT, _validator, run_cli, validate_schema, write_scenarios

MODEL = "foxora-1"
REAL_MINUTES = 1.0  # time_scale: a 60 s window, which no test outlasts
SCALE = 0.03  # time_scale: a 1.8 s window, for the tests that wait for it to slide
WINDOW = 60.0 * SCALE
SLACK = 0.2  # seconds of scheduling noise allowed on a busy machine

LIMITED = """
version: 1
scenarios:
  - name: limited
    match: {last_user: {contains: hi}}
    rate_limit: {requests_per_minute: 3}
    respond: {content: "hello there"}
"""


@pytest.fixture(autouse=True)
def _spec_parsed() -> None:
    """Parse OpenAI's spec before the test: parsed lazily it takes seconds, longer than a
    scaled window."""
    _validator("CreateChatCompletionResponse")
    _validator("ErrorResponse")


@contextmanager
def mock(
    state_url: str | None,
    yaml: str | None = None,
    paths: tuple[Path, ...] = (),
    time_scale: float = REAL_MINUTES,
    **options: Any,
) -> Iterator[MockServer]:
    with MockServer(list(paths), yaml=yaml, state=state_url, time_scale=time_scale, **options) as s:
        yield s


def sdk(server: MockServer, key: str = "sk-one", **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key=key, **options)


def ask(client: openai.OpenAI, text: str = "hi", **kwargs: Any) -> Any:
    """A raw chat completion (``.headers``, ``.parse()``); raises the SDK's error on a 4xx."""
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


def refused(client: openai.OpenAI, text: str = "hi", **kwargs: Any) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, text, **kwargs)
    return caught.value


def remaining(raw: Any, what: str = "requests") -> int:
    return int(raw.headers[f"x-ratelimit-remaining-{what}"])


def admin(server: MockServer, method: str = "GET", path: str = "/_foxmock/state") -> Any:
    request = urllib.request.Request(server.url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def quota_entries(server: MockServer) -> list[dict[str, Any]]:
    return [e for e in admin(server)["entries"] if e["kind"] == "quota"]


def assert_refusal(exc: openai.RateLimitError, kind: str) -> None:
    """A 429 in OpenAI's envelope, worded and typed as the API does."""
    assert exc.status_code == 429
    validate_schema("ErrorResponse", exc.response.json())
    error = exc.response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == kind
    assert error["param"] is None
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    assert error["message"].startswith(f"Rate limit reached for {unit}"), error["message"]


def retry_after_s(exc: openai.RateLimitError) -> float:
    headers = exc.response.headers
    ms = int(headers["retry-after-ms"])
    assert int(headers["retry-after"]) == max(-(-ms // 1000), 1)  # whole seconds, rounded up
    return ms / 1000


# 1. requests per minute


def test_rpm_counts_down_then_refuses_the_fourth_with_the_true_retry_after(
    state_url: str | None,
) -> None:
    with mock(state_url, LIMITED, time_scale=SCALE) as server:
        client = sdk(server)
        sent_first = time.time()
        first = ask(client)
        got_first = time.time()
        validate_schema("CreateChatCompletionResponse", json.loads(first.http_response.text))
        counts = [remaining(first)] + [remaining(ask(client)) for _ in range(2)]
        assert counts == [2, 1, 0]
        assert first.headers["x-ratelimit-limit-requests"] == "3"
        assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms", first.headers["x-ratelimit-reset-requests"])
        assert "x-ratelimit-limit-tokens" not in first.headers  # only the trio configured

        sent_fourth = time.time()
        exc = refused(client)
        got_fourth = time.time()
        assert_refusal(exc, "requests")
        wait = retry_after_s(exc)
        # the first request leaves the window WINDOW after the server counted it
        earliest = sent_first + WINDOW - got_fourth
        latest = got_first + WINDOW - sent_fourth
        assert earliest * 0.5 - SLACK <= wait <= latest * 1.5 + SLACK, (earliest, wait, latest)
        assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert exc.response.headers["x-ratelimit-limit-requests"] == "3"
        assert "Please try again in" in exc.response.json()["error"]["message"]

        time.sleep(wait + 0.05)
        after = ask(client)  # the window slid: the first request left it
        assert after.status_code == 200
        assert 0 <= remaining(after) <= 2
        statuses = [e.status for e in server.journal]
        assert statuses == [200, 200, 200, 429, 200]
        assert [e.scenario for e in server.journal] == ["limited"] * 5


def test_concurrent_requests_never_exceed_the_quota(state_url: str | None) -> None:
    with mock(state_url, LIMITED) as server:
        client = sdk(server)

        def one(_: int) -> int:
            try:
                return int(ask(client).status_code)
            except openai.RateLimitError as exc:
                return int(exc.status_code)

        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(one, range(10)))
        assert statuses == [200] * 3 + [429] * 7


# 2. tokens per minute


def _usage_of(text: str, content: str) -> tuple[int, int]:
    """(prompt, completion) tokens foxmock counts for one exchange, from a quota-free server."""
    yaml = f"""
version: 1
scenarios:
  - name: free
    respond: {{content: {json.dumps(content)}}}
"""
    with MockServer(yaml=yaml) as probe:
        usage = ask(sdk(probe), text).parse().usage
    return usage.prompt_tokens, usage.completion_tokens


def test_tpm_counts_total_tokens_and_admits_what_fits(state_url: str | None) -> None:
    content = "one two three four five six seven eight nine ten eleven twelve"
    prompt, completion = _usage_of("hi", content)
    total = prompt + completion
    assert completion >= 2
    # two exchanges leave prompt + 1: the third prompt fits (its answer overdraws the
    # quota to 0), and the fourth does not
    tpm = 2 * total + prompt + 1
    yaml = f"""
version: 1
scenarios:
  - name: tokens
    rate_limit: {{tokens_per_minute: {tpm}}}
    respond: {{content: {json.dumps(content)}}}
"""
    with mock(state_url, yaml) as server:
        client = sdk(server)
        left = tpm
        for _ in range(2):
            raw = ask(client)
            usage = raw.parse().usage
            assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens == total
            assert remaining(raw, "tokens") == left - usage.total_tokens
            left -= usage.total_tokens
            assert raw.headers["x-ratelimit-limit-tokens"] == str(tpm)
            assert "x-ratelimit-limit-requests" not in raw.headers
        assert left == prompt + 1
        third = ask(client)  # its prompt fits in what is left
        assert remaining(third, "tokens") == 0

        exc = refused(client)
        assert_refusal(exc, "tokens")
        wait = retry_after_s(exc)
        assert 0.5 * 60 <= wait <= 60.0  # the first exchange's tokens leave in about a minute
        assert exc.response.headers["x-ratelimit-remaining-tokens"] == "0"
        entries = quota_entries(server)
        assert [(e["name"], e["requests"], e["tokens"]) for e in entries] == [
            ("tokens", 3, 3 * total)
        ]


def test_prompt_larger_than_the_whole_quota_can_never_fit(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: tiny
    rate_limit: {tokens_per_minute: 50}
    respond: {content: "ok"}
"""
    with mock(state_url, yaml) as server:
        client = sdk(server)
        assert remaining(ask(client, "short"), "tokens") < 50
        exc = refused(client, " ".join(["word"] * 200))
        assert_refusal(exc, "tokens")
        assert "can never fit" in exc.response.json()["error"]["message"]
        assert "retry-after" not in exc.response.headers
        assert "retry-after-ms" not in exc.response.headers
        assert exc.response.headers["x-ratelimit-limit-tokens"] == "50"
        # the refusal spent nothing: a small request still fits
        assert ask(client, "short").status_code == 200


def test_remaining_tokens_follow_a_recorded_usage(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: recorded
    rate_limit: {tokens_per_minute: 1000}
    respond: {content: "x", usage: {prompt_tokens: 1, completion_tokens: 1}}
"""
    with mock(state_url, yaml) as server:
        raw = ask(sdk(server), "a prompt of quite a few more words than one token")
        assert raw.parse().usage.total_tokens == 2
        assert remaining(raw, "tokens") == 1000 - 2


# 3. scope


def test_each_api_key_has_its_own_counter(state_url: str | None) -> None:
    with mock(state_url, LIMITED) as server:
        one, two = sdk(server, "sk-one"), sdk(server, "sk-two")
        assert [remaining(ask(one)) for _ in range(3)] == [2, 1, 0]
        assert_refusal(refused(one), "requests")
        assert remaining(ask(two)) == 2  # another key, another counter
        scopes = {e["scope"]: e["requests"] for e in quota_entries(server)}
        assert sorted(scopes.values()) == [1, 3]
        assert not any("sk-one" in s or "sk-two" in s for s in scopes)  # keys are hashed


def test_header_scope_counts_per_header_value(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: per-team
    rate_limit: {requests_per_minute: 2, scope: {header: x-team}}
    respond: {content: "ok"}
"""
    with mock(state_url, yaml) as server:
        red = sdk(server, "sk-one", default_headers={"X-Team": "red"})
        red_other_key = sdk(server, "sk-two", default_headers={"x-team": "red"})
        blue = sdk(server, "sk-one", default_headers={"x-team": "blue"})
        assert remaining(ask(red)) == 1
        assert remaining(ask(red_other_key)) == 0  # the key does not matter, the team does
        assert_refusal(refused(red), "requests")
        assert remaining(ask(blue)) == 1
        shown = {e["scope"]: e["requests"] for e in quota_entries(server)}
        assert shown == {"red": 2, "blue": 1}


def test_body_scope_counts_per_dotted_value(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: per-session
    rate_limit: {requests_per_minute: 1, scope: {body: metadata.session}}
    respond: {content: "ok"}
"""
    with mock(state_url, yaml) as server:
        client = sdk(server)

        def session(name: str) -> dict[str, Any]:
            return {"metadata": {"session": name}, "store": True}

        assert remaining(ask(client, **session("s1"))) == 0
        assert_refusal(refused(client, **session("s1")), "requests")
        assert remaining(ask(client, **session("s2"))) == 0
        shown = {e["scope"]: e["requests"] for e in quota_entries(server)}
        assert shown == {"s1": 1, "s2": 1}


# 4. file defaults and the server-wide quota

FILE_DEFAULTS = """
version: 1
defaults:
  rate_limit: {requests_per_minute: 3}
scenarios:
  - name: alpha
    match: {last_user: {contains: alpha}}
    respond: {content: "A"}
  - name: beta
    match: {last_user: {contains: beta}}
    respond: {content: "B"}
  - name: own
    match: {last_user: {contains: own}}
    rate_limit: {requests_per_minute: 1}
    respond: {content: "C"}
"""


def test_file_defaults_share_one_bucket_and_a_scenarios_own_quota_overrides(
    state_url: str | None, tmp_path: Path
) -> None:
    path = write_scenarios(tmp_path, FILE_DEFAULTS)
    with mock(state_url, paths=(path,)) as server:
        client = sdk(server)
        assert remaining(ask(client, "alpha")) == 2
        assert remaining(ask(client, "beta")) == 1
        assert remaining(ask(client, "alpha")) == 0
        assert_refusal(refused(client, "beta"), "requests")  # the file's bucket is full
        own = ask(client, "own")
        assert own.headers["x-ratelimit-limit-requests"] == "1"
        assert remaining(own) == 0
        assert_refusal(refused(client, "own"), "requests")
        names = {e["name"]: e["requests"] for e in quota_entries(server)}
        assert names == {f"file:{path}": 3, "own": 1}


def test_server_wide_quota_shares_one_bucket_for_scenarios_without_their_own(
    state_url: str | None,
) -> None:
    yaml = """
version: 1
scenarios:
  - name: alpha
    match: {last_user: {contains: alpha}}
    respond: {content: "A"}
  - name: beta
    match: {last_user: {contains: beta}}
    respond: {content: "B"}
  - name: own
    match: {last_user: {contains: own}}
    rate_limit: {requests_per_minute: 5}
    respond: {content: "C"}
"""
    with mock(state_url, yaml, rate_limit="rpm=3,tpm=100000") as server:
        client = sdk(server)
        first = ask(client, "alpha")
        assert first.headers["x-ratelimit-limit-requests"] == "3"
        assert first.headers["x-ratelimit-limit-tokens"] == "100000"
        assert remaining(first) == 2
        assert remaining(ask(client, "beta")) == 1
        assert remaining(ask(client, "alpha")) == 0
        exc = refused(client, "beta")
        assert_refusal(exc, "requests")
        own = ask(client, "own")  # its own quota, not the server's
        assert own.headers["x-ratelimit-limit-requests"] == "5"
        assert remaining(own) == 4
        assert "x-ratelimit-limit-tokens" not in own.headers
        assert remaining(ask(sdk(server, "sk-two"), "alpha")) == 2  # api_key scope by default
        state = admin(server)
        assert state["rate_limit"] == {
            "requests_per_minute": 3,
            "tokens_per_minute": 100000,
            "scope": "api_key",
        }
        names = sorted((e["name"], e["requests"]) for e in quota_entries(server))
        assert names == [("own", 1), ("server", 1), ("server", 3)]


def test_no_quota_means_no_headers_and_null_rate_limit(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: free
    respond: {content: "ok"}
"""
    with mock(state_url, yaml) as server:
        raw = ask(sdk(server))
        assert not [h for h in raw.headers if h.startswith("x-ratelimit")]
        assert admin(server)["rate_limit"] is None


@pytest.mark.parametrize(("time_scale", "window"), [(0, 60.0), (6, 360.0)])
def test_window_is_a_minute_times_the_time_scale(
    state_url: str | None, time_scale: float, window: float
) -> None:
    yaml = LIMITED.replace("requests_per_minute: 3", "requests_per_minute: 1")
    with mock(state_url, yaml, time_scale=time_scale) as server:
        client = sdk(server)
        first = ask(client)
        minutes, seconds = divmod(window, 60)
        assert first.headers["x-ratelimit-reset-requests"] == f"{minutes:.0f}m{seconds:.0f}s"
        exc = refused(client)
        wait = retry_after_s(exc)
        assert window - 10 <= wait <= window  # time_scale 0 keeps real minutes


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.9996, "1s"), (59.9996, "1m0s"), (119.9996, "2m0s")]
)
def test_reset_durations_just_under_a_unit(seconds: float, shown: str) -> None:
    from foxmock.stateful import duration_text

    assert duration_text(seconds) == shown


def test_unanswered_requests_do_not_count(state_url: str | None) -> None:
    with mock(state_url, LIMITED, rate_limit="rpm=3") as server:
        client = sdk(server)
        for _ in range(4):
            with pytest.raises(openai.NotFoundError):
                ask(client, "no match, zzz")
        assert remaining(ask(client)) == 2


# 5. the SDK rides through a 429 on its own


def test_openai_sdk_waits_retry_after_ms_and_succeeds(state_url: str | None) -> None:
    with mock(state_url, LIMITED, time_scale=SCALE) as server:
        client = sdk(server, max_retries=2)
        first_sent = time.time()
        for _ in range(3):
            ask(client)
        started = time.time()
        raw = ask(client)  # refused once, then retried by the SDK after retry-after-ms
        took = time.time() - started
        assert raw.status_code == 200
        assert 0 <= remaining(raw) <= 2
        must_wait = first_sent + WINDOW - started
        assert took >= must_wait - SLACK, (took, must_wait)
        assert took <= WINDOW * 1.5 + 2 * SLACK + 1.0
        statuses = [e.status for e in server.journal]
        assert statuses == [200, 200, 200, 429, 200]


# 6. streaming


def test_streamed_answers_carry_the_headers_and_count(state_url: str | None) -> None:
    yaml = """
version: 1
scenarios:
  - name: streamed
    rate_limit: {requests_per_minute: 2, tokens_per_minute: 10000}
    respond: {content: "a streamed answer of a few words"}
"""
    with mock(state_url, yaml) as server:
        client = sdk(server)
        left = 10000
        for expected in (1, 0):
            raw = ask(client, stream=True, stream_options={"include_usage": True})
            assert remaining(raw) == expected
            chunks = list(raw.parse())
            usage = chunks[-1].usage
            assert usage is not None
            assert remaining(raw, "tokens") == left - usage.total_tokens
            left -= usage.total_tokens
        exc = refused(client, stream=True)
        assert_refusal(exc, "requests")
        assert int(exc.response.headers["retry-after-ms"]) > 0
        assert [(e["requests"], e["tokens"]) for e in quota_entries(server)] == [(2, 10000 - left)]


# 7. identical bodies are never replayed from the cache under a quota


@pytest.mark.parametrize("where", ["scenario", "server"])
def test_identical_requests_still_count_down(state_url: str | None, where: str) -> None:
    if where == "scenario":
        yaml, options = LIMITED, {}
    else:
        yaml = LIMITED.replace("    rate_limit: {requests_per_minute: 3}\n", "")
        options = {"rate_limit": "rpm=3"}
    with mock(state_url, yaml, **options) as server:
        client = sdk(server)
        assert [remaining(ask(client)) for _ in range(3)] == [2, 1, 0]
        assert_refusal(refused(client), "requests")
        assert admin(server, path="/_foxmock/status")["replay"]["hits"] == 0
        assert [e.status for e in server.journal] == [200, 200, 200, 429]


# 8. the admin state


def test_admin_state_shows_and_delete_clears_the_window(state_url: str | None) -> None:
    with mock(state_url, LIMITED) as server:
        client = sdk(server)
        for _ in range(3):
            ask(client)
        assert_refusal(refused(client), "requests")
        (entry,) = quota_entries(server)
        assert entry["name"] == "limited"
        assert entry["requests"] == 3
        assert entry["tokens"] == 0
        assert entry["scope"].startswith("sha256:")

        cleared = admin(server, "DELETE")
        assert cleared["cleared"] >= 1
        assert quota_entries(server) == []
        assert remaining(ask(client)) == 2  # back to the limit

        server.reset()  # the testing API clears the windows too
        assert remaining(ask(client)) == 2


# 9. a quota and a sequence together

SEQUENCE = """
version: 1
scenarios:
  - name: steps
    rate_limit: {requests_per_minute: 2}
    sequence:
      - respond: {content: "step 1"}
      - respond: {content: "step 2"}
      - respond: {content: "step 3"}
"""


def test_a_refused_request_does_not_use_a_sequence_step(state_url: str | None) -> None:
    with mock(state_url, SEQUENCE, time_scale=SCALE) as server:
        client = sdk(server)

        def content(raw: Any) -> str:
            return str(raw.parse().choices[0].message.content)

        assert content(ask(client)) == "step 1"
        assert content(ask(client)) == "step 2"
        exc = refused(client)
        assert_refusal(exc, "requests")
        time.sleep(retry_after_s(exc) + 0.05)
        assert content(ask(client)) == "step 3"  # the refused request did not take step 3
        steps = [(e.status, e.step) for e in server.journal]
        assert steps[:2] == [(200, 1), (200, 2)]
        assert steps[2][0] == 429 and steps[2][1] is None
        assert steps[3] == (200, 3)
        (sequence,) = [e for e in admin(server)["entries"] if e["kind"] == "sequence"]
        assert sequence["count"] == 3


# 10. the command line


@pytest.mark.parametrize(
    "spec",
    ["rpm=x", "rpm=0", "tpm=-5", "rpm", "bogus=3", "scope=server", "rpm=3,scope=nowhere"],
)
def test_serve_refuses_a_bad_rate_limit(spec: str) -> None:
    try:
        result = run_cli("serve", "--port", "0", "--rate-limit", spec, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"foxmock serve --rate-limit {spec!r} started instead of exiting 2")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "rate" in (result.stdout + result.stderr).lower() or "scope" in result.stderr


def test_serve_applies_a_rate_limit_from_the_command_line(tmp_path: Path) -> None:
    path = write_scenarios(tmp_path, "version: 1\nscenarios:\n  - name: any\n    respond: {}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "foxmock", "serve", "--port", "0", "--scenarios", str(path),
         "--rate-limit", "rpm=2,scope=server", "--time-scale", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base_url = None
        for line in process.stdout:
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                base_url = found.group(1)
                break
        assert base_url is not None, "foxmock did not start"
        one = openai.OpenAI(base_url=base_url, api_key="sk-one", max_retries=0)
        two = openai.OpenAI(base_url=base_url, api_key="sk-two", max_retries=0)
        assert remaining(ask(one)) == 1
        assert remaining(ask(two)) == 0  # scope=server: one counter for every key
        assert_refusal(refused(one), "requests")
    finally:
        process.terminate()
        process.wait(10)


BAD_RATE_LIMITS = [
    "{}",
    "{requests_per_minute: 0}",
    "{tokens_per_minute: 0}",
    "{requests_per_minute: three}",
    "{scope: server}",
    "{requests_per_minute: 3, burst: 2}",
]


def test_validate_reports_every_bad_rate_limit(tmp_path: Path) -> None:
    paths = []
    for i, rate_limit in enumerate(BAD_RATE_LIMITS):
        in_scenario = (
            "version: 1\nscenarios:\n  - name: bad\n"
            f"    rate_limit: {rate_limit}\n    respond: {{}}\n"
        )
        in_defaults = (
            f"version: 1\ndefaults:\n  rate_limit: {rate_limit}\n"
            "scenarios:\n  - name: fine\n    respond: {}\n"
        )
        paths.append((write_scenarios(tmp_path, in_scenario, f"s{i}.yaml"), "scenarios[0]", 4))
        paths.append((write_scenarios(tmp_path, in_defaults, f"d{i}.yaml"), "defaults", 3))
    result = run_cli("validate", *(p for p, _, _ in paths), timeout=30)
    assert result.returncode == 1, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    for path, key, line in paths:
        assert re.search(
            rf"{re.escape(str(path))}:{line}: \[{re.escape(key)}\.rate_limit", output
        ), (
            path.read_text(),
            output,
        )


def test_validate_accepts_good_rate_limits(tmp_path: Path) -> None:
    path = write_scenarios(
        tmp_path,
        """
version: 1
defaults:
  rate_limit: {requests_per_minute: 10, scope: server}
scenarios:
  - name: a
    rate_limit: {requests_per_minute: 3, tokens_per_minute: 1000, scope: {header: x-team}}
    respond: {}
  - name: b
    rate_limit: {tokens_per_minute: 5, scope: {body: metadata.user}}
    respond: {}
  - name: c
    respond: {}
""",
    )
    result = run_cli("validate", path, timeout=30)
    assert result.returncode == 0, (result.stdout, result.stderr)
