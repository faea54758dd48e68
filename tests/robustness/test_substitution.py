"""Plain ``{{ name }}`` templates render without Jinja2, to exactly what Jinja2 renders.

`foxmock.templating` renders text whose only template syntax is ``{{ name }}`` over a request
variable itself; everything else goes to the Jinja2 sandbox. Hypothesis builds such templates
and requests and checks that the two paths agree, in text and in native mode.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from foxmock.openai.request import ChatRequest
from foxmock.sandbox import compile_template
from foxmock.templating import _CONTEXT, RequestContext, TemplateEngine, _substitution

NAMES = sorted(_CONTEXT)
ENGINE = TemplateEngine(random.Random(0))

# literal text that Jinja2 leaves alone: no "{{", "{%", "{#" and no carriage return
literal = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=12
).filter(lambda t: not any(m in t for m in ("{{", "{%", "{#")))
hole = st.builds(
    lambda name, left, right: "{{" + left + name + right + "}}",
    st.sampled_from(NAMES),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["", " ", "\n"]),
)
content = st.one_of(st.text(max_size=20), st.none())
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": content}
    ),
    min_size=1,
    max_size=4,
)
bodies = st.fixed_dictionaries(
    {"model": st.text(min_size=1, max_size=10), "messages": messages},
    optional={"stream": st.booleans(), "temperature": st.floats(0, 2)},
)


@given(st.lists(st.tuples(literal, hole), min_size=1, max_size=4), literal, bodies)
def test_substitution_renders_what_jinja_renders(
    pieces: list[tuple[str, str]], tail: str, body: dict[str, Any]
) -> None:
    source = "".join(text + h for text, h in pieces) + tail
    fast = _substitution(source, False)
    assume(fast is not None)  # e.g. "{{{ x }}" is Jinja2's to read
    slow = compile_template(ENGINE.env, source)
    req = ChatRequest(body, {"x-test": "1"})
    assert fast(RequestContext(req)) == slow(RequestContext(req))


@given(st.sampled_from(NAMES), st.sampled_from(["", " ", "\n "]), bodies)
def test_a_lone_hole_in_native_mode_gives_the_value(
    name: str, space: str, body: dict[str, Any]
) -> None:
    source = space + "{{ " + name + " }}" + space
    fast = _substitution(source, True)
    assert fast is not None
    slow = compile_template(ENGINE.env, source, native=True)
    req = ChatRequest(body)
    assert fast(RequestContext(req)) == slow(RequestContext(req))


def test_anything_more_goes_to_jinja() -> None:
    """Filters, attributes, blocks, unknown names and CR line breaks take the Jinja2 path."""
    for source in [
        "{{ last_user | upper }}",
        "{{ request.model }}",
        "{% if stream %}s{% endif %}",
        "{{ unknown_name }}",
        "{# note #}{{ model }}",
        "a\r\n{{ model }}",
        "{{- model }}",
        "{{ model }}{{",
        "a{{{ model }}",
    ]:
        assert _substitution(source, False) is None, source
    assert _substitution("Hello {{ last_user }}!", False) is not None
