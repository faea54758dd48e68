"""YAML loading that remembers the line of every key, with limits against alias bombs."""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]
Lines = dict[Path, int]

TEXT = "\x00text"  # path suffix under which the first line of a scalar's text is kept
MAX_NODES = 200_000
MAX_DEPTH = 64


class YamlProblem(Exception):
    """The text is not YAML foxmock can load; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


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
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
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


def load_yaml(text: str) -> tuple[Any, Lines]:
    """Parse one YAML document; return its value and the line of each key or list item."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): 1}
        walker = _Walker(loader)
        walker.lines[()] = node.start_mark.line + 1
        value = walker.walk(node, (), 0)
        return value, walker.lines
    except yaml.MarkedYAMLError as exc:
        # a scanner's context mark is where the broken token began (say, an unclosed quote)
        scanner = isinstance(exc, yaml.scanner.ScannerError)
        mark = (exc.context_mark if scanner else None) or exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlProblem(message or str(exc), line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(str(exc), None) from None
    finally:
        loader.dispose()


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
