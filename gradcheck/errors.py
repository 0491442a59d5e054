"""The one error type that bad input produces: it names the file, the case and the line."""
from __future__ import annotations


class CaseError(ValueError):
    def __init__(self, message: str, file: str = "", case: str | None = None,
                 line: int | None = None):
        super().__init__(message)
        self.message, self.file, self.case, self.line = message, str(file), case, line

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        who = f" case {self.case!r}:" if self.case else ""
        return f"{where}:{who} {self.message}" if where else f"{who} {self.message}".strip()


class CaseErrors(ValueError):
    """Every problem found in a set of files, one `CaseError` each."""

    def __init__(self, errors: list[CaseError]):
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors
