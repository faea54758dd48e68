"""The pytest plugin, exercised the way users meet it: generated test suites run by pytest.

Every run is a fresh ``python -m pytest`` subprocess (``pytester.runpytest_subprocess``), so the
plugin loads through its real ``pytest11`` entry point, next to pytest-aiohttp and pytest-xdist.
"""

from __future__ import annotations

import re

import pytest

from tests.pytester_support import _hermetic_environment, run  # noqa: F401

pytest_plugins = ["pytester"]

SOLID_START = "SOLID is a set of five object-oriented design principles"
ENV_KEYS = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FOXORA_BASE_URL", "FOXORA_API_KEY")

HEADER = """\
import os
import time

import openai
import pytest

SOLID = "Summarise SOLID in one paragraph."


def ask(text="who are you?", **kwargs):
    client = openai.OpenAI(max_retries=0)
    reply = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": text}], **kwargs
    )
    return reply.choices[0].message.content
"""


def scenario_yaml(name: str, content: str, match: str = "{}") -> str:
    return (
        "version: 1\n"
        "scenarios:\n"
        f"  - name: {name}\n"
        f"    match: {match}\n"
        f"    respond: {{content: {content!r}}}\n"
    ).replace("'", '"')


NARROW = scenario_yaml("greeting", "hi!", "{last_user: {contains: hello}}")


def module(body: str) -> str:
    return HEADER + "\n\n" + body


def printed(result: pytest.RunResult, tag: str) -> dict[str, str]:
    """``{key: value}`` from lines the generated tests printed as ``TAG key: value``."""
    found = {}
    for line in result.outlines:
        match = re.search(rf"\b{tag} (\S+): (.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


# --- (a) sync client, no arguments ----------------------------------------------------------------


def test_sync_client_without_arguments_gets_the_bundled_answer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sync=module(
            f"""
def test_solid(foxmock):
    client = openai.OpenAI()
    reply = client.chat.completions.create(
        model="foxora-1",
        messages=[
            {{"role": "system", "content": "You are a helpful assistant."}},
            {{"role": "user", "content": SOLID}},
        ],
    )
    content = reply.choices[0].message.content
    assert content.startswith({SOLID_START!r})
    assert foxmock.journal.count("solid-summary") == 1
    assert foxmock.journal.last().content == content
    assert foxmock.journal.last().messages[-1] == {{"role": "user", "content": SOLID}}
    assert str(client.base_url).rstrip("/") == foxmock.base_url


def test_journal_is_fresh_for_every_test(foxmock):
    assert foxmock.journal.count() == 0
    assert ask("hello") == "You said: hello"
    foxmock.journal.assert_called("echo", times=1)
    assert foxmock.journal.count("solid-summary") == 0


def test_the_server_is_shared_per_session(foxmock, foxmock_server):
    assert foxmock is foxmock_server
"""
        )
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)


# --- (b) async clients ----------------------------------------------------------------------------


def test_async_client_with_foxmock_and_foxmock_async(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_async=module(
            f"""
import asyncio


async def solid(client):
    reply = await client.chat.completions.create(
        model="foxora-1", messages=[{{"role": "user", "content": SOLID}}]
    )
    return reply.choices[0].message.content


async def streamed(client, text):
    stream = await client.chat.completions.create(
        model="foxora-1", messages=[{{"role": "user", "content": text}}], stream=True
    )
    parts = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


async def test_session_server_from_an_async_test(foxmock):
    async with openai.AsyncOpenAI() as client:
        assert (await solid(client)).startswith({SOLID_START!r})
        assert await streamed(client, "hi there") == "You said: hi there"
    assert foxmock.journal.count("solid-summary") == 1
    assert foxmock.journal.last().stream is True


async def test_server_on_the_test_loop(foxmock_async):
    assert foxmock_async.port > 0
    assert os.environ["OPENAI_BASE_URL"] == foxmock_async.base_url
    async with openai.AsyncOpenAI() as client:
        answers = await asyncio.gather(*(solid(client) for _ in range(5)))
        assert all(a.startswith({SOLID_START!r}) for a in answers)
        assert await streamed(client, "yo") == "You said: yo"
    foxmock_async.journal.assert_called("solid-summary", times=5)
    assert foxmock_async.journal.last().content == "You said: yo"


@pytest.mark.foxmock(yaml={scenario_yaml("loop-custom", "from the loop server")!r})
async def test_marker_applies_to_foxmock_async(foxmock_async):
    async with openai.AsyncOpenAI() as client:
        assert await solid(client) == "from the loop server"
    assert [s.name for s in foxmock_async.state.scenarios.scenarios] == ["loop-custom"]


async def test_each_foxmock_async_is_a_new_server(foxmock_async):
    assert foxmock_async.journal.count() == 0
    assert len(foxmock_async.state.scenarios) == 8  # the bundled scenarios
"""
        )
    )
    result = run(pytester)
    result.assert_outcomes(passed=4)


# --- (c) markers replace the served set for one test ----------------------------------------------


def test_markers_replace_scenarios_for_one_test_only(pytester: pytest.Pytester) -> None:
    custom_file = scenario_yaml("from-file", "answer from a file next to the test")
    pytester.makefile(".yaml", **{"suite/data/custom": custom_file})
    pytester.makepyfile(
        **{
            "suite/test_markers": module(
                f"""
CUSTOM = {scenario_yaml("from-yaml", "answer from marker yaml")!r}


@pytest.mark.foxmock(yaml=CUSTOM)
def test_1_marker_yaml(foxmock):
    assert ask(SOLID) == "answer from marker yaml"
    assert [s.name for s in foxmock.state.scenarios.scenarios] == ["from-yaml"]
    foxmock.journal.assert_called("from-yaml", times=1)


def test_2_defaults_again(foxmock):
    assert ask(SOLID).startswith({SOLID_START!r})
    assert "from-yaml" not in [s.name for s in foxmock.state.scenarios.scenarios]


@pytest.mark.foxmock(scenarios=["data/custom.yaml"])
def test_3_marker_file_relative_to_the_test_file(foxmock):
    assert ask(SOLID) == "answer from a file next to the test"
    assert [s.name for s in foxmock.state.scenarios.scenarios] == ["from-file"]


def test_4_defaults_again(foxmock):
    assert ask(SOLID).startswith({SOLID_START!r})
    assert ask("ping") == "You said: ping"


@pytest.mark.foxmock(
    data=[{{"name": "d1", "match": {{"last_user": "one"}}, "respond": {{"content": "1"}}}},
          {{"name": "d2", "respond": {{"content": "anything else"}}}}]
)
def test_5_marker_data(foxmock):
    assert ask("one") == "1"
    assert ask(SOLID) == "anything else"


@pytest.mark.foxmock(scenarios="data/custom.yaml", yaml=CUSTOM)
def test_6_marker_file_and_yaml_together(foxmock):
    names = sorted(s.name for s in foxmock.state.scenarios.scenarios)
    assert names == ["from-file", "from-yaml"]


def test_7_runtime_additions_do_not_leak(foxmock):
    foxmock.add({{"name": "leaky", "respond": {{"content": "leak"}}, "priority": 50}})
    assert ask("x") == "leak"


def test_8_no_leak(foxmock):
    assert ask("x") == "You said: x"


class TestClassMarker:
    pytestmark = pytest.mark.foxmock(yaml=CUSTOM)

    def test_class_level_marker(self, foxmock):
        assert ask("q") == "answer from marker yaml"
"""
            )
        }
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=9)


def test_marker_with_an_unknown_keyword_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad_marker=module(
            """
@pytest.mark.foxmock(scenario="typo.yaml")
def test_bad(foxmock):
    pass
"""
        )
    )
    result = run(pytester)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*@pytest.mark.foxmock takes keyword arguments*"])
    assert "scenario" in result.stdout.str()


# --- (d) strict: unmatched requests fail the test -------------------------------------------------


STRICT_MODULE = module(
    f"""
NARROW = {NARROW!r}


@pytest.mark.foxmock(yaml=NARROW)
def test_code_sends_an_unmatched_request(foxmock):
    client = openai.OpenAI(max_retries=0)
    with pytest.raises(openai.NotFoundError):  # the code under test swallows the error
        client.chat.completions.create(
            model="foxora-1", messages=[{{"role": "user", "content": "goodbye"}}]
        )
"""
)


def test_unmatched_request_fails_the_test_with_the_near_miss_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_strict=STRICT_MODULE)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "No foxmock scenario matched" in out
    assert "matched no foxmock scenario" in out
    assert "greeting" in out
    assert "last_user: expected contains 'hello', got 'goodbye'" in out
    assert "0 of 1 conditions held" in out


def test_unmatched_request_in_an_async_test_with_foxmock_async(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_strict_async=module(
            f"""
@pytest.mark.foxmock(yaml={NARROW!r})
async def test_unmatched(foxmock_async):
    async with openai.AsyncOpenAI(max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="foxora-1", messages=[{{"role": "user", "content": "goodbye"}}]
            )
"""
        )
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*No foxmock scenario matched*", "*greeting*"])


def test_strict_false_marker_lets_it_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lenient=STRICT_MODULE.replace(
            "@pytest.mark.foxmock(yaml=NARROW)", "@pytest.mark.foxmock(yaml=NARROW, strict=False)"
        )
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_no_strict_option_lets_it_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_strict=STRICT_MODULE)
    result = run(pytester, "--foxmock-no-strict")
    result.assert_outcomes(passed=1)


def test_strict_ini_false_lets_it_pass(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfoxmock_strict = false\n")
    pytester.makepyfile(test_strict=STRICT_MODULE)
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_strict_option_beats_a_lenient_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lenient=STRICT_MODULE.replace(
            "@pytest.mark.foxmock(yaml=NARROW)", "@pytest.mark.foxmock(yaml=NARROW, strict=False)"
        )
    )
    result = run(pytester, "--foxmock-strict")
    result.assert_outcomes(failed=1)
    assert "No foxmock scenario matched" in result.stdout.str()


def test_a_failing_test_is_not_masked_by_the_strict_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_own_failure=module(
            f"""
@pytest.mark.foxmock(yaml={NARROW!r})
def test_fails_on_its_own(foxmock):
    with pytest.raises(openai.NotFoundError):
        ask("goodbye")
    assert 1 == 2, "the test's own assertion"
"""
        )
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert "the test's own assertion" in result.stdout.str()


# --- (e) expect_used ------------------------------------------------------------------------------


def test_expect_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_expect=module(
            """
@pytest.mark.foxmock(expect_used=["solid-summary"])
def test_never_uses_it(foxmock):
    assert ask("hello") == "You said: hello"


@pytest.mark.foxmock(expect_used=["solid-summary"])
def test_uses_it(foxmock):
    assert ask(SOLID).startswith("SOLID")
"""
        )
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected scenario(s) never used: solid-summary*",
            "FAILED *test_never_uses_it*",
        ]
    )
    result.stdout.fnmatch_lines(["PASSED *test_uses_it*"])


