"""Batch scoring (issue 12.2): ``prognosis.batch.score_patients`` and ``python -m calculator score`` give for every
row exactly what ``predict`` gives for that patient; bad rows are reported, not fatal; Dask gives the same; no Flask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import batch, covariates
from prognosis.scoring import predict
from prognosis.store import load_model
from training.synthetic import synthesize

REPO = Path(__file__).resolve().parent.parent
HORIZONS = (12.0, 24.0, 36.0, 60.0)
FLASK_MODULES = ("flask", "werkzeug", "wtforms", "flask_wtf", "jinja2")


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def patients_frame(n: int, seed: int) -> pd.DataFrame:
    """A registry-shaped file of patients: optional inputs each missing with probability 1/2, and two bad rows."""
    frame = synthesize(n, seed)
    rng = np.random.default_rng(seed)
    for name in covariates.OPTIONAL:
        frame[name] = frame[name].astype(object).where(rng.random(n) > 0.5, None)
    frame["who_grade"] = frame["who_grade"].astype(object)
    frame.loc[3, "who_grade"] = "G7"
    frame.loc[5, "tumor_burden"] = None
    return frame


def predicted_row(model, row: dict, horizons=HORIZONS, months=None) -> dict[str, float]:
    """The single-patient prediction of one row, in the batch's column names (NaN for null)."""
    patient = {c.name: (None if pd.isna(row[c.name]) else str(row[c.name])) for c in covariates.COVARIATES}
    result = predict(model, patient, horizons=horizons, conditional_on_months=months)
    out = {}
    for endpoint in covariates.ENDPOINTS:
        for option in covariates.OPTIONS:
            p = result["predictions"][endpoint][option]
            for lm in p["landmarks"]:
                for key in ("survival", "ci_lower", "ci_upper"):
                    out[f"{endpoint}_{option}_{key}_{lm['months']:g}"] = lm[key]
            for key, suffix in (("estimate", ""), ("ci_lower", "_ci_lower"), ("ci_upper", "_ci_upper")):
                out[f"{endpoint}_{option}_median{suffix}"] = p["median_months"][key]
    return {k: np.nan if v is None else v for k, v in out.items()}


def assert_rows_equal(model, frame: pd.DataFrame, columns, error, rows, horizons=HORIZONS, months=None) -> None:
    for i in rows:
        if error[i] is not None:
            continue
        expected = predicted_row(model, frame.iloc[i].to_dict(), horizons, months)
        got = {name: float(columns[name][i]) for name in expected}
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (i, name)


def test_every_row_equals_the_single_patient_prediction(model):
    frame = patients_frame(400, 3)
    horizons = (12.0, 24.0, 36.0, 60.0, 1000.0)  # the last past every event time: null, as in predict
    rows = {c.name: frame[c.name].tolist() for c in covariates.COVARIATES}
    result = batch.score_patients(model, rows, horizons)
    assert list(result.columns) == batch.column_names(horizons)
    assert result.error[3] == "who_grade: unknown value 'G7'"
    assert result.error[5] == "tumor_burden: missing (required)"
    assert sum(e is not None for e in result.error) == 2
    assert all(np.isnan(column[3]) and np.isnan(column[5]) for column in result.columns.values())
    assert np.all(np.isnan(result.columns["os_TACE_survival_1000"]))
    assert 100 < result.patients < 400  # identical patients scored once
    assert_rows_equal(model, frame, result.columns, result.error, range(len(frame)), horizons)


def test_conditional_batch_equals_the_single_patient_prediction(model):
    frame = patients_frame(60, 4)
    rows = {c.name: frame[c.name].tolist() for c in covariates.COVARIATES}
    result = batch.score_patients(model, rows, HORIZONS, conditional_on_months=12.0)
    assert np.all(np.isnan(result.columns["hpfs_SIRT_survival_12"]))  # not after s
    assert_rows_equal(model, frame, result.columns, result.error, range(len(frame)), HORIZONS, 12.0)
    with pytest.raises(ValueError, match="past the last observed"):
        batch.score_patients(model, rows, HORIZONS, conditional_on_months=10_000.0)


