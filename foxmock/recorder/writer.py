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
    # credentials the client sent are never written; key shapes only unless allowed. Chunk
    # lists are scanned joined too: a key can be split over several chunks.
    scanned = "\n".join([text, *_joined_chunks(scenario)])
    found = secrets_in(scanned, known_secrets, shapes=not allow_secrets)
    if found:
        raise SecretFound(
            f"refusing to write recording {scenario['name']!r}: it contains {', '.join(found)}; "
            "add a --redact pattern (or allow secrets explicitly)"
        )
    path = directory / f"{scenario['name']}.yaml"
    write_atomically(path, text)
    return path
