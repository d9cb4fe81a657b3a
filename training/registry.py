"""Load a registry (CSV, XLSX, Parquet or an SQL table) and check it against the canonical schema.

The rules are those of ``registry-schema.md``; covariates, levels, aliases and endpoints all come from
``prognosis.covariates``. Any problem with the data raises :class:`RegistryError` whose message names the column
and the first rows concerned, by row number only: patient identifiers and cell values never appear in messages,
except the offending value of an unknown category.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from prognosis import covariates as cv

# hpfs_months may exceed os_months by this much: both are often rounded separately to 0.1 month.
HPFS_OS_TOLERANCE_MONTHS = 0.1

FILE_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
# Cell texts that mean "no value" (case-insensitive), as written by Excel, R and pandas exports.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null"})
ROWS_SHOWN = 5

PATIENT_ID = "patient_id"
BURDEN_PCT = "tumor_burden_pct"
ENDPOINT_COLUMNS = tuple(col for ep in cv.ENDPOINTS.values() for col in (ep.time, ep.event))
COVARIATE_NAMES = tuple(c.name for c in cv.COVARIATES)
# Every column name the loader understands; anything else is ignored (and reported).
CANONICAL_COLUMNS = (PATIENT_ID, *COVARIATE_NAMES, BURDEN_PCT, cv.MODALITY.name, *ENDPOINT_COLUMNS)
# Covariates that must be in every row (modality is one for the loader: every row has a treatment).
REQUIRED_VALUES = (*cv.REQUIRED, cv.MODALITY.name)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FORMULA = object()  # a cell holding a spreadsheet formula (or CSV-injection text) instead of a value
_SPREADSHEET_ERROR = object()  # an Excel error value such as #N/A or #DIV/0!


class RegistryError(Exception):
    """Bad registry data or an unreadable source; the message is meant for the person who exported it."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass
class Registry:
    """A checked registry: one row per usable patient, in canonical columns and levels."""

    frame: pd.DataFrame
    optional: tuple[str, ...]
    report: dict
    sha256: str


@dataclass
class _Raw:
    """A source as read: header names, cells by column, and how to name its rows to the user."""

    frame: pd.DataFrame  # as read, for read_table
    header: list[str]
    columns: list[list[object]]  # columns[j][i]
    row_numbers: list[int]  # what the user calls row i
    row_note: str
    fmt: str
    source: str
    sha256: str
    blank_rows: int = 0
    bad_cells: dict[tuple[int, int], object] = field(default_factory=dict)  # (i, j) -> _FORMULA | _SPREADSHEET_ERROR
    text_formulas: bool = False  # treat '=...' text as a formula (CSV and spreadsheet text cells)
    column_names: list[str] | None = None  # how to name column j when it has no header

    @property
    def n_rows(self) -> int:
        return len(self.row_numbers)


# ----------------------------------------------------------------------------------------------------------------
# Public API


def read_table(source: str, table: str | None = None) -> pd.DataFrame:
    """Read a source as is (all columns, no checks beyond readability).

    ``table`` names the SQL table (required for an SQLAlchemy URL) or the .xlsx sheet (default: the first).
    """
    return _read(str(source), table).frame


def load_registry(
    source: str,
    table: str | None = None,
    columns: str | Path | Mapping[str, str] | None = None,
    drop_incomplete: bool = False,
) -> Registry:
    """Read and check a registry; raise RegistryError naming columns and rows on any problem.

    ``columns`` maps a site's column names to canonical ones (a TOML file with a ``[columns]`` table, or a dict).
    With ``drop_incomplete`` rows missing a covariate value or both outcomes are excluded and counted instead.
    """
    mapping = _load_mapping(columns)
    raw = _read(str(source), table)
    if raw.n_rows == 0:
        raise RegistryError(f"{raw.source}: no data rows (the {'table' if raw.fmt == 'sql' else 'file'} is empty "
                            "or holds only a header)")
    return _Checker(raw, mapping, drop_incomplete, table).run()


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


