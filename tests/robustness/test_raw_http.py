"""Raw-socket bad input: bytes no HTTP client library would send, written to a live server.

``test_bad_input.py`` sends malformed JSON and fields through aiohttp's client. This battery
writes raw bytes with asyncio streams, so it can break HTTP itself: invalid UTF-8 and NUL bytes,
broken Content-Length and chunked framing, absurd headers and request lines, HTTP/1.0,
pipelining, slow clients, ``Expect`` and ``Upgrade``, odd methods and API-key garbage.

Every case ends in one of four outcomes:

* ``envelope`` -- foxmock answers a 4xx OpenAI error envelope (a valid ``ErrorResponse``) with
  the expected status and code; some of them (a body that does not decode, a body that is not
  complete within ``body_timeout``) also close the connection, with ``Connection: close``;
* ``ok`` -- the bytes are odd but valid HTTP, and the answer is a valid 200;
* ``PARSER`` -- aiohttp's HTTP parser rejects the bytes before a request exists, so foxmock's
  route guards never run; foxmock's connection handler (``foxmock.server.runner``) still answers
  a 400 envelope, code ``invalid_http_request``, ``param`` null, then closes the connection.
  Its message names only the kind of fault: no fragment of the bytes sent (nor the API key)
  comes back, where aiohttp's own plain-text 400 quotes the offending line;
* ``CLOSED`` -- the client gives up half way (it half-closes): no answer, a clean close.

After every case a new connection to the same server must get a valid chat completion. Every
read is bounded by a timeout, so nothing here can hang; a body that stops half way meets a
server started with ``body_timeout=1.0`` and gets its 408 after about a second. What the parser
accepts is that of aiohttp's C parser (llhttp), which its wheels ship; the pure-Python one
(``AIOHTTP_NO_EXTENSIONS=1``) is more lenient, and about twenty cases answer differently there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

Validate = Callable[[str, Any], None]

CHAT = b"/v1/chat/completions"
TIMEOUT = 5.0  # the bound on every connect, write and read
HANG = 1.0  # how long a test waits for an answer aiohttp may never send before giving up
BODY_TIMEOUT = 1.0  # the body_timeout of the servers that must give up on a body
SMALL_LIMIT = 1024  # max_body_bytes for the oversized-body cases
KEY = "sk-raw-good"
KEYS = {"api_keys": [KEY]}
LIMIT = {"max_body_bytes": SMALL_LIMIT}
SLOW = {"body_timeout": BODY_TIMEOUT}

VALID = json.dumps({"model": "foxora-1", "messages": [{"role": "user", "content": "Hello"}]})
BODY = VALID.encode()
HEALTHZ = "healthz"  # pseudo schema name: the /healthz payload

HOST = b"Host: foxmock.test"
CLOSE = b"Connection: close"
JSON_CT = b"Content-Type: application/json"
CHUNKED = b"Transfer-Encoding: chunked"
BEARER = b"Authorization: Bearer " + KEY.encode()


# -- building requests ---------------------------------------------------------------------------


def raw(start: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request from a start line and header lines, exactly as given (nothing added)."""
    return b"\r\n".join([start, *headers, b"", body])


def get(
    path: bytes, *headers: bytes, method: bytes = b"GET", version: bytes = b"HTTP/1.1"
) -> bytes:
    """A body-less request with Host and ``Connection: close``."""
    return raw(b"%s %s %s" % (method, path, version), HOST, *headers, CLOSE)


def post(
    body: bytes = BODY,
    *headers: bytes,
    path: bytes = CHAT,
    content_type: bytes | None = JSON_CT,
    length: bool = True,
    close: bool = True,
) -> bytes:
    """A POST with Host, ``Connection: close``, a JSON Content-Type and a right Content-Length."""
    lines = [HOST]
    if close:
        lines.append(CLOSE)
    if content_type is not None:
        lines.append(content_type)
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return raw(b"POST %s HTTP/1.1" % path, *lines, *headers, body=body)


