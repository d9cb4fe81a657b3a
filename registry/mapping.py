"""Column names: the canonical ones, a site's own names mapped to them (``--columns mapping.toml``), and which
column of a raw table holds which canonical column."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prognosis import covariates as cv
from registry.problems import RegistryError, fail
from registry.reading import RawTable

PATIENT_ID = "patient_id"
ENDPOINT_COLUMNS = tuple(col for ep in cv.ENDPOINTS.values() for col in (ep.time, ep.event))
COVARIATE_NAMES = tuple(c.name for c in cv.COVARIATES)
# A number that may stand in for a categorical covariate (tumor_burden_pct for tumor_burden) -> that covariate.
ALTERNATIVES = {c.alternative.name: c for c in cv.COVARIATES if c.alternative is not None}
BURDEN_PCT = "tumor_burden_pct"
# Every column name the loader understands; anything else is ignored (and reported).
CANONICAL_COLUMNS = (PATIENT_ID, *COVARIATE_NAMES, *ALTERNATIVES, cv.MODALITY.name, *ENDPOINT_COLUMNS)


def normalize_name(name: object) -> str:
    """Column names are compared ignoring case and surrounding spaces."""
    return str(name).strip().lower()


def load_mapping(columns: str | Path | Mapping[str, object] | None) -> dict[str, str]:
    """The site-name -> canonical-name mapping, keys and targets normalized and targets checked.

    ``columns`` is a TOML file with a ``[columns]`` table, or a dict (the parsed document works too).
    """
    if columns is None:
        return {}
    items: Mapping[str, object]
    if isinstance(columns, Mapping):
        inner = columns.get("columns")
        items = inner if isinstance(inner, Mapping) and len(columns) == 1 else columns
        where = "column mapping"
    else:
        path = Path(columns)
        where = f"column mapping {path}"
        try:
            document = tomllib.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise RegistryError(f"{where}: cannot read the file ({exc.strerror or exc})") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RegistryError(f"{where}: not a valid UTF-8 TOML file ({exc})") from exc
        table = document.get("columns")
        if not isinstance(table, Mapping):
            raise RegistryError(f'{where}: needs a [columns] table of site_name = "canonical_name" lines')
        items = table
    mapping: dict[str, str] = {}
    for key, target in items.items():
        if not isinstance(target, str):
            raise RegistryError(f"{where}: the target of {key!r} must be a column name (text)")
        site, canon = normalize_name(key), normalize_name(target)
        if canon not in CANONICAL_COLUMNS:
            raise RegistryError(
                f"{where}: {key!r} maps to unknown column {target!r} (known: {', '.join(CANONICAL_COLUMNS)})"
            )
        if site in mapping and mapping[site] != canon:
            raise RegistryError(f"{where}: {key!r} is mapped twice, to {mapping[site]!r} and {canon!r}")
        mapping[site] = canon
    return mapping


@dataclass
class ColumnMap:
    """Which raw column holds each canonical column found, and what became of the others."""

    header: list[str]
    index: dict[str, int]  # canonical name -> raw column position
    ignored: list[str] = field(default_factory=list)  # raw names not understood, as written
    renamed: dict[str, str] = field(default_factory=dict)  # raw name -> canonical name, where the mapping applied
    unused_mapping_entries: list[str] = field(default_factory=list)

    def describe(self, name: str) -> str:
        """ "column 'who_grade'", plus the file's own name for it where that differs."""
        site = self.header[self.index[name]]
        return f"column '{name}'" + (f" (file column '{site}')" if normalize_name(site) != name else "")


def resolve_columns(raw: RawTable, mapping: Mapping[str, str]) -> ColumnMap:
    """Find the canonical columns of ``raw``; raise RegistryError naming columns that appear twice."""
    found: dict[str, list[int]] = {}
    seen: dict[str, list[int]] = {}
    columns = ColumnMap(header=list(raw.header), index={})
    for j, name in enumerate(raw.header):
        key = normalize_name(name)
        if not key:
            if not raw.cells(j).missing.all():
                columns.ignored.append(f"({raw.column_label(j)}, no header)")
            continue
        seen.setdefault(key, []).append(j)
        canon = mapping.get(key, key)
        if canon in CANONICAL_COLUMNS:
            found.setdefault(canon, []).append(j)
            if canon != key:
                columns.renamed[name.strip()] = canon
        else:
            columns.ignored.append(name.strip())
    problems = []
    for key, js in seen.items():
        if len(js) > 1:
            names = ", ".join(repr(raw.header[j]) for j in js)
            problems.append(
                f"duplicate column '{key}': columns {names} (names are compared ignoring case and surrounding spaces)"
            )
    for canon, js in found.items():
        if len(js) > 1 and len({normalize_name(raw.header[j]) for j in js}) > 1:
            names = ", ".join(repr(raw.header[j]) for j in js)
            problems.append(
                f"duplicate column '{canon}': columns {names} all give '{canon}' (after the column mapping)"
            )
    if problems:
        fail(raw.source, problems)
    columns.index = {canon: js[0] for canon, js in found.items()}
    columns.unused_mapping_entries = sorted(site for site in mapping if site not in seen)
    return columns
