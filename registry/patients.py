"""Patients' identifiers and covariates, row by row: canonical values, missing cells, and what is wrong with bad ones.

This is what checking a registry and scoring a file of patients share. The registry checker turns the problems
into its stop-the-fit messages; a batch of patients to score can report them per row instead
(:meth:`CovariateRows.row_problems`) and decide itself which missing covariates it can do without.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prognosis import covariates as cv
from registry.cells import (
    UNKNOWN_VALUE,
    Cells,
    Parsed,
    cell_problems,
    identifier,
    parse_category,
    parse_number,
    parse_percent,
)
from registry.mapping import ColumnMap
from registry.reading import RawTable

DUPLICATE_ID = "duplicate values (patient_id must be unique)"


def outside_range(low: float, high: float, what: str) -> str:
    return f"outside {low:g}-{high:g}" + (f" ({what})" if what else "")


def disagrees_with(alternative: cv.NumericAlternative) -> str:
    edges = ", ".join(f"{e:g}" for e in alternative.edges)
    return f"disagrees with {alternative.name} (binned at {edges}{alternative.unit})"


@dataclass(frozen=True)
class CellProblem:
    """Rows of one column with one kind of bad cell; for unknown values, each row's cell as quoted."""

    column: str  # canonical column name
    reason: str
    rows: np.ndarray  # bool mask over the table's rows
    shown: np.ndarray | None = None  # object, per row (unknown values only)

    def text(self, i: int) -> str:
        """The problem in row i, for a per-row report: "who_grade: unknown value 'G4'"."""
        value = f" {self.shown[i]}" if self.shown is not None and self.shown[i] is not None else ""
        return f"{self.column}: {self.reason}{value}"


@dataclass
class CovariateRows:
    """Covariates of a table's rows in canonical levels, and what stands in the way of reading them."""

    values: dict[str, np.ndarray] = field(default_factory=dict)  # covariate -> level per row (None: none read)
    missing: dict[str, np.ndarray] = field(default_factory=dict)  # covariate -> rows without a value for it
    problems: list[CellProblem] = field(default_factory=list)  # in the order messages list them
    # The column each covariate was read from, for messages: tumor_burden_pct where burden comes from it alone.
    read_from: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, parsed: Parsed) -> None:
        self.values[name] = parsed.values
        self.missing[name] = parsed.missing
        self.read_from[name] = name
        self.add_problems(name, parsed)

    def add_problems(self, column: str, parsed: Parsed) -> None:
        for reason, rows in parsed.problems.items():
            shown = parsed.shown if reason == UNKNOWN_VALUE else None
            self.problems.append(CellProblem(column, reason, rows, shown))

    def row_problems(self) -> dict[int, list[str]]:
        """Row index -> what is wrong in it, for the rows with a bad cell (missing cells are not problems here)."""
        out: dict[int, list[str]] = {}
        for problem in self.problems:
            for i in np.flatnonzero(problem.rows):
                out.setdefault(int(i), []).append(problem.text(int(i)))
        return dict(sorted(out.items()))


def parse_patient_ids(cells: Cells) -> Parsed:
    """Identifiers as text (None where missing or bad); an identifier in more than one row is a problem."""
    # Text is its own identifier (identifier() returns it as is): no call per distinct value then.
    ids = cells.rows(cells.cleaned if cells.all_text else cells.each(identifier))
    present = ~pd.isna(ids)
    codes, _ = pd.factorize(ids[present])
    repeated = np.zeros(len(ids), dtype=bool)
    repeated[present] = np.bincount(codes)[codes] > 1
    return Parsed(values=ids, missing=cells.missing, problems={**cell_problems(cells), DUPLICATE_ID: repeated})


def parse_covariates(raw: RawTable, columns: ColumnMap, names: Iterable[str]) -> CovariateRows:
    """The named covariates (``modality`` too) that ``raw`` has, in canonical levels, with their problems.

    A covariate with a numeric alternative (``tumor_burden``) comes from its category column, or binned from the
    alternative's column (``tumor_burden_pct``), or both (they must agree). A numeric covariate is a number within
    its range (canonical value: the number as text). A covariate whose column is absent is left out; which ones
    must be there is the caller's rule.
    """
    out = CovariateRows()
    for name in names:
        cov = cv.MODALITY if name == cv.MODALITY.name else cv.BY_NAME[name]
        if cov.alternative is not None:
            _with_alternative(raw, columns, out, cov, cov.alternative)
        elif name not in columns.index:
            continue
        elif cov.numeric:
            out.add(name, _numeric(raw.cells(columns.index[name]), cov))
        else:
            out.add(name, parse_category(raw.cells(columns.index[name]), cov))
    return out


def _numeric(cells: Cells, cov: cv.Covariate) -> Parsed:
    """A numeric covariate: numbers within [minimum, maximum], as canonical text (``Covariate.canonical``)."""
    parsed = parse_number(cells)
    number = ~np.isnan(parsed.values)
    outside = number & ((parsed.values < cov.minimum) | (parsed.values > cov.maximum))
    values = np.full(len(parsed.values), None, dtype=object)
    values[number & ~outside] = [repr(float(v)) for v in parsed.values[number & ~outside]]
    return Parsed(
        values=values,
        missing=parsed.missing,
        problems={**parsed.problems, outside_range(cov.minimum, cov.maximum, cov.unit): outside},
    )


def _with_alternative(
    raw: RawTable, columns: ColumnMap, out: CovariateRows, cov: cv.Covariate, alternative: cv.NumericAlternative
) -> None:
    name, alt = cov.name, alternative.name
    have_cat, have_pct = name in columns.index, alt in columns.index
    if not (have_cat or have_pct):
        return
    n = raw.n_rows
    levels = np.full(n, None, dtype=object)
    cat_missing = np.ones(n, dtype=bool)
    if have_cat:
        parsed = parse_category(raw.cells(columns.index[name]), cov)
        out.add_problems(name, parsed)
        levels, cat_missing = parsed.values, parsed.missing
    binned = np.full(n, None, dtype=object)
    pct_missing = np.ones(n, dtype=bool)
    if have_pct:
        parsed = parse_percent(raw.cells(columns.index[alt]))
        pct_missing = parsed.missing
        number = ~np.isnan(parsed.values)
        distinct_numbers, where = np.unique(parsed.values[number], return_inverse=True)
        distinct_levels = np.empty(len(distinct_numbers), dtype=object)
        distinct_levels[:] = [alternative.level(float(p)) for p in distinct_numbers]
        binned[number] = distinct_levels[where]
        outside = number & pd.isna(binned)
        too_far = outside_range(alternative.minimum, alternative.maximum, alternative.description)
        out.add_problems(
            alt, Parsed(values=parsed.values, missing=pct_missing, problems={**parsed.problems, too_far: outside})
        )
    if have_cat and have_pct:
        clash = ~pd.isna(levels) & ~pd.isna(binned) & (levels != binned)
        out.problems.append(CellProblem(name, disagrees_with(alternative), clash))
    out.values[name] = np.where(pd.isna(levels), binned, levels)
    out.missing[name] = cat_missing & pct_missing
    out.read_from[name] = name if have_cat else alt
