"""CORS for the OpenAI paths (``--cors ORIGIN``): origin checks, preflights, response headers.

Nothing is installed without origins, so a server without ``--cors`` pays nothing. With them,
one `on_response_prepare` hook adds the headers (streams included: it runs before they are
sent) and a last-resort resource answers preflights the routes do not take. The admin API
under ``/_foxmock`` never gets CORS headers: web pages must not reach it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from multidict import CIMultiDict

from foxmock._exceptions import RequestError
from foxmock.faults import RATE_LIMIT_HEADERS, RETRY_HEADERS
from foxmock.request_ids import HEADER as REQUEST_ID
from foxmock.server.admin import PREFIX
from foxmock.server.errors import expect_handler, guard

ANY = "*"
MAX_AGE = "600"
ALLOW_METHODS = "GET, POST, OPTIONS"
# what a page may read of an answer: its id, and what a fault says of retrying and the quota
EXPOSED = ", ".join((REQUEST_ID, *RETRY_HEADERS, *RATE_LIMIT_HEADERS))
MAX_REQUEST_HEADERS = 1024  # characters of Access-Control-Request-Headers echoed at most
REQUEST_METHOD = "Access-Control-Request-Method"
REQUEST_HEADERS = "Access-Control-Request-Headers"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
ALLOW_METHODS_HEADER = "Access-Control-Allow-Methods"

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_ORIGIN = re.compile(
    rf"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)"
    r"(?::(?P<port>[0-9]{1,5}))?/?"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN_LIST = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z, \t-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> str:
    """``text`` as a normalized origin: ``*``, or ``scheme://host[:port]`` in lower case
    without a default port; `ValueError` with a usable message when it is not one."""
    value = text.strip()
    if value == ANY:
        return ANY
    found = _ORIGIN.fullmatch(value.lower())
    port = int(found["port"]) if found and found["port"] else None
    host = found["host"] if found else ""
    if not found or (port is not None and not 0 < port < 65536) or not _host_ok(host):
        raise ValueError(
            f"--cors {text!r} is not an origin: give * or scheme://host[:port] with http or "
            "https and no path, e.g. --cors http://localhost:3000"
        )
    shown = "" if port in (None, _DEFAULT_PORTS[found["scheme"]]) else f":{port}"
    return f"{found['scheme']}://{host}{shown}"


def _host_ok(host: str) -> bool:
    """Whether a bracketed host is an IPv6 address (names passed the pattern already)."""
    if not host.startswith("["):
        return True
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CorsPolicy:
    """The origins web pages may call the API from; ``*`` among them allows any."""

    origins: frozenset[str]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> CorsPolicy | None:
        """The policy for ``--cors`` values, None when there are none; `ValueError` if bad."""
        origins = frozenset(parse_origin(t) for t in texts)
        return cls(origins) if origins else None

    def allow_origin(self, origin: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request's ``Origin``, or None."""
        if ANY in self.origins:
            return ANY
        return origin if origin.lower() in self.origins else None


def is_admin_path(path: str) -> bool:
    """Whether ``path`` is the admin API's (or looks like it): never a CORS answer there."""
    return path.startswith(PREFIX)


def is_preflight(method: str, headers: Mapping[str, str], path: str) -> bool:
    """Whether a request is a CORS preflight to an API path."""
    return (
        method == "OPTIONS"
        and REQUEST_METHOD in headers
        and "Origin" in headers
        and not is_admin_path(path)
    )


def merged_vary(current: str | None, names: Iterable[str]) -> str:
    """``current`` Vary value with ``names`` added once each (``*`` stays ``*``)."""
    given = [v.strip() for v in (current or "").split(",") if v.strip()]
    if ANY in given:
        return ANY
    seen = {v.lower() for v in given}
    given += [n for n in names if n.lower() not in seen]
    return ", ".join(given)


def preflight_headers(policy: CorsPolicy, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a preflight's 204; a `RequestError` (403, 400) when it is refused."""
    origin = headers.get("Origin", "")
    allowed = policy.allow_origin(origin)
    if allowed is None:
        raise RequestError(
            f"CORS: origin {origin!r} is not allowed; start foxmock with --cors {origin} "
            "(or --cors '*') to let that page call the API.",
            status=403,
            param="Origin",
            code="cors_origin_refused",
        )
    method = headers.get(REQUEST_METHOD, "").strip()
    requested = headers.get(REQUEST_HEADERS, "").strip()
    if not _TOKEN.fullmatch(method):
        raise RequestError(
            f"CORS: {REQUEST_METHOD} must name one method, not {method[:80]!r}.",
            param=REQUEST_METHOD,
            code="invalid_cors_preflight",
        )
    if len(requested) > MAX_REQUEST_HEADERS or not _TOKEN_LIST.fullmatch(requested):
        raise RequestError(
            f"CORS: {REQUEST_HEADERS} must be a list of at most {MAX_REQUEST_HEADERS} "
            "characters of header names.",
            param=REQUEST_HEADERS,
            code="invalid_cors_preflight",
        )
    answer = {
        ALLOW_ORIGIN: allowed,
        ALLOW_METHODS_HEADER: ALLOW_METHODS,
        "Access-Control-Max-Age": MAX_AGE,
        "Vary": f"Origin, {REQUEST_METHOD}, {REQUEST_HEADERS}",
    }
    if requested:
        answer["Access-Control-Allow-Headers"] = requested
    return answer


def add_response_headers(policy: CorsPolicy, origin: str, headers: CIMultiDict[str]) -> None:
    """Make a response to a request from ``origin`` readable by that page, if it may read it;
    preflight answers (which carry their own headers) are left alone."""
    if ALLOW_METHODS_HEADER in headers:
        return
    headers["Vary"] = merged_vary(headers.get("Vary"), ("Origin",))
    allowed = policy.allow_origin(origin)
    if allowed is None:
        headers.popall(ALLOW_ORIGIN, None)  # e.g. relayed from a recorder's upstream
        return
    headers[ALLOW_ORIGIN] = allowed
    headers["Access-Control-Expose-Headers"] = EXPOSED


class _Preflights(web.PlainResource):
    """Takes the CORS preflights to any API path, and nothing else. Registered under "/"
    before the catch-all, it is asked only for what no route of the path took, and adds no
    method to the 405 answers the catch-all gives."""

    def __init__(self) -> None:
        super().__init__("/")

    def _match(self, path: str) -> dict[str, str] | None:
        return {}

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        if not is_preflight(request.method, request.headers, request.path):
            return None, set()
        match, _ = await super().resolve(request)
        return match, set()


def preflight_handler(policy: CorsPolicy) -> Handler:
    """The handler answering preflights under ``policy`` (refusals as OpenAI envelopes)."""

    async def preflight(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers=preflight_headers(policy, request.headers))

    return guard(preflight)


def install(app: web.Application, policy: CorsPolicy) -> None:
    """Answer preflights and add CORS headers to every API response of ``app``; call it before
    the catch-all routes are added, so preflights reach `_Preflights` first."""
    resource = _Preflights()
    app.router.register_resource(resource)
    resource.add_route("OPTIONS", preflight_handler(policy), expect_handler=expect_handler)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not is_admin_path(request.path):
            add_response_headers(policy, origin, response.headers)

    app.on_response_prepare.append(on_prepare)
