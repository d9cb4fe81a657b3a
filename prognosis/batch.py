"""Many patients at once: per patient, endpoint and option the median with its interval and the survival with its
interval at each landmark — every number the single-patient ``prognosis.scoring.predict`` gives for that patient.

Numpy only (a pandas DataFrame works as the input mapping; ``calculator.score_cli`` reads files into one). Rows are
validated column by column over their distinct values; identical patients are scored once (a registry has at most
a few thousand distinct combinations of the inputs) with the very code ``predict`` uses
(``prognosis.scoring.score``), and the results spread back to the rows. A row that cannot be scored gets
its reason in ``error`` and nulls (NaN) elsewhere; the other rows are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prognosis import covariates
from prognosis.model import Model
from prognosis.prepared import Prepared, prepared
from prognosis.scoring import check_condition, score

ERROR = "error"
MISSING_REQUIRED = "missing (required)"


def months_label(months: float) -> str:
    """12.0 -> '12', 1.5 -> '1.5' (column names)."""
    return f"{months:g}"


def column_names(horizons: Sequence[float]) -> list[str]:
    """The prediction columns, in order: per endpoint and option the survival with its interval at each horizon,
    then the median with its interval, e.g. ``os_SIRT_survival_24``, ``os_SIRT_ci_lower_24``, ``os_SIRT_median``."""
    names = []
    for endpoint in covariates.ENDPOINTS:
        for option in covariates.OPTIONS:
            stem = f"{endpoint}_{option}"
            for h in horizons:
                label = months_label(h)
                names += [f"{stem}_survival_{label}", f"{stem}_ci_lower_{label}", f"{stem}_ci_upper_{label}"]
            names += [f"{stem}_median", f"{stem}_median_ci_lower", f"{stem}_median_ci_upper"]
    return names


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _canonical_column(
    cov: covariates.Covariate, values: Sequence[object] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical levels (None: missing) and per row the problem ('' if none), decided once per distinct value."""
    n = len(values)
    levels = np.empty(n, dtype=object)
    problems = np.full(n, "", dtype=object)
    seen: dict[object, tuple[str | None, str]] = {}
    for i, value in enumerate(values):
        try:
            found = seen.get(value)
        except TypeError:  # unhashable
            found = None
        if found is None:
            if _is_missing(value):
                found = (None, f"{cov.name}: {MISSING_REQUIRED}" if cov.required else "")
            else:
                level = cov.canonical(value)
                found = (level, "" if level is not None else f"{cov.name}: unknown value {value!r}")
            try:
                seen[value] = found
            except TypeError:
                pass
        levels[i], problems[i] = found
    return levels, problems


@dataclass(frozen=True)
class BatchResult:
    """``columns``: column name -> float array (NaN: null, as in ``predict``), in ``column_names`` order;
    ``error`` (object array): the reason a row was not scored, or None; ``patients``: how many distinct patients
    were scored."""

    columns: dict[str, np.ndarray]
    error: np.ndarray
    patients: int


def score_patients(
    model: Model,
    rows: Mapping[str, Sequence[object] | np.ndarray],
    horizons: Sequence[float] = covariates.DEFAULT_HORIZONS_MONTHS,
    conditional_on_months: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score every row of ``rows`` (covariate name -> values, one per patient; a missing optional value is unknown and
    averaged over as in ``predict``; a column may be absent when optional).

    Returns per row and column the numbers ``predict(model, patient, horizons, conditional_on_months=...)`` gives
    for that row's patient (landmark survival and interval, median and interval), NaN where it gives null, and the
    reason in ``error`` for rows that cannot be scored (a required value missing, a value not among the levels).
    ``conditional_on_months`` applies to every row (a ValueError if it is refused, as ``predict`` refuses it).
    ``progress(done, total)`` is called as distinct patients are scored.
    """
    horizons = [float(h) for h in horizons]
    months = check_condition(model, conditional_on_months)
    n = len(next(iter(rows.values()))) if rows else 0
    unknown_columns = set(rows) - set(covariates.BY_NAME)
    if unknown_columns:
        raise ValueError(f"not covariates: {', '.join(sorted(unknown_columns))}")
    levels: dict[str, np.ndarray] = {}
    problems = np.full(n, "", dtype=object)
    for cov in covariates.COVARIATES:
        given = rows.get(cov.name)
        column: Sequence[object] | np.ndarray = [None] * n if given is None else given
        if len(column) != n:
            raise ValueError(f"column {cov.name} has {len(column)} rows, not {n}")
        levels[cov.name], why = _canonical_column(cov, column)
        has = why != ""
        problems[has] = np.where(problems[has] == "", why[has], problems[has] + "; " + why[has])
    ok = problems == ""
    # One code per distinct patient: the rows' levels per covariate factorized and combined.
    names = [cov.name for cov in covariates.COVARIATES]
    codes = np.zeros(n, dtype=np.int64)
    for name in names:
        column = np.array(["\x00" if v is None else v for v in levels[name]], dtype=object) if n else np.array([])
        _, inverse = np.unique(column.astype(str), return_inverse=True)
        codes = codes * (int(inverse.max()) + 1 if n else 1) + inverse.reshape(-1)
    distinct, first, inverse = np.unique(np.where(ok, codes, -1), return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    out_names = column_names(horizons)
    table = np.full((len(distinct), len(out_names)), np.nan)
    todo = [j for j in range(len(distinct)) if distinct[j] >= 0]
    prep = prepared(model)
    for done, j in enumerate(todo, start=1):
        row = first[j]
        patient = {name: levels[name][row] for name in names}
        table[j] = _patient_row(prep, patient, horizons, months)
        if progress is not None:
            progress(done, len(todo))
    values = table[inverse]
    error = problems.copy()
    error[ok] = None
    return BatchResult({name: values[:, c] for c, name in enumerate(out_names)}, error, len(todo))


def _patient_row(
    prep: Prepared, patient: dict[str, str | None], horizons: list[float], months: float | None
) -> np.ndarray:
    """One patient's numbers in ``column_names`` order (NaN: null)."""
    res = score(prep, patient, horizons, months)
    landmarks = res.read(res.reads)
    medians = res.median_months()
    out: list[float] = []
    for e in range(len(prep.endpoints)):
        for o in range(len(covariates.OPTIONS)):
            for lm in landmarks[e][o]:
                out += [np.nan if lm[k] is None else lm[k] for k in ("survival", "ci_lower", "ci_upper")]
            out += [
                np.nan if medians[e][o][k] is None else medians[e][o][k] for k in ("estimate", "ci_lower", "ci_upper")
            ]
    return np.array(out)
