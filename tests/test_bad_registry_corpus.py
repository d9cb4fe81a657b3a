"""A corpus of malformed registries: each gets a clear message from ``python -m training fit``, a non-zero exit, no
artifact, and the model being served stays exactly as it was.

The fit is run in-process through ``training.__main__.main`` (the CLI's own entry point, same exit codes), and
once for real as a subprocess for a few files and for the million-row one, whose time and peak memory are bounded.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from prognosis.store import load_model
from training import promote
from training.__main__ import main as training_main
from training.synthetic import synthesize

REPO = Path(__file__).resolve().parent.parent
ROWS_SHOWN = "spreadsheet row numbers"  # every message about a row says how rows are numbered


# --- the corpus: name, file, what the message must say ---------------------------------------------------------


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _with(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    edited = frame.astype({column: object}).copy()
    edited.loc[row, column] = value
    return edited


def _xlsx(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _header_plus(frame: pd.DataFrame, line: str) -> str:
    """The header, two good rows, then ``line`` as row 4."""
    rows = _csv(frame).splitlines()
    return "\n".join(rows[:3] + [line] + rows[3:6]) + "\n"


NOT_UTF8 = r"text encoding is not UTF-8 .*export the file as 'CSV UTF-8'"
NOT_XLSX = r"not a readable \.xlsx workbook \(corrupt, truncated"
FORMULA = r"column '{}': a spreadsheet formula .* in row {} \(spreadsheet row numbers"

# (id, file name, builder(frame) -> bytes, regex the message must match)
CORPUS = [
    ("latin-1", "registry.csv", lambda f: _csv(_with(f, 0, "patient_id", "Émile-001")).encode("latin-1"), NOT_UTF8),
    ("utf-16", "registry.csv", lambda f: _csv(f).encode("utf-16"), NOT_UTF8),
    ("utf-16-be without BOM", "registry.csv", lambda f: _csv(f).encode("utf-16-be"), r"UTF-16|encoding"),
    ("truncated xlsx", "registry.xlsx", lambda f: _xlsx(f)[: len(_xlsx(f)) // 2], NOT_XLSX),
    ("csv renamed .xlsx", "registry.xlsx", lambda f: _csv(f).encode(), NOT_XLSX),
    (
        "truncated parquet",
        "registry.parquet",
        lambda f: _parquet(f)[: len(_parquet(f)) // 2],
        r"not a readable Parquet file",
    ),
    (
        "formula in a value",
        "registry.csv",
        lambda f: _csv(_with(f, 4, "who_grade", "=1+1")).encode(),
        FORMULA.format("who_grade", 6),
    ),
    (
        "formula in an id (CSV injection)",
        "registry.csv",
        lambda f: _csv(_with(f, 4, "patient_id", '=HYPERLINK("http://example.invalid","x")')).encode(),
        FORMULA.format("patient_id", 6),
    ),
    (
        "@ formula",
        "registry.csv",
        lambda f: _csv(_with(f, 9, "tumor_type", "@SUM(A1)")).encode(),
        FORMULA.format("tumor_type", 11),
    ),
    (
        "unquoted formula shifting columns",
        "registry.csv",
        lambda f: _header_plus(f, '=HYPERLINK("http://x","y"),' + ",".join(["1"] * (f.shape[1] - 1))).encode(),
        r"more cells than header columns in row 4 \(spreadsheet row numbers; header = row 1\)",
    ),
    (
        "duplicated column",
        "registry.csv",
        lambda f: _csv(f.assign(extra=f["who_grade"]).rename(columns={"extra": "who_grade"})).encode(),
        r"duplicate column 'who_grade'",
    ),
    (
        "duplicated column up to case and spaces",
        "registry.csv",
        lambda f: _csv(f.assign(extra=f["who_grade"]).rename(columns={"extra": " WHO_Grade "})).encode(),
        r"duplicate column 'who_grade'",
    ),
    ("0 bytes", "registry.csv", lambda f: b"", r"empty file"),
    ("only blank lines and a BOM", "registry.csv", lambda f: b"\xef\xbb\xbf\n\r\n\n", r"empty CSV file \(no header"),
    ("header only", "registry.csv", lambda f: (_csv(f).splitlines()[0] + "\n").encode(), r"no data rows"),
    ("header only xlsx", "registry.xlsx", lambda f: _xlsx(f.iloc[:0]), r"no data rows"),
    ("0 rows parquet", "registry.parquet", lambda f: _parquet(f.iloc[:0]), r"no data rows"),
    ("binary garbage named .csv", "registry.csv", lambda f: _noise(20_000, 1), NOT_UTF8),
    ("a PNG named .csv", "registry.csv", lambda f: b"\x89PNG\r\n\x1a\n" + _noise(2_000, 2), NOT_UTF8),
    ("NUL bytes", "registry.csv", lambda f: _header_plus(f, "\x00" * 40).encode(), r"row 4"),
    (
        "one 200 kB field",
        "registry.csv",
        lambda f: _header_plus(f, '"' + "x" * 200_000 + '"').encode(),
        r"malformed CSV near line 4 \(field larger than field limit",
    ),
    ("unclosed quote", "registry.csv", lambda f: _header_plus(f, '"P-404,2,<25%').encode(), r"row 4"),
    ("required column missing", "registry.csv", lambda f: _csv(f.drop(columns=["who_grade"])).encode(), r"who_grade"),
    (
        "text in a number column",
        "registry.csv",
        lambda f: _csv(_with(f, 10, "os_months", "twelve")).encode(),
        r"column 'os_months': not a number of months in row 12",
    ),
    (
        "unknown category",
        "registry.csv",
        lambda f: _csv(_with(f, 2, "tumor_burden", "lots")).encode(),
        r"column 'tumor_burden': unknown value 'lots' in row 4",
    ),
    (
        "an image named .parquet",
        "registry.parquet",
        lambda f: b"\x89PNG\r\n\x1a\n" + _noise(2_000, 3),
        r"not a readable Parquet file",
    ),
    ("unsupported extension", "registry.xls", lambda f: _xlsx(f), r"unsupported file type '\.xls'"),
]


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A good synthetic registry, the starting point of every bad one."""
    return synthesize(300, 3)


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory) -> Path:
    """A model root whose ``current`` is a copy of the test model, promoted as in production."""
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(model_dir, root / "v1")
    promote.promote(root / "v1", root)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden temporaries included) with its digest, and where ``current`` points."""
    state = {"current ->": os.readlink(root / "current")}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[str(path.relative_to(root))] = "dir or link"
    return state


def assert_clear_failure(message: str, source: Path, pattern: str) -> None:
    """One message (its first line names the file; a list of problems may follow), no crash, no template."""
    assert message.startswith("error: "), message
    assert str(source) in message.splitlines()[0], message
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert "Traceback" not in message and "{" not in message, message  # no crash, no unfilled template
    if " row " in message:
        assert ROWS_SHOWN in message, message


# --- the corpus, in-process -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "builder", "pattern"), [pytest.param(f, b, p, id=i) for i, f, b, p in CORPUS])
def test_bad_registry_is_refused_clearly_and_changes_nothing(name, builder, pattern, frame, served, tmp_path, capsys):
    source = tmp_path / name
    source.write_bytes(builder(frame))
    before = snapshot(served)
    served_sha = load_model(served / "current").sha256
    out = served / "candidate"

    code = training_main(["fit", "--data", str(source), "--out", str(out)])

    captured = capsys.readouterr()
    assert code == 2
    assert_clear_failure(captured.err.strip(), source, pattern)
    assert "model written" not in captured.out
    assert not out.exists()
    assert snapshot(served) == before
    assert load_model(served / "current").sha256 == served_sha


def test_the_corpus_is_broad():
    names = [i for i, *_ in CORPUS]
    assert len(names) == len(set(names)) >= 25
    assert {Path(f).suffix for _, f, *_ in CORPUS} == {".csv", ".xlsx", ".parquet", ".xls"}


# --- the real command line ----------------------------------------------------------------------------------------


def run_fit(source: Path, out: Path, timeout: float) -> tuple[subprocess.CompletedProcess, int, float]:
    """``python -m training fit``, with its peak resident memory (sampled) and wall time."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "fit", "--data", str(source), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        assert time.monotonic() - started < timeout, "fit did not finish in time"
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), peak, time.monotonic() - started


