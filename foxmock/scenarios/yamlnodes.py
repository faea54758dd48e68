"""YAML loading that remembers the line of every key, with limits against alias bombs."""

from __future__ import annotations

import re
from typing import Any

import yaml

Path = tuple[str | int, ...]
Lines = dict[Path, int]

_BREAKS = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what PyYAML counts as a new line
TEXT = "\x00text"  # path suffix under which the first line of a scalar's text is kept
MAX_NODES = 200_000
MAX_DEPTH = 64


class YamlProblem(Exception):
    """The text is not YAML foxmock can load; ``line`` is 1-based when known, ``path`` if any."""

    def __init__(self, message: str, line: int | None, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path


class _Walker:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: Lines = {}
        self.nodes = 0

    def walk(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlProblem(
                f"document expands to more than {MAX_NODES} values (aliases nested too deep?)",
                node.start_mark.line + 1,
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(
                f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)",
                node.start_mark.line + 1,
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self._remember((*path, i), item)
                out.append(self.walk(item, (*path, i), depth + 1))
            return out
        return self._construct(node, path)

    def _construct(self, node: yaml.Node, path: Path) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:  # PyYAML's scalar constructors: ValueError, KeyError, ...
            raise YamlProblem(_unreadable(node, exc), node.start_mark.line + 1, path) from None

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._construct(key_node, path)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise YamlProblem("mapping keys must be plain scalars", line)
            if key in out:
                raise YamlProblem(f"duplicate key {key!r}", line)
            sub = (*path, str(key))
            self.lines[sub] = line
            if isinstance(value_node, yaml.ScalarNode):
                self._text_line(sub, value_node)
            out[key] = self.walk(value_node, sub, depth + 1)
        return out

    def _remember(self, path: Path, node: yaml.Node) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            self._text_line(path, node)

    def _text_line(self, path: Path, node: yaml.ScalarNode) -> None:
        # a block scalar (| or >) starts its text on the line after its indicator
        block = node.style in ("|", ">")
        self.lines[(*path, TEXT)] = node.start_mark.line + 1 + (1 if block else 0)


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why an explicitly tagged value (``!!int ''``, ``!!timestamp x``) cannot be read."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    text = node.value if isinstance(node, yaml.ScalarNode) else None
    shown = f" {text[:40]!r}" if isinstance(text, str) else ""
    detail = f" ({exc})" if isinstance(exc, ValueError) and str(exc) else ""
    return f"invalid {tag} value{shown}{detail}"


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> YamlProblem:
    """A character PyYAML refuses (NUL, other controls), at its line in ``text``."""
    if isinstance(exc.character, int):
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        message = str(exc.reason)
    return YamlProblem(message, len(_BREAKS.findall(text, 0, exc.position)) + 1)


def _marked_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    # a scanner's context mark is where the broken token began (say, an unclosed quote)
    scanner = isinstance(exc, yaml.scanner.ScannerError)
    mark = (exc.context_mark if scanner else None) or exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    message = " ".join(part for part in (exc.context, exc.problem) if part)
    return YamlProblem(message or str(exc), line)


def load_yaml(text: str) -> tuple[Any, Lines]:
    """Parse one YAML document; return its value and the line of each key or list item."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character at once
    except yaml.reader.ReaderError as exc:
        raise _reader_problem(exc, text) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): 1}
        walker = _Walker(loader)
        walker.lines[()] = node.start_mark.line + 1
        value = walker.walk(node, (), 0)
        return value, walker.lines
    except yaml.MarkedYAMLError as exc:
        problem = _marked_problem(exc)
    except yaml.YAMLError as exc:
        problem = YamlProblem(str(exc), None)
    except RecursionError:  # PyYAML composes and constructs nested collections recursively
        problem = YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", None)
    finally:
        loader.dispose()
    problem.line = problem.line or loader.line + 1  # else where the reader stopped
    raise problem


def line_of(lines: Lines, path: Path) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def text_line(lines: Lines, path: Path) -> int | None:
    """The line where the text of the scalar at ``path`` begins."""
    return lines.get((*path, TEXT)) or line_of(lines, path)


def format_path(path: Path) -> str:
    """``('scenarios', 0, 'match')`` -> ``scenarios[0].match``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
