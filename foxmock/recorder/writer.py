"""Write recordings: readable YAML, checked for secrets, written atomically (write + rename)."""

from __future__ import annotations

import json
import os
import random
import re
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from foxmock._exceptions import ScenarioError
from foxmock.recorder.redact import secrets_in
from foxmock.scenarios.loader import parse_text
from foxmock.scenarios.model import Scenario
from foxmock.templating import TemplateEngine

# what write_atomically names its temporary file: mkstemp(prefix=".NAME.", suffix=".tmp") with
# mkstemp's eight random characters
TEMP_NAME = re.compile(r"^\.[^/]+\.yaml\.[a-z0-9_]{8}\.tmp$")


class SecretFound(Exception):
    """A recording still holds something that looks like a credential; nothing was written.

    Its text names what kind of secret was found, never the secret or the recording's name.
    """

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(
            f"it contains {', '.join(self.reasons)}; add a --redact pattern "
            "(or allow secrets explicitly)"
        )


class RecordingInvalid(Exception):
    """A recording would not load as a scenario file; nothing was written."""

    def __init__(self, error: ScenarioError) -> None:
        self.problems = error.problems
        super().__init__(str(error))


class Written(NamedTuple):
    """A recording on disk, and its scenarios as the loader compiled them."""

    path: Path
    scenarios: list[Scenario]


JSON_DEPTH = 4  # JSON inside JSON strings is decoded (and scanned) this many levels deep


if sys.platform == "win32":  # no flock: temp files are never taken for stale

    def _lock(fd: int, *, wait: bool) -> bool:
        return wait

else:
    import fcntl

    def _lock(fd: int, *, wait: bool) -> bool:
        """Take the exclusive lock on ``fd`` (held until it is closed); False if taken."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True


def render_document(scenario: dict[str, Any], header: str) -> str:
    """A one-scenario file with a comment header."""
    body = yaml.safe_dump(
        {"version": 1, "scenarios": [scenario]},
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


def _decoded(text: str, depth: int) -> Iterator[str]:
    """``text``, and when it is JSON (tool-call arguments) every string inside it, decoded."""
    yield text
    if depth <= 0 or text.lstrip()[:1] not in ("{", "[", '"'):
        return
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    yield from _strings(value, depth - 1)


def _strings(value: Any, depth: int = JSON_DEPTH) -> Iterator[str]:
    """Every string in ``value`` (keys too), decoded as replay will see it: JSON strings are
    decoded and their strings scanned as well, and chunk lists joined (a key can span them)."""
    if isinstance(value, str):
        yield from _decoded(value, depth)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, depth)
            if key == "chunks" and isinstance(item, list):
                yield from _decoded("".join(str(c) for c in item), depth)
            yield from _strings(item, depth)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth)


def scanned_text(scenario: dict[str, Any], text: str) -> str:
    """What the secret scan reads: the file as serialized, and every string of ``scenario``
    decoded (no ``\\t``/``\\n``/``\\u`` escape of YAML or JSON hides a key from it)."""
    return "\n".join([text, *_strings(scenario)])


def check_loads(text: str, path: Path, engine: TemplateEngine | None = None) -> list[Scenario]:
    """Compile ``text`` as the file ``path`` with the loader ``foxmock serve`` uses; its
    scenarios, or `RecordingInvalid` listing the problems."""
    engine = engine or TemplateEngine(random.Random(0))
    scenarios, _models, problems = parse_text(text, str(path), engine)
    if problems:
        raise RecordingInvalid(ScenarioError(problems))
    return scenarios


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, locked for as long as it is open: a lock nobody holds
    is how `remove_stale_temps` tells a temp file left by a killed write from a live one."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        _lock(fd, wait=True)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass  # a cleaner took it for stale before the lock was ours: take another
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # still locked: never taken for stale before the rename
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: Path) -> int:
    """Remove the temp files that writes killed before their rename left in ``directory``.

    Only regular files named like `write_atomically`'s temp files whose lock no live writer
    holds; returns how many were removed.
    """
    try:
        with os.scandir(directory) as entries:
            names = [
                e.name
                for e in entries
                if TEMP_NAME.match(e.name) and e.is_file(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # gone, a link, or not ours
        try:
            info = os.fstat(fd)
            unused = stat.S_ISREG(info.st_mode) and _lock(fd, wait=False)
            if unused and os.path.samestat(info, os.lstat(path)):
                path.unlink()  # under the lock: a writer that gets it next sees it gone
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_recording(
    directory: Path,
    scenario: dict[str, Any],
    header: str,
    *,
    known_secrets: Sequence[str] = (),
    allow_secrets: bool = False,
    engine: TemplateEngine | None = None,
) -> Written:
    """Write one recorded scenario as ``DIRECTORY/NAME.yaml``; refuse if it holds a secret
    (`SecretFound`) or would not load (`RecordingInvalid`): then nothing is written."""
    text = render_document(scenario, header)
    # credentials the client sent are never written; key shapes only unless allowed. Every
    # string is scanned decoded, chunk lists joined too: a key can be split over chunks.
    found = secrets_in(scanned_text(scenario, text), known_secrets, shapes=not allow_secrets)
    if found:
        raise SecretFound(found)
    path = directory / f"{scenario['name']}.yaml"
    scenarios = check_loads(text, path, engine)  # a file that does not load is never written
    write_atomically(path, text)
    return Written(path, scenarios)
