"""Write recordings: readable YAML, checked for secrets, written atomically (write + rename)."""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from foxmock.recorder.redact import secrets_in

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


def _joined_chunks(value: Any) -> list[str]:
    """The joined text of every ``chunks`` list inside ``value``."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key == "chunks" and isinstance(item, list):
                found.append("".join(str(c) for c in item))
            else:
                found += _joined_chunks(item)
        return found
    if isinstance(value, list):
        return [text for item in value for text in _joined_chunks(item)]
    return []


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
) -> Path:
    """Write one recorded scenario as ``DIRECTORY/NAME.yaml``; refuse if it holds a secret."""
    text = render_document(scenario, header)
    # credentials the client sent are never written; key shapes only unless allowed. Chunk
    # lists are scanned joined too: a key can be split over several chunks.
    scanned = "\n".join([text, *_joined_chunks(scenario)])
    found = secrets_in(scanned, known_secrets, shapes=not allow_secrets)
    if found:
        raise SecretFound(found)
    path = directory / f"{scenario['name']}.yaml"
    write_atomically(path, text)
    return path
