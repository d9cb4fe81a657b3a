"""``python -m calculator score``: predictions for a file of patients, one output row per input row.

The file is read and its columns mapped exactly as the registry loader does for training (``registry``:
CSV, XLSX or Parquet; ``--columns mapping.toml`` for a site's own column names; values and aliases as there). The
input columns are kept; per endpoint, option and horizon the survival with its 95% interval is added
(``os_SIRT_survival_24``, ``os_SIRT_ci_lower_24``, ``os_SIRT_ci_upper_24``) and per endpoint and option the median
with its interval (``os_SIRT_median``, ``..._median_ci_lower``, ``..._median_ci_upper``): the numbers
``prognosis.scoring.predict`` gives for that patient (``prognosis.batch``). A row that cannot be scored keeps its
input, gets empty predictions and the reason in ``error``; the other rows are unaffected. ``model_version`` and
``model_data_source`` name the model in every row.

With ``--dask`` the same runs partition by partition on a Dask cluster (``local``: a ``distributed.LocalCluster``
on this machine, one single-threaded worker per core; or a scheduler's address), for files larger than memory:
CSV or Parquet in, CSV or Parquet out, at most two partitions per worker in flight, written in order as they
finish (docs/methods.md, "Batch scoring").

No Flask here: this module and what it imports are numpy, pandas and the registry reader.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prognosis import batch, covariates, notices
from prognosis.model import Model
from prognosis.scoring import check_condition
from prognosis.store import ModelLoadError, cached_model, load_model, served_model_dir
from registry import RegistryError
from registry.mapping import ColumnMap, load_mapping, resolve_columns
from registry.patients import parse_covariates
from registry.problems import rows_text
from registry.reading import RawTable, read_source

OUTPUT_FORMATS = (".csv", ".xlsx", ".parquet")
DASK_FORMATS = (".csv", ".parquet")
ERROR = batch.ERROR
MODEL_COLUMNS = ("model_version", "model_data_source")
# Distinct patients scored per step in one process (progress is reported after each).
CHUNK_ROWS = 500
# Bytes of CSV per Dask partition (~140,000 rows of the registry schema); $CALCULATOR_DASK_BLOCKSIZE overrides it.
DASK_BLOCKSIZE = "8MB"
ROWS_LISTED = 10


class ScoreError(Exception):
    """Something the user must fix (the input, the mapping, the options); the message says what."""


def parse_horizons(text: str) -> list[float]:
    """'12,24,36,60' -> [12.0, 24.0, 36.0, 60.0]; months > 0, finite, no repeats."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ScoreError(f"--horizons: {text!r} is not a comma-separated list of months") from exc
    if not values or any(not math.isfinite(v) or v <= 0 for v in values) or len(set(values)) != len(values):
        raise ScoreError(f"--horizons: {text!r} must list distinct numbers of months > 0")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m calculator score",
        description="Predict HPFS and OS under each option for every patient in a file (one output row per input "
        "row, input columns kept).",
    )
    parser.add_argument("--data", required=True, help="patients: .csv, .xlsx or .parquet (registry schema columns)")
    parser.add_argument("--out", required=True, help="predictions: .csv, .xlsx or .parquet")
    parser.add_argument("--columns", help="TOML file mapping the file's column names to the schema's ([columns])")
    parser.add_argument("--table", help="the .xlsx sheet to read (default: the first)")
    parser.add_argument(
        "--horizons",
        default=",".join(f"{h:g}" for h in covariates.DEFAULT_HORIZONS_MONTHS),
        help="landmark months, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--conditional-on-months",
        type=float,
        default=None,
        help="months already survived without the event, for every patient (conditional survival)",
    )
    parser.add_argument("--model", help="model directory (default: $CALCULATOR_MODEL_DIR or model_artifacts/current)")
    parser.add_argument(
        "--dask",
        metavar="SCHEDULER|local",
        help="run partition by partition on Dask: 'local' starts a LocalCluster on this machine, "
        "anything else is a scheduler address (tcp://host:8786)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success (even with rows in error), 1 when nothing could be written."""
    args = build_parser().parse_args(argv)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    try:
        horizons = parse_horizons(args.horizons)
        out = Path(args.out)
        if out.suffix.lower() not in OUTPUT_FORMATS:
            raise ScoreError(f"--out: {out.suffix or '(no extension)'!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        model_dir = Path(args.model) if args.model else served_model_dir()
        model = load_model(model_dir)
        # Refused conditions (negative, past the last event time) stop here, before any reading.
        check_condition(model, args.conditional_on_months)
        say(f"Model {model.version} ({model.data_source}) from {model.directory}")
        if model.data_source == "synthetic":
            say(notices.synthetic_notice(model.evidence_patients))
        if args.dask:
            summary = score_with_dask(
                args.data, out, model, horizons, args.conditional_on_months, args.columns, args.dask, say
            )
        else:
            summary = score_file(
                args.data, out, model, horizons, args.conditional_on_months, args.columns, args.table, say
            )
    except (ScoreError, RegistryError, ModelLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(summary)
    return 0


# --- reading and scoring one table ------------------------------------------------------------------------------


def _column_map(raw: RawTable, mapping: dict[str, str]) -> ColumnMap:
    columns = resolve_columns(raw, mapping)
    missing = [
        name
        for name in covariates.REQUIRED
        if name not in columns.index
        and not (
            covariates.BY_NAME[name].alternative
            and covariates.BY_NAME[name].alternative.name  # type: ignore[union-attr]
            in columns.index
        )
    ]
    if missing:
        raise ScoreError(
            f"{raw.source}: no column for {', '.join(missing)} (required); columns found: "
            f"{', '.join(raw.header)}" + ("" if mapping else " (a --columns mapping may be needed)")
        )
    return columns


def score_table(
    raw: RawTable,
    columns: ColumnMap,
    model: Model,
    horizons: Sequence[float],
    conditional_on_months: float | None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The input table as read, plus the prediction columns, ``error`` and the model's columns."""
    parsed = parse_covariates(raw, columns, [c.name for c in covariates.COVARIATES])
    problems = parsed.row_problems()
    # Rows with the same inputs get the same predictions: the distinct ones are scored (pandas hashes them fast;
    # score_patients would find them too, row by row in Python), then spread back to the rows.
    names = list(parsed.values)
    key = pd.MultiIndex.from_arrays([pd.Series(parsed.values[name], dtype=object).fillna("") for name in names])
    codes, _ = pd.factorize(key)
    _, first = np.unique(codes, return_index=True)
    values: dict[str, np.ndarray] = {name: parsed.values[name][first] for name in names}
    m = len(first)
    table = {name: np.full(m, np.nan) for name in batch.column_names(horizons)}
    found = np.full(m, None, dtype=object)
    for start in range(0, m, CHUNK_ROWS):
        stop = min(m, start + CHUNK_ROWS)
        result = batch.score_patients(
            model, {k: v[start:stop] for k, v in values.items()}, horizons, conditional_on_months
        )
        for name, column in result.columns.items():
            table[name][start:stop] = column
        found[start:stop] = result.error
        if progress is not None:
            progress(stop, m)
    result_columns = {name: column[codes] for name, column in table.items()}
    error = found[codes]
    for i, reasons in problems.items():
        # A bad cell outranks what scoring said (its value was read as missing).
        error[i] = "; ".join(reasons)
        for column in result_columns.values():
            column[i] = np.nan
    frame = raw.to_frame().copy() if raw.frame is None else raw.frame.reset_index(drop=True).copy()
    added = {**result_columns, ERROR: error, MODEL_COLUMNS[0]: model.version, MODEL_COLUMNS[1]: model.data_source}
    clash = [name for name in added if name in frame.columns]
    if clash:
        frame = frame.drop(columns=clash)
    return pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)


def score_file(
    data: str,
    out: Path,
    model: Model,
    horizons: Sequence[float],
    conditional_on_months: float | None,
    columns_file: str | None,
    table: str | None,
    say: Callable[[str], None],
) -> str:
    """Score a file in this process and write ``out``; returns the summary line."""
    started = time.perf_counter()
    raw = read_source(str(data), table)
    if raw.n_rows == 0:
        raise ScoreError(f"{raw.source}: no data rows")
    columns = _column_map(raw, load_mapping(columns_file))
    say(f"Read {raw.n_rows:,} rows from {raw.source}")

    def progress(done: int, total: int) -> None:
        say(f"scored {done:,} / {total:,} distinct patients ({100 * done / total:.0f}%)")

    frame = score_table(raw, columns, model, horizons, conditional_on_months, progress)
    write_frame(frame, out)
    bad = np.flatnonzero(frame[ERROR].notna().to_numpy())
    return _summary(
        len(frame), raw.row_numbers[bad], raw.row_note, frame[ERROR].to_numpy()[bad], out, time.perf_counter() - started
    )


def _summary(n: int, bad_rows: np.ndarray, row_note: str, reasons: np.ndarray, out: Path, seconds: float) -> str:
    lines = [f"Wrote {n:,} rows to {out} in {seconds:.1f} s; {n - len(bad_rows):,} scored, {len(bad_rows):,} not"]
    if len(bad_rows):
        lines.append(f"Rows not scored ({row_note}): {rows_text(bad_rows)}; the reason is in the '{ERROR}' column:")
        lines += [
            f"  row {number}: {reason}"
            for number, reason in zip(bad_rows[:ROWS_LISTED], reasons[:ROWS_LISTED], strict=False)
        ]
    return "\n".join(lines)


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    """Write by extension: CSV (UTF-8, empty cells for nulls), XLSX, Parquet."""
    suffix = out.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".xlsx":
        frame.to_excel(out, index=False)
    else:
        _arrow_table(frame)
        frame.to_parquet(out, index=False)


def _is_number(dtype: object) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"


def _arrow_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns other than numbers as text for Parquet (cells as read may mix numbers and text)."""
    for name in frame.columns:
        if not _is_number(frame[name].dtype) and pd.api.types.infer_dtype(frame[name], skipna=True) not in (
            "string",
            "empty",
        ):
            frame[name] = frame[name].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    return frame


# --- Dask: partition by partition ---------------------------------------------------------------------------------


def score_partition(
    part: pd.DataFrame,
    model_dir: str,
    columns: ColumnMap,
    horizons: Sequence[float],
    conditional_on_months: float | None,
    source: str,
) -> pd.DataFrame:
    """One partition of the input (its cells as read), scored in a Dask worker (the model loaded once per worker)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    part = part.reset_index(drop=True)
    raw = RawTable(
        header=list(columns.header),
        columns=[None] * part.shape[1],
        row_numbers=np.arange(1, len(part) + 1, dtype=np.int64),
        row_note="",
        fmt="dask",
        source=source,
        sha256="",
        frame=part,
    )
    return score_table(raw, columns, cached_model(model_dir), horizons, conditional_on_months)


def _dask_input(data: str):  # type: ignore[no-untyped-def]
    try:
        import dask
        import dask.dataframe as dd
    except ImportError as exc:  # the runtime image carries no Dask: the in-process scorer needs none
        raise ScoreError(
            "--dask needs the dask and distributed packages (pip install 'dask[dataframe]' distributed, or the "
            "project's training extra); without --dask the file is scored in this process"
        ) from exc

    suffix = Path(data).suffix.lower()
    if suffix not in DASK_FORMATS:
        raise ScoreError(
            f"--dask reads {', '.join(DASK_FORMATS)} files (not {suffix or 'no extension'}); convert "
            "the file or score it without --dask"
        )
    if not Path(data).exists():
        raise ScoreError(f"{data}: no such file")
    # Cells as the registry reader sees them (objects, not pandas' Arrow strings).
    dask.config.set({"dataframe.convert-string": False})
    if suffix == ".csv":
        # Text, with no type guessing and no NA parsing: the registry reader's rules do that.
        return dd.read_csv(
            data,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            blocksize=os.environ.get("CALCULATOR_DASK_BLOCKSIZE", DASK_BLOCKSIZE),
        )
    return dd.read_parquet(data)


def _client(scheduler: str):  # type: ignore[no-untyped-def]
    from distributed import Client, LocalCluster

    if scheduler == "local":
        workers = max(1, len(os.sched_getaffinity(0)))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    return Client(scheduler), None


def score_with_dask(
    data: str,
    out: Path,
    model: Model,
    horizons: Sequence[float],
    conditional_on_months: float | None,
    columns_file: str | None,
    scheduler: str,
    say: Callable[[str], None],
) -> str:
    """Score ``data`` partition by partition on a Dask cluster, writing ``out`` in input order as partitions finish
    (at most two per worker in flight, so memory holds a few partitions, never the file)."""
    if out.suffix.lower() not in DASK_FORMATS:
        raise ScoreError(f"with --dask, --out must be one of {', '.join(DASK_FORMATS)}")
    started = time.perf_counter()
    ddf = _dask_input(data)
    head = ddf.get_partition(0).head(5, compute=True)
    probe = RawTable(
        header=[str(c) for c in ddf.columns],
        columns=[None] * len(ddf.columns),
        row_numbers=np.arange(1, len(head) + 1, dtype=np.int64),
        row_note="",
        fmt="dask",
        source=data,
        sha256="",
        frame=head.reset_index(drop=True),
    )
    columns = _column_map(probe, load_mapping(columns_file))
    import dask

    parts = ddf.to_delayed()
    say(f"Scoring {data} in {len(parts)} partitions on Dask ({scheduler})")
    client, cluster = _client(scheduler)
    try:
        model_dir = str(model.directory)
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})) or 1)

        score = dask.delayed(score_partition, pure=True)

        def submit(k: int):  # type: ignore[no-untyped-def]
            return client.compute(score(parts[k], model_dir, columns, list(horizons), conditional_on_months, data))

        futures = {k: submit(k) for k in range(min(window, len(parts)))}
        writer = _Writer(out)
        rows = 0
        bad_rows: list[np.ndarray] = []
        reasons: list[np.ndarray] = []
        for k in range(len(parts)):
            frame = futures.pop(k).result()
            if k + window < len(parts):
                futures[k + window] = submit(k + window)
            writer.write(frame)
            bad = np.flatnonzero(frame[ERROR].notna().to_numpy())
            bad_rows.append(rows + bad + 1)
            reasons.append(frame[ERROR].to_numpy()[bad])
            rows += len(frame)
            say(f"partition {k + 1}/{len(parts)} written ({rows:,} rows)")
        writer.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return _summary(
        rows,
        np.concatenate(bad_rows) if bad_rows else np.array([], dtype=int),
        "data records counted from 1",
        np.concatenate(reasons) if reasons else np.array([]),
        out,
        time.perf_counter() - started,
    )


class _Writer:
    """Appends partitions to one CSV or Parquet file, in order."""

    def __init__(self, out: Path):
        self.out = out
        self.parquet = out.suffix.lower() == ".parquet"
        self.writer: Any = None
        self.schema = None
        self.first = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            frame = _arrow_table(frame)
            if self.schema is None:
                fields = [
                    pa.field(name, pa.from_numpy_dtype(frame[name].dtype))
                    if _is_number(frame[name].dtype)
                    else pa.field(name, pa.string())
                    for name in frame.columns
                ]
                self.schema = pa.schema(fields)
                self.writer = pq.ParquetWriter(self.out, self.schema)
            assert self.writer is not None
            self.writer.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        else:
            frame.to_csv(self.out, mode="w" if self.first else "a", header=self.first, index=False)
        self.first = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["main", "score_file", "score_partition", "score_table", "score_with_dask"]
