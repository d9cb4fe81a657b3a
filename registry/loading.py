"""The loader's entry points: read, map and check a registry (:func:`load_registry`); one endpoint's rows of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from prognosis import covariates as cv
from registry.mapping import load_mapping, resolve_columns
from registry.problems import RegistryError
from registry.reading import read_source
from registry.rules import Checker, Registry, outcome_endpoints


def load_registry(
    source: str,
    table: str | None = None,
    columns: str | Path | Mapping[str, str] | None = None,
    drop_incomplete: bool = False,
    allow_missing_optional: bool = False,
) -> Registry:
    """Read and check a registry; raise RegistryError naming columns and rows on any problem.

    ``columns`` maps a site's column names to canonical ones (a TOML file with a ``[columns]`` table, or a dict).
    With ``drop_incomplete`` rows missing a covariate value or both outcomes are excluded and counted instead.
    With ``allow_missing_optional`` (for multiple imputation) a row may lack optional covariates: they are None in
    the frame, counted in ``report["missing_optional"]``, and a covariate recorded for some rows is in ``optional``.
    """
    mapping = load_mapping(columns)
    raw = read_source(str(source), table)
    if raw.n_rows == 0:
        raise RegistryError(
            f"{raw.source}: no data rows (the {'table' if raw.fmt == 'sql' else 'file'} is empty "
            "or holds only a header)"
        )
    column_map = resolve_columns(raw, mapping)
    endpoints = outcome_endpoints(raw, column_map)
    checker = Checker(
        raw,
        column_map,
        endpoints,
        table=table,
        drop_incomplete=drop_incomplete,
        allow_missing_optional=allow_missing_optional,
    )
    return checker.run()


def endpoint_frame(registry: Registry, endpoint: str) -> pd.DataFrame:
    """Rows with the endpoint's outcome: covariates, ``modality``, ``time`` (float months), ``event`` (bool).

    The index is that of ``registry.frame``, so rows can be joined back to it.
    """
    if endpoint not in cv.ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r} (known: {', '.join(cv.ENDPOINTS)})")
    ep = cv.ENDPOINTS[endpoint]
    frame = registry.frame
    keep = (frame[ep.time].notna() & frame[ep.event].notna()).to_numpy()
    names = [*cv.REQUIRED, *registry.optional, cv.MODALITY.name]
    out = frame.loc[keep, names].copy()
    out["time"] = frame.loc[keep, ep.time].astype(float)
    out["event"] = frame.loc[keep, ep.event].astype(int).astype(bool)
    return out
