"""The admin API under ``/_foxmock/``: scenarios, journal, reset and reload."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from foxmock._exceptions import Problem, RequestError, ScenarioError
from foxmock.config import Config
from foxmock.journal import journal_json
from foxmock.scenarios.model import Scenario
from foxmock.scenarios.store import TooManyScenarios, compile_parsed
from foxmock.scenarios.yamlnodes import Lines, YamlProblem, load_yaml
from foxmock.server.errors import add_guarded
from foxmock.server.offload import collector_paused
from foxmock.server.state import STATE, ServerState
from foxmock.stateful import unavailable
from foxmock.statestore import StateUnavailable

PREFIX = "/_foxmock"
ADMIN_MODES = ("on", "loopback", "off")
# what an HTML form (or a fetch without a CORS preflight) can send; never a scenario body
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _state(request: web.Request) -> ServerState:
    return request.config_dict[STATE]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, default=str))


def _problems(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "key": p.key, "message": p.message} for p in problems]


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is on this machine (127.0.0.0/8, ::1, or a Unix socket)."""
    if not remote:
        return True  # no IP peer: a Unix socket or an in-process test client
    import ipaddress  # only for --admin loopback

    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without port, brackets or a trailing dot, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def host_allowed(host: str, config: Config) -> bool:
    """Whether a ``Host`` cannot be a DNS-rebound name of an attacker's page.

    Rebinding needs a DNS name the attacker controls: IP literals, loopback names and
    single-label names (a docker-compose service, a machine on the LAN) are not such names;
    ``config.host`` and ``config.admin_hosts`` are named by the operator.
    """
    name = host_name(host)
    if _is_ip(name) or "." not in name or name.endswith(".localhost"):
        return True
    allowed = {host_name(h) for h in (config.host, *config.admin_hosts)}
    return name in allowed


def check_browser_safety(request: web.Request, config: Config) -> None:
    """Refuse what a web page could make a browser send: rebound Hosts, other origins, forms."""
    host = request.headers.get("Host")
    if host is not None and not config.admin_token and not host_allowed(host, config):
        raise RequestError(
            f"The admin API does not answer for Host {host!r} (a DNS-rebinding guard); use "
            "localhost or an IP address, add --admin-host NAME, or set --admin-token.",
            status=403,
            code="admin_host_refused",
        )
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin, host):
        raise RequestError(
            f"The admin API does not answer web pages from other origins ({origin!r}).",
            status=403,
            code="admin_origin_refused",
        )
    if request.method not in READS and request.content_type in FORM_TYPES:
        raise RequestError(
            f"The admin API does not take {request.content_type} (what a web form sends); "
            "send Content-Type: application/yaml or application/json.",
            status=415,
            code="unsupported_content_type",
        )


def _same_origin(origin: str, host: str | None) -> bool:
    scheme, sep, netloc = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or host is None:
        return False
    default = {"http": ":80", "https": ":443"}[scheme]
    return netloc.removesuffix(default) == host.strip().lower().removesuffix(default)


def check_admin_access(request: web.Request) -> None:
    """Refuse admin requests from other machines (``admin="loopback"``) or without the token."""
    config = _state(request).config
    check_browser_safety(request, config)
    if config.admin == "loopback" and not is_loopback(request.remote):
        raise RequestError(
            "The admin API only answers requests from this machine (--admin loopback).",
            status=403,
            code="admin_loopback_only",
        )
    token = config.admin_token
    if token:
        given = request.headers.get("X-Foxmock-Admin-Token", "")
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = given or bearer.strip()
        import hmac  # only with an admin token

        if not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestError(
                "The admin API needs the admin token (Authorization: Bearer TOKEN or "
                "X-Foxmock-Admin-Token).",
                status=401,
                code="invalid_admin_token",
            )


def _scenario_json(state: ServerState) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "description": s.description,
            "priority": s.priority,
            "file": s.file,
            "line": s.line,
        }
        for s in state.scenarios.scenarios
    ]


