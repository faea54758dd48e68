"""Request validation for ``POST /v1/chat/completions``, with OpenAI's error wording."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from foxmock._exceptions import RequestError

# Every property of CreateChatCompletionRequest in OpenAI's official OpenAPI description; a test
# checks this list still covers the spec.
KNOWN_FIELDS = frozenset(
    [
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "modalities",
        "model",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    ]
)
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_TYPES = ("function", "custom")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for py, word in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a decimal"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    ):
        if isinstance(value, py):
            return word
    return "an unknown type"


def _bad_type(param: str, expected: str, value: Any) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> RequestError:
    return RequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid(param: str, message: str, code: str = "invalid_value") -> RequestError:
    return RequestError(f"Invalid '{param}': {message}", param=param, code=code)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not _is_number(value):
        raise _bad_type(key, "a decimal", value)
    if value < low:
        raise _invalid(
            key,
            f"decimal below minimum value. Expected a value >= {low:g}, but got {value} instead.",
            "decimal_below_min_value",
        )
    if value > high:
        raise _invalid(
            key,
            f"decimal above maximum value. Expected a value <= {high:g}, but got {value} instead.",
            "decimal_above_max_value",
        )


def _integer(body: Mapping[str, Any], key: str, low: int, high: int | None = None) -> None:
    value = body.get(key)
    if value is None:
        return
    if not _is_int(value):
        raise _bad_type(key, "an integer", value)
    if value < low:
        raise _invalid(
            key,
            f"integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            "integer_below_min_value",
        )
    if high is not None and value > high:
        raise _invalid(
            key,
            f"integer above maximum value. Expected a value <= {high}, but got {value} instead.",
            "integer_above_max_value",
        )


def _typed(body: Mapping[str, Any], key: str, py: type, word: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, py) or (py is not bool and isinstance(value, bool)):
        raise _bad_type(key, word, value)


def _content_parts(parts: list[Any], param: str) -> None:
    if not parts:
        raise _invalid(
            param,
            "empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "empty_array",
        )
    for j, part in enumerate(parts):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _bad_type(where, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind not in PART_TYPES:
            raise _invalid(
                f"{where}.type",
                f"value must be one of {', '.join(repr(t) for t in PART_TYPES)}; got {kind!r}.",
            )
        if kind in ("text", "refusal"):
            field = kind
            if field not in part:
                raise _missing(f"{where}.{field}")
            if not isinstance(part[field], str):
                raise _bad_type(f"{where}.{field}", "a string", part[field])
        elif kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _missing(f"{where}.image_url.url")


def _tool_calls(calls: Any, param: str) -> None:
    """An assistant message's ``tool_calls``: function calls and custom tool calls."""
    if not isinstance(calls, list):
        raise _bad_type(param, "an array", calls)
    for j, call in enumerate(calls):
        where = f"{param}[{j}]"
        if not isinstance(call, dict):
            raise _bad_type(where, "an object", call)
        kind = call.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind not in TOOL_TYPES:
            raise _invalid(f"{where}.type", f"value must be 'function' or 'custom'; got {kind!r}.")
        fields = ("name", "arguments") if kind == "function" else ("name", "input")
        for key in ("id", kind):
            if key not in call:
                raise _missing(f"{where}.{key}")
        if not isinstance(call["id"], str):
            raise _bad_type(f"{where}.id", "a string", call["id"])
        inner = call[kind]
        if not isinstance(inner, dict):
            raise _bad_type(f"{where}.{kind}", "an object", inner)
        for key in fields:
            if not isinstance(inner.get(key), str):
                if key not in inner:
                    raise _missing(f"{where}.{kind}.{key}")
                raise _bad_type(f"{where}.{kind}.{key}", "a string", inner[key])


