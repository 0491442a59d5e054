"""The one error type that bad input produces: it names the file, the case and the line."""

from __future__ import annotations

import difflib
import os


class CaseError(ValueError):
    def __init__(
        self,
        message: str,
        file: str | os.PathLike = "",
        case: str | None = None,
        line: int | None = None,
    ):
        super().__init__(message)
        self.message, self.file, self.case, self.line = message, str(file), case, line

    @property
    def problems(self) -> list[CaseError]:
        return [self]

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        who = f" case {self.case!r}:" if self.case else ""
        return f"{where}:{who} {self.message}" if where else f"{who} {self.message}".strip()


class CaseErrors(CaseError):
    """Every problem found in a set of files, one `CaseError` each. A `CaseError` itself,
    so that code expecting one problem still catches several."""

    def __init__(self, errors: list[CaseError]):
        first = errors[0]
        super().__init__(first.message, first.file, first.case, first.line)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(map(str, self.errors))

    @property
    def problems(self) -> list[CaseError]:
        return self.errors

    @staticmethod
    def of(errors: list[CaseError]) -> CaseError:
        """The one error, or all of them together."""
        return errors[0] if len(errors) == 1 else CaseErrors(errors)


class ReportDirError(ValueError):
    """The output folder cannot be written, or is not gradcheck's to replace."""


class ReportRenderError(RuntimeError):
    """report.html or summary.md failed; the CSV files and run.json were written."""


def did_you_mean(word: str, choices, listed: int = 0) -> str:
    """' (did you mean 'x'?)' for a close choice; else, when `listed` > 0 and there are at
    most that many choices, ' (choose from a, b, c)'; else ''."""
    choices = sorted(map(str, choices))
    close = difflib.get_close_matches(str(word), choices, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if 0 < len(choices) <= listed:
        return f" (choose from {', '.join(choices)})"
    return ""