def test_expect_used_true_means_every_scenario(pytester: pytest.Pytester) -> None:
    two = (
        "version: 1\nscenarios:\n"
        "  - name: first\n    match: {last_user: one}\n    respond: {content: '1'}\n"
        "  - name: second\n    match: {last_user: two}\n    respond: {content: '2'}\n"
    )
    pytester.makepyfile(
        test_expect_all=module(
            f"""
@pytest.mark.foxmock(yaml={two!r}, expect_used=True)
def test_uses_one_of_two(foxmock):
    assert ask("one") == "1"


@pytest.mark.foxmock(yaml={two!r}, expect_used=True)
def test_uses_both(foxmock):
    assert ask("one") == "1"
    assert ask("two") == "2"
"""
        )
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*expected scenario(s) never used: second*"])
    result.stdout.fnmatch_lines(["FAILED *test_uses_one_of_two*"])


# --- (f) precedence: command line > marker > foxmock_config fixture > ini -------------------------


PRECEDENCE_MODULE = module(
    f"""
MARKER = {scenario_yaml("from-marker", "from marker")!r}


@pytest.mark.foxmock(yaml=MARKER)
def test_marked(foxmock):
    print("ANSWER marked:", ask())


def test_unmarked(foxmock):
    print("ANSWER unmarked:", ask())
"""
)

CONFTEST_FIXTURE = f"""
import pytest


@pytest.fixture
def foxmock_config():
    return {{"yaml": {scenario_yaml("from-fixture", "from fixture")!r}}}
"""


@pytest.mark.parametrize(
    ("ini", "fixture", "cli", "marked", "unmarked"),
    [
        pytest.param(False, False, False, "from marker", "You said: who are you?", id="none"),
        pytest.param(True, False, False, "from marker", "from ini", id="ini"),
        pytest.param(True, True, False, "from marker", "from fixture", id="ini+fixture"),
        pytest.param(False, True, False, "from marker", "from fixture", id="fixture"),
        pytest.param(True, True, True, "from cli", "from cli", id="ini+fixture+cli"),
        pytest.param(False, False, True, "from cli", "from cli", id="cli"),
    ],
)
def test_scenario_precedence(
    pytester: pytest.Pytester, ini: bool, fixture: bool, cli: bool, marked: str, unmarked: str
) -> None:
    pytester.makefile(".yaml", **{"conf/ini": scenario_yaml("from-ini", "from ini")})
    pytester.makefile(".yaml", **{"conf/cli": scenario_yaml("from-cli", "from cli")})
    if ini:
        pytester.makeini("[pytest]\nfoxmock_scenarios = conf/ini.yaml\n")
    if fixture:
        pytester.makeconftest(CONFTEST_FIXTURE)
    pytester.makepyfile(test_precedence=PRECEDENCE_MODULE)
    args = ["-s"] + (["--foxmock-scenarios", "conf/cli.yaml"] if cli else [])
    result = run(pytester, *args)
    result.assert_outcomes(passed=2)
    assert printed(result, "ANSWER") == {"marked": marked, "unmarked": unmarked}


def test_ini_scenarios_are_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"conf/ini": scenario_yaml("from-ini", "from ini")})
    pytester.makeini("[pytest]\nfoxmock_scenarios = conf/ini.yaml\n")
    pytester.makepyfile(
        **{
            "deep/down/test_ini": module(
                """
def test_ini(foxmock):
    assert ask() == "from ini"


async def test_ini_async(foxmock_async):
    async with openai.AsyncOpenAI() as client:
        reply = await client.chat.completions.create(
            model="foxora-1", messages=[{"role": "user", "content": "x"}]
        )
    assert reply.choices[0].message.content == "from ini"
"""
            )
        }
    )
    result = run(pytester, "deep")
    result.assert_outcomes(passed=2)


SLOW = (
    "version: 1\nscenarios:\n  - name: slow\n    latency: {ttft: 1s}\n"
    "    respond: {content: finally}\n"
)
SLOW_MODULE = module(
    f"""
SLOW = {SLOW!r}


@pytest.mark.foxmock(yaml=SLOW)
def test_slow(foxmock):
    started = time.perf_counter()
    assert ask() == "finally"
    print(f"ELAPSED slow: {{time.perf_counter() - started:.3f}}")


@pytest.mark.foxmock(yaml=SLOW, time_scale=0)
def test_marker_scale(foxmock):
    started = time.perf_counter()
    assert ask() == "finally"
    print(f"ELAPSED marker: {{time.perf_counter() - started:.3f}}")
"""
)


@pytest.mark.parametrize(
    ("ini_scale", "cli_scale", "fast"),
    [
        pytest.param(None, None, False, id="default"),
        pytest.param(None, "0", True, id="cli-0"),
        pytest.param("0", None, True, id="ini-0"),
        pytest.param("0", "1", False, id="cli-1-beats-ini-0"),
    ],
)
def test_time_scale(
    pytester: pytest.Pytester, ini_scale: str | None, cli_scale: str | None, fast: bool
) -> None:
    if ini_scale is not None:
        pytester.makeini(f"[pytest]\nfoxmock_time_scale = {ini_scale}\n")
    pytester.makepyfile(test_slow=SLOW_MODULE)
    args = ["-s"] + (["--foxmock-time-scale", cli_scale] if cli_scale is not None else [])
    result = run(pytester, *args)
    result.assert_outcomes(passed=2)
    elapsed = {k: float(v) for k, v in printed(result, "ELAPSED").items()}
    if fast:
        assert elapsed["slow"] < 0.5, elapsed
    else:
        assert elapsed["slow"] >= 0.9, elapsed
    # the marker's time_scale beats the ini option, but not the command line
    if cli_scale == "1":
        assert elapsed["marker"] >= 0.9, elapsed
    else:
        assert elapsed["marker"] < 0.5, elapsed


