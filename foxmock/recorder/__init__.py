"""Record and replay: a proxy to a real upstream that writes ordinary scenario files."""

from foxmock.recorder.modes import RecordMode
from foxmock.recorder.proxy import Recorder, RecorderSettings

__all__ = ["RecordMode", "Recorder", "RecorderSettings"]
