"""The registry schema's rules (``registry-schema.md``), checked on a raw table; the result is a :class:`Registry`.

Every problem found is collected, worded with the column and the first rows concerned, and raised together as one
:class:`~registry.problems.RegistryError`; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prognosis import covariates as cv
from registry.cells import (
    FORMULA_CELL,
    NOT_A_NUMBER,
    NOT_AN_EVENT,
    NOT_FINITE,
    UNKNOWN_VALUE,
    allowed_text,
    cell_problems,
    parse_event,
    parse_number,
)
from registry.mapping import COVARIATE_NAMES, PATIENT_ID, ColumnMap
from registry.patients import CellProblem, parse_covariates, parse_patient_ids
from registry.problems import ROWS_SHOWN, RegistryError, fail, rows_text
from registry.reading import RawTable

# An endpoint's time may exceed the time of the endpoint it cannot come after (hpfs_months <= os_months) by this
# much: both are often rounded separately to 0.1 month.
ORDER_TOLERANCE_MONTHS = HPFS_OS_TOLERANCE_MONTHS = 0.1
# Covariates that must be in every row (modality is one for the loader: every row has a treatment).
REQUIRED_VALUES = (*cv.REQUIRED, cv.MODALITY.name)
# The order in which messages and exclusion reasons name columns.
# (A covariate's numeric alternative column right after it: tumor_burden, tumor_burden_pct.)
COLUMN_ORDER = (
    PATIENT_ID,
    *(name for c in cv.COVARIATES for name in (c.name, *((c.alternative.name,) if c.alternative else ()))),
    cv.MODALITY.name,
)
NO_OUTCOME = f"an outcome (no {' or '.join(cv.ENDPOINTS)} time and event)"
MISSING_HINT = "; fill them in or use drop_incomplete (--drop-incomplete) to exclude such rows"


@dataclass
class Registry:
    """A checked registry: one row per usable patient, in canonical columns and levels."""

    frame: pd.DataFrame
    optional: tuple[str, ...]
    report: dict
    sha256: str


@dataclass(frozen=True)
class Outcome:
    """One endpoint's outcome per row: time in months (NaN: none), event 0/1 (None: none), and rows that have one."""

    time: np.ndarray
    event: np.ndarray
    present: np.ndarray


def outcome_endpoints(raw: RawTable, columns: ColumnMap) -> list[cv.Endpoint]:
    """The endpoints whose two columns are present; raise RegistryError if a required column is absent."""
    index = columns.index

    def alternative(name: str) -> str | None:
        cov = cv.BY_NAME.get(name)
        return cov.alternative.name if cov is not None and cov.alternative is not None else None

    absent = [name for name in (PATIENT_ID, *REQUIRED_VALUES) if name not in index and alternative(name) not in index]
    problems = []
    for name in absent:
        alt = f" (or '{alternative(name)}')" if alternative(name) else ""
        problems.append(f"required column '{name}'{alt} is absent")
    endpoints = []
    half_pair = False
    for ep in cv.ENDPOINTS.values():
        has_time, has_event = ep.time in index, ep.event in index
        if has_time and has_event:
            endpoints.append(ep)
        elif has_time or has_event:
            there, gone = (ep.time, ep.event) if has_time else (ep.event, ep.time)
            problems.append(f"column '{gone}' is absent although '{there}' is present")
            half_pair = True
    if not endpoints and not half_pair:
        pairs = " or ".join(f"'{ep.time}' and '{ep.event}'" for ep in cv.ENDPOINTS.values())
        problems.append(f"no outcome columns: need {pairs} (or both pairs)")
    if problems:
        found_names = ", ".join(repr(h.strip()) for h in raw.header if h.strip())
        problems[-1] += f" (columns found: {found_names})"
        fail(raw.source, problems)
    return endpoints


