"""The admin API under ``/_foxmock/``: scenarios, journal, reset and reload."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web
from aiohttp.typedefs import Handler

from foxmock._exceptions import Problem, RequestError, ScenarioError
from foxmock.server.errors import add_guarded
from foxmock.server.state import STATE, ServerState

PREFIX = "/_foxmock"
ADMIN_MODES = ("on", "loopback", "off")


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


def check_admin_access(request: web.Request) -> None:
    """Refuse admin requests from other machines (``admin="loopback"``) or without the token."""
    config = _state(request).config
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


async def _read_source(request: web.Request) -> Any:
    text = await request.text()
    try:
        if request.content_type == "application/json":
            return json.loads(text)
        data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RequestError(
            f"The body is not valid JSON or YAML: {exc}", code="invalid_body"
        ) from None
    if not isinstance(data, (dict, list)):
        raise RequestError(
            "Send a scenario file, a scenario, or a list of scenarios.", code="invalid_body"
        )
    # YAML text keeps its line numbers in error messages; JSON bodies have none to keep.
    return text if request.content_type != "application/json" else data


def _add(state: ServerState, source: Any, replace: bool) -> list[str]:
    try:
        return state.store.add(source, replace=replace)
    except ScenarioError as exc:
        raise RequestError(
            f"Invalid scenarios:\n{exc}", status=422, code="invalid_scenarios"
        ) from None
    except ValueError as exc:
        raise RequestError(str(exc), status=409, code="scenario_exists") from None


async def add_scenarios(request: web.Request) -> web.StreamResponse:
    replace = request.query.get("replace", "").lower() in ("1", "true", "yes")
    names = _add(_state(request), await _read_source(request), replace)
    return _json({"added": names}, status=201)


async def put_scenario(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    source = await _read_source(request)
    data = yaml.safe_load(source) if isinstance(source, str) else source
    if not isinstance(data, dict) or "scenarios" in data:
        raise RequestError("PUT takes one scenario (a mapping).", code="invalid_body")
    data.setdefault("name", name)
    if data["name"] != name:
        raise RequestError(
            f"The body names scenario {data['name']!r} but the path names {name!r}.",
            code="name_mismatch",
        )
    _add(_state(request), data, replace=True)
    return _json({"replaced": name})


async def delete_scenario(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not _state(request).store.remove(name):
        raise RequestError(f"No scenario named {name!r}.", status=404, code="scenario_not_found")
    return web.Response(status=204)


async def clear_scenarios(request: web.Request) -> web.StreamResponse:
    _state(request).store.clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    state.store.reset()
    state.journal.clear()
    return _json({"scenarios": len(state.scenarios)})


async def reload(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    problems = state.store.reload()
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
    return _json({"entries": [e.to_json() for e in entries], "total": state.journal.total})


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
    ]
    add_guarded(app.router, routes, check_admin_access)
    return app
