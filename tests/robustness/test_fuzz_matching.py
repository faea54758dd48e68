"""Property-based fuzzing of ``match`` blocks: compiled by the loader, applied to valid requests.

* Generated match blocks (every documented key, text matchers with regexes and globs, body paths,
  ``all``/``any``/``not`` nesting, sometimes a value of the wrong shape) either fail to load with
  well-formed problems or compile to predicates that return a bool for every valid request;
  ``explain`` agrees with ``test``, the near-miss report builds, and ``ScenarioSet.find`` (which
  uses an index on exact texts) picks the same scenario as trying each one in match order.
* A scenario whose ``last_user`` is an exact text matches a request whose last user message is
  that text, whatever the text; so do the other text operators given the text itself.
* Any regular expression in a match block loads or is refused cleanly (a regression: huge
  repetitions and deep nesting used to escape as OverflowError and RecursionError).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from foxmock import ScenarioError, ScenarioSet, load_scenarios
from foxmock.matching import compile_match
from foxmock.openai.request import ChatRequest
from foxmock.openai.validation import validate_chat_request
from foxmock.scenarios.model import Respond, Scenario
from foxmock.server.handlers import no_match_error
from tests.robustness.test_fuzz import JSON, WORDS, tool_names, valid_requests

# -- strategies -----------------------------------------------------------------------------------

REGEX_BITS = [
    "a",
    "hi",
    "json",
    ".",
    "*",
    "+",
    "?",
    "*?",
    "(",
    ")",
    "(?:",
    "(?P<n>",
    "(?P=n)",
    "(?i)",
    "(?<=a)",
    "[",
    "]",
    "[a-z]",
    "[^ ]",
    "^",
    "$",
    "\\d",
    "\\w+",
    "\\s",
    "\\b",
    "\\",
    "\\1",
    "|",
    "{2}",
    "{1,3}",
    "{,2}",
    "{",
    "}",
    "-",
    "ü",
    "🦊",
]
regexes = st.one_of(
    st.sampled_from(["^hi$", "weather|forecast", "\\d+", "(?i)JSON", "^$", ".*", "("]),
    st.lists(st.sampled_from(REGEX_BITS), max_size=6).map("".join),
    st.text(max_size=6),
)
GLOB_BITS = ["*", "?", "[", "]", "[!", "[a-z]", "!", "\\", "-", "hi", "foxora", "x", "🦊"]
globs = st.one_of(
    st.sampled_from(["foxora-*", "*", "?", "*json*", "[Hh]ello"]),
    st.lists(st.sampled_from(GLOB_BITS), max_size=5).map("".join),
    st.text(max_size=6),
)
match_texts = st.one_of(st.sampled_from(["foxora-1", "gpt-4o", *WORDS]), st.text(max_size=8))


@st.composite
def maybe_broken(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    """Usually a value of ``strategy``; one time in ten, any JSON value instead."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    return draw(strategy)


text_matchers = maybe_broken(
    st.one_of(
        match_texts,
        st.fixed_dictionaries(
            {},
            optional={
                "equals": st.one_of(match_texts, st.lists(match_texts, min_size=1, max_size=3)),
                "contains": match_texts,
                "startswith": match_texts,
                "endswith": match_texts,
                "regex": regexes,
                "glob": globs,
                "ignore_case": st.booleans(),
            },
        ).filter(bool),
    )
)
BODY_PATHS = [
    "model",
    "temperature",
    "stream",
    "n",
    "messages[0].role",
    "messages.-1.content",
    "messages[-1].content[0].text",
    "metadata.user_id",
    "tools[0].function.name",
    "response_format.json_schema.strict",
    "messages[99]",
    "nope.deeper",
    "",
    ".",
    "[0]",
    "a..b",
    "-1",
]
numbers = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True))
value_matchers = maybe_broken(
    st.one_of(
        st.one_of(st.none(), st.booleans(), numbers, match_texts),
        st.lists(match_texts, max_size=2),
        st.fixed_dictionaries(
            {},
            optional={
                "equals": JSON,
                "exists": st.booleans(),
                "gt": numbers,
                "gte": numbers,
                "lt": numbers,
                "lte": numbers,
                "contains": match_texts,
                "startswith": match_texts,
                "endswith": match_texts,
                "regex": regexes,
                "glob": globs,
                "ignore_case": st.booleans(),
            },
        ).filter(bool),
    )
)
LEAF_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "model": text_matchers,
    "any_message": text_matchers,
    "last_message": text_matchers,
    "last_user": text_matchers,
    "system": text_matchers,
    "tools_offered": maybe_broken(
        st.one_of(st.booleans(), st.lists(tool_names, min_size=1, max_size=2))
    ),
    "tool_choice": maybe_broken(
        st.one_of(
            st.sampled_from(["none", "auto", "required", "absent"]),
            st.fixed_dictionaries({"function": tool_names}),
        )
    ),
    "has_tool_result": maybe_broken(st.one_of(st.booleans(), tool_names)),
    "turn": maybe_broken(
        st.one_of(
            st.integers(0, 3),
            st.integers(0, 3).map(float),  # 1.0 is an integer to JSON Schema
            st.fixed_dictionaries(
                {}, optional={"min": st.integers(0, 3), "max": st.integers(0, 3).map(float)}
            ).filter(bool),
        )
    ),
    "stream": maybe_broken(st.booleans()),
    "response_format": maybe_broken(st.sampled_from(["text", "json_object", "json_schema"])),
    "headers": maybe_broken(
        st.dictionaries(
            st.sampled_from(["x-test-case", "X-Fuzz", "authorization", "x-missing"]),
            text_matchers,
            max_size=2,
        )
    ),
    "body": maybe_broken(
        st.dictionaries(
            st.one_of(st.sampled_from(BODY_PATHS), st.text(max_size=6)),
            value_matchers,
            max_size=3,
        )
    ),
}