async def list_scenarios(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    return _json(
        {"scenarios": _scenario_json(state), "reload_error": _problems(state.store.last_error)}
    )


async def _read_body(request: web.Request) -> tuple[str, bool]:
    """The body text and whether it is JSON (else YAML)."""
    return await request.text(), request.content_type == "application/json"


def _parse(text: str, is_json: bool) -> tuple[Any, Lines, str]:
    """A body's value, key lines and source name; YAML with the files' alias and depth limits."""
    try:
        if is_json:
            data: Any = json.loads(text)
            lines: Lines = {}
        else:
            data, lines = load_yaml(text)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"The body is not valid JSON: {exc}", code="invalid_body") from None
    except YamlProblem as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise RequestError(
            f"The body is not valid YAML{where}: {exc.message}", code="invalid_body"
        ) from None
    if not isinstance(data, (dict, list)):
        raise RequestError(
            "Send a scenario file, a scenario, or a list of scenarios.", code="invalid_body"
        )
    return data, lines, "<inline json>" if is_json else "<inline yaml>"


def _compile(state: ServerState, data: Any, lines: Lines, name: str) -> list[Scenario]:
    try:
        with collector_paused(freeze=True):
            return compile_parsed(data, lines, name, state.store.engine)[0]
    except ScenarioError as exc:
        raise RequestError(
            f"Invalid scenarios:\n{exc}", status=422, code="invalid_scenarios"
        ) from None


def _compile_body(state: ServerState, text: str, is_json: bool) -> list[Scenario]:
    """Parse and compile a POST body (runs on a worker thread)."""
    return _compile(state, *_parse(text, is_json))


def _compile_one(state: ServerState, text: str, is_json: bool, name: str) -> list[Scenario]:
    """Parse and compile a PUT body: one scenario named ``name`` (runs on a worker thread)."""
    data, lines, source = _parse(text, is_json)
    if not isinstance(data, dict) or "scenarios" in data:
        raise RequestError("PUT takes one scenario (a mapping).", code="invalid_body")
    data.setdefault("name", name)
    if data["name"] != name:
        raise RequestError(
            f"The body names scenario {data['name']!r} but the path names {name!r}.",
            code="name_mismatch",
        )
    return _compile(state, data, lines, source)


async def _serve(state: ServerState, scenarios: list[Scenario], replace: bool) -> list[str]:
    try:
        return await state.store.add_compiled(scenarios, replace)
    except TooManyScenarios as exc:
        raise RequestError(str(exc), status=422, code="too_many_scenarios") from None
    except ValueError as exc:
        raise RequestError(str(exc), status=409, code="scenario_exists") from None


async def add_scenarios(request: web.Request) -> web.StreamResponse:
    replace = request.query.get("replace", "").lower() in ("1", "true", "yes")
    state = _state(request)
    text, is_json = await _read_body(request)
    scenarios = await asyncio.to_thread(_compile_body, state, text, is_json)
    return _json({"added": await _serve(state, scenarios, replace)}, status=201)


