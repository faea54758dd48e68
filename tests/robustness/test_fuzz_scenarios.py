"""Property-based fuzzing of scenario files: random YAML, near-valid files, random text and bytes.

* `load_scenarios` returns a `ScenarioSet` or raises `ScenarioError` whose every problem names the
  file, a line (None only for a file that cannot be read at all) and a key; nothing else escapes.
* A file that loads also serves: rendering any of its scenarios for a valid request gives a plan
  or foxmock's `RenderError`, never another exception.
* Regression properties at the end pin down bugs fuzzing found (non-printable characters,
  malformed tagged scalars, a float ``turn``, a non-finite ``retry_after``); the main properties
  cover those inputs too.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st

from foxmock import ScenarioError, ScenarioSet, load_scenarios
from foxmock.answer import RenderError
from foxmock.faults import fault_error
from foxmock.latency import MAX_SECONDS, Delay, Latency
from foxmock.openai.request import ChatRequest
from foxmock.plan import shape
from foxmock.scenarios.model import Fault
from foxmock.templating import RequestContext
from tests.robustness.test_fuzz import mutated, texts, valid_requests
from tests.robustness.test_fuzz_matching import match_blocks
from tests.robustness.test_fuzz_templates import RENDER_LIMIT, RenderTimeout, time_limit

# -- strategies -----------------------------------------------------------------------------------

# what YAML can hold beyond JSON: dates, timestamps, bytes (!!binary), sets, infinities, NaN
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=6),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
            children,
            max_size=4,
        ),
        st.sets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)
TOP_KEYS = ["version", "models", "defaults", "scenarios", "scenario", "extra"]
SCENARIO_KEYS = [
    "name",
    "description",
    "priority",
    "match",
    "respond",
    "fault",
    "stream",
    "latency",
    "responds",
]
DEEP_KEYS = [
    *SCENARIO_KEYS,
    "content",
    "tool_calls",
    "arguments",
    "chunks",
    "finish_reason",
    "usage",
    "headers",
    "kind",
    "status",
    "retry_after",
    "after_chunks",
    "duration",
    "probability",
    "ttft",
    "tokens_per_second",
    "chunk_delay",
    "jitter",
    "by",
    "size",
    "range",
    "normal",
    "lognormal",
    "last_user",
    "turn",
    "regex",
]
random_documents = st.one_of(
    yaml_values,
    st.dictionaries(st.sampled_from(TOP_KEYS), yaml_values, max_size=4),
    st.fixed_dictionaries(
        {"version": st.one_of(st.just(1), yaml_values)},
        optional={
            "scenarios": st.lists(
                st.dictionaries(st.sampled_from(SCENARIO_KEYS), yaml_values, max_size=5),
                max_size=3,
            )
        },
    ),
)

durations = st.one_of(
    st.integers(0, 3),
    st.floats(0, 2),
    st.sampled_from(["250ms", "2s", "1.5s", "1m", " 3 ms ", "0"]),
)
delays = st.one_of(
    durations,
    st.fixed_dictionaries({"range": st.lists(durations, min_size=2, max_size=2)}),
    st.fixed_dictionaries(
        {"normal": st.fixed_dictionaries({"mean": durations, "stddev": durations})}
    ),
    st.fixed_dictionaries(
        {"lognormal": st.fixed_dictionaries({"median": durations, "sigma": st.floats(0, 1)})}
    ),
)
latencies = st.fixed_dictionaries(
    {},
    optional={
        "ttft": delays,
        "tokens_per_second": st.floats(0.5, 100),
        "chunk_delay": delays,
        "jitter": st.one_of(st.floats(0, 1), st.sampled_from(["10%", "0%", "5.5 %"])),
    },
)
streams = st.fixed_dictionaries(
    {},
    optional={"by": st.sampled_from(["tokens", "words", "characters"]), "size": st.integers(1, 4)},
)
template_texts = st.one_of(
    texts,
    st.sampled_from(
        [
            "{{ last_user }}",
            "{{ model }} turn {{ turn }}",
            "{{ tool_result() | json }}",
            "{% for t in tools %}{{ t }} {% endfor %}",
            "{{ request.temperature | default(1) }}",
        ]
    ),
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["get_weather", "{{ tools[0] | default('f') }}", "lookup"])},
        optional={
            "arguments": st.one_of(
                st.dictionaries(st.sampled_from(["city", "q", "n"]), template_texts, max_size=2),
                st.sampled_from(['{"city": "Paris"}', "{}", '{"q": {{ last_user | json }}}']),
            ),
            "id": st.sampled_from(["call_1", "call_{{ turn }}"]),
        },
    ),
    min_size=1,
    max_size=2,
)
responds = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(template_texts, st.none()),
        "tool_calls": tool_calls,
        "finish_reason": st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
        "model": st.sampled_from(["foxora-1", "{{ model }}-echo"]),
        "usage": st.fixed_dictionaries(
            {},
            optional={"prompt_tokens": st.integers(0, 99), "completion_tokens": st.integers(0, 9)},
        ),
        "headers": st.dictionaries(st.sampled_from(["x-a", "x-b"]), template_texts, max_size=2),
    },
)
faults = st.one_of(
    st.fixed_dictionaries(
        {"status": st.integers(400, 599)},
        optional={
            "message": template_texts,
            "type": st.text(max_size=8),
            "code": st.one_of(st.none(), st.text(max_size=8)),
            "param": st.one_of(st.none(), st.text(max_size=8)),
            "retry_after": durations,
            "headers": st.dictionaries(
                st.sampled_from(["x-a"]),
                st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=5),
                max_size=1,
            ),
        },
    ),
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(
                ["stream_error", "disconnect", "malformed_chunk", "no_done", "hang"]
            )
        },
        optional={
            "after_chunks": st.integers(0, 4),
            "duration": durations,
            "probability": st.floats(0, 1),
            "message": template_texts,
        },
    ),
)

matches = st.sampled_from(
    [
        {},
        {"last_user": "hi"},
        {"model": {"glob": "foxora-*"}, "stream": False},
        {"any": [{"stream": True}, {"turn": {"min": 1}}]},
        {"not": {"tools_offered": True}},
        {"body": {"temperature": {"lte": 1}, "metadata.case": {"exists": False}}},
        {"has_tool_result": "get_weather", "tool_choice": "auto"},
        {"headers": {"x-test": {"contains": "1"}}, "response_format": "text"},
    ]
)


@st.composite
def scenarios(draw: st.DrawFn, index: int) -> dict[str, Any]:
    scenario: dict[str, Any] = {"name": f"scenario-{index}"}
    for key, strategy in (
        ("description", st.text(max_size=10)),
        ("priority", st.integers(-2, 2)),
        ("match", matches),
        ("stream", streams),
        ("latency", latencies),
    ):
        if draw(st.booleans()):
            scenario[key] = draw(strategy)
    fault = draw(st.none() | faults)
    if fault is not None:
        scenario["fault"] = fault
    if fault is None or fault.get("kind", "http") != "http" or draw(st.booleans()):
        scenario["respond"] = draw(responds)
    return scenario


@st.composite
def scenario_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A scenario file that follows the documented format (almost always loads)."""
    doc: dict[str, Any] = {"version": 1}
    if draw(st.booleans()):
        doc["models"] = draw(st.lists(st.sampled_from(["foxora-1", "foxora-2", "x"]), max_size=2))
    if draw(st.booleans()):
        doc["defaults"] = draw(st.fixed_dictionaries({}, optional={"latency": latencies}))
    doc["scenarios"] = [draw(scenarios(i)) for i in range(draw(st.integers(1, 3)))]
    return doc