def _message(message: Any, i: int) -> None:
    param = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad_type(param, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{param}.role")
    if role not in ROLES:
        raise _invalid(
            f"{param}.role",
            f"value must be one of {', '.join(repr(r) for r in ROLES)}; got {role!r}.",
        )
    content = message.get("content")
    if content is None:
        # an assistant message needs only its role (its content may be absent or null, as
        # when it carries tool calls, a refusal or an earlier answer's audio); a function
        # message's content is required but may be null
        if "content" not in message and role not in ("assistant",):
            raise _missing(f"{param}.content")
        if role not in ("assistant", "function"):
            raise _bad_type(f"{param}.content", "a string or an array of content parts", content)
    elif isinstance(content, list):
        _content_parts(content, f"{param}.content")
    elif not isinstance(content, str):
        raise _bad_type(f"{param}.content", "a string or an array of content parts", content)
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise _bad_type(f"{param}.name", "a string", name)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id is None:
            raise _missing(f"{param}.tool_call_id")
        if not isinstance(call_id, str):
            raise _bad_type(f"{param}.tool_call_id", "a string", call_id)
    if role == "function" and not isinstance(name, str):
        raise (
            _missing(f"{param}.name")
            if name is None
            else _bad_type(f"{param}.name", "a string", name)
        )
    if role == "assistant":
        if message.get("tool_calls") is not None:
            _tool_calls(message["tool_calls"], f"{param}.tool_calls")
        audio = message.get("audio")
        if audio is not None:
            if not isinstance(audio, dict):
                raise _bad_type(f"{param}.audio", "an object", audio)
            if not isinstance(audio.get("id"), str):
                if "id" not in audio:
                    raise _missing(f"{param}.audio.id")
                raise _bad_type(f"{param}.audio.id", "a string", audio["id"])


def _messages(body: Mapping[str, Any]) -> None:
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _bad_type("messages", "an array", messages)
    if not messages:
        raise _invalid(
            "messages",
            "empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "empty_array",
        )
    for i, message in enumerate(messages):
        _message(message, i)


def _model(body: Mapping[str, Any]) -> None:
    if "model" not in body:
        raise _missing("model")
    model = body["model"]
    if not isinstance(model, str):
        raise _bad_type("model", "a string", model)
    if not model:
        raise _invalid(
            "model", "string too short. Expected a non-empty string.", "string_too_short"
        )


def _tool_name(name: Any, param: str) -> None:
    if name is None:
        raise _missing(param)
    if not isinstance(name, str):
        raise _bad_type(param, "a string", name)
    if not NAME_RE.match(name):
        raise _invalid(
            param,
            f"string does not match pattern. Expected a string that matches the pattern "
            f"'{NAME_RE.pattern}'; got {name!r}.",
            "invalid_value",
        )


def _custom_format(fmt: Any, param: str) -> None:
    """A custom tool's input ``format``: unconstrained text, or a Lark or regex grammar."""
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _bad_type(param, "an object", fmt)
    kind = fmt.get("type")
    if kind not in ("text", "grammar"):
        if kind is None:
            raise _missing(f"{param}.type")
        raise _invalid(f"{param}.type", f"value must be 'text' or 'grammar'; got {kind!r}.")
    if kind == "grammar":
        grammar = fmt.get("grammar")
        if not isinstance(grammar, dict):
            if grammar is None:
                raise _missing(f"{param}.grammar")
            raise _bad_type(f"{param}.grammar", "an object", grammar)
        if not isinstance(grammar.get("definition"), str):
            raise _missing(f"{param}.grammar.definition")
        if grammar.get("syntax") not in ("lark", "regex"):
            raise _invalid(
                f"{param}.grammar.syntax",
                f"value must be 'lark' or 'regex'; got {grammar.get('syntax')!r}.",
            )


def _tool(tool: Any, param: str) -> None:
    if not isinstance(tool, dict):
        raise _bad_type(param, "an object", tool)
    kind = tool.get("type")
    if kind not in TOOL_TYPES:
        if kind is None:
            raise _missing(f"{param}.type")
        raise _invalid(f"{param}.type", f"value must be 'function' or 'custom'; got {kind!r}.")
    inner = tool.get(kind)
    if inner is None:
        raise _missing(f"{param}.{kind}")
    if not isinstance(inner, dict):
        raise _bad_type(f"{param}.{kind}", "an object", inner)
    _tool_name(inner.get("name"), f"{param}.{kind}.name")
    if kind == "custom":
        description = inner.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad_type(f"{param}.custom.description", "a string", description)
        _custom_format(inner.get("format"), f"{param}.custom.format")
        return
    for key, py, word in (
        ("description", str, "a string"),
        ("parameters", dict, "an object"),
        ("strict", bool, "a boolean"),
    ):
        value = inner.get(key)
        if value is not None and not isinstance(value, py):
            raise _bad_type(f"{param}.function.{key}", word, value)


def _tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        _tool(tool, f"tools[{i}]")


def _tool_names(tools: Any, kind: str | None = None) -> list[str]:
    """The names of the (validated) ``tools`` of one type, or of every type."""
    return [
        tool[tool["type"]]["name"] for tool in tools or () if kind is None or tool["type"] == kind
    ]


def _allowed_tools(choice: Mapping[str, Any], names: list[str]) -> None:
    allowed = choice.get("allowed_tools")
    if not isinstance(allowed, dict):
        if allowed is None:
            raise _missing("tool_choice.allowed_tools")
        raise _bad_type("tool_choice.allowed_tools", "an object", allowed)
    mode = allowed.get("mode")
    if mode not in ("auto", "required"):
        if mode is None:
            raise _missing("tool_choice.allowed_tools.mode")
        raise _invalid(
            "tool_choice.allowed_tools.mode", f"value must be 'auto' or 'required'; got {mode!r}."
        )
    tools = allowed.get("tools")
    if not isinstance(tools, list):
        if tools is None:
            raise _missing("tool_choice.allowed_tools.tools")
        raise _bad_type("tool_choice.allowed_tools.tools", "an array", tools)
    for j, tool in enumerate(tools):
        where = f"tool_choice.allowed_tools.tools[{j}]"
        if not isinstance(tool, dict):
            raise _bad_type(where, "an object", tool)
        inner = tool.get(tool.get("type")) if tool.get("type") in TOOL_TYPES else None
        name = inner.get("name") if isinstance(inner, dict) else None
        if name not in names:
            raise _invalid(where, f"names tool {name!r}, which is not in 'tools'.")


def _tool_choice(body: Mapping[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    names = _tool_names(body.get("tools"))
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid(
                "tool_choice", f"value must be one of 'none', 'auto', 'required'; got {choice!r}."
            )
        if choice == "required" and not names:
            raise _invalid("tool_choice", "'required' is only allowed when 'tools' are specified.")
        return
    if not isinstance(choice, dict):
        raise _bad_type("tool_choice", "a string or an object", choice)
    kind = choice.get("type")
    if kind == "allowed_tools":
        _allowed_tools(choice, names)
        return
    named = choice.get(kind) if kind in TOOL_TYPES else None
    if not isinstance(named, dict):
        raise _invalid(
            "tool_choice",
            "expected {'type': 'function', 'function': {'name': ...}}, {'type': 'custom', "
            "'custom': {'name': ...}} or {'type': 'allowed_tools', 'allowed_tools': {...}}.",
        )
    name = named.get("name")
    if name not in _tool_names(body.get("tools"), kind):
        raise _invalid(
            "tool_choice", f"tool choice names {kind} {name!r}, which is not in 'tools'."
        )


def _response_format(body: Mapping[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _bad_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _invalid(
            "response_format.type",
            f"value must be one of 'text', 'json_object', 'json_schema'; got {kind!r}.",
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if spec is None:
            raise _missing("response_format.json_schema")
        if not isinstance(spec, dict):
            raise _bad_type("response_format.json_schema", "an object", spec)
        name = spec.get("name")
        if name is None:
            raise _missing("response_format.json_schema.name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _invalid(
                "response_format.json_schema.name",
                f"expected a string matching '{NAME_RE.pattern}'; got {name!r}.",
            )
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad_type("response_format.json_schema.schema", "an object", schema)
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _bad_type("response_format.json_schema.strict", "a boolean", strict)
    if kind == "json_object":
        texts = " ".join(
            str(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)
        )
        if "json" not in texts.lower():
            raise _invalid(
                "messages",
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
            )


def _stop(body: Mapping[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad_type("stop", "a string or an array of strings", stop)
    if len(stop) > 4:
        raise _invalid(
            "stop",
            f"array too long. Expected an array with maximum length 4, but got {len(stop)}.",
            "array_above_max_length",
        )


def _stream(body: Mapping[str, Any]) -> None:
    _typed(body, "stream", bool, "a boolean")
    options = body.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise _bad_type("stream_options", "an object", options)
    if body.get("stream") is not True:
        raise _invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise _bad_type("stream_options.include_usage", "a boolean", usage)


def _scalars(body: Mapping[str, Any]) -> None:
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "n", 1, 128)
    _integer(body, "top_logprobs", 0, 20)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    for key in ("logprobs", "parallel_tool_calls", "store"):
        _typed(body, key, bool, "a boolean")
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        _typed(body, key, str, "a string")
    for key in ("metadata", "logit_bias"):
        _typed(body, key, dict, "an object")


CHECKS: tuple[Callable[[Mapping[str, Any]], None], ...] = (
    _model,
    _messages,
    _scalars,
    _stream,
    _stop,
    _tools,
    _tool_choice,
    _response_format,
)


def validate_chat_request(body: Any) -> dict[str, Any]:
    """Check a parsed body against OpenAI's rules; raise `RequestError` on the first problem."""
    if not isinstance(body, dict):
        raise RequestError(
            f"Invalid request body: expected a JSON object, but got {_kind(body)} instead.",
            code="invalid_type",
        )
    for key in body:
        if key not in KNOWN_FIELDS:
            raise RequestError(
                f"Unrecognized request argument supplied: {key}",
                param=key,
                code="unknown_parameter",
            )
    for check in CHECKS:
        check(body)
    return body


MAX_DEPTH = 64  # deeper JSON (a tool schema nested to the parser's limit) is refused
MAX_CONTAINERS = 200_000  # objects and arrays in one body: decoding more stalls the loop
_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)


def _no_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ValueError(f"{name} is not valid JSON")


_STRICT = json.JSONDecoder(parse_constant=_no_constant)


def loads_strict(text: str) -> Any:
    """`json.loads`, refusing NaN and Infinity as JSON does; ValueError when not JSON."""
    return _STRICT.decode(text)


def decode_body(raw: bytes) -> Any:
    """A request body as JSON, or a 400 `RequestError`: not JSON, not text, too deep, or more
    objects and arrays than `MAX_CONTAINERS`.

    The shape is checked on the raw bytes first, at the speed of a byte scan: outside strings,
    brackets alone tell how many containers the body holds and how deep they nest, so a body
    of a million empty objects is refused before it is decoded into a million dicts. Lone
    surrogate escapes ("\\ud800" is valid JSON syntax but no character, so nothing could echo
    it as UTF-8) are found by encoding the decoded value once.
    """
    shape = _brackets(raw) if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH else b""
    if len(shape) > 2 * MAX_CONTAINERS:
        raise RequestError(
            f"The request holds more than {MAX_CONTAINERS} JSON objects and arrays.",
            code="too_many_values",
        )
    try:
        body = _STRICT.decode(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RequestError(_INVALID_JSON, code="invalid_json") from None
    if shape and _maybe_deep(shape):
        _walk(body)
    if b"\\ud" in raw or b"\\uD" in raw:
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                "The JSON body contains a lone UTF-16 surrogate escape "
                "(\\ud800-\\udfff), which is not a character; send valid Unicode text.",
                code="invalid_json",
            ) from None
    return body


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(i for i in range(256) if i not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def _brackets(raw: bytes) -> bytes:
    """The brackets of a JSON text outside its strings, in order."""
    return _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)


def _maybe_deep(shape: bytes) -> bool:
    """False when the brackets surely nest at most `MAX_DEPTH` deep. Each pass removes the
    innermost pairs, one level of each bracket kind, so at least one level and at most two."""
    for _ in range(MAX_DEPTH // 2):
        shape = _PAIR.sub(b"", shape)
        if not shape:
            return False
    return True


def _walk(body: Any) -> None:
    """Raise a 400 `RequestError` when ``body`` nests deeper than `MAX_DEPTH`."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            continue
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            raise RequestError(
                f"The request nests objects and arrays more than {MAX_DEPTH} levels deep.",
                code="nesting_too_deep",
            )
        if isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