async def put_scenario(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    state = _state(request)
    text, is_json = await _read_body(request)
    scenarios = await asyncio.to_thread(_compile_one, state, text, is_json, name)
    await _serve(state, scenarios, replace=True)
    return _json({"replaced": name})


async def delete_scenario(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not await _state(request).store.remove_async(name):
        raise RequestError(f"No scenario named {name!r}.", status=404, code="scenario_not_found")
    return web.Response(status=204)


async def clear_scenarios(request: web.Request) -> web.StreamResponse:
    await _state(request).store.clear_async()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    await _clear_counters(state, None)  # first: a store that is down leaves all as it was
    await state.store.reset_async()
    state.journal.clear()
    return _json({"scenarios": len(state.scenarios)})


async def _clear_counters(state: ServerState, scenario: str | None) -> int:
    if state.counting is None:
        return 0
    try:
        return await state.counting.store.clear(scenario)
    except StateUnavailable as exc:
        raise unavailable(exc) from None


def _described(entry: dict[str, Any], scenarios: dict[str, Scenario]) -> dict[str, Any]:
    """A store entry with what its scenario says of it: steps, limit, next step, used up."""
    scenario = scenarios.get(entry["name"])
    counted = scenario.state if scenario is not None else None
    if entry["kind"] != "sequence" or counted is None:
        return entry
    uses = entry["count"]
    steps = len(counted.steps)
    described = {**entry, "steps": steps or None, "limit": counted.limit}
    described["used_up"] = counted.limit is not None and uses >= counted.limit
    described["next_step"] = None if described["used_up"] else (min(uses + 1, steps) or None)
    return described


async def read_state(request: web.Request) -> web.StreamResponse:
    """``GET /_foxmock/state``: sequence counters and quota windows, as the store holds them."""
    state = _state(request)
    counting = state.counting
    if counting is None:
        return _json({"store": None, "entries": []})
    try:
        entries = await counting.store.entries()
    except StateUnavailable as exc:
        raise unavailable(exc) from None
    by_name = {s.name: s for s in state.scenarios.scenarios}
    quota = counting.quota
    return _json(
        {
            "store": counting.store.shown(),
            "default_scope": str(counting.default_scope),
            "rate_limit": None
            if quota is None
            else {
                "requests_per_minute": quota.requests_per_minute,
                "tokens_per_minute": quota.tokens_per_minute,
                "scope": str(quota.scope),
            },
            "test": counting.test_id or None,
            "entries": [_described(e, by_name) for e in entries],
        }
    )


async def clear_state(request: web.Request) -> web.StreamResponse:
    """``DELETE /_foxmock/state[?scenario=NAME]``: every counter and window starts again."""
    dropped = await _clear_counters(_state(request), request.query.get("scenario"))
    return _json({"cleared": dropped})


async def reload(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    problems = await state.store.reload_async()
    if problems:
        return _json(
            {
                "error": {
                    "message": "Reload failed; the last good scenarios are still served.\n"
                    + "\n".join(str(p) for p in problems),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "reload_failed",
                },
                "problems": _problems(problems),
            },
            status=422,
        )
    return _json({"scenarios": len(state.scenarios)})


async def read_journal(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    matched = request.query.get("matched")
    entries = state.journal.entries(
        scenario=request.query.get("scenario"),
        matched=None if matched is None else matched.lower() in ("1", "true", "yes"),
    )
    limit = request.query.get("limit")
    if limit is not None:
        if not limit.isdigit():
            raise RequestError("limit must be a non-negative integer", param="limit")
        entries = entries[-int(limit) :] if int(limit) else []
    return await _json_pieces(request, journal_json(entries, state.journal.total))


async def _json_pieces(request: web.Request, pieces: Iterable[bytes]) -> web.StreamResponse:
    """A JSON answer written piece by piece, each built only when the last one is written."""
    response = web.StreamResponse()
    response.content_type, response.charset = "application/json", "utf-8"
    await response.prepare(request)
    if request.method != "HEAD":
        for piece in pieces:
            await response.write(piece)
    await response.write_eof()
    return response


async def clear_journal(request: web.Request) -> web.StreamResponse:
    _state(request).journal.clear()
    return web.Response(status=204)


async def status(request: web.Request) -> web.StreamResponse:
    from foxmock import __version__

    state = _state(request)
    return _json(
        {
            "version": __version__,
            "scenarios": len(state.scenarios),
            "watch": state.config.watch,
            "reload_error": _problems(state.store.last_error),
            "journal": {
                "size": len(state.journal),
                "max": state.journal.maxlen,
                "total": state.journal.total,
            },
            "replay": state.replay_stats(),
        }
    )


def admin_app() -> web.Application:
    """The admin sub-application, mounted at ``/_foxmock/``."""
    app = web.Application()
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/status", status),
        ("GET", "/scenarios", list_scenarios),
        ("POST", "/scenarios", add_scenarios),
        ("DELETE", "/scenarios", clear_scenarios),
        ("PUT", "/scenarios/{name}", put_scenario),
        ("DELETE", "/scenarios/{name}", delete_scenario),
        ("POST", "/reset", reset),
        ("POST", "/reload", reload),
        ("GET", "/journal", read_journal),
        ("DELETE", "/journal", clear_journal),
        ("GET", "/state", read_state),
        ("DELETE", "/state", clear_state),
    ]
    add_guarded(app.router, routes, check_admin_access)
    return app