def match_blocks(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """A ``match`` block over the documented keys, with ``all``/``any``/``not`` up to ``depth``."""
    keys = dict(LEAF_KEYS)
    if depth > 0:
        inner = st.deferred(lambda: match_blocks(depth - 1))
        keys["all"] = maybe_broken(st.lists(inner, min_size=1, max_size=2))
        keys["any"] = maybe_broken(st.lists(inner, min_size=1, max_size=2))
        keys["not"] = maybe_broken(inner)
    return st.dictionaries(st.sampled_from(sorted(keys)), st.none(), max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({key: keys[key] for key in chosen})
    )


header_sets = st.dictionaries(
    st.sampled_from(["X-Test-Case", "x-fuzz", "Authorization"]), match_texts, max_size=2
)

# -- helpers --------------------------------------------------------------------------------------


def assert_problems_name_the_file(error: ScenarioError, path: Path) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.file == str(path), problem
        assert isinstance(problem.line, int) and problem.line >= 1, problem
        assert isinstance(problem.key, str), problem
        assert problem.message.strip(), problem


def write_doc(tmp_path: Path, doc: Any, name: str = "scenarios.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def check_against(loaded: ScenarioSet, req: ChatRequest) -> None:
    """Compiled predicates evaluate cleanly and consistently for ``req``."""
    for scenario in loaded.scenarios:
        held = scenario.match.test(req)
        assert isinstance(held, bool)
        misses = scenario.match.explain(req)
        assert (not misses) == held, (scenario.name, misses)
        assert all(str(miss) for miss in misses)
    expected = next((s for s in loaded.scenarios if s.match.test(req)), None)
    assert loaded.find(req) is expected
    near = loaded.near_misses(req)
    assert all(str(n) for n in near)
    assert no_match_error(loaded, req).message


# -- properties -----------------------------------------------------------------------------------


@given(
    blocks=st.lists(maybe_broken(match_blocks()), min_size=1, max_size=4),
    priorities=st.lists(st.integers(-1, 1), min_size=4, max_size=4),
    requests=st.lists(st.tuples(valid_requests(), header_sets), min_size=1, max_size=3),
)
def test_generated_match_blocks_load_cleanly_and_evaluate_to_bools(
    tmp_path: Path,
    blocks: list[Any],
    priorities: list[int],
    requests: list[tuple[dict[str, Any], dict[str, str]]],
) -> None:
    doc = {
        "version": 1,
        "scenarios": [
            {"name": f"s{i}", "priority": priorities[i], "match": block, "respond": {"content": ""}}
            for i, block in enumerate(blocks)
        ],
    }
    path = write_doc(tmp_path, doc)
    try:
        loaded = load_scenarios([path])
    except ScenarioError as exc:
        assert_problems_name_the_file(exc, path)
        return
    for body, headers in requests:
        validate_chat_request(body)
        check_against(loaded, ChatRequest(body, headers))


def _scenario(name: str, match: dict[str, Any], priority: int = 0) -> Scenario:
    return Scenario(name, compile_match(match), Respond(), None, priority=priority)


def _request(text: str, shape: str, trailing: bool) -> dict[str, Any]:
    if shape == "parts":
        content: Any = [{"type": "text", "text": text}]
    elif shape == "split" and "\n" in text:
        first, rest = text.split("\n", 1)
        content = [{"type": "text", "text": first}, {"type": "text", "text": rest}]
    else:
        content = text
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": content},
    ]
    if trailing:
        messages.append({"role": "assistant", "content": "a later answer"})
    return {"model": "foxora-1", "messages": messages}


DECOYS = [
    ("decoy-prefix", lambda text: {"last_user": "!" + text}, 5),
    ("decoy-suffix", lambda text: {"last_user": text + "!"}, 5),
    ("decoy-model", lambda text: {"last_user": text, "model": "gpt-4o"}, 5),
    ("decoy-any", lambda text: {"any": [{"last_user": text + "?"}]}, 5),
]


@given(
    text=st.text(),
    shape=st.sampled_from(["string", "parts", "split"]),
    trailing=st.booleans(),
)
@example(text="", shape="string", trailing=False)
@example(text="a\nb", shape="split", trailing=True)
@example(text="\x85", shape="string", trailing=False)
def test_exact_last_user_always_matches(
    tmp_path: Path, text: str, shape: str, trailing: bool
) -> None:
    body = _request(text, shape, trailing)
    validate_chat_request(body)
    req = ChatRequest(body)
    assert req.last_user == text
    # built directly: the whole of Unicode
    direct = ScenarioSet(
        [
            *(_scenario(name, make(text), priority) for name, make, priority in DECOYS),
            _scenario("exact", {"last_user": text}),
            _scenario("fallback", {}, priority=-1),
        ]
    )
    assert direct.find(req) is direct.scenarios[len(DECOYS)]
    # through a YAML file and the loader, whenever YAML itself can carry the text
    doc = {
        "version": 1,
        "scenarios": [
            *(
                {"name": n, "priority": p, "match": make(text), "respond": {}}
                for n, make, p in DECOYS
            ),
            {"name": "exact", "match": {"last_user": text}, "respond": {}},
            {"name": "fallback", "priority": -1, "respond": {}},
        ],
    }
    path = write_doc(tmp_path, doc)
    if yaml.safe_load(path.read_text("utf-8")) != doc:
        return  # PyYAML cannot round-trip this text (say, "\x85"); not foxmock's business
    loaded = load_scenarios([path])
    found = loaded.find(req)
    assert found is not None and found.name == "exact"


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@given(text=st.text(), ignore_case=st.booleans(), seed=st.integers(0, 2**16))
@example(text="[!]", ignore_case=False, seed=0)
@example(text="ß", ignore_case=True, seed=0)
def test_every_text_operator_given_the_text_itself_matches(
    text: str, ignore_case: bool, seed: int
) -> None:
    operators = {
        "equals": [text, text + "!"],
        "contains": text,
        "startswith": text,
        "endswith": text,
        "regex": "^" + re.escape(text) + "$",
        "glob": _glob_escape(text),
    }
    chosen = dict(random.Random(seed).sample(sorted(operators.items()), k=3))
    spec = {**chosen, "ignore_case": ignore_case}
    req = ChatRequest(_request(text, "string", False))
    for key in ("last_user", "any_message"):
        predicate = compile_match({key: spec})
        assert predicate.test(req), (key, spec)
        assert predicate.explain(req) == []


@given(pattern=regexes)
@example(pattern="a{4294967295}")  # OverflowError: the repetition number is too large
@example(pattern="(" * 3000 + ")" * 3000)  # RecursionError (from depth ~300 outside Hypothesis)
def test_any_regex_loads_or_is_refused_cleanly(tmp_path: Path, pattern: str) -> None:
    path = write_doc(
        tmp_path,
        {
            "version": 1,
            "scenarios": [{"name": "a", "match": {"last_user": {"regex": pattern}}, "respond": {}}],
        },
    )
    try:
        load_scenarios([path])
    except ScenarioError as exc:
        assert_problems_name_the_file(exc, path)


@pytest.mark.parametrize("where", ["last_user", "body"])
def test_regex_problems_are_reported_per_path(tmp_path: Path, where: str) -> None:
    """Control: an ordinary bad regex is reported with its key, in both places regexes live."""
    match = (
        {"last_user": {"regex": "("}}
        if where == "last_user"
        else {"body": {"model": {"regex": "("}}}
    )
    path = write_doc(
        tmp_path, {"version": 1, "scenarios": [{"name": "a", "match": match, "respond": {}}]}
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([path])
    assert_problems_name_the_file(caught.value, path)
    assert caught.value.problems[0].key.endswith(".regex")
