"""The verdicts of a case run and of one comparison: the one place they are named and ranked.

Adding a verdict is one member here, in rank order; every table, report and front end
reads its name, rank, color and whether it fails a run from this enum.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """A `str`, so that rows, CSV cells and DataFrame columns hold the plain name."""

    # (name, fails the run, color in a terminal), worst first: this order ranks every table
    ERROR = "ERROR", True, "bold red"  # an engine raised or timed out
    NONFINITE = "NONFINITE", True, "bold red"  # NaN or Inf in a value or gradient
    FAIL = "FAIL", True, "bold red"  # a pair of sources disagrees
    SKIP = "SKIP", False, "yellow"  # fewer than two sources could be compared
    NONDIFF = "NONDIFF", False, "yellow"  # an input on a kink: disagreement is allowed
    PASS = "PASS", False, "green"

    failing: bool
    style: str

    # The defaults are never used (each member gives all three); with them, type checkers
    # accept the lookup by name, Verdict("PASS").
    def __new__(cls, name: str, failing: bool = False, style: str = ""):
        member = str.__new__(cls, name)
        member._value_ = name
        member.failing, member.style = failing, style
        return member

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return list(Verdict).index(self)

    @classmethod
    def rank_of(cls, name: str) -> int:
        """Rank of a verdict read back from a file; unknown names sort last."""
        return cls(name).rank if name in cls._value2member_map_ else len(cls)


FAILING = tuple(v for v in Verdict if v.failing)