@pytest.mark.parametrize("case", ["utf-16", "binary garbage named .csv", "truncated xlsx"])
def test_the_command_line_exits_non_zero_with_the_message(case, frame, served, tmp_path):
    _, name, builder, pattern = next(c for c in CORPUS if c[0] == case)
    source = tmp_path / name
    source.write_bytes(builder(frame))
    before = snapshot(served)
    result, _, _ = run_fit(source, served / "candidate", timeout=60)
    assert result.returncode == 2
    assert_clear_failure(result.stderr.strip(), source, pattern)
    assert snapshot(served) == before


def write_million_rows(path: Path) -> None:
    """1,000,000 valid patients (100 copies of 10,000 synthetic ones, ids made unique), then grade 7 in the last."""
    header, *rows = synthesize(10_000, 5).to_csv(index=False).splitlines()
    assert header.split(",")[:2] == ["patient_id", "who_grade"]
    with open(path, "w", encoding="utf-8") as out:
        out.write(header + "\n")
        for block in range(100):
            last = rows if block < 99 else rows[:-1]
            out.write("".join(f"B{block:02d}-{row}\n" for row in last))
        patient, _, rest = rows[-1].split(",", 2)
        out.write(f"B99-{patient},7,{rest}\n")


@pytest.mark.slow
def test_a_million_rows_with_an_error_in_the_last_one(served, tmp_path):
    """The whole file is read and checked, the last row is named, and time and memory stay bounded."""
    source = tmp_path / "million.csv"
    write_million_rows(source)
    size = source.stat().st_size
    before = snapshot(served)

    result, peak, seconds = run_fit(source, served / "candidate", timeout=150)

    assert result.returncode == 2
    assert_clear_failure(result.stderr.strip(), source, r"column 'who_grade': unknown value '7' in row 1000001 ")
    assert snapshot(served) == before
    # Bounded: linear in the file (about 30 bytes of memory per byte of CSV here), far from the machine's limits.
    assert peak < 3 * 1024**3, f"peak RSS {peak / 1024**2:.0f} MiB for a {size / 1024**2:.0f} MiB file"
    print(
        f"1,000,001-line CSV ({size / 1024**2:.0f} MiB): refused in {seconds:.1f} s, peak RSS {peak / 1024**2:.0f} MiB"
    )