# near-valid: a valid file with a node changed, or with a generated (maybe broken) match block
near_valid_documents = st.one_of(
    mutated(scenario_documents(), yaml_values, DEEP_KEYS),
    st.tuples(scenario_documents(), match_blocks(depth=1)).map(
        lambda pair: {
            **pair[0],
            "scenarios": [{**s, "match": pair[1]} for s in pair[0]["scenarios"]],
        }
    ),
)

YAML_FRAGMENTS = [
    "version: 1\n",
    "scenarios:\n",
    "  - name: a\n",
    "    respond: {content: hi}\n",
    "    match: {last_user: {regex: '('}}\n",
    "- ",
    "  ",
    "\t",
    ": ",
    "---\n",
    "...\n",
    "&a ",
    "*a ",
    "*b ",
    "<<: *a\n",
    "!!binary ",
    "!!timestamp ",
    "!!python/object:os.system ",
    "!!set ",
    "!!omap ",
    "!custom ",
    "? [a, b]\n",
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "|\n",
    ">-\n",
    "#",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "\ufeff",
    "\n",
    "x",
    "1e400",
    ".nan",
    "~",
]
yaml_texts = st.one_of(
    st.text(),
    st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=12).map("".join),
)

# -- helpers --------------------------------------------------------------------------------------


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def load_file(path: Path) -> ScenarioSet | None:
    """The loaded set, or None after checking that every problem is well formed."""
    try:
        loaded = load_scenarios([path])
    except ScenarioError as exc:
        event("refused at load")
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path), problem
            assert isinstance(problem.key, str), problem
            assert problem.message.strip(), problem
            if problem.line is None:  # only a file that cannot be read has no line
                assert problem.key == "" and problem.message.startswith("cannot read"), problem
            else:
                assert isinstance(problem.line, int) and problem.line >= 1, problem
        return None
    event(f"loaded {len(loaded)} scenario(s)")
    return loaded


