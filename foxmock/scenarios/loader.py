"""Load scenario files: YAML with line numbers -> schema check -> compiled `ScenarioSet`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from foxmock._exceptions import Problem, ScenarioError
from foxmock.http_headers import header_problem
from foxmock.latency import DurationError, Latency, parse_duration, parse_fraction
from foxmock.matching import CompileError, compile_match
from foxmock.scenarios.model import (
    RESERVED_FIELDS,
    Fault,
    RateLimit,
    Render,
    Respond,
    Scenario,
    ScenarioSet,
    Scope,
    Stateful,
    ToolCallSpec,
)
from foxmock.scenarios.quickcheck import surely_valid
from foxmock.scenarios.yamlnodes import (
    Lines,
    YamlProblem,
    format_path,
    line_of,
    load_yaml,
    text_line,
)
from foxmock.streaming import Chunking
from foxmock.templating import TemplateEngine, TemplateError

YAML_SUFFIXES = (".yaml", ".yml")
T = TypeVar("T")
_DEFAULT_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}

# a folder with nothing to load: most often a Docker mount of a host folder that is missing
_EMPTY_DIRECTORY = (
    "no .yaml or .yml files in directory (an empty mount? put scenario files in it, or leave "
    "--scenarios out to serve the bundled ones)"
)


def _constant(value: Any) -> Render:
    """A render that always returns ``value``: literal text never goes through Jinja2."""
    return lambda _ctx: value


@cache
def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, as shipped in the package."""
    # beside the package's modules (importlib.resources would cost start-up ~1.5 ms of imports)
    text = (
        Path(__file__).resolve().parent.parent.joinpath("scenario.schema.json").read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def iter_scenario_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Every scenario file named or found below the named directories, in a stable order."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem(str(path), None, "", _EMPTY_DIRECTORY))
            files.extend(found)
        else:
            files.append(path)
    return files, problems


class _FileCompiler:
    """Compiles one parsed file, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, lines: Lines, engine: TemplateEngine) -> None:
        self.source, self.lines, self.engine = source, lines, engine
        self.problems: list[Problem] = []
        self.literal = False  # set per scenario: its answer strings are constants, not templates

    def problem(self, path: tuple[str | int, ...], message: str, line: int | None = None) -> None:
        where = line if line is not None else line_of(self.lines, path)
        self.problems.append(Problem(self.source, where, format_path(path), message))

    def checked(
        self, parse: Callable[[Any], T], value: Any, path: tuple[str | int, ...], fallback: T
    ) -> T:
        """``parse(value)``, or ``fallback`` after reporting its `DurationError` at its key."""
        try:
            return parse(value)
        except DurationError as exc:
            self.problem((*path, *exc.path), exc.message)
            return fallback

    def latency(self, spec: Mapping[str, Any] | None, path: tuple[str | int, ...]) -> Latency:
        """The parsed ``latency`` block; every key holding a value out of range is a problem."""
        parts = [self.checked(Latency.parse, {k: v}, path, None) for k, v in (spec or {}).items()]
        return Latency.parse(spec) if None not in parts else Latency()

    def template(self, text: str, path: tuple[str | int, ...], native: bool = False) -> Render:
        if self.literal:
            return _constant(text)
        try:
            return self.engine.compile(text, native=native)
        except TemplateError as exc:
            base = text_line(self.lines, path)
            line = base + exc.line - 1 if base is not None and exc.line else base
            self.problem(path, exc.message, line)
            return lambda _ctx: ""

    def structure(self, value: Any, path: tuple[str | int, ...]) -> Render:
        """Compile every string inside ``value``; the render returns the same shape."""
        if self.literal:
            return _constant(value)
        if isinstance(value, str):
            return self.template(value, path, native=True)
        if isinstance(value, dict):
            parts = {k: self.structure(v, (*path, k)) for k, v in value.items()}
            return lambda ctx: {k: render(ctx) for k, render in parts.items()}
        if isinstance(value, list):
            items = [self.structure(v, (*path, i)) for i, v in enumerate(value)]
            return lambda ctx: [render(ctx) for render in items]
        return lambda _ctx: value

    def arguments(self, value: Any, path: tuple[str | int, ...]) -> Render | None:
        if value is None:
            return None
        if isinstance(value, str):
            render = self.template(value, path)
            if self.literal or not any(m in value for m in ("{{", "{%")):
                try:
                    json.loads(value)
                except ValueError as exc:
                    self.problem(path, f"arguments are not valid JSON: {exc}")
            return render
        shape = self.structure(value, path)
        return lambda ctx: json.dumps(shape(ctx), ensure_ascii=False)

    def tool_call(self, call: Mapping[str, Any], path: tuple[str | int, ...]) -> ToolCallSpec:
        chunks = call.get("chunks")
        custom = "input" in call or call.get("type") == "custom"
        if custom:
            return self.custom_call(call, path)
        if chunks is not None and "arguments" in call:
            self.problem((*path, "chunks"), "give either arguments or chunks, not both")
        if self.literal and chunks:  # known now: the joined text is what the client gets
            try:
                json.loads("".join(chunks))
            except (ValueError, RecursionError) as exc:
                self.problem((*path, "chunks"), f"the joined chunks are not valid JSON: {exc}")
        return ToolCallSpec(
            name=self.template(call["name"], (*path, "name")),
            arguments=self.arguments(call.get("arguments"), (*path, "arguments")),
            id=self.template(call["id"], (*path, "id")) if "id" in call else None,
            chunks=None
            if chunks is None
            else [self.template(c, (*path, "chunks", i)) for i, c in enumerate(chunks)],
        )

    def custom_call(self, call: Mapping[str, Any], path: tuple[str | int, ...]) -> ToolCallSpec:
        """A custom tool's call: its ``input`` is text (a template), or its ``chunks`` joined."""
        chunks = call.get("chunks")
        if "arguments" in call:
            self.problem((*path, "arguments"), "a custom tool call has input, not arguments")
        if chunks is not None and "input" in call:
            self.problem((*path, "chunks"), "give either input or chunks, not both")
        return ToolCallSpec(
            name=self.template(call["name"], (*path, "name")),
            arguments=None,
            id=self.template(call["id"], (*path, "id")) if "id" in call else None,
            chunks=None
            if chunks is None
            else [self.template(c, (*path, "chunks", i)) for i, c in enumerate(chunks)],
            custom=True,
            input=self.template(call["input"], (*path, "input")) if "input" in call else None,
        )

    def respond(self, spec: Mapping[str, Any], path: tuple[str | int, ...]) -> Respond:
        content = spec.get("content")
        calls = [
            self.tool_call(call, (*path, "tool_calls", i))
            for i, call in enumerate(spec.get("tool_calls") or [])
        ]
        return Respond(
            content=None if content is None else self.template(content, (*path, "content")),
            tool_calls=calls,
            finish_reason=spec.get("finish_reason"),
            model=self.template(spec["model"], (*path, "model")) if "model" in spec else None,
            usage={k: int(v) for k, v in (spec.get("usage") or {}).items()},  # 5.0 is 5
            headers={
                k: self.template(v, (*path, "headers", k))
                for k, v in (spec.get("headers") or {}).items()
            },
            extra=self.extra(spec.get("extra") or {}, (*path, "extra")),
        )

    def extra(self, extra: Mapping[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
        """Top-level answer fields sent as written; those foxmock writes itself are refused."""
        for key in extra:
            if key in RESERVED_FIELDS:
                names = ", ".join(sorted(RESERVED_FIELDS))
                self.problem((*path, key), f"{key!r} is written by foxmock ({names}); not extra")
        return {k: v for k, v in extra.items() if k not in RESERVED_FIELDS}

    def fault_headers(
        self, headers: Mapping[str, str], path: tuple[str | int, ...]
    ) -> dict[str, str]:
        """A fault's headers (plain text, sent as written), refused now if HTTP does not allow
        one: sent, it would break the response mid-way."""
        for name, value in headers.items():
            problem = header_problem(str(name), str(value))
            if problem is not None:
                self.problem((*path, name), problem)
        return {str(k): str(v) for k, v in headers.items()}

    def fault(self, spec: Mapping[str, Any], path: tuple[str | int, ...]) -> Fault:
        kind = spec.get("kind", "http")
        if kind == "http" and "status" not in spec:
            self.problem(path, "an http fault needs a status (400-599)")
        status = int(spec.get("status", 500))
        default_type = _DEFAULT_ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        default = (
            f"foxmock fault: HTTP {status}"
            if kind == "http"
            else "The server had an error while processing your request."
        )
        message = spec.get("message", default)
        retry = spec.get("retry_after")
        return Fault(
            kind=kind,
            status=status,
            message=self.template(message, (*path, "message")),
            type=spec.get("type", default_type),
            code=spec.get("code"),
            param=spec.get("param"),
            retry_after=None
            if retry is None
            else self.checked(parse_duration, retry, (*path, "retry_after"), None),
            headers=self.fault_headers(spec.get("headers") or {}, (*path, "headers")),
            after_chunks=int(spec.get("after_chunks", 0)),
            duration=self.checked(
                parse_duration, spec.get("duration", 0), (*path, "duration"), 0.0
            ),
            probability=self.checked(
                parse_fraction, spec.get("probability", 1.0), (*path, "probability"), 1.0
            ),
        )

    def answer(
        self,
        spec: Mapping[str, Any],
        path: tuple[str | int, ...],
        stream: Mapping[str, Any],
        latency: Latency,
    ) -> dict[str, Any]:
        """The answer fields of a scenario or of one sequence step, as `Scenario` keywords."""
        chunks = [
            self.template(c, (*path, "stream", "chunks", i))
            for i, c in enumerate(stream.get("chunks") or [])
        ]
        respond = self.respond(spec["respond"], (*path, "respond")) if "respond" in spec else None
        fault = self.fault(spec["fault"], (*path, "fault")) if "fault" in spec else None
        if chunks and respond is not None and respond.content is not None:
            self.problem(
                (*path, "stream", "chunks"),
                "give either respond.content or stream.chunks, not both",
            )
        if fault is not None and respond is None:
            if fault.kind != "http":
                self.problem((*path, "fault"), f"a {fault.kind!r} fault needs a respond block")
            elif fault.probability < 1:
                self.problem(
                    (*path, "fault"),
                    "a fault with a probability needs a respond block for when it does not fire",
                )
        return {
            "respond": respond,
            "fault": fault,
            "chunking": Chunking(stream.get("by", "tokens"), int(stream.get("size", 1))),
            "chunks": chunks or None,
            "latency": self.latency(spec.get("latency"), (*path, "latency")).merged_over(latency),
            "usage_chunk": bool(stream.get("usage_chunk", True)),
        }

    def scenario(
        self,
        spec: Mapping[str, Any],
        index: int,
        defaults: Mapping[str, Any],
        base: Latency,
        file_quota: RateLimit | None = None,
    ) -> Scenario:
        path: tuple[str | int, ...] = ("scenarios", index)
        self.literal = spec.get("literal") is True
        errors: list[CompileError] = []
        match = compile_match(spec.get("match"), (*path, "match"), errors)
        for error in errors:
            self.problem(error.path, error.message)
        stream = {**(defaults.get("stream") or {}), **(spec.get("stream") or {})}
        sequence = spec.get("sequence")
        if sequence is not None:
            for key in ("respond", "fault"):
                if key in spec:
                    self.problem(
                        (*path, key), f"give {key} inside the sequence's steps, not beside"
                    )
        scenario = Scenario(
            name=spec["name"],
            match=match,
            **self.answer({} if sequence is not None else spec, path, stream, base),
            priority=int(spec.get("priority", 0)),
            description=str(spec.get("description", "")),
            file=self.source,
            line=line_of(self.lines, path) or 1,
            position=index,
            literal=self.literal,
        )
        if sequence is not None:
            steps = [
                scenario._replace(
                    **self.answer(
                        step,
                        (*path, "sequence", i),
                        {**stream, **(step.get("stream") or {})},
                        scenario.latency,
                    ),
                    line=line_of(self.lines, (*path, "sequence", i)) or scenario.line,
                )
                for i, step in enumerate(sequence)
            ]
        else:
            steps = []
        state = self.stateful(spec, path, steps, file_quota)
        return scenario._replace(state=state) if state is not None else scenario

    def stateful(
        self,
        spec: Mapping[str, Any],
        path: tuple[str | int, ...],
        steps: Sequence[Scenario],
        file_quota: RateLimit | None,
    ) -> Stateful | None:
        """What a scenario counts (its sequence, use limit and quota), or None for none."""
        after = str(spec.get("after", "repeat"))
        times = spec.get("times")
        if after == "pass" and times is not None:
            self.problem((*path, "times"), "give times or after: pass, not both")
        if "after" in spec and not steps:
            self.problem((*path, "after"), "after applies to a sequence; this scenario has none")
        limit = times if times is not None else (len(steps) if after == "pass" else None)
        quota = file_quota
        if "rate_limit" in spec:
            quota = self.rate_limit(spec["rate_limit"], (*path, "rate_limit"), spec["name"])
        scope = parse_scope(spec["scope"]) if "scope" in spec else None
        if scope is not None and not steps and limit is None:
            self.problem(
                (*path, "scope"),
                "scope applies to a sequence or times; use rate_limit.scope for a quota",
            )
        if not steps and limit is None and quota is None:
            return None
        return Stateful(steps, limit, scope, quota, after)

    def rate_limit(
        self, spec: Mapping[str, Any], path: tuple[str | int, ...], bucket: str
    ) -> RateLimit:
        return RateLimit(
            requests_per_minute=spec.get("requests_per_minute"),
            tokens_per_minute=spec.get("tokens_per_minute"),
            scope=parse_scope(spec.get("scope", "api_key")),
            bucket=bucket,
        )


def parse_scope(spec: Any) -> Scope:
    """A `Scope` from its YAML form: a name, or ``{header: NAME}`` / ``{body: PATH}``
    (or ``header:NAME`` / ``body:PATH`` as one string, as the command line gives it)."""
    if isinstance(spec, Mapping):
        kind, name = next(iter(spec.items()))
        return Scope(str(kind), str(name).lower() if kind == "header" else str(name))
    text = str(spec)
    kind, _, name = text.partition(":")
    kind = kind.strip()
    if kind in ("header", "body") and name.strip():
        name = name.strip()
        return Scope(kind, name.lower() if kind == "header" else name)
    if text in SCOPE_NAMES:
        return Scope(text)
    raise ValueError(
        f"unknown scope {text!r}: use {', '.join(SCOPE_NAMES)}, header:NAME or body:PATH"
    )


SCOPE_NAMES = ("server", "test", "api_key")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _resolved(schema: Any) -> Any:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolved(scenario_schema()["$defs"].get(ref[len("#/$defs/") :]))
    return schema


def _could_fit(schema: Any, instance: Any) -> bool:
    """False only when ``schema`` (or each of its branches) names types ``instance`` is none of."""
    schema = _resolved(schema)
    if not isinstance(schema, dict):
        return True
    branches = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(branches, list) and not any(_could_fit(b, instance) for b in branches):
        return False
    kinds = schema.get("type")
    if kinds is None:
        return True
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        fits = isinstance(instance, _JSON_TYPES.get(kind, ()))
        if fits and not (isinstance(instance, bool) and kind in ("integer", "number")):
            return True
    return False


def _keyed(schema: Any, instance: Any) -> bool:
    """Whether ``schema`` requires keys and the object ``instance`` has them all."""
    schema = _resolved(schema)
    required = schema.get("required") if isinstance(schema, dict) else None
    if not isinstance(instance, dict) or not isinstance(required, list) or not required:
        return False
    return all(key in instance for key in required)


def _pick(error: Any) -> Any:
    """The most telling error inside a oneOf/anyOf: one from a branch of the instance's type,
    and of those, from one whose required keys the instance has ({normal: ...} in a delay)."""
    from jsonschema.exceptions import best_match

    while error.context:
        branches = error.schema.get(error.validator, [])
        fitting = [
            sub
            for sub in error.context
            if _could_fit(branches[sub.relative_schema_path[0]], error.instance)
        ]
        keyed = [
            sub for sub in fitting if _keyed(branches[sub.relative_schema_path[0]], error.instance)
        ]
        error = best_match(keyed or fitting or error.context) or error
        if error.validator not in ("oneOf", "anyOf"):
            break
    return error


def _message(error: Any) -> str:
    if error.validator in ("anyOf", "oneOf") and all(
        sub.validator == "required" for sub in error.context
    ):
        names = [repr(sub.validator_value[0]) for sub in error.context]
        if len(names) == 2:
            return f"needs {names[0]} or {names[1]} (or both)"
        return f"needs {', '.join(names[:-1])} or {names[-1]}"
    if error.validator == "const":
        return f"must be {error.validator_value!r}, got {error.instance!r}"
    return str(_pick(error).message)


def _schema_problems(data: Any, source: str, lines: Lines) -> list[Problem]:
    if surely_valid(data, scenario_schema()):
        return []
    from jsonschema import Draft202012Validator  # only files that may be broken pay its import

    validator = Draft202012Validator(scenario_schema())
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        message = _message(error)
        if error.context and not message.startswith("needs "):
            error = _pick(error)
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    import difflib  # only files with mistakes need it

                    hint = difflib.get_close_matches(str(key), allowed, n=1)
                    message = f"unknown key {key!r}" + (
                        f" (did you mean {hint[0]!r}?)" if hint else ""
                    )
                    message += f"; allowed here: {', '.join(allowed)}"
                    key_path = (*path, str(key))
                    problems.append(
                        Problem(source, line_of(lines, key_path), format_path(key_path), message)
                    )
            continue
        problems.append(Problem(source, line_of(lines, path), format_path(path), message))
    return problems


def compile_document(
    data: Any, lines: Lines, source: str, engine: TemplateEngine
) -> tuple[list[Scenario], list[str], list[Problem]]:
    """Check one parsed document against the schema and compile every scenario that passes."""
    problems = _schema_problems(data, source, lines)
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        return [], [], problems
    broken = {p.key.split("]", 1)[0] for p in problems if p.key.startswith("scenarios[")}
    compiler = _FileCompiler(source, lines, engine)
    defaults_ok = not any(p.key.startswith("defaults") for p in problems)
    defaults = (data.get("defaults") or {}) if defaults_ok else {}
    base = compiler.latency(defaults.get("latency"), ("defaults", "latency"))
    file_quota = None
    if "rate_limit" in defaults:
        file_quota = compiler.rate_limit(defaults["rate_limit"], ("defaults",), f"file:{source}")
    scenarios = [
        compiler.scenario(spec, i, defaults, base, file_quota)
        for i, spec in enumerate(data["scenarios"])
        if f"scenarios[{i}" not in broken
    ]
    models = data.get("models") if isinstance(data.get("models"), list) else []
    return scenarios, list(models or []), problems + compiler.problems


def _read(path: Path) -> tuple[str | None, list[Problem]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(str(path), None, "", "no such file or directory")]
    except OSError as exc:
        return None, [Problem(str(path), None, "", f"cannot read file: {exc}")]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        message = f"not UTF-8 text: byte 0x{byte} cannot be decoded (save the file as UTF-8)"
        return None, [Problem(str(path), line, "", message)]


def _duplicates(scenarios: Sequence[Scenario]) -> list[Problem]:
    seen: dict[str, Scenario] = {}
    problems = []
    for s in scenarios:
        if s.name in seen:
            problems.append(
                Problem(
                    s.file,
                    s.line,
                    f"scenarios[{s.position}].name",
                    f"duplicate scenario name {s.name!r} (first at {seen[s.name].where})",
                )
            )
        seen.setdefault(s.name, s)
    return problems


def parse_text(
    text: str, source: str, engine: TemplateEngine
) -> tuple[list[Scenario], list[str], list[Problem]]:
    """Parse and compile the scenarios in one YAML text."""
    try:
        data, lines = load_yaml(text)
    except YamlProblem as exc:
        where = format_path(exc.path)
        return [], [], [Problem(source, exc.line, where, f"invalid YAML: {exc.message}")]
    return compile_document(data, lines, source, engine)


def collect(
    paths: Iterable[str | Path], engine: TemplateEngine
) -> tuple[list[Scenario], list[str], list[Problem]]:
    """Load every file under ``paths``; return scenarios, models and all problems found."""
    scenarios: list[Scenario] = []
    models: list[str] = []
    files, problems = iter_scenario_files(paths)
    for path in files:
        text, read_problems = _read(path)
        problems.extend(read_problems)
        if text is None:
            continue
        found, found_models, found_problems = parse_text(text, str(path), engine)
        scenarios.extend(found)
        models.extend(found_models)
        problems.extend(found_problems)
    problems.extend(_duplicates(scenarios))
    return scenarios, models, problems


def load_scenarios(
    paths: Iterable[str | Path], engine: TemplateEngine | None = None
) -> ScenarioSet:
    """Load a `ScenarioSet`, or raise `ScenarioError` listing every problem in every file."""
    scenarios, models, problems = collect(paths, engine or TemplateEngine(random.Random()))
    if problems:
        raise ScenarioError(problems)
    return ScenarioSet(scenarios, models)
