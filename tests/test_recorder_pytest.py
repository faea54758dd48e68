"""Record and replay through the pytest plugin: generated suites, run by pytest in a subprocess,
recording from a real upstream process and replaying after it is gone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pytester_support import _hermetic_environment, run  # noqa: F401
from tests.recording_support import (
    ACCOUNT,
    ACCOUNT_REGEX,
    FoxmockProcess,
    Processes,
    all_files,
    running_processes,
)

pytest_plugins = ["pytester"]

CAPITAL = "What is the capital of France?"
CAPITAL_ANSWER = "The capital of France is Paris."

HEADER = """\
import openai
import pytest


def ask(text):
    client = openai.OpenAI(max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model="foxora-1", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content
"""


@pytest.fixture
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """Upstream processes for one test, outside the generated project; stopped at the end."""
    yield from running_processes(tmp_path_factory.mktemp("upstreams"))


def snapshot(directory: Path) -> dict[Path, tuple[bytes, int]]:
    """Every file below ``directory`` with its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in all_files(directory)}


def forwarded(upstream: FoxmockProcess) -> list[str]:
    """The last user messages of every request the upstream answered."""
    return [e["body"]["messages"][-1]["content"] for e in upstream.journal()]


def test_record_missing_then_replay_offline(
    pytester: pytest.Pytester, processes: Processes
) -> None:
    upstream = processes.upstream()
    pytester.makepyfile(
        test_app=HEADER
        + f"""

def test_capital(foxmock):
    assert ask({CAPITAL!r}) == {CAPITAL_ANSWER!r}


def test_two_questions(foxmock):
    assert ask("first question") == "Upstream says: first question"
    assert ask("second question") == "Upstream says: second question"
"""
    )
    base = pytester.path / "recordings" / "test_app"

    # 1. record what is missing (everything) from the live upstream
    result = run(
        pytester, "--foxmock-record-mode=record-missing", f"--foxmock-upstream={upstream.base_url}"
    )
    result.assert_outcomes(passed=2)
    capital = sorted((base / "test_capital").glob("*.yaml"))
    two = sorted((base / "test_two_questions").glob("*.yaml"))
    assert len(capital) == 1 and capital[0].name.startswith("what-is-the-capital-of-france-")
    assert [p.name.split("-")[0] for p in two] == ["first", "second"]
    assert sorted(p.parent.name for p in all_files(base)) == [
        "test_capital",
        "test_two_questions",
        "test_two_questions",
    ]
    assert forwarded(upstream) == [CAPITAL, "first question", "second question"]
    recorded = snapshot(base)

    # 2. the upstream is gone: replay passes offline, and so does record-missing (nothing new)
    upstream.stop()
    result = run(pytester, "--foxmock-record-mode=replay")
    result.assert_outcomes(passed=2)
    result = run(
        pytester, "--foxmock-record-mode=record-missing", f"--foxmock-upstream={upstream.base_url}"
    )
    result.assert_outcomes(passed=2)
    assert snapshot(base) == recorded

    # 3. a test that now sends a new request fails in replay, with the near-miss report
    pytester.makepyfile(
        test_app=HEADER
        + f"""

def test_capital(foxmock):
    assert ask({CAPITAL!r}) == {CAPITAL_ANSWER!r}
    assert ask("What is the capital of Italy?") == "Upstream says: What is the capital of Italy?"


def test_two_questions(foxmock):
    assert ask("first question") == "Upstream says: first question"
    assert ask("second question") == "Upstream says: second question"
"""
    )
    result = run(pytester, "--foxmock-record-mode=replay")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "test_app.py::test_capital" in output
    assert "No foxmock scenario matched this request" in output
    assert "What is the capital of Italy?" in output
    assert "Nearest scenarios:" in output
    assert capital[0].stem in output
    assert snapshot(base) == recorded

    # 4. record-missing against a live upstream records only the new request
    upstream = processes.upstream()
    result = run(
        pytester, "--foxmock-record-mode=record-missing", f"--foxmock-upstream={upstream.base_url}"
    )
    result.assert_outcomes(passed=2)
    assert forwarded(upstream) == ["What is the capital of Italy?"]
    now = snapshot(base)
    assert {p: v for p, v in now.items() if p in recorded} == recorded  # old files untouched
    new = sorted(set(now) - set(recorded))
    assert [(p.parent.name, p.name.split("-of-")[0]) for p in new] == [
        ("test_capital", "what-is-the-capital")
    ]
    assert "italy" in new[0].name

    # and the whole suite replays offline again
    upstream.stop()
    result = run(pytester, "--foxmock-record-mode=replay")
    result.assert_outcomes(passed=2)
    assert snapshot(base) == now