# ----------------------------------------------------------------------------------------------------------------
# Reading


def _read(source: str, table: str | None) -> _Raw:
    if "://" in source:
        return _read_sql(source, table)
    path = Path(source)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RegistryError(
            f"{source}: unsupported file type {path.suffix or '(no extension)'!r}; supported: "
            f"{', '.join(FILE_FORMATS)}, or an SQLAlchemy URL (e.g. sqlite:///registry.db) with a table name")
    if not path.exists():
        raise RegistryError(f"{source}: no such file")
    if not path.is_file():
        raise RegistryError(f"{source}: not a file")
    if table is not None and fmt != "xlsx":
        raise RegistryError(f"{source}: a table name applies only to SQL sources (or to an .xlsx sheet)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{source}: cannot read the file ({exc.strerror or exc})") from exc
    if not data.strip():
        raise RegistryError(f"{source}: empty file")
    sha = hashlib.sha256(data).hexdigest()
    reader = {"csv": _read_csv, "xlsx": _read_xlsx, "parquet": _read_parquet}[fmt]
    return reader(data, source, sha, table)


def _rows_to_raw(records: list[tuple[int, list[object]]], source: str, fmt: str, sha: str, note: str,
                 what: str) -> _Raw:
    """Shared by CSV and XLSX: first non-blank record is the header; blank records are skipped and counted."""
    header: list[str] | None = None
    header_row = 0
    body: list[tuple[int, list[object]]] = []
    blank = 0
    for number, cells in records:
        if all(_is_blank(c) for c in cells):
            blank += header is not None
            continue
        if header is None:
            header = ["" if c is None else str(c).strip() for c in cells]
            header_row = number
        else:
            body.append((number, cells))
    if header is None:
        raise RegistryError(f"{source}: empty {what} (no header row)")
    width = len(header)
    long_rows = [n for n, cells in body if any(not _is_blank(c) for c in cells[width:])]
    if long_rows:
        raise RegistryError(f"{source}: more cells than header columns in {_rows(long_rows)} "
                            f"({note.format(header=header_row)}); "
                            "a separator or quote inside a value may have shifted the columns")
    columns = [[(cells[j] if j < len(cells) else None) for _, cells in body] for j in range(width)]
    frame = pd.DataFrame({j: col for j, col in enumerate(columns)}, dtype=object)
    frame.columns = header
    raw = _Raw(frame=frame, header=header, columns=columns, row_numbers=[n for n, _ in body],
               row_note=note.format(header=header_row), fmt=fmt, source=source, sha256=sha, blank_rows=blank,
               text_formulas=True)
    return raw


