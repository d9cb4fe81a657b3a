"""Read a CSV, XLSX or Parquet file or an SQL table into one raw table: header names, cells, row numbers.

Nothing here knows the schema; every source becomes a :class:`RawTable` whose columns are factorized cells
(:class:`~registry.cells.Distinct`), whose rows carry the numbers the user knows them by, and whose
formula and error cells are marked where the file says so. openpyxl, pyarrow and SQLAlchemy are imported only by
the reader that needs them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from registry.cells import FORMULA, SPREADSHEET_ERROR, Cells, Distinct, distinct, is_blank
from registry.problems import RegistryError, rows_text

FILE_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
CSV_NOTE = "spreadsheet row numbers; header = row {header}"
CSV_CHUNK_ROWS = 1 << 17  # rows tokenized at a time by the fast CSV reader


@dataclass
class RawTable:
    """A source as read: header names, one column of cells per header position, and how to name its rows."""

    header: list[str]
    columns: list[Distinct | None]  # None: not factorized yet (Parquet and SQL columns, on first use)
    row_numbers: np.ndarray  # int64: what the user calls row i
    row_note: str
    fmt: str
    source: str
    sha256: str
    blank_rows: int = 0
    marks: dict[int, dict[int, str]] = field(default_factory=dict)  # column j -> {row i: FORMULA | SPREADSHEET_ERROR}
    text_formulas: bool = False  # treat '=...' text as a formula (CSV and spreadsheet text cells)
    column_names: list[str] | None = None  # how to name column j when it has no header (.xlsx: its letter)
    frame: pd.DataFrame | None = None  # the frame as read, where the source is one (Parquet, SQL)

    @property
    def n_rows(self) -> int:
        return len(self.row_numbers)

    def column(self, j: int) -> Distinct:
        """Column j's cells, factorized."""
        found = self.columns[j]
        if found is None:
            assert self.frame is not None, "a column left to factorize on first use needs the frame it comes from"
            found = self.columns[j] = distinct(self.frame.iloc[:, j])
        return found

    def cells(self, j: int) -> Cells:
        """Column j's cells, cleaned, with the reader's marks."""
        return Cells(self.column(j), self.marks.get(j), self.text_formulas)

    def column_label(self, j: int) -> str:
        """How to name column j to the user when it has no header."""
        return self.column_names[j] if self.column_names else f"column {j + 1}"

    def to_frame(self) -> pd.DataFrame:
        """The table as read: header names as columns (repeats kept), empty cells as None."""
        if self.frame is not None:
            return self.frame
        data = {}
        for j in range(len(self.header)):
            column = self.column(j)
            # code -1, an empty cell, indexes the appended None
            values = np.append(column.values, np.array([None], dtype=object))
            data[j] = values[column.codes]
        frame = pd.DataFrame(data, dtype=object, index=pd.RangeIndex(self.n_rows))
        frame.columns = self.header
        return frame


def read_table(source: str, table: str | None = None) -> pd.DataFrame:
    """Read a source as is (all columns, no checks beyond readability).

    ``table`` names the SQL table (required for an SQLAlchemy URL) or the .xlsx sheet (default: the first).
    """
    return read_source(str(source), table).to_frame()


def read_source(source: str, table: str | None = None) -> RawTable:
    """Read a file or SQL table; raise RegistryError if it cannot be read."""
    if "://" in source:
        return _read_sql(source, table)
    path = Path(source)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RegistryError(
            f"{source}: unsupported file type {path.suffix or '(no extension)'!r}; supported: "
            f"{', '.join(FILE_FORMATS)}, or an SQLAlchemy URL (e.g. sqlite:///registry.db) with a table name"
        )
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


# ----------------------------------------------------------------------------------------------------------------
# CSV


def _read_csv(data: bytes, source: str, sha: str, table: str | None) -> RawTable:
    try:
        # utf-8-sig reads plain UTF-8 as well as Excel's "CSV UTF-8" with its byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryError(
            f"{source}: the text encoding is not UTF-8 (undecodable byte at offset {exc.start}); "
            "export the file as 'CSV UTF-8'"
        ) from exc
    if "\x00" in text:
        # NUL bytes between letters are valid UTF-8 but mean UTF-16 (or a binary file) without a byte-order mark.
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RegistryError(
            f"{source}: NUL bytes in row {line} (spreadsheet row numbers): this is not UTF-8 text "
            "(UTF-16 or binary?); export the file as 'CSV UTF-8'"
        )
    # European Excel writes ';' (and some exports tab) as separator; header names never contain them.
    first = _first_nonblank_line(text)
    delimiter = max([",", ";", "\t"], key=first.count)
    if not first.count(delimiter):
        delimiter = ","
    del text  # the fast reader parses the bytes; the csv module path decodes again
    return _read_csv_fast(data, delimiter, source, sha) or _read_csv_records(data, delimiter, source, sha)