def test_rows_are_checked_without_stopping_the_others(model):
    rows = {
        "who_grade": ["1", None, "2", "grade 3", 2],
        "tumor_burden": ["<25%", "<25%", "huge", "> 75%", "25-50%"],
        "prior_resection_ablation": ["0", "1", "0", "yes", True],
        "tumor_type": [None, "lung", "liver", None, None],
    }
    result = batch.score_patients(model, rows, (12.0,))
    assert list(result.error) == [
        None,
        "who_grade: missing (required)",
        "tumor_burden: unknown value 'huge'; tumor_type: unknown value 'liver'",
        None,
        None,
    ]
    # Aliases and types are read as the registry reads them: "grade 3", "> 75%", "yes", "lung", 2 and True.
    assert not np.isnan(result.columns["os_TAE_survival_12"][[0, 3, 4]]).any()
    with pytest.raises(ValueError, match="not covariates: grade"):
        batch.score_patients(model, {"grade": ["1"]}, (12.0,))


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calculator", "score", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
def test_the_command_line_keeps_the_input_and_adds_the_predictions(model, model_dir, tmp_path, suffix):
    frame = patients_frame(120, 5)
    data = tmp_path / f"patients{suffix}"
    {
        ".csv": lambda: frame.to_csv(data, index=False),
        ".xlsx": lambda: frame.to_excel(data, index=False),
        ".parquet": lambda: frame.astype(str).replace({"None": None, "nan": None}).to_parquet(data),
    }[suffix]()
    out = tmp_path / f"predictions{suffix}"
    done = run_cli("--data", str(data), "--out", str(out), "--model", str(model_dir))
    assert done.returncode == 0, done.stderr
    assert "distinct patients (100%)" in done.stderr and "SYNTHETIC" in done.stderr
    assert "rows 5, 7" in done.stderr or "rows 4, 6" in done.stderr  # the bad rows, by row number
    got = {".csv": pd.read_csv, ".xlsx": pd.read_excel, ".parquet": pd.read_parquet}[suffix](out)
    assert len(got) == len(frame)
    assert list(got.columns[: len(frame.columns)]) == list(frame.columns)
    assert list(got.columns[len(frame.columns) :]) == [
        *batch.column_names(HORIZONS),
        "error",
        "model_version",
        "model_data_source",
    ]
    assert (got["model_version"] == model.version).all() and (got["model_data_source"] == "synthetic").all()
    assert got["patient_id"].tolist() == frame["patient_id"].tolist()
    error = got["error"].where(got["error"].notna(), None).to_numpy()
    assert error[3] == "who_grade: unknown value 'G7'" and error[5].startswith("tumor_burden")
    assert_rows_equal(
        model, frame, {c: got[c].to_numpy(float) for c in batch.column_names(HORIZONS)}, error, range(0, 120, 7)
    )


def test_the_command_line_reads_a_sites_own_column_names(model, model_dir, tmp_path):
    frame = patients_frame(30, 6).rename(columns={"who_grade": "Grade (WHO)", "tumor_type": "Primary"})
    data = tmp_path / "site.csv"
    frame.to_csv(data, index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[columns]\n"Grade (WHO)" = "who_grade"\n"Primary" = "tumor_type"\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    done = run_cli(
        "--data",
        str(data),
        "--out",
        str(out),
        "--columns",
        str(mapping),
        "--model",
        str(model_dir),
        "--horizons",
        "6,18.5",
        "--conditional-on-months",
        "3",
    )
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(out)
    assert "Grade (WHO)" in got.columns and "os_SIRT_survival_18.5" in got.columns
    original = frame.rename(columns={"Grade (WHO)": "who_grade", "Primary": "tumor_type"})
    error = got["error"].where(got["error"].notna(), None).to_numpy()
    assert_rows_equal(
        model,
        original,
        {c: got[c].to_numpy(float) for c in batch.column_names((6.0, 18.5))},
        error,
        range(30),
        (6.0, 18.5),
        3.0,
    )
    missing = run_cli("--data", str(data), "--out", str(out), "--model", str(model_dir))
    assert missing.returncode == 1 and "no column for who_grade (required)" in missing.stderr


def test_bad_options_are_refused_before_anything_is_written(model_dir, tmp_path):
    data = tmp_path / "p.csv"
    patients_frame(10, 7).to_csv(data, index=False)
    for args, message in (
        (("--out", str(tmp_path / "x.json")), "is not one of .csv, .xlsx, .parquet"),
        (("--out", str(tmp_path / "x.csv"), "--horizons", "12,-3"), "--horizons"),
        (("--out", str(tmp_path / "x.csv"), "--conditional-on-months", "9999"), "past the last"),
    ):
        done = run_cli("--data", str(data), *args, "--model", str(model_dir))
        assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "x.csv").exists()


def test_the_command_line_and_the_scoring_modules_load_no_flask():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['calculator', 'score', '--help']\n"
        "try:\n    runpy.run_module('calculator', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "import prognosis.scoring, prognosis.batch, calculator.score_cli\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FLASK_MODULES!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--data" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_dask_gives_the_in_process_result(model_dir, tmp_path):
    """The same command on a local Dask cluster, partition by partition, writes the same rows."""
    frame = patients_frame(600, 8)
    data = tmp_path / "p.csv"
    frame.to_csv(data, index=False)
    here, there = tmp_path / "here.csv", tmp_path / "there.parquet"
    assert run_cli("--data", str(data), "--out", str(here), "--model", str(model_dir)).returncode == 0
    env = {"CALCULATOR_DASK_BLOCKSIZE": "8KB"}  # several partitions even for a small file
    done = run_cli("--data", str(data), "--out", str(there), "--model", str(model_dir), "--dask", "local", env=env)
    assert done.returncode == 0, done.stderr
    assert "partition 2/" in done.stderr
    a, b = pd.read_csv(here, dtype={"patient_id": str}), pd.read_parquet(there)
    assert len(a) == len(b) == 600
    assert a["patient_id"].tolist() == b["patient_id"].tolist()
    for name in batch.column_names(HORIZONS):
        np.testing.assert_allclose(b[name].to_numpy(float), a[name].to_numpy(float), rtol=1e-12)
    assert a["error"].fillna("").tolist() == b["error"].fillna("").tolist()