def _read_csv(data: bytes, source: str, sha: str, table: str | None) -> _Raw:
    try:
        # utf-8-sig reads plain UTF-8 as well as Excel's "CSV UTF-8" with its byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryError(
            f"{source}: the text encoding is not UTF-8 (undecodable byte at offset {exc.start}); "
            "export the file as 'CSV UTF-8'") from exc
    if "\x00" in text:
        # NUL bytes between letters are valid UTF-8 but mean UTF-16 (or a binary file) without a byte-order mark.
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RegistryError(f"{source}: NUL bytes in row {line} (spreadsheet row numbers): this is not UTF-8 text "
                            "(UTF-16 or binary?); export the file as 'CSV UTF-8'")
    first = next((line for line in text.splitlines() if line.strip()), "")
    # European Excel writes ';' (and some exports tab) as separator; header names never contain them.
    delimiter = max([",", ";", "\t"], key=first.count)
    if not first.count(delimiter):
        delimiter = ","
    records: list[tuple[int, list[object]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        # A spreadsheet numbers records, not physical lines (a quoted value may span lines).
        for number, cells in enumerate(reader, start=1):
            records.append((number, [c if c.strip() else None for c in cells]))
    except csv.Error as exc:
        raise RegistryError(f"{source}: malformed CSV near line {reader.line_num} ({exc})") from exc
    return _rows_to_raw(records, source, "csv", sha, "spreadsheet row numbers; header = row {header}",
                        "CSV file")


def _read_xlsx(data: bytes, source: str, sha: str, table: str | None) -> _Raw:
    import openpyxl
    from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it drops; they do not affect cell values.
            warnings.simplefilter("ignore")
            # data_only=False keeps formulas as formulas, so they can be refused instead of read as cached values.
            book = openpyxl.load_workbook(io.BytesIO(data), data_only=False)
    except Exception as exc:  # zipfile, XML and openpyxl errors all mean the same thing to the user
        raise RegistryError(f"{source}: not a readable .xlsx workbook (corrupt, truncated, encrypted, or an old .xls "
                            f"renamed?): {type(exc).__name__}") from exc
    if table is None:
        sheet = book.worksheets[0]
    elif table in book.sheetnames:
        sheet = book[table]
    else:
        raise RegistryError(f"{source}: no sheet named {table!r} (sheets: {', '.join(book.sheetnames)})")
    records: list[tuple[int, list[object]]] = []
    marks: dict[tuple[int, int], object] = {}
    for number, row in enumerate(sheet.iter_rows(), start=1):
        cells = []
        for j, cell in enumerate(row):
            value = cell.value
            if cell.data_type == "f" or isinstance(value, (ArrayFormula, DataTableFormula)):
                marks[(number, j)] = _FORMULA
                value = str(getattr(value, "text", value))
            elif cell.data_type == "e":
                marks[(number, j)] = _SPREADSHEET_ERROR
            cells.append(value)
        records.append((number, cells))
    raw = _rows_to_raw(records, source, "xlsx", sha,
                       f"row numbers in sheet '{sheet.title}'; header = row {{header}}", "sheet")
    index = {number: i for i, number in enumerate(raw.row_numbers)}
    raw.bad_cells = {(index[n], j): kind for (n, j), kind in marks.items() if n in index}
    from openpyxl.utils import get_column_letter

    raw.column_names = [f"column {get_column_letter(j + 1)}" for j in range(len(raw.header))]
    return raw


def _read_parquet(data: bytes, source: str, sha: str, table: str | None) -> _Raw:
    try:
        frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise RegistryError(f"{source}: not a readable Parquet file (corrupt or truncated?): "
                            f"{type(exc).__name__}") from exc
    # A frame saved with a named index (e.g. patient_id) holds data there; an unnamed one is pandas bookkeeping.
    frame = frame.reset_index(drop=all(name is None for name in frame.index.names))
    return _frame_to_raw(frame, source, "parquet", sha, "record numbers, counting from 1")


def _frame_to_raw(frame: pd.DataFrame, source: str, fmt: str, sha: str, note: str) -> _Raw:
    header = [str(c) for c in frame.columns]
    columns = [frame.iloc[:, j].astype(object).tolist() for j in range(frame.shape[1])]
    return _Raw(frame=frame, header=header, columns=columns, row_numbers=list(range(1, len(frame) + 1)),
                row_note=note, fmt=fmt, source=source, sha256=sha)


def _read_sql(source: str, table: str | None) -> _Raw:
    import sqlalchemy as sa
    from sqlalchemy.exc import NoSuchTableError

    try:
        url = sa.engine.make_url(source)
    except Exception as exc:
        # The URL is not echoed: it may hold a password.
        raise RegistryError("the data source is not a valid SQLAlchemy URL (e.g. sqlite:///registry.db)") from exc
    shown = url.render_as_string(hide_password=True)
    if not table:
        raise RegistryError(f"{shown}: an SQL source needs a table name (--table)")
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        # sqlite would silently create an empty database file.
        if not Path(database).is_file():
            raise RegistryError(f"{shown}: no such database file {database!r}")
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # missing driver, bad options
        raise RegistryError(f"{shown}: cannot open the database ({type(exc).__name__}: {_first_line(exc)})") from exc
    try:
        schema, _, name = table.rpartition(".")
        inspector = sa.inspect(engine)
        if inspector.has_table(table):
            schema, name = "", table
        found = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
        with engine.connect() as conn:
            result = conn.execute(sa.select(found))
            keys = list(result.keys())
            rows = [tuple(r) for r in result]
    except NoSuchTableError as exc:
        raise RegistryError(f"{shown}: no table named {table!r}") from exc
    except Exception as exc:
        raise RegistryError(f"{shown}: cannot read table {table!r} ({type(exc).__name__}: {_first_line(exc)})") \
            from exc
    finally:
        engine.dispose()
    frame = pd.DataFrame(rows, columns=keys, dtype=object) if rows else pd.DataFrame(columns=keys, dtype=object)
    # No file bytes to hash: the rows as read, as CSV with the columns sorted, are the canonical serialization.
    canonical = frame[sorted(frame.columns)].to_csv(index=False, lineterminator="\n")
    sha = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    raw = _frame_to_raw(frame, shown, "sql", sha, "record numbers in the table as read, counting from 1")
    return raw


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


# ----------------------------------------------------------------------------------------------------------------
# Column mapping


def _norm(name: object) -> str:
    return str(name).strip().lower()


def _load_mapping(columns: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """The site-name -> canonical-name mapping, keys and targets normalized and targets checked."""
    if columns is None:
        return {}
    if isinstance(columns, Mapping):
        # Accept the parsed TOML document too ({"columns": {...}}).
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
        items = document.get("columns")
        if not isinstance(items, Mapping):
            raise RegistryError(f"{where}: needs a [columns] table of site_name = \"canonical_name\" lines")
    mapping: dict[str, str] = {}
    for key, target in items.items():
        if not isinstance(target, str):
            raise RegistryError(f"{where}: the target of {key!r} must be a column name (text)")
        site, canon = _norm(key), _norm(target)
        if canon not in CANONICAL_COLUMNS:
            raise RegistryError(f"{where}: {key!r} maps to unknown column {target!r} "
                                f"(known: {', '.join(CANONICAL_COLUMNS)})")
        if site in mapping and mapping[site] != canon:
            raise RegistryError(f"{where}: {key!r} is mapped twice, to {mapping[site]!r} and {canon!r}")
        mapping[site] = canon
    return mapping


# ----------------------------------------------------------------------------------------------------------------
# Cell parsing


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean(value: object) -> object:
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


def _looks_like_formula(text: str) -> bool:
    """'=..', '@..', or '+'/'-' followed by something that is not a number: a formula or CSV injection."""
    if not text:
        return False
    if text[0] in "=@":
        return True
    return text[0] in "+-" and len(text) > 1 and not _NUMBER.fullmatch(text)


def _number(value: object) -> float | None:
    """A cell as a number, or None if it is not one (booleans and dates are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return None


def _event(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return int(value.lower() == "true")
    number = _number(value)
    return int(number) if number in (0.0, 1.0) else None


def _category_input(value: object) -> object:
    """Numeric text that is a whole number ('2.0') is read as that number, as a spreadsheet cell would be."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        number = float(value)
        if number.is_integer():
            return int(number)
    return value


def _rows(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    shown = ", ".join(str(n) for n in numbers[:ROWS_SHOWN])
    more = f" and {len(numbers) - ROWS_SHOWN} more" if len(numbers) > ROWS_SHOWN else ""
    return f"{'row' if len(numbers) == 1 else 'rows'} {shown}{more}"


def _allowed(cov: cv.Covariate) -> str:
    extra = sorted(alias for alias in cov.aliases if alias not in cov.levels)
    text = f"allowed: {', '.join(cov.levels)}"
    if extra:
        text += f"; also accepted, any case: {', '.join(extra)}"
    return text


def _shown_value(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


# ----------------------------------------------------------------------------------------------------------------
# Checking


class _Checker:
    """Checks one raw source and builds the Registry; collects every problem before raising."""

    def __init__(self, raw: _Raw, mapping: dict[str, str], drop_incomplete: bool, table: str | None):
        self.raw = raw
        self.table = table  # SQL table or .xlsx sheet, as asked for
        self.mapping = mapping
        self.drop_incomplete = drop_incomplete
        self.problems: list[str] = []
        self.missing: dict[str, list[int]] = {}  # column -> row indices lacking a required value
        self.n = raw.n_rows

    # -- messages --------------------------------------------------------------------------------------------

    def where(self, indices: list[int]) -> str:
        return f"{_rows([self.raw.row_numbers[i] for i in indices])} ({self.raw.row_note})"

    def col(self, name: str) -> str:
        site = self.raw.header[self.index[name]]
        return f"column '{name}'" + (f" (file column '{site}')" if _norm(site) != name else "")

    def problem(self, name: str, what: str, indices: list[int], tail: str = "") -> None:
        if indices:
            self.problems.append(f"{self.col(name)}: {what} in {self.where(indices)}{tail}")

    def fail(self, problems: list[str]) -> None:
        if len(problems) == 1:
            raise RegistryError(f"{self.raw.source}: {problems[0]}", problems)
        listing = "\n".join(f"  - {p}" for p in problems)
        raise RegistryError(f"{self.raw.source}: {len(problems)} problems\n{listing}", problems)

    # -- columns ---------------------------------------------------------------------------------------------

    def resolve_columns(self) -> None:
        raw = self.raw
        found: dict[str, list[int]] = {}
        self.ignored: list[str] = []
        self.renamed: dict[str, str] = {}
        seen: dict[str, list[int]] = {}
        for j, name in enumerate(raw.header):
            key = _norm(name)
            if not key:
                if any(_clean(v) is not None for v in raw.columns[j]):
                    label = raw.column_names[j] if raw.column_names else f"column {j + 1}"
                    self.ignored.append(f"({label}, no header)")
                continue
            seen.setdefault(key, []).append(j)
            canon = self.mapping.get(key, key)
            if canon in CANONICAL_COLUMNS:
                found.setdefault(canon, []).append(j)
                if canon != key:
                    self.renamed[name.strip()] = canon
            else:
                self.ignored.append(name.strip())
        problems = []
        for key, js in seen.items():
            if len(js) > 1:
                names = ", ".join(repr(raw.header[j]) for j in js)
                problems.append(f"duplicate column '{key}': columns {names} (names are compared ignoring case and "
                                "surrounding spaces)")
        for canon, js in found.items():
            if len(js) > 1 and len({_norm(raw.header[j]) for j in js}) > 1:
                names = ", ".join(repr(raw.header[j]) for j in js)
                problems.append(f"duplicate column '{canon}': columns {names} all give '{canon}' "
                                "(after the column mapping)")
        if problems:
            self.fail(problems)
        self.index = {canon: js[0] for canon, js in found.items()}
        self.mapping_unused = sorted(site for site in self.mapping if site not in seen)

        absent = [name for name in (PATIENT_ID, *cv.REQUIRED, cv.MODALITY.name)
                  if name not in self.index and not (name == cv.TUMOR_BURDEN.name and BURDEN_PCT in self.index)]
        problems = []
        for name in absent:
            alt = " (or 'tumor_burden_pct')" if name == cv.TUMOR_BURDEN.name else ""
            problems.append(f"required column '{name}'{alt} is absent")
        self.endpoints = []
        for ep in cv.ENDPOINTS.values():
            has_time, has_event = ep.time in self.index, ep.event in self.index
            if has_time and has_event:
                self.endpoints.append(ep)
            elif has_time or has_event:
                there, gone = (ep.time, ep.event) if has_time else (ep.event, ep.time)
                problems.append(f"column '{gone}' is absent although '{there}' is present")
        if not self.endpoints and not any("absent although" in p for p in problems):
            pairs = " or ".join(f"'{ep.time}' and '{ep.event}'" for ep in cv.ENDPOINTS.values())
            problems.append(f"no outcome columns: need {pairs} (or both pairs)")
        if problems:
            found_names = ", ".join(repr(h.strip()) for h in raw.header if h.strip())
            problems[-1] += f" (columns found: {found_names})"
            self.fail(problems)

    def cells(self, name: str) -> list[object]:
        """Clean cells of a canonical column; formulas and spreadsheet errors are reported and become _FORMULA."""
        j = self.index[name]
        out, formulas, errors = [], [], []
        for i, value in enumerate(self.raw.columns[j]):
            mark = self.raw.bad_cells.get((i, j))
            if mark is None and self.raw.text_formulas and isinstance(value, str) and \
                    _looks_like_formula(value.strip()):
                mark = _FORMULA
            if mark is _FORMULA:
                formulas.append(i)
            elif mark is _SPREADSHEET_ERROR:
                errors.append(i)
            out.append(_FORMULA if mark is not None else _clean(value))
        self.problem(name, "a spreadsheet formula (or text starting with =, +, - or @) where a value belongs",
                     formulas, "; enter plain values")
        self.problem(name, "a spreadsheet error value (such as #N/A)", errors)
        return out

    # -- values ----------------------------------------------------------------------------------------------

    def patient_ids(self) -> list[str | None]:
        cells = self.cells(PATIENT_ID)
        ids: list[str | None] = []
        for value in cells:
            if value is None or value is _FORMULA:
                ids.append(None)
            elif isinstance(value, float) and value.is_integer():
                ids.append(str(int(value)))  # a spreadsheet's 1001.0 is the id 1001
            else:
                ids.append(str(value))
        self.missing[PATIENT_ID] = [i for i, v in enumerate(cells) if v is None]
        first: dict[str, int] = {}
        repeated: set[int] = set()
        for i, pid in enumerate(ids):
            if pid is None:
                continue
            if pid in first:
                repeated.update((first[pid], i))
            else:
                first[pid] = i
        self.problem(PATIENT_ID, "duplicate values (patient_id must be unique)", sorted(repeated))
        return ids

    def category(self, cov: cv.Covariate) -> list[str | None]:
        values = self.cells(cov.name)
        out: list[str | None] = []
        unknown: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            if value is None or value is _FORMULA:
                out.append(None)
                if value is None:
                    self.missing.setdefault(cov.name, []).append(i)
                continue
            level = cov.canonical(_category_input(value))
            if level is None:
                unknown.setdefault(_shown_value(value), []).append(i)
            out.append(level)
        if unknown:
            parts = [f"{shown} in {_rows([self.raw.row_numbers[i] for i in idx])}"
                     for shown, idx in list(unknown.items())[:ROWS_SHOWN]]
            if len(unknown) > ROWS_SHOWN:
                parts.append(f"and {len(unknown) - ROWS_SHOWN} more unknown values")
            self.problems.append(f"{self.col(cov.name)}: unknown value {'; '.join(parts)} "
                                 f"({self.raw.row_note}; {_allowed(cov)})")
        return out

    def burden(self) -> list[str | None]:
        """tumor_burden from its category column, or binned from tumor_burden_pct, or both (they must agree)."""
        name = cv.TUMOR_BURDEN.name
        have_cat, have_pct = name in self.index, BURDEN_PCT in self.index
        cats: list[str | None] = [None] * self.n
        cat_missing = set(range(self.n))
        if have_cat:
            cats = self.category(cv.TUMOR_BURDEN)
            cat_missing = set(self.missing.pop(name, []))  # decided below, once both columns are known
        binned: list[str | None] = [None] * self.n
        pct_missing = set(range(self.n))
        if have_pct:
            bad, outside = [], []
            for i, value in enumerate(self.cells(BURDEN_PCT)):
                if value is None:
                    continue
                pct_missing.discard(i)
                if value is _FORMULA:
                    continue
                if isinstance(value, str) and value.endswith("%"):
                    value = value[:-1].strip()
                number = _number(value)
                if number is None:
                    bad.append(i)
                elif (level := cv.bin_tumor_burden(number)) is None:
                    outside.append(i)
                else:
                    binned[i] = level
            self.problem(BURDEN_PCT, "not a number", bad)
            self.problem(BURDEN_PCT, "outside 0-100 (percent of liver volume)", outside)
        if have_cat and have_pct:
            clash = [i for i in range(self.n) if cats[i] and binned[i] and cats[i] != binned[i]]
            edges = ", ".join(f"{e:g}" for e in cv.BURDEN_PCT_EDGES)
            self.problem(name, f"disagrees with {BURDEN_PCT} (binned at {edges}%)", clash)
        missing = sorted(cat_missing & pct_missing)
        if missing:
            self.missing[name if have_cat else BURDEN_PCT] = missing
        return [cats[i] or binned[i] for i in range(self.n)]

    def outcomes(self) -> dict[str, tuple[list[float | None], list[int | None]]]:
        out = {}
        for ep in cv.ENDPOINTS.values():
            if ep not in self.endpoints:
                out[ep.name] = ([None] * self.n, [None] * self.n)
                continue
            times: list[float | None] = [None] * self.n
            events: list[int | None] = [None] * self.n
            time_cells, event_cells = self.cells(ep.time), self.cells(ep.event)
            bad, nonpositive, infinite, bad_event = [], [], [], []
            for i, value in enumerate(time_cells):
                if value is None or value is _FORMULA:
                    continue
                number = _number(value)
                if number is None:
                    bad.append(i)
                elif not math.isfinite(number):
                    infinite.append(i)
                elif number <= 0:
                    nonpositive.append(i)
                else:
                    times[i] = number
            for i, value in enumerate(event_cells):
                if value is None or value is _FORMULA:
                    continue
                event = _event(value)
                if event is None:
                    bad_event.append(i)
                events[i] = event
            self.problem(ep.time, "not a number of months", bad)
            self.problem(ep.time, "not a finite number", infinite)
            self.problem(ep.time, "not greater than 0 months", nonpositive)
            self.problem(ep.event, "not 0 or 1", bad_event)
            no_event = [i for i in range(self.n) if time_cells[i] is not None and event_cells[i] is None]
            no_time = [i for i in range(self.n) if event_cells[i] is not None and time_cells[i] is None]
            self.problem(ep.event, f"missing where {ep.time} is given", no_event)
            self.problem(ep.time, f"missing where {ep.event} is given", no_time)
            self.present[ep.name] = {i for i in range(self.n) if time_cells[i] is not None
                                     and event_cells[i] is not None}
            out[ep.name] = (times, events)
        return out

    # -- assembly --------------------------------------------------------------------------------------------

    def run(self) -> Registry:
        self.resolve_columns()
        raw = self.raw
        self.present: dict[str, set[int]] = {}

        values: dict[str, list] = {}
        ids = self.patient_ids()
        for cov in cv.COVARIATES:
            if cov.name == cv.TUMOR_BURDEN.name:
                values[cov.name] = self.burden()
            elif cov.required or cov.name in self.index:
                values[cov.name] = self.category(cov)
        values[cv.MODALITY.name] = self.category(cv.MODALITY)

        # An optional column that is present but entirely empty is an unfilled template column, not data.
        empty_optional = [name for name in cv.OPTIONAL
                          if name in values and len(self.missing.get(name, [])) == self.n]
        for name in empty_optional:
            del values[name]
            self.missing.pop(name, None)
        optional = tuple(name for name in cv.OPTIONAL if name in values)

        outcomes = self.outcomes()
        hpfs, os_ = cv.ENDPOINTS["hpfs"], cv.ENDPOINTS["os"]
        if hpfs in self.endpoints and os_ in self.endpoints:
            h_times, o_times = outcomes["hpfs"][0], outcomes["os"][0]
            late = [i for i in range(self.n) if h_times[i] is not None and o_times[i] is not None
                    and h_times[i] > o_times[i] + HPFS_OS_TOLERANCE_MONTHS]
            self.problem(hpfs.time, f"greater than {os_.time} by more than the tolerance of "
                         f"{HPFS_OS_TOLERANCE_MONTHS} months", late)
        with_outcome = set().union(*self.present.values()) if self.present else set()
        no_outcome = [i for i in range(self.n) if i not in with_outcome]

        excluded_rows: dict[int, list[str]] = {}
        order = [PATIENT_ID, *COVARIATE_NAMES, cv.MODALITY.name]
        order.insert(order.index(cv.TUMOR_BURDEN.name) + 1, BURDEN_PCT)
        for name in sorted(self.missing, key=order.index):
            for i in self.missing[name]:
                excluded_rows.setdefault(i, []).append(name)
        for i in no_outcome:
            excluded_rows.setdefault(i, []).append("outcome")

        if not self.drop_incomplete:
            hint = "; fill them in or use drop_incomplete (--drop-incomplete) to exclude such rows"
            for name in sorted(self.missing, key=order.index):
                self.problem(name, "missing value", self.missing[name], hint)
            if no_outcome:
                cols = ", ".join(f"{ep.time}/{ep.event}" for ep in self.endpoints)
                self.problems.append(f"no outcome ({cols} all missing) in {self.where(no_outcome)}{hint}")
        if self.problems:
            self.fail(self.problems)

        reasons: dict[str, int] = {}
        for i in sorted(excluded_rows):
            items = [("an outcome (no hpfs or os time and event)" if item == "outcome" else item)
                     for item in excluded_rows[i]]
            reason = "missing " + ", ".join(items)
            reasons[reason] = reasons.get(reason, 0) + 1
        keep = [i for i in range(self.n) if i not in excluded_rows]
        if not keep:
            counts = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
            raise RegistryError(f"{raw.source}: no usable rows: all {self.n} were excluded as incomplete ({counts})")

        data: dict[str, object] = {PATIENT_ID: pd.Series([ids[i] for i in keep], dtype=object)}
        for name in (*cv.REQUIRED, *optional, cv.MODALITY.name):
            data[name] = pd.Series([values[name][i] for i in keep], dtype=object)
        for ep in cv.ENDPOINTS.values():
            times, events = outcomes[ep.name]
            data[ep.time] = pd.Series([np.nan if times[i] is None else times[i] for i in keep], dtype="float64")
            data[ep.event] = pd.Series([pd.NA if events[i] is None else events[i] for i in keep], dtype="Int64")
        frame = pd.DataFrame(data)

        used = {ep: int(frame[cv.ENDPOINTS[ep].time].notna().sum()) for ep in cv.ENDPOINTS}
        report = {
            "rows_read": self.n,
            "rows_used": used,
            "excluded": [{"reason": reason, "rows": count} for reason, count in reasons.items()],
            "endpoint_missing": {ep: len(frame) - used[ep] for ep in cv.ENDPOINTS},
            "source": raw.source,
            "format": raw.fmt,
            "table": self.table,
            "ignored_columns": self.ignored,
            "empty_optional_columns": empty_optional,
            "renamed_columns": self.renamed,
            "unused_mapping_entries": self.mapping_unused,
            "blank_rows_skipped": raw.blank_rows,
            "hpfs_os_tolerance_months": HPFS_OS_TOLERANCE_MONTHS,
            "row_numbering": raw.row_note,
        }
        return Registry(frame=frame, optional=optional, report=report, sha256=raw.sha256)