class Checker:
    """Checks one raw table against the schema and builds the Registry; collects every problem before raising."""

    def __init__(
        self,
        raw: RawTable,
        columns: ColumnMap,
        endpoints: list[cv.Endpoint],
        *,
        table: str | None,
        drop_incomplete: bool,
        allow_missing_optional: bool,
    ):
        self.raw = raw
        self.columns = columns
        self.endpoints = endpoints
        self.table = table  # SQL table or .xlsx sheet, as asked for
        self.drop_incomplete = drop_incomplete
        self.allow_missing_optional = allow_missing_optional
        self.problems: list[str] = []

    # -- messages --------------------------------------------------------------------------------------------

    def where(self, rows: np.ndarray) -> str:
        return f"{rows_text(self.raw.row_numbers[rows])} ({self.raw.row_note})"

    def problem(self, name: str, what: str, rows: np.ndarray, tail: str = "") -> None:
        if rows.any():
            self.problems.append(f"{self.columns.describe(name)}: {what} in {self.where(rows)}{tail}")

    def report_cells(self, problems: list[CellProblem]) -> None:
        for found in problems:
            if found.reason == UNKNOWN_VALUE:
                self.unknown_values(found)
            else:
                self.problem(
                    found.column,
                    found.reason,
                    found.rows,
                    "; enter plain values" if found.reason == FORMULA_CELL else "",
                )

    def unknown_values(self, found: CellProblem) -> None:
        """One message for a column's unknown values: each value (the first few) with its rows, and what is allowed."""
        rows = np.flatnonzero(found.rows)
        if not len(rows):
            return
        assert found.shown is not None, "an unknown-value problem carries its cells as shown (add_problems)"
        value_codes, values = pd.factorize(found.shown[rows])  # values in the order of their first row
        parts = [
            f"{value} in {rows_text(self.raw.row_numbers[rows[value_codes == k]])}"
            for k, value in enumerate(values[:ROWS_SHOWN])
        ]
        if len(values) > ROWS_SHOWN:
            parts.append(f"and {len(values) - ROWS_SHOWN} more unknown values")
        cov = cv.MODALITY if found.column == cv.MODALITY.name else cv.BY_NAME[found.column]
        self.problems.append(
            f"{self.columns.describe(found.column)}: unknown value {'; '.join(parts)} "
            f"({self.raw.row_note}; {allowed_text(cov)})"
        )

    # -- outcomes --------------------------------------------------------------------------------------------

    def outcomes(self) -> dict[str, Outcome]:
        """Times and events of the endpoints present; their problems are recorded."""
        out = {}
        for ep in self.endpoints:
            time_cells = self.raw.cells(self.columns.index[ep.time])
            event_cells = self.raw.cells(self.columns.index[ep.event])
            for name, cells in ((ep.time, time_cells), (ep.event, event_cells)):
                self.report_cells([CellProblem(name, reason, rows) for reason, rows in cell_problems(cells).items()])
            times, events = parse_number(time_cells), parse_event(event_cells)
            # A formula where a time or an event belongs is reported as such, and still counts as given.
            time_given, event_given = ~times.missing, ~events.missing
            nonpositive = times.values <= 0
            self.problem(ep.time, "not a number of months", times.problems[NOT_A_NUMBER])
            self.problem(ep.time, NOT_FINITE, times.problems[NOT_FINITE])
            self.problem(ep.time, "not greater than 0 months", nonpositive)
            self.problem(ep.event, NOT_AN_EVENT, events.problems[NOT_AN_EVENT])
            self.problem(ep.event, f"missing where {ep.time} is given", time_given & ~event_given)
            self.problem(ep.time, f"missing where {ep.event} is given", event_given & ~time_given)
            time = np.where(nonpositive, np.nan, times.values)
            out[ep.name] = Outcome(time=time, event=events.values, present=time_given & event_given)
        for ep in cv.ENDPOINTS.values():
            bound = cv.ENDPOINTS.get(ep.not_after) if ep.not_after else None
            if bound is None or ep.name not in out or bound.name not in out:
                continue
            with np.errstate(invalid="ignore"):
                late = out[ep.name].time > out[bound.name].time + ORDER_TOLERANCE_MONTHS
            self.problem(
                ep.time,
                f"greater than {bound.time} by more than the tolerance of {ORDER_TOLERANCE_MONTHS} months",
                late,
            )
        return out

    # -- assembly --------------------------------------------------------------------------------------------

    def run(self) -> Registry:
        raw, n = self.raw, self.raw.n_rows
        ids = parse_patient_ids(raw.cells(self.columns.index[PATIENT_ID]))
        self.report_cells([CellProblem(PATIENT_ID, reason, rows) for reason, rows in ids.problems.items()])
        covariates = parse_covariates(raw, self.columns, (*COVARIATE_NAMES, cv.MODALITY.name))
        self.report_cells(covariates.problems)
        values = covariates.values

        # An optional column that is present but entirely empty is an unfilled template column, not data.
        empty_optional = [name for name in cv.OPTIONAL if name in values and covariates.missing[name].all()]
        for name in empty_optional:
            del values[name]
        optional = tuple(name for name in cv.OPTIONAL if name in values)
        # Rows without a value, by the column messages name; with allow_missing_optional, partly recorded optional
        # covariates are left for multiple imputation: they neither stop the fit nor exclude a row.
        missing = {PATIENT_ID: ids.missing}
        for name, rows in covariates.missing.items():
            if name in values and not (self.allow_missing_optional and name in optional):
                missing[covariates.read_from[name]] = rows

        outcomes = self.outcomes()
        with_outcome = np.zeros(n, dtype=bool)
        for outcome in outcomes.values():
            with_outcome |= outcome.present
        no_outcome = ~with_outcome

        missing_names = [name for name in COLUMN_ORDER if name in missing and missing[name].any()]
        if not self.drop_incomplete:
            for name in missing_names:
                self.problem(name, "missing value", missing[name], MISSING_HINT)
            if no_outcome.any():
                cols = ", ".join(f"{ep.time}/{ep.event}" for ep in self.endpoints)
                self.problems.append(f"no outcome ({cols} all missing) in {self.where(no_outcome)}{MISSING_HINT}")
        if self.problems:
            fail(raw.source, self.problems)

        excluded, reasons = _exclusions(
            [missing[name] for name in missing_names] + [no_outcome], [*missing_names, NO_OUTCOME]
        )
        keep = ~excluded
        if not keep.any():
            counts = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
            raise RegistryError(f"{raw.source}: no usable rows: all {n} were excluded as incomplete ({counts})")
        text_columns = {
            PATIENT_ID: ids.values,
            **{name: values.pop(name) for name in (*cv.REQUIRED, *optional, cv.MODALITY.name)},
        }
        del ids, covariates, values
        frame = _frame(keep, text_columns, outcomes)

        used = {ep: int(frame[cv.ENDPOINTS[ep].time].notna().sum()) for ep in cv.ENDPOINTS}
        report = {
            "rows_read": n,
            "rows_used": used,
            "excluded": [{"reason": reason, "rows": count} for reason, count in reasons.items()],
            "endpoint_missing": {ep: len(frame) - used[ep] for ep in cv.ENDPOINTS},
            "missing_optional": {name: int(frame[name].isna().sum()) for name in optional},
            "source": raw.source,
            "format": raw.fmt,
            "table": self.table,
            "ignored_columns": self.columns.ignored,
            "empty_optional_columns": empty_optional,
            "renamed_columns": self.columns.renamed,
            "unused_mapping_entries": self.columns.unused_mapping_entries,
            "blank_rows_skipped": raw.blank_rows,
            "endpoint_order_tolerance_months": ORDER_TOLERANCE_MONTHS,
            "row_numbering": raw.row_note,
        }
        return Registry(frame=frame, optional=optional, report=report, sha256=raw.sha256)