def serve_each(loaded: ScenarioSet, body: dict[str, Any]) -> None:
    """Render every loaded scenario for ``body``: a plan or a `RenderError`, nothing else."""
    req = ChatRequest(body, {"x-test": "1"})
    for scenario in loaded.scenarios:
        try:
            with time_limit(RENDER_LIMIT):
                shape(scenario, req, RequestContext(req), random.Random(0), Latency(), 1.0)
        except RenderError:
            event("render error")
        except RenderTimeout:
            raise AssertionError(f"rendering {scenario.name} took over {RENDER_LIMIT:g}s") from None


# -- properties -----------------------------------------------------------------------------------


@given(doc=random_documents)
@example(doc={"version": 1, "scenarios": [{"name": b"\x00", "respond": {}}]})
@example(doc={"version": 1, "scenarios": {1: 2}})
@example(doc={"version": dt.date(2001, 1, 1), "scenarios": [None]})
def test_random_yaml_documents_load_or_report_problems(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(dump(doc), "utf-8")
    load_file(path)


@given(doc=near_valid_documents, body=valid_requests())
def test_near_valid_scenario_files_load_or_report_problems_and_serve(
    tmp_path: Path, doc: Any, body: dict[str, Any]
) -> None:
    path = tmp_path / "near_valid.yaml"
    path.write_text(dump(doc), "utf-8")
    loaded = load_file(path)
    if loaded is not None:
        serve_each(loaded, body)


@given(doc=scenario_documents(), body=valid_requests())
def test_documented_format_files_load_and_serve(
    tmp_path: Path, doc: dict[str, Any], body: dict[str, Any]
) -> None:
    """The generator of near-valid files starts from files that really are valid."""
    path = tmp_path / "valid.yaml"
    path.write_text(dump(doc), "utf-8")
    loaded = load_file(path)
    assert loaded is not None, path.read_text()
    serve_each(loaded, body)


@given(text=yaml_texts)
@example(text="version: 1\nscenarios:\n  - name: a\n    respond: {content: hi}\n---\n")
@example(text="a: &a [*a]")
@example(text="\ufeffversion: 1\nscenarios: []\n")
def test_random_text_loads_or_reports_problems(tmp_path: Path, text: str) -> None:
    path = tmp_path / "text.yaml"
    path.write_text(text, "utf-8")
    load_file(path)


@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfeversion: 1")
@example(data="version: 1\nscenarios: []\n".encode("utf-16"))
def test_random_bytes_load_or_report_problems(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    load_file(path)


# -- regressions: bugs fuzzing found -------------------------------------------------------------


@given(text=st.text())
@example(text="\x00")
def test_non_printable_characters_are_problems(tmp_path: Path, text: str) -> None:
    path = tmp_path / "control.yaml"
    path.write_text(text, "utf-8")
    load_file(path)


@given(turn=st.integers(0, 5).map(float))
@example(turn=0.0)
def test_integral_float_turn_loads(tmp_path: Path, turn: float) -> None:
    path = tmp_path / "turn.yaml"
    path.write_text(
        dump({"version": 1, "scenarios": [{"name": "a", "match": {"turn": turn}, "respond": {}}]}),
        "utf-8",
    )
    assert load_file(path) is not None


@given(value=st.sampled_from([math.inf, math.nan]), status=st.sampled_from([429, 503]))
@example(value=math.inf, status=429)
def test_non_finite_retry_after_is_refused_or_served(
    tmp_path: Path, value: float, status: int
) -> None:
    path = tmp_path / "retry.yaml"
    fault = {"status": status, "retry_after": value}
    path.write_text(dump({"version": 1, "scenarios": [{"name": "a", "fault": fault}]}), "utf-8")
    loaded = load_file(path)
    if loaded is not None:
        serve_each(loaded, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})


VALUE = object()  # where the number under test goes
TIMED_FIELDS: dict[str, dict[str, Any]] = {
    "fault.retry_after": {"fault": {"status": 429, "retry_after": VALUE}},
    "fault.duration": {"fault": {"kind": "hang", "duration": VALUE}},
    "fault.probability": {"fault": {"status": 500, "probability": VALUE}},
    "latency.ttft": {"latency": {"ttft": VALUE}},
    "latency.chunk_delay": {"latency": {"chunk_delay": VALUE}},
    "latency.tokens_per_second": {"latency": {"tokens_per_second": VALUE}},
    "latency.jitter": {"latency": {"jitter": VALUE}},
    "latency.ttft.range[1]": {"latency": {"ttft": {"range": [0, VALUE]}}},
    "latency.ttft.normal.mean": {"latency": {"ttft": {"normal": {"mean": VALUE, "stddev": 0}}}},
    "latency.chunk_delay.normal.stddev": {
        "latency": {"chunk_delay": {"normal": {"mean": 0, "stddev": VALUE}}}
    },
    "latency.ttft.lognormal.median": {
        "latency": {"ttft": {"lognormal": {"median": VALUE, "sigma": 1}}}
    },
    "latency.ttft.lognormal.sigma": {
        "latency": {"ttft": {"lognormal": {"median": 1, "sigma": VALUE}}}
    },
}


def _put(template: Any, value: Any) -> Any:
    """``template`` with `VALUE` replaced by ``value``."""
    if template is VALUE:
        return value
    if isinstance(template, dict):
        return {k: _put(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_put(v, value) for v in template]
    return template


@given(
    key=st.sampled_from(sorted(TIMED_FIELDS)),
    value=st.sampled_from([math.inf, -math.inf, math.nan, 1e300, "9" * 400, "9" * 400 + "ms"]),
    in_defaults=st.booleans(),
)
@example(key="fault.retry_after", value=math.inf, in_defaults=False)
@example(key="latency.ttft.lognormal.sigma", value=1e300, in_defaults=True)
def test_non_finite_or_huge_numbers_are_refused_naming_their_key(
    tmp_path: Path, key: str, value: Any, in_defaults: bool
) -> None:
    """Every duration, rate, fraction and sigma: .inf, .nan and absurd sizes fail to load."""
    scenario = {"name": "a", "respond": {}, **_put(TIMED_FIELDS[key], value)}
    doc: dict[str, Any] = {"version": 1, "scenarios": [scenario]}
    where = "scenarios[0]"
    if in_defaults and key.startswith("latency."):
        doc["defaults"] = {"latency": scenario.pop("latency")}
        where = "defaults"
    path = tmp_path / "numbers.yaml"
    path.write_text(dump(doc), "utf-8")
    if key == "latency.tokens_per_second" and value == 1e300:
        assert load_file(path) is not None  # a fast rate is no pause at all: fine
        return
    assert load_file(path) is None
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([path])
    assert [p.key for p in caught.value.problems] == [f"{where}.{key}"], caught.value


@given(
    tag=st.sampled_from(["!!int", "!!float", "!!timestamp", "!!bool", "!!null", "!!str"]),
    value=st.text("0123456789-:._+bxoeEtTZ '", max_size=8),
)
@example(tag="!!timestamp", value="")  # AttributeError: 'NoneType' object has no attribute ...
@example(tag="!!float", value=".")  # ValueError: could not convert string to float: '.'
@example(tag="!!int", value="''")  # IndexError: string index out of range
def test_malformed_tagged_scalars_are_problems(tmp_path: Path, tag: str, value: str) -> None:
    path = tmp_path / "tagged.yaml"
    path.write_text(f"version: 1\nscenarios: []\nmodels: [{tag} {value}]\n", "utf-8")
    load_file(path)


@given(
    kind=st.sampled_from(["fixed", "range", "normal", "lognormal"]),
    a=st.floats(0, MAX_SECONDS),
    b=st.floats(0, 1e6),
    seed=st.integers(0, 2**16),
)
@example(kind="lognormal", a=MAX_SECONDS, b=1e6, seed=0)  # exp(gauss * 1e6) once overflowed
def test_delay_samples_stay_finite_and_within_a_day(
    kind: str, a: float, b: float, seed: int
) -> None:
    """Even a sigma far past what the loader accepts cannot make a sample overflow."""
    if kind == "range":
        b = min(b, MAX_SECONDS)
    value = Delay(kind, a, b).sample(random.Random(seed))
    assert math.isfinite(value) and value >= 0
    if kind == "lognormal":
        assert value <= MAX_SECONDS


@given(retry_after=st.sampled_from([math.inf, -math.inf, math.nan, 1e300, 2.5]))
def test_fault_error_survives_any_retry_after(retry_after: float) -> None:
    """The loader refuses non-finite values; a `Fault` built in Python must not 500 either."""
    fault = Fault(
        "http", 429, lambda _ctx: "slow down", "rate_limit_error", None, None, retry_after
    )
    error = fault_error(fault, {}, "test")
    assert error.status == 429
    assert ("retry-after" in error.headers) == math.isfinite(retry_after)
