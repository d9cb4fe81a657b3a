"""Cells to values: what counts as no value, a formula or a spreadsheet error; numbers, events and categories.

A column is factorized once (:func:`distinct`); each distinct cell is then cleaned and parsed by the scalar rules
below and the result spread to the rows by numpy indexing, so a million-row column costs one Python call per
*distinct* value, not per cell. The scalar rules are the definition; the vectorised parts only decide which cells
share a result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd

from prognosis import covariates as cv

# Cell texts that mean "no value" (case-insensitive), as written by Excel, R and pandas exports.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
_LONGEST_MISSING_TOKEN = max(map(len, MISSING_TOKENS))
_FORMULA_STARTS = ("=", "@", "+", "-")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

# How a reader marks a cell it knows to be bad from the file itself (an .xlsx cell's type).
FORMULA = "formula"
SPREADSHEET_ERROR = "spreadsheet error"

# What can be wrong with a cell, as messages and per-row reasons say it.
FORMULA_CELL = "a spreadsheet formula (or text starting with =, +, - or @) where a value belongs"
ERROR_CELL = "a spreadsheet error value (such as #N/A)"
UNKNOWN_VALUE = "unknown value"
NOT_A_NUMBER = "not a number"
NOT_FINITE = "not a finite number"
NOT_AN_EVENT = "not 0 or 1"


# ----------------------------------------------------------------------------------------------------------------
# Scalar rules: one cell


def clean(value: object) -> object:
    """A cell as a plain Python value, or None when it holds no value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        value = value.strip()
        if value.lower() in MISSING_TOKENS:
            return None
    return value


def is_blank(value: object) -> bool:
    """No cell at all, or only spaces (how readers tell blank rows)."""
    return value is None or (isinstance(value, str) and not value.strip())


def looks_like_formula(text: str) -> bool:
    """'=..', '@..', or '+'/'-' followed by something that is not a number: a formula or CSV injection."""
    if not text:
        return False
    if text[0] in "=@":
        return True
    return text[0] in "+-" and len(text) > 1 and not _NUMBER.fullmatch(text)


def number(value: object) -> float | None:
    """A cell as a number, or None if it is not one (booleans and dates are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return None


def event(value: object) -> int | None:
    """A cell as an event indicator 0 or 1 (also true/false), or None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return int(value.lower() == "true")
    as_number = number(value)
    return int(as_number) if as_number in (0.0, 1.0) else None


def level(cov: cv.Covariate, value: object) -> str | None:
    """A cell as a canonical level of ``cov``, or None; numeric text that is a whole number ('2.0') reads as it."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        as_number = float(value)
        if as_number.is_integer():
            value = int(as_number)
    return cov.canonical(value)


def percent(value: object) -> float | None:
    """A cell as a percentage (a trailing '%' allowed), or None."""
    if isinstance(value, str) and value.endswith("%"):
        value = value[:-1].strip()
    return number(value)


def identifier(value: object) -> str:
    """A cell as an identifier: a spreadsheet's 1001.0 is the id 1001."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_value(value: object) -> str:
    """A cell as quoted in a message (shortened)."""
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def allowed_text(cov: cv.Covariate) -> str:
    """'allowed: ...' for messages about unknown values of ``cov``."""
    extra = sorted(alias for alias in cov.aliases if alias not in cov.levels)
    text = f"allowed: {', '.join(cov.levels)}"
    if extra:
        text += f"; also accepted, any case: {', '.join(extra)}"
    return text


# ----------------------------------------------------------------------------------------------------------------
# Factorizing a column


@dataclass(frozen=True)
class Distinct:
    """A column as codes into its distinct cells: ``values[codes[i]]`` is row i's cell; code -1 is an empty cell.

    Two cells share a code only if every scalar rule above treats them alike (so 1 and True, or 0.0 and -0.0,
    do not).
    """

    codes: np.ndarray  # int32 or int64, one per row
    values: np.ndarray  # object, each distinct cell once


_HASHABLE_ALIKE = frozenset({"string", "empty", "integer", "boolean"})


