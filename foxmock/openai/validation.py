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
    if not isinstance(calls, list):
        raise _bad_type(param, "an array", calls)
    for j, call in enumerate(calls):
        where = f"{param}[{j}]"
        if not isinstance(call, dict):
            raise _bad_type(where, "an object", call)
        for key in ("id", "type", "function"):
            if key not in call:
                raise _missing(f"{where}.{key}")
        function = call["function"]
        if not isinstance(function, dict):
            raise _bad_type(f"{where}.function", "an object", function)
        for key in ("name", "arguments"):
            if not isinstance(function.get(key), str):
                if key not in function:
                    raise _missing(f"{where}.function.{key}")
                raise _bad_type(f"{where}.function.{key}", "a string", function[key])


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
    optional_content = role == "assistant" and (
        message.get("tool_calls") or message.get("function_call") or message.get("refusal")
    )
    if content is None:
        if "content" not in message and not optional_content:
            raise _missing(f"{param}.content")
        if not optional_content and role != "assistant":
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
    if role == "assistant" and message.get("tool_calls") is not None:
        _tool_calls(message["tool_calls"], f"{param}.tool_calls")


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


def _tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad_type(param, "an object", tool)
        if tool.get("type") != "function":
            if "type" not in tool:
                raise _missing(f"{param}.type")
            raise _invalid(f"{param}.type", f"value must be 'function'; got {tool['type']!r}.")
        function = tool.get("function")
        if function is None:
            raise _missing(f"{param}.function")
        if not isinstance(function, dict):
            raise _bad_type(f"{param}.function", "an object", function)
        name = function.get("name")
        if name is None:
            raise _missing(f"{param}.function.name")
        if not isinstance(name, str):
            raise _bad_type(f"{param}.function.name", "a string", name)
        if not NAME_RE.match(name):
            raise _invalid(
                f"{param}.function.name",
                f"string does not match pattern. Expected a string that matches the pattern "
                f"'{NAME_RE.pattern}'; got {name!r}.",
                "invalid_value",
            )
        for key, py, word in (
            ("description", str, "a string"),
            ("parameters", dict, "an object"),
            ("strict", bool, "a boolean"),
        ):
            value = function.get(key)
            if value is not None and not isinstance(value, py):
                raise _bad_type(f"{param}.function.{key}", word, value)


def _tool_choice(body: Mapping[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    names = [t["function"]["name"] for t in body.get("tools") or [] if isinstance(t, dict)]
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
    function = choice.get("function")
    if choice.get("type") != "function" or not isinstance(function, dict):
        raise _invalid(
            "tool_choice",
            "expected {'type': 'function', 'function': {'name': ...}} for a named tool choice.",
        )
    name = function.get("name")
    if name not in names:
        raise _invalid(
            "tool_choice",
            f"tool choice names function {name!r}, which is not in 'tools'.",
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