def _first_nonblank_line(text: str) -> str:
    """The first line that is not blank (lines as str.splitlines splits them), without splitting the whole text."""
    size = 1 << 16
    while True:
        head = text[:size]
        lines = head.splitlines()
        whole = size >= len(text)
        for line in lines if whole else lines[:-1]:  # the last line of a head may go on beyond it
            if line.strip():
                return line
        if whole:
            return ""
        size *= 8


def _read_csv_fast(data: bytes, delimiter: str, source: str, sha: str) -> RawTable | None:
    """pandas' C tokenizer, where it reads exactly what the csv module reads; None where it might not.

    It reads the same records as ``csv.reader`` (tests/test_registry.py checks this on random text), but it does
    not enforce the csv module's field size limit, it takes its width from the first record, and it words errors
    its own way: so files with an over-long line, a quoted value spanning lines, a first record that is not the
    header, a record wider than the first, or any parse error go to :func:`_read_csv_records`. Cells are
    factorized chunk by chunk, so the whole file is never held as one cell object per cell.
    """
    lines, longest = _line_stats(data)
    if longest > csv.field_size_limit():
        return None
    chunks: list[list[Distinct]] = []
    try:
        with pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            header=None,
            dtype=object,
            na_filter=False,
            skip_blank_lines=False,
            quotechar='"',
            doublequote=True,
            engine="c",
            encoding="utf-8",
            chunksize=CSV_CHUNK_ROWS,
        ) as reader:
            for chunk in reader:
                chunks.append([distinct(chunk.iloc[:, j]) for j in range(chunk.shape[1])])
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if sum(len(chunk[0].codes) for chunk in chunks) != lines:
        return None
    columns = [_join_text_chunks([chunk[j] for chunk in chunks]) for j in range(len(chunks[0]))]
    del chunks
    blank = np.ones(lines, dtype=bool)
    for column in columns:
        # The csv module path reads a cell of spaces as None: code -1 here too.
        blank_cells = np.array([not text or text.isspace() for text in column.values], dtype=bool)[column.codes]
        column.codes[blank_cells] = -1
        blank &= blank_cells
    if blank[0]:
        return None
    header = [column.values[column.codes[0]].strip() if column.codes[0] >= 0 else "" for column in columns]
    body = np.flatnonzero(~blank[1:]) + 1
    rows = slice(1, None) if len(body) == lines - 1 else body
    body_columns: list[Distinct | None] = [
        Distinct(codes=column.codes[rows], values=column.values) for column in columns
    ]
    return RawTable(
        header=header,
        columns=body_columns,
        row_numbers=body + 1,
        row_note=CSV_NOTE.format(header=1),
        fmt="csv",
        source=source,
        sha256=sha,
        blank_rows=lines - 1 - len(body),
        text_formulas=True,
    )


def _join_text_chunks(parts: list[Distinct]) -> Distinct:
    """One column's chunks (all text, no empty cells) as one: the chunks' distinct values factorized together."""
    if len(parts) == 1:
        return parts[0]
    codes_of_value, values = pd.factorize(np.concatenate([part.values for part in parts]))
    offsets = np.cumsum([0] + [len(part.values) for part in parts[:-1]])
    codes = np.concatenate([codes_of_value[part.codes + offset] for part, offset in zip(parts, offsets, strict=True)])
    return Distinct(codes=codes.astype(np.int32) if len(values) < 2**31 - 1 else codes, values=values)