# --- (g) environment variables are set in the test and restored after -----------------------------


@pytest.mark.parametrize("preset", [True, False], ids=["preset", "unset"])
def test_environment_is_wired_and_restored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, preset: bool
) -> None:
    original = {
        "OPENAI_BASE_URL": "http://original.invalid/v1",
        "OPENAI_API_KEY": "sk-original-openai",
        "FOXORA_BASE_URL": "http://foxora.invalid/v1",
        "FOXORA_API_KEY": "fx-original",
    }
    expected = {k: (original[k] if preset else None) for k in ENV_KEYS}
    if preset:
        for key, value in original.items():
            monkeypatch.setenv(key, value)
    pytester.makepyfile(
        test_env=module(
            f"""
KEYS = {ENV_KEYS!r}
ORIGINAL = {{k: os.environ.get(k) for k in KEYS}}


def test_0_original_values_arrive():
    assert ORIGINAL == {expected!r}


def test_1_inside(foxmock):
    assert os.environ["OPENAI_BASE_URL"] == foxmock.base_url
    assert os.environ["FOXORA_BASE_URL"] == foxmock.base_url
    for prefix in ("OPENAI", "FOXORA"):
        # a key the user already has is kept; otherwise foxmock provides one
        assert os.environ[prefix + "_API_KEY"] == (
            ORIGINAL[prefix + "_API_KEY"] or "foxmock-test-key"
        )
    assert ask("env") == "You said: env"


def test_2_after():
    assert {{k: os.environ.get(k) for k in KEYS}} == ORIGINAL


async def test_3_inside_async(foxmock_async):
    assert os.environ["OPENAI_BASE_URL"] == foxmock_async.base_url
    assert os.environ["FOXORA_BASE_URL"] == foxmock_async.base_url
    assert os.environ["OPENAI_API_KEY"]


def test_4_after_async():
    assert {{k: os.environ.get(k) for k in KEYS}} == ORIGINAL


def test_5_changed_inside_the_test_is_restored_too(foxmock, monkeypatch):
    os.environ["OPENAI_BASE_URL"] = "http://changed.invalid/v1"


def test_6_after():
    assert {{k: os.environ.get(k) for k in KEYS}} == ORIGINAL
"""
        )
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=7)


# --- (h) pytest-xdist: one server per worker ------------------------------------------------------


def test_xdist_workers_each_have_their_own_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_parallel=module(
            """
@pytest.mark.parametrize("i", range(8))
def test_many(foxmock, i):
    for j in range(3):
        assert ask(f"hello {i}-{j}") == f"You said: hello {i}-{j}"
    assert foxmock.journal.count("echo") == 3
    time.sleep(0.05)
    worker = os.environ["PYTEST_XDIST_WORKER"]
    print(f"FOXMOCK {worker}: {foxmock.base_url}")
"""
        )
    )
    result = run(pytester, "-n", "2", "-rA")
    result.assert_outcomes(passed=8)
    pairs = set()
    for line in result.outlines:
        match = re.search(r"FOXMOCK (gw\d+): (http://127\.0\.0\.1:\d+/v1)", line)
        if match:
            pairs.add((match.group(1), match.group(2)))
    workers = {w for w, _ in pairs}
    urls = {u for _, u in pairs}
    assert workers == {"gw0", "gw1"}, result.stdout.str()
    assert len(urls) == 2, pairs  # two distinct servers ...
    assert len(pairs) == 2, pairs  # ... one per worker


# --- discoverability ------------------------------------------------------------------------------


def test_options_and_marker_are_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(
        [
            "*--foxmock-scenarios*",
            "*--foxmock-no-strict*",
            "*--foxmock-time-scale*",
        ]
    )
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.foxmock(*"])
