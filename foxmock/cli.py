"""The ``foxmock`` command: thin argument parsing that builds a `Config` and runs it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from foxmock._exceptions import ScenarioError
from foxmock.config import (
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_ANSWER,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_PORT,
    Config,
    api_keys_from_env,
    cors_from_env,
)
from foxmock.journal import DEFAULT_JOURNAL_BYTES, DEFAULT_JOURNAL_SIZE
from foxmock.recorder.modes import MATCH_KEYS, RecordMode

LOG_LEVELS = ("debug", "info", "warning", "error")


def _env_number(name: str, default: float, kind: type[float] = float) -> Any:
    """The number in environment variable ``name`` (of type ``kind``), else ``default``."""
    value = os.environ.get(name)
    try:
        return kind(value) if value else default
    except ValueError:
        raise SystemExit(f"foxmock: {name} must be a number, got {value!r}") from None


def _latency(text: str | None) -> dict[str, object] | None:
    """Parse and check ``--latency`` against the scenario schema's latency definition."""
    if not text:
        return None
    import yaml
    from jsonschema import Draft202012Validator

    from foxmock.scenarios.loader import scenario_schema

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SystemExit(f"foxmock: --latency is not valid YAML: {exc}") from None
    schema = {**scenario_schema(), "$ref": "#/$defs/latency"}
    for key in ("required", "properties", "additionalProperties", "type"):
        schema.pop(key, None)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    if errors:
        raise SystemExit(f"foxmock: --latency: {'; '.join(errors)}")
    return value  # type: ignore[no-any-return]