def _line_stats(data: bytes) -> tuple[int, int]:
    """Physical lines (ended by \\n, \\r\\n, \\r or the end of the data) and the longest one's length in bytes."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    lines, longest, last_break = 0, 0, -1
    step = 1 << 24  # scanned in slices, so the temporaries stay small
    for start in range(0, len(buffer), step):
        chunk = buffer[start : start + step]
        breaks = np.flatnonzero((chunk == 10) | (chunk == 13)) + start
        if len(breaks):
            longest = max(longest, int((np.diff(breaks, prepend=last_break) - 1).max()))
            last_break = int(breaks[-1])
        returns = breaks[buffer[breaks] == 13]
        after = buffer[np.minimum(returns + 1, len(buffer) - 1)]
        crlf = int(np.count_nonzero((returns + 1 < len(buffer)) & (after == 10)))
        lines += len(breaks) - crlf  # \r\n is one line end
    longest = max(longest, len(buffer) - last_break - 1)
    if len(buffer) and buffer[-1] not in (10, 13):
        lines += 1
    return lines, longest


def _read_csv_records(data: bytes, delimiter: str, source: str, sha: str) -> RawTable:
    """The csv module, record by record: every file the fast reader declines, with the csv module's messages."""
    text = data.decode("utf-8-sig")
    records: list[tuple[int, list[object]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        # A spreadsheet numbers records, not physical lines (a quoted value may span lines).
        for number, cells in enumerate(reader, start=1):
            records.append((number, [c if c.strip() else None for c in cells]))
    except csv.Error as exc:
        raise RegistryError(f"{source}: malformed CSV near line {reader.line_num} ({exc})") from exc
    return _records_to_table(records, source, "csv", sha, CSV_NOTE, "CSV file")


def _records_to_table(
    records: list[tuple[int, list[object]]], source: str, fmt: str, sha: str, note: str, what: str
) -> RawTable:
    """Shared by CSV and XLSX: first non-blank record is the header; blank records are skipped and counted."""
    header: list[str] | None = None
    header_row = 0
    body: list[tuple[int, list[object]]] = []
    blank = 0
    for number, cells in records:
        if all(is_blank(c) for c in cells):
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
    long_rows = [n for n, cells in body if any(not is_blank(c) for c in cells[width:])]
    if long_rows:
        raise RegistryError(
            f"{source}: more cells than header columns in {rows_text(long_rows)} "
            f"({note.format(header=header_row)}); "
            "a separator or quote inside a value may have shifted the columns"
        )
    columns: list[Distinct | None] = []
    for j in range(width):
        column_cells = np.empty(len(body), dtype=object)
        column_cells[:] = [(row[j] if j < len(row) else None) for _, row in body]
        columns.append(distinct(column_cells))
    return RawTable(
        header=header,
        columns=columns,
        row_numbers=np.array([n for n, _ in body], dtype=np.int64),
        row_note=note.format(header=header_row),
        fmt=fmt,
        source=source,
        sha256=sha,
        blank_rows=blank,
        text_formulas=True,
    )


# ----------------------------------------------------------------------------------------------------------------
# XLSX, Parquet, SQL


def _read_xlsx(data: bytes, source: str, sha: str, table: str | None) -> RawTable:
    import openpyxl
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it drops; they do not affect cell values.
            warnings.simplefilter("ignore")
            # data_only=False keeps formulas as formulas, so they can be refused instead of read as cached values.
            book = openpyxl.load_workbook(io.BytesIO(data), data_only=False)
    except Exception as exc:  # zipfile, XML and openpyxl errors all mean the same thing to the user
        raise RegistryError(
            f"{source}: not a readable .xlsx workbook (corrupt, truncated, encrypted, or an old .xls "
            f"renamed?): {type(exc).__name__}"
        ) from exc
    if table is None:
        sheet = book.worksheets[0]
    elif table in book.sheetnames:
        sheet = book[table]
    else:
        raise RegistryError(f"{source}: no sheet named {table!r} (sheets: {', '.join(book.sheetnames)})")
    records: list[tuple[int, list[object]]] = []
    marks: dict[tuple[int, int], str] = {}
    for number, row in enumerate(sheet.iter_rows(), start=1):
        cells: list[object] = []
        for j, cell in enumerate(row):
            value = cell.value
            if cell.data_type == "f" or isinstance(value, (ArrayFormula, DataTableFormula)):
                marks[(number, j)] = FORMULA
                value = str(getattr(value, "text", value))
            elif cell.data_type == "e":
                marks[(number, j)] = SPREADSHEET_ERROR
            cells.append(value)
        records.append((number, cells))
    raw = _records_to_table(
        records, source, "xlsx", sha, f"row numbers in sheet '{sheet.title}'; header = row {{header}}", "sheet"
    )
    index = {int(number): i for i, number in enumerate(raw.row_numbers)}
    for (number, j), kind in marks.items():
        if number in index and j < len(raw.header):
            raw.marks.setdefault(j, {})[index[number]] = kind
    raw.column_names = [f"column {get_column_letter(j + 1)}" for j in range(len(raw.header))]
    return raw


def _read_parquet(data: bytes, source: str, sha: str, table: str | None) -> RawTable:
    try:
        frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        raise RegistryError(
            f"{source}: not a readable Parquet file (corrupt or truncated?): {type(exc).__name__}"
        ) from exc
    # A frame saved with a named index (e.g. patient_id) holds data there; an unnamed one is pandas bookkeeping.
    frame = frame.reset_index(drop=all(name is None for name in frame.index.names))
    return _frame_to_table(frame, source, "parquet", sha, "record numbers, counting from 1")


def _frame_to_table(frame: pd.DataFrame, source: str, fmt: str, sha: str, note: str) -> RawTable:
    return RawTable(
        header=[str(c) for c in frame.columns],
        columns=[None] * frame.shape[1],
        row_numbers=np.arange(1, len(frame) + 1, dtype=np.int64),
        row_note=note,
        fmt=fmt,
        source=source,
        sha256=sha,
        frame=frame,
    )


def _read_sql(source: str, table: str | None) -> RawTable:
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
    local_file = (
        url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:")
    )
    if local_file and not Path(database).is_file():  # sqlite would silently create an empty database file
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
        raise RegistryError(f"{shown}: cannot read table {table!r} ({type(exc).__name__}: {_first_line(exc)})") from exc
    finally:
        engine.dispose()
    frame = pd.DataFrame(rows, columns=keys, dtype=object) if rows else pd.DataFrame(columns=keys, dtype=object)
    del rows
    # No file bytes to hash: the rows as read, as CSV with the columns sorted, are the canonical serialization.
    canonical = frame[sorted(frame.columns)].to_csv(index=False, lineterminator="\n")
    sha = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return _frame_to_table(frame, shown, "sql", sha, "record numbers in the table as read, counting from 1")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
