"""Everything derived from the definitions (``prognosis.definitions``): names, options, comparisons, endpoints,
term ids and the design matrix. The registry loader, the synthetic generator, fitting, the card, the form, the API
schema and the pages all read these; nothing else restates them.

``PROGNOSIS_DEFINITIONS=package.module`` replaces the definitions with another module exposing the same names (a
site that adds an option, or the tests that prove everything follows the definitions; docs/extending.md). A model
is served only under definitions whose terms include all of its own.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import operator
import os
from typing import Protocol

import numpy as np

from prognosis.spec import Covariate, Endpoint, NumericAlternative, OptionStyle

__all__ = ["Covariate", "Endpoint", "NumericAlternative", "OptionStyle"]

DEFINITIONS_VARIABLE = "PROGNOSIS_DEFINITIONS"
DEFINITIONS_MODULE = os.environ.get(DEFINITIONS_VARIABLE) or "prognosis.definitions"
_defs = importlib.import_module(DEFINITIONS_MODULE)

COVARIATES: tuple[Covariate, ...] = tuple(_defs.COVARIATES)
MODALITY: Covariate = _defs.MODALITY
MODALITY_WITHIN: Covariate = _defs.MODALITY_WITHIN
OPTION_STYLES: dict[str, OptionStyle] = dict(_defs.OPTION_STYLES)
DEFAULT_HORIZONS_MONTHS: tuple[float, ...] = tuple(_defs.DEFAULT_HORIZONS_MONTHS)
ENDPOINTS: dict[str, Endpoint] = {ep.name: ep for ep in _defs.ENDPOINTS}
# The named covariates of the definitions (WHO_GRADE, TUMOR_BURDEN, ...), for code tied to the published study
# (the synthetic generator) and for tests; generic code iterates COVARIATES instead.
globals().update({name: value for name, value in vars(_defs).items() if isinstance(value, Covariate)})
# Declared for the type checker, which cannot see the update above; these lines bind nothing.
WHO_GRADE: Covariate
TUMOR_BURDEN: Covariate
PRIOR_RESECTION_ABLATION: Covariate

BY_NAME: dict[str, Covariate] = {c.name: c for c in COVARIATES}
REQUIRED: tuple[str, ...] = tuple(c.name for c in COVARIATES if c.required)
OPTIONAL: tuple[str, ...] = tuple(c.name for c in COVARIATES if not c.required)
OPTIONS: tuple[str, ...] = MODALITY.levels
# Each option against the reference first, then the other options against each other, in the definitions' order.
COMPARISONS: tuple[tuple[str, str], ...] = tuple(
    (option, MODALITY.reference) for option in MODALITY.non_reference
) + tuple(itertools.combinations(MODALITY.non_reference, 2))


def _check() -> None:
    if MODALITY_WITHIN not in COVARIATES or MODALITY_WITHIN.numeric or not MODALITY_WITHIN.required:
        raise ValueError("MODALITY_WITHIN must be one of the required categorical covariates")
    missing = set(OPTIONS) - set(OPTION_STYLES)
    if missing:
        raise ValueError(f"no OPTION_STYLES for {sorted(missing)}")
    for ep in ENDPOINTS.values():
        if ep.not_after is not None and ep.not_after not in ENDPOINTS:
            raise ValueError(f"{ep.name}.not_after names no endpoint: {ep.not_after!r}")


_check()


def join(items: list[str] | tuple[str, ...], conjunction: str = "and") -> str:
    """'a, b and c', for sentences."""
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}" if len(items) > 1 else "".join(items)


def options_text(conjunction: str = "and") -> str:
    """'TACE, SIRT and TAE' (or 'or'), for sentences."""
    return join(OPTIONS, conjunction)


def covariate_terms(cov: Covariate) -> list[str]:
    if cov.binary or cov.numeric:
        return [cov.name]
    return [f"{cov.name}[{level}]" for level in cov.non_reference]


def modality_terms() -> list[str]:
    """Option effects relative to the reference option within each level of MODALITY_WITHIN."""
    return [
        f"{MODALITY.name}[{m}]:{MODALITY_WITHIN.name}[{g}]"
        for g in MODALITY_WITHIN.levels
        for m in MODALITY.non_reference
    ]


def term_ids(optional: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Model term ids in the CONTRACT's spelling, for the required covariates plus the given optional ones."""
    unknown = set(optional) - set(OPTIONAL)
    if unknown:
        raise ValueError(f"not optional covariates: {sorted(unknown)}")
    terms = [t for name in REQUIRED for t in covariate_terms(BY_NAME[name])]
    terms += modality_terms()
    for name in OPTIONAL:
        if name in optional:
            terms += covariate_terms(BY_NAME[name])
    return terms


def _parts(term: str) -> dict[str, str]:
    parts = {}
    for p in term.split(":"):
        # A malformed part such as "name[" splits into one item: ValueError, which term_label catches.
        name, level = p[:-1].split("[", 1) if "[" in p else (p, "1")
        parts[name] = level
    return parts


def term_label(term: str) -> str:
    """Human label of a term id, e.g. ``modality[SIRT]:who_grade[2]`` → 'SIRT vs TACE, grade 2' (an id that is
    not one of ours is returned as it is)."""
    try:
        parts = _parts(term)
        if MODALITY.name in parts:
            within = MODALITY_WITHIN.label_of(parts[MODALITY_WITHIN.name]).lower()
            option = parts[MODALITY.name]
            if option == MODALITY.reference:
                return f"{option}, {within}"
            return f"{option} vs {MODALITY.reference}, {within}"
        ((name, level),) = parts.items()
        cov = BY_NAME[name]
    except (KeyError, ValueError):
        return term
    if cov.numeric:
        return f"{cov.label} (per {cov.unit})" if cov.unit else cov.label
    if level not in cov.levels:
        return term
    return cov.label if cov.binary else f"{cov.label}: {cov.label_of(level)}"


class Columns(Protocol):
    """Columns by name: a mapping of arrays, or a pandas DataFrame (the core does not import pandas)."""

    def __getitem__(self, name: str, /) -> object: ...


def design_matrix(columns: Columns, terms: list[str]) -> np.ndarray:
    """Term matrix (rows x terms) from canonical values per column: indicators, or the number of a numeric term.

    ``columns`` maps each covariate name and ``modality`` to an array-like of canonical levels
    (a pandas DataFrame works). Used both for fitting and for scoring, so a term means the same in both.
    """
    cache: dict[str, np.ndarray] = {}

    def col(name: str) -> np.ndarray:
        if name not in cache:
            cov = BY_NAME.get(name)
            dtype = float if cov is not None and cov.numeric else str
            cache[name] = np.asarray(columns[name], dtype=object).astype(dtype)
        return cache[name]

    out: list[np.ndarray] = []
    for term in terms:
        parts = _parts(term)
        if len(parts) == 1 and term in BY_NAME and BY_NAME[term].numeric:
            out.append(col(term))
            continue
        # Rows at every level the term names (a term has at least one part).
        out.append(functools.reduce(operator.and_, (col(name) == level for name, level in parts.items())))
    return np.column_stack(out).astype(float) if out else np.zeros((0, 0))