def _server_options(serve: argparse.ArgumentParser) -> None:
    """Options shared by ``serve`` and ``record``."""
    serve.add_argument(
        "--host",
        default=os.environ.get("FOXMOCK_HOST", DEFAULT_HOST),
        help="address to listen on (env FOXMOCK_HOST)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_number("FOXMOCK_PORT", DEFAULT_PORT, int),
        help="port to listen on; 0 picks a free one (env FOXMOCK_PORT)",
    )
    serve.add_argument(
        "--scenarios",
        "-s",
        action="append",
        metavar="PATH",
        help="scenario file or directory, repeatable; default: the bundled "
        "scenarios (env FOXMOCK_SCENARIOS, separated by the path separator)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only requests bearing this key, repeatable "
        "(env FOXMOCK_API_KEYS, comma separated); default: no check",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=_env_number("FOXMOCK_MAX_BODY_BYTES", DEFAULT_MAX_BODY, int),
        help="larger request bodies get 413 (env FOXMOCK_MAX_BODY_BYTES)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=_env_number("FOXMOCK_BODY_TIMEOUT", 30.0),
        metavar="S",
        help="answer 408 when a request body is not complete after S seconds "
        "(env FOXMOCK_BODY_TIMEOUT)",
    )
    serve.add_argument(
        "--head-timeout",
        type=float,
        default=_env_number("FOXMOCK_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT),
        metavar="S",
        help="close a connection whose request head is not complete after S seconds "
        "(env FOXMOCK_HEAD_TIMEOUT)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=float,
        default=_env_number("FOXMOCK_KEEPALIVE_TIMEOUT", DEFAULT_KEEPALIVE_TIMEOUT),
        metavar="S",
        help="close a keep-alive connection idle for S seconds (env FOXMOCK_KEEPALIVE_TIMEOUT)",
    )
    serve.add_argument(
        "--max-answer-bytes",
        type=int,
        default=_env_number("FOXMOCK_MAX_ANSWER_BYTES", DEFAULT_MAX_ANSWER, int),
        help="a request whose answer (every choice and frame) would be larger gets 400 "
        "(env FOXMOCK_MAX_ANSWER_BYTES)",
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=_env_number("FOXMOCK_SEED", -1, int),
        help="seed ids, faults, latency and template randomness for reproducible runs; "
        "-1 picks a random seed (env FOXMOCK_SEED)",
    )
    serve.add_argument(
        "--time-scale",
        type=float,
        default=_env_number("FOXMOCK_TIME_SCALE", 1.0),
        help="multiply every delay by this; 0 removes all delays (env FOXMOCK_TIME_SCALE)",
    )
    serve.add_argument(
        "--latency",
        default=os.environ.get("FOXMOCK_LATENCY"),
        metavar="YAML",
        help="default latency for scenarios without their own, e.g. "
        "'{ttft: 200ms, tokens_per_second: 50}' (env FOXMOCK_LATENCY)",
    )
    serve.add_argument(
        "--watch",
        action="store_true",
        default=os.environ.get("FOXMOCK_WATCH", "").lower() in ("1", "true", "yes"),
        help="reload scenario files when they change; a broken edit keeps the last good set "
        "(env FOXMOCK_WATCH=1)",
    )
    serve.add_argument(
        "--admin-token",
        default=os.environ.get("FOXMOCK_ADMIN_TOKEN"),
        metavar="TOKEN",
        help="require this bearer token on the /_foxmock/ admin API (env FOXMOCK_ADMIN_TOKEN)",
    )
    serve.add_argument(
        "--admin",
        choices=("on", "loopback", "off"),
        default=os.environ.get("FOXMOCK_ADMIN", "on"),
        help="the /_foxmock/ admin API: on (default), loopback (only peers on this machine) "
        "or off (env FOXMOCK_ADMIN)",
    )
    serve.add_argument(
        "--admin-host",
        action="append",
        default=[h for h in os.environ.get("FOXMOCK_ADMIN_HOSTS", "").split(",") if h.strip()],
        metavar="NAME",
        help="a Host name the admin API answers besides IP addresses, localhost, single-label "
        "names and --host (repeatable; env FOXMOCK_ADMIN_HOSTS, comma separated)",
    )
    serve.add_argument(
        "--cors",
        action="append",
        metavar="ORIGIN",
        help="let web pages from ORIGIN (scheme://host[:port]; * for any) call the API: "
        "answer CORS preflights and add Access-Control-Allow-Origin, never on /_foxmock/ "
        "(repeatable; env FOXMOCK_CORS, comma separated); default: off",
    )
    serve.add_argument(
        "--max-scenarios",
        type=int,
        default=_env_number("FOXMOCK_MAX_SCENARIOS", 100_000, int),
        help="admin additions may not make more scenarios than this (env FOXMOCK_MAX_SCENARIOS)",
    )
    serve.add_argument(
        "--journal-size",
        type=int,
        default=_env_number("FOXMOCK_JOURNAL_SIZE", DEFAULT_JOURNAL_SIZE, int),
        help="how many recent requests the journal keeps (env FOXMOCK_JOURNAL_SIZE)",
    )
    serve.add_argument(
        "--journal-bytes",
        type=int,
        default=_env_number("FOXMOCK_JOURNAL_BYTES", DEFAULT_JOURNAL_BYTES, int),
        help="how many bytes of bodies the journal keeps at most; the oldest entries go first "
        "(env FOXMOCK_JOURNAL_BYTES)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=_env_number("FOXMOCK_WORKERS", 1, int),
        help="worker processes sharing the port (SO_REUSEPORT), for load tests; each keeps its "
        "own journal and run-time scenarios (env FOXMOCK_WORKERS)",
    )
    serve.add_argument(
        "--state",
        default=os.environ.get("FOXMOCK_STATE"),
        metavar="URL",
        help="where sequence counters and quotas live: memory (default) or "
        "redis://HOST:PORT/DB, shared by workers and replicas (env FOXMOCK_STATE)",
    )
    serve.add_argument(
        "--state-timeout",
        type=float,
        default=_env_number("FOXMOCK_STATE_TIMEOUT", 1.0),
        metavar="S",
        help="a state store that does not answer within S seconds is down: requests that "
        "need it get 503 (env FOXMOCK_STATE_TIMEOUT)",
    )
    serve.add_argument(
        "--max-state-keys",
        type=int,
        default=_env_number("FOXMOCK_MAX_STATE_KEYS", 100_000, int),
        metavar="N",
        help="counters and quota windows kept in memory at most; the least recently used go "
        "(env FOXMOCK_MAX_STATE_KEYS)",
    )
    serve.add_argument(
        "--sequence-scope",
        default=os.environ.get("FOXMOCK_SEQUENCE_SCOPE", "server"),
        metavar="SCOPE",
        help="whose counter a sequence without its own scope advances: server, api_key, "
        "header:NAME or body:PATH (env FOXMOCK_SEQUENCE_SCOPE)",
    )
    serve.add_argument(
        "--rate-limit",
        default=os.environ.get("FOXMOCK_RATE_LIMIT"),
        metavar="SPEC",
        help="a quota for every answer of a scenario without its own, per API key: "
        "rpm=N,tpm=N[,scope=...] (env FOXMOCK_RATE_LIMIT)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get("FOXMOCK_LOG_LEVEL", "info"),
        help="log verbosity (env FOXMOCK_LOG_LEVEL)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foxmock", description="Offline, OpenAI-compatible mock of the Foxora chat API."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the mock server",
        description="Serve /v1/chat/completions and /v1/models from scenario files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _server_options(serve)

    record = commands.add_parser(
        "record",
        help="proxy to a real upstream and write what it says as scenario files",
        description="Forward requests to an OpenAI-compatible upstream, relay its answers "
        "live, and write them as ordinary scenario files (keys are never written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    record.add_argument(
        "--upstream",
        default=os.environ.get("FOXMOCK_UPSTREAM"),
        metavar="URL",
        help="the upstream's base URL, e.g. https://api.example.com/v1 (env FOXMOCK_UPSTREAM)",
    )
    record.add_argument(
        "--mode",
        default=os.environ.get("FOXMOCK_RECORD_MODE", "record-missing"),
        choices=[m.value for m in RecordMode],
        help="replay: recordings only; record: always forward and write; record-missing: "
        "replay what matches, record the rest; passthrough: forward, write nothing",
    )
    record.add_argument(
        "--out",
        default=os.environ.get("FOXMOCK_RECORDINGS", "recordings"),
        metavar="DIR",
        help="directory the recordings are written to and replayed from",
    )
    record.add_argument(
        "--upstream-api-key",
        default=os.environ.get("FOXMOCK_UPSTREAM_API_KEY"),
        metavar="KEY",
        help="key to send upstream instead of the client's (env FOXMOCK_UPSTREAM_API_KEY)",
    )
    record.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="REGEX",
        help="replace matches of this pattern with [REDACTED] in recordings (repeatable)",
    )
    record.add_argument(
        "--allow-secrets",
        action="store_true",
        help="write recordings even when they hold text shaped like a key",
    )
    record.add_argument(
        "--match-on",
        default="model,messages,tools",
        metavar="KEYS",
        help=f"what a recording matches on, from: {', '.join(MATCH_KEYS)}",
    )
    record.add_argument(
        "--upstream-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="give up on an upstream that sends nothing for this long (504)",
    )
    record.add_argument(
        "--max-record-bytes",
        type=int,
        default=_env_number("FOXMOCK_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, int),
        metavar="N",
        help="an upstream answer larger than N bytes is relayed in full but not recorded "
        "(env FOXMOCK_MAX_RECORD_BYTES)",
    )
    _server_options(record)

    validate = commands.add_parser(
        "validate", help="check scenario files and report every problem with file and line"
    )
    validate.add_argument("paths", nargs="+", metavar="PATH")

    commands.add_parser("schema", help="print the JSON Schema of scenario files")

    health = commands.add_parser(
        "healthcheck", help="exit 0 if a local foxmock answers /healthz (for containers)"
    )
    health.add_argument(
        "--url",
        default=None,
        help="the health URL (default: the one serve wrote to FOXMOCK_READY_FILE, else this "
        "machine at port FOXMOCK_PORT)",
    )
    return parser


def _scenario_paths(given: Sequence[str] | None) -> list[str]:
    if given:
        return list(given)
    env = os.environ.get("FOXMOCK_SCENARIOS", "")
    return [p for p in env.split(os.pathsep) if p]


def _record_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.command != "record":
        return {}
    if args.mode != RecordMode.REPLAY.value and not args.upstream:
        raise SystemExit(f"foxmock: record mode {args.mode!r} needs --upstream URL")
    match_on = [k.strip() for k in args.match_on.split(",") if k.strip()]
    unknown = [k for k in match_on if k not in MATCH_KEYS]
    if unknown:
        raise SystemExit(f"foxmock: --match-on: unknown key(s) {', '.join(unknown)}")
    return {
        "record_mode": args.mode,
        "upstream": args.upstream,
        "upstream_api_key": args.upstream_api_key,
        "recordings": args.out,
        "redact": args.redact,
        "allow_secrets": args.allow_secrets,
        "record_match": match_on,
        "upstream_timeout": args.upstream_timeout,
        "max_record_bytes": args.max_record_bytes,
        "bundled": False,
    }


def _serve(args: argparse.Namespace) -> int:
    from foxmock.server import STATE, create_app
    from foxmock.server.run import free_port, run_workers, serve_forever

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,  # containers and CI collect stdout
    )
    # record serves its recordings and explicit --scenarios only, never FOXMOCK_SCENARIOS
    recording = args.command == "record"
    scenarios = (args.scenarios or []) if recording else _scenario_paths(args.scenarios)
    config = Config(
        **_record_options(args),
        scenarios=scenarios,
        host=args.host,
        port=args.port,
        api_keys=args.api_keys or api_keys_from_env(),
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        head_timeout=args.head_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_answer_bytes=args.max_answer_bytes,
        journal_bytes=args.journal_bytes,
        seed=None if args.seed < 0 else args.seed,
        time_scale=args.time_scale,
        latency=_latency(args.latency),
        log_level=args.log_level,
        watch=args.watch,
        admin_token=args.admin_token,
        admin=args.admin,
        admin_hosts=[h.strip() for h in args.admin_host],
        cors=args.cors or cors_from_env(),
        max_scenarios=args.max_scenarios,
        journal_size=args.journal_size,
        state=args.state,
        state_timeout=args.state_timeout,
        max_state_keys=args.max_state_keys,
        sequence_scope=args.sequence_scope,
        rate_limit=args.rate_limit,
        workers=args.workers,
    )
    try:
        app = create_app(config)
    except ScenarioError as exc:
        _print_problems(exc)
        return 2
    except re.error as exc:
        print(f"foxmock: --redact: invalid regular expression: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a setting out of range, e.g. FOXMOCK_ADMIN=bogus
        print(f"foxmock: {exc}", file=sys.stderr)
        return 2
    paths = ", ".join(str(p) for p in config.scenario_paths())
    count = len(app[STATE].scenarios)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        _write_ready_file(health_url(host, port))
        print(f"foxmock: {count} scenarios from {paths}", flush=True)
        print(f"foxmock: serving on http://{shown}:{port}/v1 (Ctrl+C to stop)", flush=True)

    access = logging.getLogger("aiohttp.access") if args.log_level == "debug" else None
    if args.workers > 1:
        port = config.port or free_port(config.host)

        def serve_one(index: int) -> None:
            on_ready = ready if index == 0 else None
            asyncio.run(
                serve_forever(
                    app,
                    config.host,
                    port,
                    access_log=access,
                    on_ready=on_ready,
                    reuse_port=True,
                    head_timeout=config.head_timeout,
                    keepalive_timeout=config.keepalive_timeout,
                )
            )

        print(f"foxmock: {args.workers} worker processes share port {port}", flush=True)
        return run_workers(args.workers, serve_one)
    try:
        asyncio.run(
            serve_forever(
                app,
                config.host,
                config.port,
                access_log=access,
                on_ready=ready,
                head_timeout=config.head_timeout,
                keepalive_timeout=config.keepalive_timeout,
            )
        )
    except OSError as exc:
        print(f"foxmock: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_problems(exc: ScenarioError) -> None:
    count = len(exc.problems)
    print(
        f"foxmock: {count} problem{'s' if count != 1 else ''} in scenario files:", file=sys.stderr
    )
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    import random

    from foxmock.scenarios.loader import collect, iter_scenario_files
    from foxmock.templating import TemplateEngine

    scenarios, _models, problems = collect(args.paths, TemplateEngine(random.Random()))
    if problems:
        _print_problems(ScenarioError(problems))
        return 1
    files, _ = iter_scenario_files(args.paths)
    print(f"OK: {len(scenarios)} scenarios in {len(files)} file(s)")
    return 0


def _schema() -> int:
    from foxmock.scenarios.loader import scenario_schema

    print(json.dumps(scenario_schema(), indent=2))
    return 0


READY_FILE = "FOXMOCK_READY_FILE"  # where serve writes its health URL once it listens


def health_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches the server's ``/healthz`` at."""
    if host in ("", "0.0.0.0", "::"):  # every address: loopback is one of them
        host = "::1" if host == "::" else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/healthz"


def _write_ready_file(url: str) -> None:
    """Write ``url`` to ``$FOXMOCK_READY_FILE`` (when set), whole or not at all."""
    path = os.environ.get(READY_FILE)
    if not path:
        return
    try:
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(url + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        print(f"foxmock: cannot write {READY_FILE} {path!r}: {exc}", file=sys.stderr)


def _default_health_url() -> str:
    """The health URL serve left in ``$FOXMOCK_READY_FILE``, else this machine's
    ``FOXMOCK_PORT``: the container's check follows ``serve --port N`` however it was set."""
    path = os.environ.get(READY_FILE)
    if path:
        try:
            with open(path, encoding="utf-8") as ready:
                url = ready.read(4096).strip()
            if url.startswith("http://"):
                return url
        except OSError:
            pass
    return f"http://127.0.0.1:{os.environ.get('FOXMOCK_PORT', DEFAULT_PORT)}/healthz"


def _healthcheck(url: str | None) -> int:
    import urllib.error
    import urllib.request

    url = url or _default_health_url()
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"foxmock: unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``foxmock`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from foxmock import __version__

        print(f"foxmock {__version__}")
        return 0
    if args.command in ("serve", "record"):
        return _serve(args)
    if args.command == "validate":
        return _validate(args)
    if args.command == "schema":
        return _schema()
    if args.command == "healthcheck":
        return _healthcheck(args.url)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
