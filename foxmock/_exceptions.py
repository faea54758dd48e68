"""Exceptions raised by foxmock.

FoxmockError
├── ScenarioError   a scenario file or set is invalid; carries every Problem found
└── RequestError    a client request is invalid; carries the OpenAI error fields
"""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """One problem in a scenario file: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class FoxmockError(Exception):
    """Base class of every foxmock error."""


class ScenarioError(FoxmockError):
    """Scenario files that cannot be loaded; ``problems`` lists each problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RequestError(FoxmockError):
    """A request foxmock refuses, rendered as an OpenAI error envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, object]:
        """The OpenAI error body for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