def _exclusions(masks: list[np.ndarray], names: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows to exclude, and how many for each reason ("missing who_grade, modality"), in the order of first rows."""
    flags = np.zeros(len(masks[0]), dtype=np.int64)
    for bit, mask in enumerate(masks):
        flags |= mask.astype(np.int64) << bit
    excluded = flags != 0
    codes, combinations = pd.factorize(flags[excluded])
    counts = np.bincount(codes, minlength=len(combinations))
    reasons = {}
    for combination, count in zip(combinations, counts, strict=True):
        items = [name for bit, name in enumerate(names) if combination >> bit & 1]
        reasons["missing " + ", ".join(items)] = int(count)
    return excluded, reasons


def _frame(keep: np.ndarray, text_columns: dict[str, np.ndarray], outcomes: dict[str, Outcome]) -> pd.DataFrame:
    """The registry frame: id and covariates (object, canonical levels), then per endpoint time (float) and event
    (Int64).

    The text columns are written into one object block that the frame keeps as it is (no consolidating copy), and
    ``text_columns`` is emptied on the way, so that each column is held once.
    """
    rows = slice(None) if keep.all() else keep
    kept = int(keep.sum())
    names = list(text_columns)
    block = np.empty((len(names), kept), dtype=object)
    for k, name in enumerate(names):
        block[k] = text_columns.pop(name)[rows]
    frame = pd.DataFrame(block.T, columns=names, copy=False)
    for ep in cv.ENDPOINTS.values():
        outcome = outcomes.get(ep.name)
        if outcome is None:
            frame[ep.time] = np.full(kept, np.nan)
            frame[ep.event] = pd.arrays.IntegerArray(np.zeros(kept, dtype=np.int64), np.ones(kept, dtype=bool))
            continue
        frame[ep.time] = outcome.time[rows].astype(np.float64)
        events = outcome.event[rows]
        none = pd.isna(events)
        ints = np.zeros(kept, dtype=np.int64)
        ints[~none] = events[~none].astype(np.int64)
        frame[ep.event] = pd.arrays.IntegerArray(ints, none)
    return frame
