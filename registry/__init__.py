"""Load a registry (CSV, XLSX, Parquet or an SQL table) and check it against the canonical schema.

The rules are those of ``registry-schema.md``; covariates, levels, aliases and endpoints all come from
``prognosis.covariates``. Any problem with the data raises :class:`RegistryError` whose message names the column
and the first rows concerned, by row number only: patient identifiers and cell values never appear in messages,
except the offending value of an unknown category.

Modules, one job each: ``reading`` (sources to one raw table), ``mapping`` (column names), ``cells`` (cells to
values), ``patients`` (identifiers and covariates row by row, shared with scoring a file of patients), ``rules``
(the schema's rules and the checker), ``problems`` (the error and how rows are listed), ``loading`` (entry points).
"""

from registry.cells import MISSING_TOKENS
from registry.loading import endpoint_frame, load_registry
from registry.mapping import (
    BURDEN_PCT,
    CANONICAL_COLUMNS,
    COVARIATE_NAMES,
    ENDPOINT_COLUMNS,
    PATIENT_ID,
)
from registry.problems import ROWS_SHOWN, RegistryError
from registry.reading import FILE_FORMATS, read_table
from registry.rules import HPFS_OS_TOLERANCE_MONTHS, REQUIRED_VALUES, Registry

__all__ = [
    "BURDEN_PCT",
    "CANONICAL_COLUMNS",
    "COVARIATE_NAMES",
    "ENDPOINT_COLUMNS",
    "FILE_FORMATS",
    "HPFS_OS_TOLERANCE_MONTHS",
    "MISSING_TOKENS",
    "PATIENT_ID",
    "REQUIRED_VALUES",
    "ROWS_SHOWN",
    "Registry",
    "RegistryError",
    "endpoint_frame",
    "load_registry",
    "read_table",
]