def chat_body(content: bytes = b"Hello", model: bytes = b"foxora-1", extra: bytes = b"") -> bytes:
    """A chat request body built from raw bytes, so the bytes inside strings are ours."""
    return b'{"model": "%s", "messages": [{"role": "user", "content": "%s"}]%s}' % (
        model,
        content,
        extra,
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def chunked(payload: bytes, *headers: bytes, path: bytes = CHAT) -> bytes:
    """A chunked POST whose body is ``payload``, already framed (or misframed) by the caller."""
    return post(payload, CHUNKED, *headers, path=path, length=False)


def http10(method: bytes, path: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return raw(b"%s %s HTTP/1.0" % (method, path), *headers, body=body)


# -- expected outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    kind: str  # "envelope", "ok", "parser" or "closed"
    status: int = 200
    code: str | None = None  # error.code an envelope must carry
    schema: str | None = None  # OpenAPI schema an ok body must match (or HEALTHZ)
    interim: tuple[int, ...] = ()  # 1xx responses expected before the final one
    closes: bool = False  # the server must close the connection after answering
    error: Mapping[str, Any] = field(default_factory=dict)  # other fields error must carry


def envelope(status: int, code: str | None = None, **kw: Any) -> Expect:
    return Expect("envelope", status, code, **kw)


def ok(schema: str | None = "CreateChatCompletionResponse", **kw: Any) -> Expect:
    return Expect("ok", 200, schema=schema, **kw)


PARSER_ERROR = {"type": "invalid_request_error", "param": None}
PARSER = Expect("parser", 400, "invalid_http_request", closes=True, error=PARSER_ERROR)
CLOSED = Expect("closed", 0)
OK_HEALTH = ok(HEALTHZ)
OK_MODELS = ok("ListModelsResponse")
OK_HEAD = ok(None)
INVALID_JSON = envelope(400, "invalid_json")
INVALID_BODY = envelope(400, "invalid_body", closes=True)  # the rest of it cannot be read
TIMED_OUT = envelope(408, "request_timeout", closes=True)  # only with config=SLOW
BAD_VERSION = envelope(400, "invalid_http_request", error=PARSER_ERROR)
MEDIA = envelope(415, "unsupported_media_type")
TOO_LARGE = envelope(413, "request_too_large")
UNKNOWN_URL = envelope(404, "unknown_url")
NOT_ALLOWED = envelope(405, "method_not_allowed")
NO_MODEL = envelope(404, "model_not_found")
EXPECT_FAILED = envelope(417, "expectation_failed", error={"param": "Expect"})
MISSING_KEY = envelope(401, "missing_api_key")
BAD_KEY = envelope(401, "invalid_api_key")

Part = bytes | float  # bytes to write, or seconds to wait before the next write


@dataclass(frozen=True)
class Case:
    parts: tuple[Part, ...]
    expect: Expect
    config: Mapping[str, Any] = field(default_factory=dict)
    half_close: bool = False  # the client shuts down its sending side after the parts
    head: bool = False  # the answer is to a HEAD request: no body follows the headers
    timeout: float = TIMEOUT


def case(
    id: str, data: bytes | tuple[Part, ...], expect: Expect, *, bug: str = "", **kw: Any
) -> Any:
    """One parametrized case; ``bug`` marks a known foxmock bug (strict xfail)."""
    parts = data if isinstance(data, tuple) else (data,)
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(Case(parts, expect, **kw), id=id, marks=marks)


ZIPPED = gzip.compress(BODY)
BOMB = gzip.compress(chat_body(b"x" * 2_000_000))  # 2 KB on the wire, 2 MB unpacked
H2C = (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARA")
WEBSOCKET = (
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
)
MANY_HEADERS = tuple(b"X-Header-%d: v" % i for i in range(5000))
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)
SLOW_LORIS = (  # the head, then half the body a byte every 10 ms, then nothing
    post()[: -len(BODY)],
    *(part for byte in BODY[: len(BODY) // 2] for part in (0.01, bytes([byte]))),
)


BATTERY = [
    # -- invalid UTF-8 and NUL bytes in the body -------------------------------------------------
    # (test_bad_input.py has invalid bytes in the model string: these are other shapes)
    case("utf8-invalid-in-key", post(BODY.replace(b'"model"', b'"mod\xffel"')), INVALID_JSON),
    case("utf8-overlong-slash", post(chat_body(b"\xc0\xafHello")), INVALID_JSON),
    case("utf8-encoded-surrogate", post(chat_body(b"\xed\xa0\x80")), INVALID_JSON),
    case("utf8-truncated-sequence", post(chat_body(b"\xe2\x82")), INVALID_JSON),
    case("utf8-five-byte-sequence", post(chat_body(b"\xf8\x88\x80\x80\x80")), INVALID_JSON),
    case("utf8-above-u10ffff", post(chat_body(b"\xf4\x90\x80\x80")), INVALID_JSON),
    case("utf8-invalid-outside-strings", post(BODY[:-1] + b"\xff}"), INVALID_JSON),
    case("utf8-bom-prefix", post(b"\xef\xbb\xbf" + BODY), INVALID_JSON),
    case("body-only-nul-bytes", post(bytes(64)), INVALID_JSON),
    case("body-nul-raw-in-string", post(chat_body(b"He\x00llo")), INVALID_JSON),
    case("body-nul-after-json", post(BODY + b"\x00"), INVALID_JSON),
    case("body-escaped-nul-is-valid", post(chat_body(b"He\\u0000llo")), ok()),
    case("body-escaped-surrogate-pair-is-valid", post(chat_body(b"\\ud83d\\ude00")), ok()),
    # "\ud800" alone is valid JSON syntax but no character: nothing could echo it as UTF-8
    case("json-lone-surrogate-content", post(chat_body(b"\\ud800")), INVALID_JSON),
    case("json-lone-surrogate-model", post(chat_body(model=b"\\udfff")), INVALID_JSON),
    case(
        "json-lone-surrogate-streamed",
        post(chat_body(b"\\udc00", extra=b', "stream": true')),
        INVALID_JSON,
    ),
    case("json-lone-low-surrogate-first", post(chat_body(b"\\ude00\\ud83d")), INVALID_JSON),
    case("json-lone-surrogate-in-key", post(chat_body(extra=b', "\\uD800": 1')), INVALID_JSON),
    # -- Content-Type and charset ------------------------------------------------------------
    case("ct-garbled-parameters", post(content_type=b"Content-Type: ;;;=="), MEDIA),
    case("ct-empty-value", post(content_type=b"Content-Type: "), MEDIA),
    case("ct-non-ascii", post(content_type=b"Content-Type: application/j\xc3\xa9son"), MEDIA),
    case("ct-quoted", post(content_type=b'Content-Type: "application/json"'), MEDIA),
    case("ct-spaces-inside", post(content_type=b"Content-Type: application / json"), MEDIA),
    case("ct-wildcard", post(content_type=b"Content-Type: */*"), MEDIA),
    case("ct-json-suffix", post(content_type=b"Content-Type: application/json-patch+json"), MEDIA),
    case("ct-duplicate", post(b"", b"Content-Type: text/plain"), PARSER),
    case("ct-nul-in-value", post(content_type=b"Content-Type: application/json\x00"), PARSER),
    case(
        "charset-utf16-body",
        post(VALID.encode("utf-16"), content_type=JSON_CT + b"; charset=utf-16"),
        INVALID_JSON,
    ),
    case(
        "charset-latin1-body",
        post(chat_body(b"H\xe9llo"), content_type=JSON_CT + b"; charset=iso-8859-1"),
        INVALID_JSON,
    ),
    case("charset-unknown-utf8-body", post(content_type=JSON_CT + b"; charset=no-such"), ok()),
    case("ct-parameter-garbage", post(content_type=JSON_CT + b"; ;;; =x; charset"), ok()),
    case("ct-8k-parameter", post(content_type=JSON_CT + b"; x=" + b"a" * 8000), ok()),
    # -- Content-Length ------------------------------------------------------------------------
    case("cl-absent-no-body", post(b"", length=False), INVALID_JSON),
    case("cl-shorter-then-close", post(BODY, b"Content-Length: 10", length=False), PARSER),
    case(
        "cl-shorter-keep-alive",
        post(BODY, b"Content-Length: 10", length=False, close=False),
        PARSER,
    ),
    case(
        "cl-longer-then-close",
        post(BODY, b"Content-Length: 200", length=False),
        CLOSED,
        half_close=True,
    ),
    case("cl-negative", post(BODY, b"Content-Length: -5", length=False), PARSER),
    case("cl-non-numeric", post(BODY, b"Content-Length: abc", length=False), PARSER),
    case("cl-plus-sign", post(BODY, b"Content-Length: +%d" % len(BODY), length=False), PARSER),
    case("cl-hex", post(BODY, b"Content-Length: 0x49", length=False), PARSER),
    case("cl-empty", post(BODY, b"Content-Length: ", length=False), PARSER),
    case("cl-overflow", post(BODY, b"Content-Length: " + b"9" * 30, length=False), PARSER),
    case(
        "cl-list",
        post(BODY, b"Content-Length: %d, %d" % (len(BODY), len(BODY)), length=False),
        PARSER,
    ),
    case("cl-two-conflicting", post(BODY, b"Content-Length: 5"), PARSER),
    case("cl-two-equal", post(BODY, b"Content-Length: %d" % len(BODY)), PARSER),
    case("cl-with-chunked", post(chunk(BODY) + LAST_CHUNK, CHUNKED), PARSER),
    # -- chunked framing -----------------------------------------------------------------------
    case(
        "chunked-valid-extension",
        chunked(b"%x;ext=1\r\n%s\r\n" % (len(BODY), BODY) + LAST_CHUNK),
        ok(),
    ),
    case("chunked-valid-trailer", chunked(chunk(BODY) + b"0\r\nX-Trailer: 1\r\n\r\n"), ok()),
    case("chunked-bad-hex-size", chunked(b"zz\r\n" + BODY + b"\r\n" + LAST_CHUNK), PARSER),
    case("chunked-negative-size", chunked(b"-5\r\n" + BODY + b"\r\n" + LAST_CHUNK), PARSER),
    case(
        "chunked-size-overflow", chunked(b"f" * 20 + b"\r\n" + BODY + b"\r\n" + LAST_CHUNK), PARSER
    ),
    case("chunked-data-longer-than-size", chunked(b"5\r\n" + BODY + b"\r\n" + LAST_CHUNK), PARSER),
    case(
        "chunked-missing-crlf", chunked(b"%x\r\n" % len(BODY) + BODY + b"XX" + LAST_CHUNK), PARSER
    ),
    case("chunked-missing-terminator", chunked(chunk(BODY)), CLOSED, half_close=True),
    case(
        "chunked-truncated-data",
        chunked(b"%x\r\n" % len(BODY) + BODY[:20]),
        CLOSED,
        half_close=True,
    ),
    case("te-gzip-only", post(BODY, b"Transfer-Encoding: gzip", length=False), PARSER),
    case("te-unknown", post(BODY, b"Transfer-Encoding: bogus", length=False), PARSER),
    case(
        "te-chunked-twice",
        post(chunk(BODY) + LAST_CHUNK, b"Transfer-Encoding: chunked, chunked", length=False),
        PARSER,
    ),
    # (aiohttp C parser) misframed chunked data that arrives after the headers fails inside
    # feed_data, but the running handler's payload is never failed: only body_timeout ends it
    case(
        "chunked-bad-size-after-headers",
        (chunked(b""), 0.05, b"zz\r\n"),
        TIMED_OUT,
        config=SLOW,
    ),
    case(
        "chunked-data-longer-after-headers",
        (chunked(b""), 0.05, b"5\r\n" + BODY + b"\r\n" + LAST_CHUNK),
        TIMED_OUT,
        config=SLOW,
    ),
    case(
        "chunked-stalls-after-a-chunk",
        (chunked(b""), 0.05, chunk(BODY[:20])),
        TIMED_OUT,
        config=SLOW,
    ),
    # a slow loris: the body a byte at a time, then nothing while the connection stays open
    case("body-slow-loris-stalls-half-way", SLOW_LORIS, TIMED_OUT, config=SLOW),
    # -- Content-Encoding and huge bodies (max_body_bytes = 1 KiB) ---------------------------------
    case("gzip-valid", post(ZIPPED, b"Content-Encoding: gzip"), ok()),
    case("gzip-truncated", post(ZIPPED[:30], b"Content-Encoding: gzip"), INVALID_JSON),
    case("gzip-not-gzip", post(BODY, b"Content-Encoding: gzip"), INVALID_BODY),
    case("deflate-not-deflate", post(BODY, b"Content-Encoding: deflate"), INVALID_BODY),
    case(
        "gzip-not-gzip-keep-alive",
        post(BODY, b"Content-Encoding: gzip", close=False),
        INVALID_BODY,
    ),
    case("gzip-bomb-over-limit", post(BOMB, b"Content-Encoding: gzip"), TOO_LARGE, config=LIMIT),
    case(
        "cl-declared-10gb-sent-2kb",
        post(BODY + b" " * 2000, b"Content-Length: 10000000000", length=False),
        TOO_LARGE,
        config=LIMIT,
    ),
    case(
        "cl-declared-10gb-sent-small",
        post(BODY, b"Content-Length: 10000000000", length=False),
        CLOSED,
        config=LIMIT,
        half_close=True,
    ),
    case("chunked-over-limit", chunked(chunk(b" " * 2048) + LAST_CHUNK), TOO_LARGE, config=LIMIT),
    case(
        "chunked-many-small-over-limit",
        chunked(chunk(b" ") * 1500 + LAST_CHUNK),
        TOO_LARGE,
        config=LIMIT,
    ),
    # -- absurd headers ------------------------------------------------------------------------
    case("header-line-20kb", get(b"/healthz", b"X-Long: " + b"a" * 20_000), PARSER),
    case("headers-5000", get(b"/healthz", *MANY_HEADERS), PARSER),
    case("headers-100-is-fine", get(b"/healthz", *MANY_HEADERS[:100]), OK_HEALTH),
    case("header-without-colon", get(b"/healthz", b"NoColonHere"), PARSER),
    case("header-empty-name", get(b"/healthz", b": value"), PARSER),
    case("header-space-before-colon", get(b"/healthz", b"X-A : v"), PARSER),
    case("header-obs-fold", get(b"/healthz", b"X-A: a", b"  folded"), PARSER),
    case("header-non-ascii-name", get(b"/healthz", b"X-\xc3\xa9: v"), PARSER),
    case("header-nul-in-value", get(b"/v1/models", b"X-A: a\x00b"), PARSER),
    case("header-latin1-value", get(b"/healthz", b"X-A: caf\xe9"), OK_HEALTH),
    case("header-invalid-utf8-value", get(b"/v1/models", b"X-A: \xff\xfe\xc3"), OK_MODELS),
    case("header-host-missing", raw(b"GET /healthz HTTP/1.1", CLOSE), PARSER),
    case("header-host-twice", get(b"/healthz", b"Host: other"), PARSER),
    case("header-bare-lf", b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n", PARSER),
    case("header-bare-cr", b"GET /healthz HTTP/1.1\rHost: x\rConnection: close\r\r", PARSER),
    case("header-fault-invalid-utf8", post(BODY, b"x-foxmock-fault: \xff\xfe"), ok()),
    # -- request line ------------------------------------------------------------------------
    case("method-bad-char", get(b"/healthz", method=b"G@T"), PARSER),
    case("method-lowercase", get(b"/healthz", method=b"get"), PARSER),
    case("method-unknown", get(b"/healthz", method=b"FOO"), PARSER),
    case("method-5000-chars", get(b"/", method=b"A" * 5000), PARSER),
    case("version-http99", get(b"/healthz", version=b"HTTP/9.9"), PARSER),
    case("version-http12", get(b"/healthz", version=b"HTTP/1.2"), PARSER),
    case("version-http3-no-dot", get(b"/healthz", version=b"HTTP/3"), PARSER),
    case("version-lowercase", get(b"/healthz", version=b"http/1.1"), PARSER),
    case("version-not-http", get(b"/healthz", version=b"FOO/1.1"), PARSER),
    # aiohttp parses these two as HTTP/0.9 and HTTP/2.0 requests (and writes that version in its
    # status line); the route guard refuses them
    case("version-missing", raw(b"GET /healthz", HOST, CLOSE), BAD_VERSION),
    case("version-http20", get(b"/healthz", version=b"HTTP/2.0"), BAD_VERSION),
    case("version-missing-post", raw(b"POST " + CHAT, HOST, CLOSE, JSON_CT), BAD_VERSION),
    case("request-line-tabs", raw(b"GET\t/healthz\tHTTP/1.1", HOST, CLOSE), PARSER),
    case("request-line-two-spaces", raw(b"GET  /healthz HTTP/1.1", HOST, CLOSE), OK_HEALTH),
    case("request-leading-blank-lines", b"\r\n\r\n" + get(b"/healthz"), OK_HEALTH),
    case("tls-client-hello", TLS_HELLO, PARSER),
    case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PARSER),
    case("url-20kb", get(b"/" + b"a" * 20_000), PARSER),
    case("url-7kb-unknown", get(b"/" + b"a" * 7000), UNKNOWN_URL),
    case("url-missing", raw(b"GET HTTP/1.1", HOST, CLOSE), PARSER),
    case("url-without-slash", get(b"healthz"), PARSER),
    case("url-raw-nul", get(b"/v1/mo\x00dels"), PARSER),
    case("url-raw-utf8", get(b"/v1/models/\xc3\xa9"), PARSER),
    case("url-raw-invalid-utf8", get(b"/v1/models/\xff"), PARSER),
    case("url-del-in-query", get(b"/healthz?\x7f"), PARSER),
    case("url-dotdot-to-healthz", get(b"/v1/../healthz"), UNKNOWN_URL),
    case("url-dotdot-to-chat", post(path=b"/v1/models/../chat/completions"), UNKNOWN_URL),
    case("url-encoded-dotdot", post(path=b"/v1/models/%2e%2e/chat/completions"), UNKNOWN_URL),
    case("url-dotdot-passwd", get(b"/v1/models/../../../etc/passwd"), UNKNOWN_URL),
    case("url-dot-segment", post(path=b"/v1/./chat/completions"), UNKNOWN_URL),
    case("url-pct00-models", get(b"/v1/models%00"), UNKNOWN_URL),
    case("url-pct00-model-id", get(b"/v1/models/foxora-1%00"), NO_MODEL),
    case("url-pct-invalid-utf8-model-id", get(b"/v1/models/%ff%fe"), NO_MODEL),
    case("url-pct-incomplete-model-id", get(b"/v1/models/%Z"), NO_MODEL),
    case("url-encoded-slash", get(b"/v1%2Fmodels"), UNKNOWN_URL),
    case("url-double-slashes", get(b"//v1//models"), UNKNOWN_URL),
    case("url-backslash", get(b"/v1\\models"), UNKNOWN_URL),
    case("url-asterisk", get(b"*", method=b"OPTIONS"), UNKNOWN_URL),
    case("url-absolute-form", post(path=b"http://elsewhere.example" + CHAT), ok()),
    case("chat-query-string", post(path=CHAT + b"?stream=true&model=gpt-4"), ok()),
    case("chat-garbage-query", post(path=CHAT + b"?%zz=%ff&&=;;"), ok()),
    case("chat-pct00-query", post(path=CHAT + b"?x=%00"), ok()),
    case("chat-fragment", post(path=CHAT + b"#frag"), ok()),
    # -- methods -------------------------------------------------------------------------------
    case("options-chat", get(CHAT, method=b"OPTIONS"), NOT_ALLOWED),
    case("trace-healthz", get(b"/healthz", method=b"TRACE"), NOT_ALLOWED),
    case("connect-authority", get(b"example.com:443", method=b"CONNECT"), UNKNOWN_URL),
    case("delete-chat", get(CHAT, method=b"DELETE"), NOT_ALLOWED),
    case("get-chat", get(CHAT), NOT_ALLOWED),
    case("propfind-healthz", get(b"/healthz", method=b"PROPFIND"), NOT_ALLOWED),
    case("head-healthz", get(b"/healthz", method=b"HEAD"), OK_HEAD, head=True),
    case("head-chat", get(CHAT, method=b"HEAD"), NOT_ALLOWED, head=True),
    case("post-models", post(path=b"/v1/models"), NOT_ALLOWED),
    case("post-healthz-garbage", post(b"\xff\x00garbage", path=b"/healthz"), NOT_ALLOWED),
    case(
        "models-garbage-body",
        get(b"/v1/models", b"Content-Length: 5") + b"\xff\x00\xfe\x01\x02",
        OK_MODELS,
    ),
    case(
        "models-chunked-garbage",
        chunked(chunk(b"\xff\x00") + LAST_CHUNK, path=b"/v1/models"),
        NOT_ALLOWED,
    ),
    case(
        "models-get-chunked-garbage",
        get(b"/v1/models", CHUNKED) + chunk(b"\xff\x00") + LAST_CHUNK,
        OK_MODELS,
    ),
    case("models-query-garbage", get(b"/v1/models?%ff=%00&&"), OK_MODELS),
    case("healthz-bad-content-length", get(b"/healthz", b"Content-Length: abc"), PARSER),
    case("healthz-bad-chunk", get(b"/healthz", CHUNKED) + b"xyz\r\n", PARSER),
    # -- Expect and Upgrade --------------------------------------------------------------------
    case("expect-100-continue", post(BODY, b"Expect: 100-continue"), ok(interim=(100,))),
    case(
        "expect-100-continue-wrong-method",
        get(CHAT, b"Expect: 100-continue"),
        envelope(405, "method_not_allowed", interim=(100,)),
    ),
    case("expect-unknown", post(BODY, b"Expect: 200-ok"), EXPECT_FAILED),
    case("expect-empty-expects-nothing", post(BODY, b"Expect: "), ok()),
    case("expect-unknown-models", get(b"/v1/models", b"Expect: 200-ok"), EXPECT_FAILED),
    case("expect-100-continue-uppercase", post(BODY, b"Expect: 100-CONTINUE"), ok(interim=(100,))),
    case("upgrade-h2c-get", raw(b"GET /healthz HTTP/1.1", HOST, *H2C), OK_HEALTH),
    case("upgrade-h2c-post", post(BODY, *H2C, close=False), ok()),
    case("upgrade-websocket-models", raw(b"GET /v1/models HTTP/1.1", HOST, *WEBSOCKET), OK_MODELS),
    case("upgrade-websocket-chat", post(BODY, *WEBSOCKET, close=False), ok()),
    case(
        "upgrade-unknown-protocol",
        post(BODY, b"Connection: Upgrade", b"Upgrade: no-such-protocol/9", close=False),
        ok(),
    ),
    # -- HTTP/1.0 ------------------------------------------------------------------------------
    case(
        "http10-post-chat",
        http10(b"POST", CHAT, JSON_CT, b"Content-Length: %d" % len(BODY), body=BODY),
        ok(closes=True),
    ),
    case("http10-get-healthz", http10(b"GET", b"/healthz"), ok(HEALTHZ, closes=True)),
    case("http10-body-without-length", http10(b"POST", CHAT, JSON_CT, body=BODY), PARSER),
    case(
        "http10-chunked",
        http10(b"POST", CHAT, JSON_CT, CHUNKED, body=chunk(BODY) + LAST_CHUNK),
        ok(closes=True),
    ),
    # -- API keys configured -------------------------------------------------------------------
    case("auth-missing", post(), MISSING_KEY, config=KEYS),
    case("auth-empty", post(BODY, b"Authorization: "), MISSING_KEY, config=KEYS),
    case(
        "auth-basic-scheme", post(BODY, b"Authorization: Basic Zm9vOmJhcg=="), BAD_KEY, config=KEYS
    ),
    case("auth-bearer-no-token", post(BODY, b"Authorization: Bearer"), BAD_KEY, config=KEYS),
    case("auth-bearer-wrong", post(BODY, b"Authorization: Bearer sk-nope"), BAD_KEY, config=KEYS),
    case(
        "auth-bearer-tab",
        post(BODY, BEARER.replace(b" " + KEY.encode(), b"\t" + KEY.encode())),
        BAD_KEY,
        config=KEYS,
    ),
    case(
        "auth-bearer-latin1",
        post(BODY, b"Authorization: Bearer sk-g\xf6\xf6d"),
        BAD_KEY,
        config=KEYS,
    ),
    case(
        "auth-bearer-invalid-utf8",
        post(BODY, b"Authorization: Bearer \xff\xfe\xc3"),
        BAD_KEY,
        config=KEYS,
    ),
    case(
        "auth-bearer-8kb", post(BODY, b"Authorization: Bearer " + b"k" * 8000), BAD_KEY, config=KEYS
    ),
    case("auth-key-prefix", post(BODY, BEARER[:-1]), BAD_KEY, config=KEYS),
    case("auth-key-with-suffix", post(BODY, BEARER + b"x"), BAD_KEY, config=KEYS),
    case(
        "auth-wrong-then-right",
        post(BODY, b"Authorization: Bearer sk-nope", BEARER),
        BAD_KEY,
        config=KEYS,
    ),
    case("auth-nul", post(BODY, BEARER + b"\x00"), PARSER, config=KEYS),
    case("auth-del-char", post(BODY, BEARER + b"\x7f"), PARSER, config=KEYS),
    case(
        "auth-models-garbage",
        get(b"/v1/models", b"Authorization: \xff\xff !!"),
        BAD_KEY,
        config=KEYS,
    ),
    case("auth-model-id-missing", get(b"/v1/models/foxora-1"), MISSING_KEY, config=KEYS),
    case(
        "auth-healthz-garbage",
        get(b"/healthz", b"Authorization: \xff\xff !!"),
        OK_HEALTH,
        config=KEYS,
    ),
    case(
        "auth-lowercase-scheme",
        post(BODY, b"Authorization: bearer " + KEY.encode()),
        ok(),
        config=KEYS,
    ),
    case(
        "auth-extra-spaces",
        post(BODY, b"Authorization: Bearer   " + KEY.encode() + b"  "),
        ok(),
        config=KEYS,
    ),
]


# -- a raw HTTP/1.x client -----------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    interim: list[int]  # statuses of the 1xx responses that came first

    def json(self) -> Any:
        return json.loads(self.body)


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    return (await reader.readuntil(b"\r\n"))[:-2]


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while line := await _read_line(reader):
        name, sep, value = line.decode("latin-1").partition(":")
        assert sep, f"response header without a colon: {line!r}"
        headers[name.strip().lower()] = value.strip()
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await _read_line(reader)).split(b";")[0], 16):
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n", "chunk data not followed by CRLF"
    while await _read_line(reader):  # trailers
        pass
    return bytes(body)


async def read_response(reader: asyncio.StreamReader, head: bool = False) -> Response | None:
    """One response (after any 1xx ones), or None if the server closed before sending a byte."""
    interim: list[int] = []
    while True:
        try:
            line = await _read_line(reader)
        except asyncio.IncompleteReadError as exc:
            if exc.partial or interim:
                raise AssertionError(f"connection closed mid-response: {exc.partial!r}") from None
            return None
        version, _, rest = line.decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        assert version.startswith("HTTP/") and code.isdigit(), f"bad status line {line!r}"
        headers = await _read_headers(reader)
        if not 100 <= int(code) < 200:
            break
        interim.append(int(code))
    status = int(code)
    if head or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return Response(version, status, reason, headers, body, interim)


class Conn:
    """One raw TCP connection to a server; every operation is bounded by a timeout."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> Conn:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), TIMEOUT
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)

    async def send(self, *parts: Part) -> None:
        for part in parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                self.writer.write(part)
                await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def response(self, head: bool = False, timeout: float = TIMEOUT) -> Response | None:
        return await asyncio.wait_for(read_response(self.reader, head), timeout)

    async def responses_until_closed(self, limit: int, timeout: float = TIMEOUT) -> list[Response]:
        """The answers that come before the server closes, a reset, or ``timeout`` seconds of
        silence (then the client gives up); more than ``limit`` of them is a failure."""
        answers: list[Response] = []
        with contextlib.suppress(asyncio.TimeoutError, ConnectionResetError):
            while (resp := await self.response(timeout=timeout)) is not None:
                answers.append(check_sane(resp))
                assert len(answers) <= limit, [a.status for a in answers]
        return answers

    async def closed_by_server(self) -> bytes:
        """Wait for the server to close; return what it sent meanwhile (b"" for a clean close)."""
        try:
            return await asyncio.wait_for(self.reader.read(), TIMEOUT)
        except ConnectionResetError:
            return b""
        except asyncio.TimeoutError:
            raise AssertionError(f"the server did not close within {TIMEOUT:g} s") from None


# -- checks --------------------------------------------------------------------------------------


def check_sane(resp: Response | None) -> Response:
    """What every answer must be: there at all, not a 5xx, no traceback."""
    assert resp is not None, "the server closed the connection without answering"
    assert resp.status < 500, (resp.status, resp.body[:300])
    assert b"Traceback" not in resp.body, resp.body[:300]
    return resp


def says_close(resp: Response) -> bool:
    """The answer announces a close: ``Connection: close``, or HTTP/1.0 without keep-alive (as
    aiohttp answers a request it could not parse: it has no version to answer in)."""
    connection = resp.headers.get("connection", "").lower()
    return connection == "close" or (resp.version == "HTTP/1.0" and connection != "keep-alive")


def check_envelope(
    openapi: Validate,
    resp: Response | None,
    status: int,
    code: str | None = None,
    head: bool = False,
    error: Mapping[str, Any] | None = None,
) -> None:
    resp = check_sane(resp)
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    if head:
        assert resp.body == b""
        return
    payload = resp.json()
    openapi("ErrorResponse", payload)
    assert payload["error"]["message"]
    if code is not None:
        assert payload["error"]["code"] == code, payload
    for name, value in (error or {}).items():
        assert payload["error"][name] == value, (name, payload)


def check_parser_envelope(openapi: Validate, resp: Response | None, sent: bytes) -> None:
    """The answer to a request aiohttp could not parse: a 400 envelope that echoes nothing."""
    check_envelope(openapi, resp, 400, "invalid_http_request", error=PARSER_ERROR)
    assert resp is not None
    check_not_echoed(resp, sent)


VOCABULARY = {b"chunked", b"Bearer"}  # words of HTTP itself, which a message may well name


def fragments(sent: bytes) -> set[bytes]:
    """What an echo of ``sent`` would show: the API key, each line, and each word of 6 bytes or
    more but header names, HTTP versions and VOCABULARY."""
    found = {KEY.encode()}
    for line in re.split(rb"\r\n|\r|\n", sent):
        found.add(line)
        found.update(
            word
            for word in re.split(rb"[ \t]+", line)
            if not word.endswith(b":")
            and not re.fullmatch(rb"HTTP/[0-9.]+", word)
            and word not in VOCABULARY
        )
    return {piece for piece in found if len(piece) >= 6}


def check_not_echoed(resp: Response, sent: bytes) -> None:
    """No fragment of the request comes back, raw or as Python writes bytes (b'...\\x00...'),
    not even its first 16 characters (an echo of a long line may be cut short)."""
    error = resp.json()["error"]
    texts = [resp.body.decode("latin-1"), *(v for v in error.values() if isinstance(v, str))]
    for piece in fragments(sent):
        forms = {piece.decode("latin-1"), piece.decode("utf-8", "replace"), repr(piece)[2:-1]}
        for form in {form[:16] for form in forms}:
            for text in texts:
                assert form not in text, f"the answer echoes {form!r}: {text[:300]!r}"


def check_ok(openapi: Validate, resp: Response | None, schema: str | None) -> None:
    resp = check_sane(resp)
    assert resp.status == 200, (resp.status, resp.body[:300])
    if schema == HEALTHZ:
        payload = resp.json()
        assert payload["status"] == "ok" and isinstance(payload["scenarios"], int), payload
    elif schema is not None:
        openapi(schema, resp.json())


async def check_outcome(openapi: Validate, conn: Conn, case: Case) -> None:
    expect = case.expect
    try:
        resp = await conn.response(case.head, case.timeout)
    except ConnectionResetError:
        # A client that half-closed can see a reset when the server closes with bytes unread.
        assert expect.kind == "closed", "connection reset instead of an answer"
        return
    if resp is not None:
        check_sane(resp)
        assert tuple(resp.interim) == expect.interim, resp.interim
    if expect.kind == "envelope":
        check_envelope(openapi, resp, expect.status, expect.code, case.head, expect.error)
    elif expect.kind == "ok":
        check_ok(openapi, resp, expect.schema)
    elif expect.kind == "parser":
        check_parser_envelope(
            openapi, resp, b"".join(p for p in case.parts if isinstance(p, bytes))
        )
    else:
        assert resp is None, (resp.status, resp.body[:300])
    if expect.closes and resp is not None:
        assert says_close(resp), (resp.version, resp.headers)
    if expect.closes or expect.kind == "closed":
        assert await conn.closed_by_server() == b"", "the server sent more after its answer"


def auth_headers(config: Mapping[str, Any]) -> tuple[bytes, ...]:
    return (BEARER,) if config.get("api_keys") else ()


async def chat(port: int, *headers: bytes) -> Response | None:
    async with Conn(port) as conn:
        await conn.send(post(BODY, *headers))
        return await conn.response()


async def assert_still_serving(port: int, openapi: Validate, *headers: bytes) -> None:
    """A new connection gets a valid chat completion for the default scenarios' request."""
    resp = await chat(port, *headers)
    check_ok(openapi, resp, "CreateChatCompletionResponse")
    assert resp is not None and resp.json()["choices"][0]["message"]["content"] == "You said: Hello"


# -- the battery ---------------------------------------------------------------------------------


def test_battery_is_big_enough() -> None:
    assert len(BATTERY) >= 70
    assert len({p.id for p in BATTERY}) == len(BATTERY)


@pytest.mark.parametrize("case", BATTERY)
async def test_raw_bad_input(start_server, openapi, case: Case) -> None:
    srv = await start_server(**case.config)
    loop = asyncio.get_running_loop()
    async with Conn(srv.port) as conn:
        started = loop.time()
        try:
            await conn.send(*case.parts)
        except (ConnectionResetError, BrokenPipeError):
            # The server may refuse (and close) before a huge head has been written in full.
            assert case.expect.kind == "parser", "connection reset while sending"
        else:
            if case.half_close:
                conn.writer.write_eof()
            await check_outcome(openapi, conn, case)
        if case.expect.status == 408:  # the body timeout, not the client's, ended the case
            elapsed = loop.time() - started
            assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + 2.0, elapsed
    await assert_still_serving(srv.port, openapi, *auth_headers(case.config))


def test_the_echo_check_sees_an_echo() -> None:
    """aiohttp's own answers quote the line at fault; check_not_echoed must catch that."""
    for sent, echo in [
        (
            post(BODY, BEARER + b"\x00"),
            b"Invalid header value char: b'Authorization: Bearer sk-ra'",
        ),
        (get(b"/v1/mo\x00dels"), b"Invalid char in url path: b'GET /v1/mo\\x00dels HTTP/1.1'"),
        (get(b"/" + b"a" * 20_000), b"Got more than 8190 bytes: b'/aaaaaaaaaaaaaaaaaaaaa...'"),
        (TLS_HELLO, b"b'\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03\\x00\\x00'"),
        (
            post(BODY, b"Content-Length: 10", length=False),
            b'Data after: b\'{"model": "foxora-1", \'',
        ),
    ]:
        body = json.dumps({"error": {"message": echo.decode("latin-1")}}).encode()
        resp = Response("HTTP/1.1", 400, "Bad Request", {}, body, [])
        with pytest.raises(AssertionError, match="echoes"):
            check_not_echoed(resp, sent)


# -- pipelining ----------------------------------------------------------------------------------


def keep_alive_chat(body: bytes = BODY, *headers: bytes) -> bytes:
    return post(body, *headers, close=False)


async def test_pipelined_requests_are_answered_in_order(start_server, openapi) -> None:
    """Valid and invalid requests written in one send each get their own answer, in order."""
    srv = await start_server()
    batch = [
        (keep_alive_chat(), "chat"),
        (keep_alive_chat(b"{nope"), "invalid_json"),
        (raw(b"GET /v1/models HTTP/1.1", HOST), "models"),
        (raw(b"HEAD /healthz HTTP/1.1", HOST), "head"),
        (keep_alive_chat(chat_body(b"\xff")), "invalid_json"),
        (raw(b"GET /nope HTTP/1.1", HOST), "unknown_url"),
        (keep_alive_chat(BODY, *WEBSOCKET), "chat"),  # an upgrade nobody accepts
        (post(chunk(BODY) + LAST_CHUNK, CHUNKED, length=False, close=False), "chat"),
        (keep_alive_chat(BODY, b"Expect: 100-continue"), "chat"),
        (post(), "chat"),  # the last one asks the server to close
    ]
    async with Conn(srv.port) as conn:
        await conn.send(b"".join(data for data, _ in batch))
        for _, what in batch:
            resp = await conn.response(head=what == "head")
            if what == "chat":
                check_ok(openapi, resp, "CreateChatCompletionResponse")
            elif what == "models":
                check_ok(openapi, resp, "ListModelsResponse")
            elif what == "head":
                check_ok(openapi, resp, None)
            else:
                check_envelope(openapi, resp, 404 if what == "unknown_url" else 400, what)
        assert await conn.closed_by_server() == b""


async def test_fifty_pipelined_requests(start_server, openapi) -> None:
    srv = await start_server()
    async with Conn(srv.port) as conn:
        await conn.send(keep_alive_chat() * 49 + post())
        ids = set()
        for _ in range(50):
            resp = await conn.response()
            check_ok(openapi, resp, "CreateChatCompletionResponse")
            assert resp is not None
            ids.add(resp.json()["id"])
        assert len(ids) == 50
        assert await conn.closed_by_server() == b""


async def test_malformed_request_in_the_middle_of_one_send(start_server, openapi) -> None:
    """valid, malformed, valid in one send: no 5xx, the 400 envelope, a close; others served.

    (aiohttp) when a malformed request arrives in the same read as complete valid requests before
    it, web_protocol.RequestHandler.data_received() replaces every message parsed from that read
    with the 400, so the valid request ahead of it is never answered. Should aiohttp answer it
    one day, that answer must be a valid completion; the request after the bad one is never read.
    """
    srv = await start_server()
    sent = keep_alive_chat() + get(b"/healthz", method=b"G@T") + post()
    async with Conn(srv.port) as conn:
        await conn.send(sent)
        answers = await conn.responses_until_closed(limit=3)
    assert 1 <= len(answers) <= 2, [a.status for a in answers]
    *before, last = answers
    for resp in before:
        check_ok(openapi, resp, "CreateChatCompletionResponse")
    check_parser_envelope(openapi, last, sent)
    assert says_close(last), (last.version, last.headers)
    await assert_still_serving(srv.port, openapi)


async def test_request_pipelined_behind_an_h2c_upgrade_attempt(start_server, openapi) -> None:
    """An h2c upgrade attempt with a request behind it in the same send: the first is answered,
    nothing is a 5xx, the connection ends (the client gives up after HANG), others are served.

    (aiohttp C parser) after a request with 'Connection: Upgrade' + 'Upgrade: h2c' (or any
    non-websocket protocol), the bytes that came with it are kept as the upgraded stream's tail
    and never parsed: the second request gets no answer and the connection stays open (sent
    separately, both are answered). Should aiohttp answer it, it must be a valid completion.
    """
    srv = await start_server()
    async with Conn(srv.port) as conn:
        await conn.send(raw(b"GET /healthz HTTP/1.1", HOST, *H2C) + post())
        answers = await conn.responses_until_closed(limit=2, timeout=HANG)
    assert 1 <= len(answers) <= 2, [a.status for a in answers]
    check_ok(openapi, answers[0], HEALTHZ)
    for resp in answers[1:]:
        check_ok(openapi, resp, "CreateChatCompletionResponse")
    await assert_still_serving(srv.port, openapi)


async def test_requests_after_an_h2c_upgrade_attempt_on_the_same_connection(
    start_server, openapi
) -> None:
    """What curl --http2 does on http://: the upgrade is ignored and the connection goes on."""
    srv = await start_server()
    async with Conn(srv.port) as conn:
        await conn.send(raw(b"GET /v1/models HTTP/1.1", HOST, *H2C))
        check_ok(openapi, await conn.response(), "ListModelsResponse")
        await conn.send(post())
        check_ok(openapi, await conn.response(), "CreateChatCompletionResponse")


async def test_malformed_request_after_an_answered_one(start_server, openapi) -> None:
    """The same, with the malformed bytes in a later read: 200, then 400 and a close."""
    srv = await start_server()
    async with Conn(srv.port) as conn:
        await conn.send(keep_alive_chat())
        check_ok(openapi, await conn.response(), "CreateChatCompletionResponse")
        await conn.send(get(b"/healthz", method=b"G@T") + post())
        resp = await conn.response()
        check_parser_envelope(openapi, resp, get(b"/healthz", method=b"G@T") + post())
        assert resp is not None and says_close(resp), (resp.version, resp.headers)
        assert await conn.closed_by_server() == b""
    await assert_still_serving(srv.port, openapi)


# -- HTTP/1.0 and Expect ---------------------------------------------------------------------------


async def test_http10_keep_alive_serves_several_requests(start_server, openapi) -> None:
    srv = await start_server()
    keep = b"Connection: keep-alive"
    length = b"Content-Length: %d" % len(BODY)
    async with Conn(srv.port) as conn:
        await conn.send(http10(b"POST", CHAT, keep, JSON_CT, length, body=BODY))
        resp = await conn.response()
        check_ok(openapi, resp, "CreateChatCompletionResponse")
        assert resp is not None and resp.version == "HTTP/1.0"
        assert resp.headers.get("connection", "").lower() == "keep-alive"
        await conn.send(http10(b"GET", b"/v1/models", keep))
        check_ok(openapi, await conn.response(), "ListModelsResponse")
        await conn.send(http10(b"GET", b"/healthz"))  # no keep-alive: the server closes
        check_ok(openapi, await conn.response(), HEALTHZ)
        assert await conn.closed_by_server() == b""


async def test_expect_100_continue_waits_for_the_body(start_server, openapi) -> None:
    """The client sends headers only, waits for 100 Continue, then sends the body."""
    srv = await start_server()
    request = post(BODY, b"Expect: 100-continue")
    head, body = request[: -len(BODY)], request[-len(BODY) :]
    async with Conn(srv.port) as conn:
        await conn.send(head)
        line = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert line.startswith(b"HTTP/1.1 100 ")
        await conn.send(body)
        check_ok(openapi, await conn.response(), "CreateChatCompletionResponse")


# -- slow clients --------------------------------------------------------------------------------


async def dribble(conn: Conn, data: bytes, delay: float) -> None:
    """Write ``data`` one byte at a time, ``delay`` seconds apart."""
    for i in range(len(data)):
        await conn.send(data[i : i + 1], delay)


async def test_slow_loris_headers_do_not_block_other_clients(start_server, openapi) -> None:
    """A head sent a byte at a time: others are served meanwhile, then it gets its answer."""
    srv = await start_server()
    request = post()
    half = len(request) // 3  # inside the headers
    async with Conn(srv.port) as slow:
        await dribble(slow, request[:half], 0.002)
        await assert_still_serving(srv.port, openapi)  # while the slow head is half sent
        rest = asyncio.create_task(dribble(slow, request[half:], 0.002))
        try:
            while not rest.done():  # and while it keeps dribbling
                await assert_still_serving(srv.port, openapi)
            await rest
        finally:
            rest.cancel()
        check_ok(openapi, await slow.response(), "CreateChatCompletionResponse")


async def test_many_half_sent_requests_do_not_block_other_clients(start_server, openapi) -> None:
    srv = await start_server()
    request = post()
    async with contextlib.AsyncExitStack() as stack:
        stalled = [await stack.enter_async_context(Conn(srv.port)) for _ in range(50)]
        for i, conn in enumerate(stalled):
            await conn.send(
                request[: 5 + i * 3]
            )  # cut in the request line, the headers or the body
        await assert_still_serving(srv.port, openapi)
    await assert_still_serving(srv.port, openapi)


async def test_stalled_body_then_client_closes(start_server, openapi) -> None:
    """Half a body, then nothing: no answer yet, others are served; then the client gives up."""
    srv = await start_server()
    request = post()
    async with Conn(srv.port) as stalled:
        await stalled.send(request[: len(request) - len(BODY) // 2])
        await assert_still_serving(srv.port, openapi)
        with pytest.raises(asyncio.TimeoutError):
            await stalled.response(timeout=0.2)  # the server waits for the rest
    # The stalled client has closed its socket without finishing the body.
    await assert_still_serving(srv.port, openapi)
    async with Conn(srv.port) as conn:  # and a keep-alive connection still works
        await conn.send(keep_alive_chat(), 0.01, keep_alive_chat())
        check_ok(openapi, await conn.response(), "CreateChatCompletionResponse")
        check_ok(openapi, await conn.response(), "CreateChatCompletionResponse")
