"""Write recordings: readable YAML, checked for secrets, written atomically (write + rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from foxmock.recorder.redact import secrets_in


class SecretFound(Exception):
    """A recording still holds something that looks like a credential; nothing was written."""


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


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    # credentials the client sent are never written; key shapes only unless allowed
    found = secrets_in(text, known_secrets, shapes=not allow_secrets)
    if found:
        raise SecretFound(
            f"refusing to write recording {scenario['name']!r}: it contains {', '.join(found)}; "
            "add a --redact pattern (or allow secrets explicitly)"
        )
    path = directory / f"{scenario['name']}.yaml"
    write_atomically(path, text)
    return path
