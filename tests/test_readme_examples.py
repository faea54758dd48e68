"""README examples that a reader copies, run as written (extracted from the README itself)."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest
import yaml

from tests.conftest import StartServer

README = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")


def _paragraph(start: str) -> str:
    at = README.index(start)
    return README[at : README.index("\n\n", at)]


def _inline_yaml(paragraph: str) -> list[str]:
    """The ``key: value`` snippets in backticks of a paragraph, unwrapped."""
    return re.findall(r"`(regex: [^`]+)`", paragraph.replace("\n", " "))


def test_the_backslash_advice_holds() -> None:
    doubled, single, wrong = _inline_yaml(_paragraph("In YAML a backslash"))[:3]
    assert yaml.safe_load(doubled) == {"regex": r"^\d+$"}
    assert yaml.safe_load(single) == {"regex": r"^\d+$"}
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(wrong)
    assert yaml.safe_load(r'x: "\bword"') == {"x": "\bword"}  # a backspace, not \b


async def test_a_broad_contains_shadows_and_the_anchored_regex_does_not(
    start_server: StartServer,
) -> None:
    paragraph = _paragraph("So a broad matcher")
    broad = re.search(r"`last_user: (\{contains: PERSON\})`", paragraph)
    anchored = _inline_yaml(paragraph)
    assert broad is not None and anchored
    for matcher, answer in ((broad.group(1), "early"), ("{" + anchored[0] + "}", "later")):
        server = await start_server(
            "version: 1\nscenarios:\n"
            f"  - name: early\n    match: {{last_user: {matcher}}}\n"
            "    respond: {content: early}\n"
            "  - name: later\n    match: {last_user: DSPYPERSON}\n    respond: {content: later}\n"
        )
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
            reply = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "DSPYPERSON"}]
            )
        assert reply.choices[0].message.content == answer, matcher