def test_ini_options_and_the_marker(pytester: pytest.Pytester, processes: Processes) -> None:
    upstream = processes.upstream()
    pytester.makeini(
        f"""
[pytest]
foxmock_record_mode = record-missing
foxmock_upstream = {upstream.base_url}
foxmock_recordings = recs
foxmock_redact = {ACCOUNT_REGEX}
"""
    )
    question = f"Move 100 EUR from {ACCOUNT} to savings"
    pytester.makepyfile(
        test_ini=HEADER
        + f"""

def test_account(foxmock):
    # live, the answer carries the account number; replayed, it is redacted
    assert ask({question!r}).startswith("Upstream says: Move 100 EUR from ")


@pytest.mark.foxmock(record_mode="replay", strict=False)
def test_marked_replay(foxmock):
    with pytest.raises(openai.NotFoundError) as caught:
        ask("never recorded, never forwarded")
    assert "No foxmock scenario matched" in str(caught.value)


@pytest.mark.foxmock(record_mode="passthrough")
def test_marked_passthrough(foxmock):
    assert ask("passed through") == "Upstream says: passed through"
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)
    base = pytester.path / "recs" / "test_ini"
    files = all_files(base)
    assert [p.parent.name for p in files] == ["test_account"]
    assert files[0].name.startswith("move-100-eur-from-redacted-to-savings-")
    text = files[0].read_text("utf-8")
    assert "[REDACTED]" in text
    assert ACCOUNT not in text and ACCOUNT.removeprefix("ACCT-") not in text
    assert not (pytester.path / "recordings").exists()
    # the marker's replay never forwarded; its passthrough forwarded and wrote nothing
    assert forwarded(upstream) == [question, "passed through"]

    # the command line beats the ini: replay, offline
    upstream.stop()
    result = run(pytester, "--foxmock-record-mode=replay", "-k", "account or marked_replay")
    result.assert_outcomes(passed=2, deselected=1)
    assert all_files(base) == files

    # the ini's record-missing replays the recorded request without the (dead) upstream
    result = run(pytester, "-k", "account")
    result.assert_outcomes(passed=1, deselected=2)
    assert json.dumps(sorted(map(str, all_files(pytester.path / "recs")))) == json.dumps(
        sorted(map(str, files))
    )


def test_streamed_requests_record_and_replay(
    pytester: pytest.Pytester, processes: Processes
) -> None:
    # an upstream that ends each response a moment after [DONE]; the SDK has closed by then
    upstream = processes.lingering_upstream(0.3)
    pytester.makepyfile(
        test_stream=HEADER
        + """

def story(take):
    client = openai.OpenAI(max_retries=0, timeout=30)
    chunks = client.chat.completions.create(
        model="foxora-1",
        messages=[{"role": "user", "content": f"Tell me a story, take {take}"}],
        stream=True,
    )
    return [c.choices[0].delta.content for c in chunks if c.choices]


def test_stories(foxmock):
    for take in range(5):
        deltas = story(take)
        assert "".join(d or "" for d in deltas) == f"Upstream says: Tell me a story, take {take}"
        print("DELTAS", take, deltas)
"""
    )
    result = run(
        pytester,
        "-s",
        "--foxmock-record-mode=record-missing",
        f"--foxmock-upstream={upstream.base_url}",
    )
    result.assert_outcomes(passed=1)
    live = [line for line in result.outlines if line.startswith("DELTAS")]
    files = all_files(pytester.path / "recordings" / "test_stream" / "test_stories")
    assert len(files) == 5, f"{len(files)} of 5 complete streams recorded: {files}"

    upstream.stop()
    result = run(pytester, "-s", "--foxmock-record-mode=replay")
    result.assert_outcomes(passed=1)
    assert [line for line in result.outlines if line.startswith("DELTAS")] == live
