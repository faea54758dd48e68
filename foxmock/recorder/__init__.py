"""Record and replay: a proxy to a real upstream that writes ordinary scenario files.

The proxy and writer load on first use, so a server that does not record never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foxmock.recorder.modes import RecordMode
    from foxmock.recorder.proxy import Recorder, RecorderSettings

__all__ = ["RecordMode", "Recorder", "RecorderSettings"]


def __getattr__(name: str) -> Any:
    if name == "RecordMode":
        from foxmock.recorder.modes import RecordMode

        return RecordMode
    if name in ("Recorder", "RecorderSettings"):
        from foxmock.recorder import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