def distinct(column: pd.Series | np.ndarray) -> Distinct:
    """Factorize a column of cells of any type (as read from CSV, Excel, Parquet or SQL)."""
    values = np.asarray(column) if isinstance(column, np.ndarray) else pd.Series(column).to_numpy()
    if not isinstance(getattr(column, "dtype", values.dtype), np.dtype) or values.dtype.kind not in "biufO":
        # Nullable integers, dates, categories: their values as Python objects, as pandas gives them.
        values = pd.Series(column).astype(object).to_numpy()
    if values.dtype.kind == "f":
        # By bit pattern, so that -0.0 keeps its own text in messages; NaN is cleaned to "no value" later.
        bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
        codes, first = _factorize_first(bits)
        uniques = values[first].astype(np.float64).astype(object)
    elif values.dtype.kind in "biu":
        codes, uniques = pd.factorize(values)
        uniques = uniques.astype(object)
    else:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in _HASHABLE_ALIKE:
            codes, uniques = pd.factorize(values)
        elif kind == "floating":
            return distinct(_as_float(values))
        else:
            # Mixed types from a spreadsheet or an SQL column: equal only if same type and same text.
            keys = np.array([f"{type(v).__qualname__}:{v!r}" for v in values], dtype=object)
            codes, first = _factorize_first(keys)
            uniques = values[first]
    codes = codes.astype(np.int32) if len(uniques) < 2**31 - 1 else codes
    return Distinct(codes=codes, values=np.asarray(uniques, dtype=object))


