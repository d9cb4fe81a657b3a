"""How the loader words what is wrong: :class:`RegistryError` and the listing of row numbers.

Messages name columns and rows by number only: patient identifiers and cell values never appear in them, except
the offending value of an unknown category.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A message lists this many row numbers (and unknown values), then says how many more there are.
ROWS_SHOWN = 5


class RegistryError(Exception):
    """Bad registry data or an unreadable source; the message is meant for the person who exported it."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def rows_text(numbers: Sequence[int] | np.ndarray) -> str:
    """'row 7' or 'rows 2, 5, 9 and 3 more': the first few row numbers, in order."""
    numbers = np.sort(np.asarray(numbers, dtype=np.int64))
    shown = ", ".join(str(n) for n in numbers[:ROWS_SHOWN])
    more = f" and {len(numbers) - ROWS_SHOWN} more" if len(numbers) > ROWS_SHOWN else ""
    return f"{'row' if len(numbers) == 1 else 'rows'} {shown}{more}"


def fail(source: str, problems: list[str]) -> None:
    """Raise one RegistryError for all problems found, the source named first."""
    if len(problems) == 1:
        raise RegistryError(f"{source}: {problems[0]}", problems)
    listing = "\n".join(f"  - {p}" for p in problems)
    raise RegistryError(f"{source}: {len(problems)} problems\n{listing}", problems)