def _factorize_first(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``keys`` in order of first appearance, and the row where each first appears."""
    codes, _ = pd.factorize(keys)
    first = np.full(codes.max(initial=-1) + 1, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return codes, first


# ----------------------------------------------------------------------------------------------------------------
# A column's cells, cleaned


class Cells:
    """One column's cells: which rows hold no value, a formula or a spreadsheet error; rules applied once per value.

    ``marks`` are the reader's own marks by row index (an .xlsx formula or error cell); with ``text_formulas``
    text that looks like a formula counts as one too (CSV and spreadsheet text; not Parquet or SQL values).
    """

    def __init__(self, column: Distinct, marks: Mapping[int, str] | None = None, text_formulas: bool = False):
        self.codes = column.codes
        # One slot more than distinct cells, for the empty cell: code -1 indexes it, so it needs no special case.
        self.cleaned, formula_text, self.all_text = _clean_distinct(column.values, text_formulas)
        self.formula = formula_text[self.codes]
        self.spreadsheet_error = np.zeros(len(self.codes), dtype=bool)
        for i, kind in (marks or {}).items():
            self.formula[i] = kind == FORMULA
            self.spreadsheet_error[i] = kind == SPREADSHEET_ERROR
        self.bad = self.formula | self.spreadsheet_error
        self.missing = pd.isna(self.cleaned)[self.codes] & ~self.bad

    def each(self, rule: Callable[[object], object]) -> np.ndarray:
        """``rule`` of each distinct clean value, None where there is no value (object array, one slot per code)."""
        results = np.empty(len(self.cleaned), dtype=object)
        for k, value in enumerate(self.cleaned):
            if value is not None:
                results[k] = rule(value)
        return results

    def rows(self, per_value: np.ndarray, empty: object = None) -> np.ndarray:
        """Spread per-value results (as from :meth:`each`) to the rows; ``empty`` where a cell is a formula or error."""
        out = per_value[self.codes]
        out[self.bad] = empty
        return out


def _clean_distinct(values: np.ndarray, text_formulas: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """Each distinct cell cleaned (and a final None for the empty cell), which look like formulas, and whether
    every one is text."""
    n = len(values)
    cleaned = np.empty(n + 1, dtype=object)
    formula = np.zeros(n + 1, dtype=bool)
    if n and pd.api.types.infer_dtype(values, skipna=False) == "string":
        # All text (CSV, and most text columns): the rules of clean() and looks_like_formula() in bulk; only the
        # short values can be missing tokens, only those starting with =, @, + or - can be formulas.
        stripped = [value.strip() for value in values]
        cleaned[:n] = stripped
        lengths = np.fromiter(map(len, stripped), dtype=np.int64, count=n)
        for k in np.flatnonzero(lengths <= _LONGEST_MISSING_TOKEN):
            if stripped[k].lower() in MISSING_TOKENS:
                cleaned[k] = None
        if text_formulas:
            starts = np.array([text.startswith(_FORMULA_STARTS) for text in stripped], dtype=bool)
            for k in np.flatnonzero(starts):
                formula[k] = looks_like_formula(stripped[k])
        return cleaned, formula, True
    for i, value in enumerate(values):
        cleaned[i] = clean(value)
        formula[i] = text_formulas and isinstance(value, str) and looks_like_formula(value.strip())
    return cleaned, formula, False


# ----------------------------------------------------------------------------------------------------------------
# Parsing a column: values and the rows that are wrong


@dataclass(frozen=True)
class Parsed:
    """A column read as values, row by row, and for each thing that can be wrong the rows it is wrong in.

    ``problems`` maps a reason (the wording messages use) to a boolean mask, in the order messages list them;
    ``shown`` holds, for unknown values, each row's cell as quoted in messages.
    """

    values: np.ndarray  # object (levels, events) or float64 (numbers; NaN where there is none)
    missing: np.ndarray  # bool: the cell holds no value
    problems: dict[str, np.ndarray] = field(default_factory=dict)
    shown: np.ndarray | None = None


def cell_problems(cells: Cells) -> dict[str, np.ndarray]:
    """Formula and spreadsheet-error cells, the problems every column can have, in the order messages list them."""
    return {FORMULA_CELL: cells.formula, ERROR_CELL: cells.spreadsheet_error}


def _unreadable(per_value: np.ndarray, cells: Cells) -> np.ndarray:
    """Rows whose cell holds a value that the rule could not read (its result is None or NaN)."""
    return pd.isna(per_value)[cells.codes] & ~cells.missing & ~cells.bad


def parse_category(cells: Cells, cov: cv.Covariate) -> Parsed:
    """Canonical levels of ``cov`` (None where missing or bad); unknown values are a problem."""
    levels = cells.each(lambda value: level(cov, value))
    unknown = _unreadable(levels, cells)
    shown = None
    if unknown.any():
        shown = np.empty(len(levels), dtype=object)
        for k in np.flatnonzero(pd.isna(levels) & ~pd.isna(cells.cleaned)):
            shown[k] = shown_value(cells.cleaned[k])
        shown = cells.rows(shown)
    return Parsed(
        values=cells.rows(levels),
        missing=cells.missing,
        problems={**cell_problems(cells), UNKNOWN_VALUE: unknown},
        shown=shown,
    )


def parse_number(cells: Cells) -> Parsed:
    """Numbers (float64, NaN where missing or bad); text that is not a number, or an infinite number, is a problem."""
    numbers = _as_float(cells.each(number))
    not_number = _unreadable(numbers, cells)
    values = cells.rows(numbers, np.nan)
    not_finite = np.isinf(values)
    values[not_finite] = np.nan
    return Parsed(
        values=values,
        missing=cells.missing,
        problems={**cell_problems(cells), NOT_A_NUMBER: not_number, NOT_FINITE: not_finite},
    )


def parse_percent(cells: Cells) -> Parsed:
    """Percentages as numbers (a trailing '%' allowed; float64, NaN where missing or bad)."""
    numbers = _as_float(cells.each(percent))
    return Parsed(
        values=cells.rows(numbers, np.nan),
        missing=cells.missing,
        problems={**cell_problems(cells), NOT_A_NUMBER: _unreadable(numbers, cells)},
    )


def parse_event(cells: Cells) -> Parsed:
    """Event indicators 0/1 (object ints; None where missing or bad); anything else is a problem."""
    events = cells.each(event)
    return Parsed(
        values=cells.rows(events),
        missing=cells.missing,
        problems={**cell_problems(cells), NOT_AN_EVENT: _unreadable(events, cells)},
    )


def _as_float(values: np.ndarray) -> np.ndarray:
    """Numbers and missing values (None, NaN, NA) as float64, NaN for the missing ones."""
    out = np.full(len(values), np.nan)
    present = ~pd.isna(values)
    out[present] = values[present].astype(np.float64)
    return out
