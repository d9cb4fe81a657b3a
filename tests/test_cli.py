"""The training command line, end to end, as a registry team would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from prognosis.store import load_model
from tests.registries import random_registry
from training import synthetic

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = REPO, served: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m training ARGS``; ``served`` stands in for the app's model_artifacts/ (never the repository's)."""
    env = {**os.environ, "CALCULATOR_MODEL_DIR": str((served or Path("/nonexistent")) / "current")}
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env
    )


@pytest.mark.slow
def test_synthetic_20000_reproduces_table1(tmp_path):
    """Must show: 19 multivariate HRs within 15% for both endpoints, grade medians, mean follow-up 23-33 months."""
    csv, out = tmp_path / "syn.csv", tmp_path / "model"
    assert run("synthesize", "--n", "20000", "--seed", "1", "--out", str(csv)).returncode == 0
    done = run("fit", "--data", str(csv), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "hpfs: multivariate model" in done.stderr  # progress is shown
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["source"] == "synthetic"
    for endpoint in ("hpfs", "os"):
        rows = card["endpoints"][endpoint]["multivariate"]
        assert len(rows) == 19
        for row in rows:
            assert row["hr"] == pytest.approx(row["published_hr"], rel=0.15), (endpoint, row["term"])
    report = synthetic.calibration_report(pd.read_csv(csv, dtype={"who_grade": str}))
    print(json.dumps(report, indent=1))
    paper = synthetic.load_table1()["cohort"]["full_paper"]
    for endpoint, tolerance in (("hpfs", 0.20), ("os", 0.35)):
        published = paper[f"median_{endpoint}_months_by_grade"]
        ours = report[endpoint]["median_by_grade"]
        for grade, median in published.items():
            assert ours[grade] == pytest.approx(median, rel=tolerance), (endpoint, grade)
    assert 23 <= report["mean_follow_up_months"]["synthetic"] <= 33


def write_formats(frame: pd.DataFrame, folder: Path) -> dict[str, tuple[str, ...]]:
    frame.to_csv(folder / "r.csv", index=False)
    frame.to_excel(folder / "r.xlsx", index=False)
    frame.to_parquet(folder / "r.parquet", index=False)
    engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'r.db'}")
    frame.to_sql("registry", engine, index=False)
    engine.dispose()
    return {
        "csv": (str(folder / "r.csv"),),
        "xlsx": (str(folder / "r.xlsx"),),
        "parquet": (str(folder / "r.parquet"),),
        "sqlite": (f"sqlite:///{folder / 'r.db'}", "--table", "registry"),
    }


def test_same_data_in_every_format_gives_identical_models(tmp_path):
    frame = random_registry(400, 12, round_to=0.5)
    models = {}
    for name, source in write_formats(frame, tmp_path).items():
        out = tmp_path / f"model-{name}"
        args = ["fit", "--data", source[0], *source[1:], "--out", str(out)]
        done = run(*args)
        assert done.returncode == 0, done.stderr
        card = json.loads((out / "model_card.json").read_text())
        payload = load_model(out).endpoints["os"]
        models[name] = (card, payload)
    ref_card, ref_payload = models["csv"]
    for name, (card, payload) in models.items():
        assert card["data"]["format"] == ("sql" if name == "sqlite" else name)
        for endpoint in ("hpfs", "os"):
            assert card["endpoints"][endpoint]["multivariate"] == ref_card["endpoints"][endpoint]["multivariate"]
            assert card["endpoints"][endpoint]["univariate"] == ref_card["endpoints"][endpoint]["univariate"]
        np.testing.assert_array_equal(payload.coef, ref_payload.coef)
        np.testing.assert_array_equal(payload.risk_sets.cum_hazard, ref_payload.risk_sets.cum_hazard)


def test_bad_registry_stops_with_row_and_column_and_writes_nothing(tmp_path):
    frame = random_registry(50, 3)
    frame.loc[[4, 9], "who_grade"] = "4"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    done = run("fit", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "model"))
    assert done.returncode != 0
    assert "who_grade" in done.stderr and "rows 6, 11" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_column_mapping_and_drop_incomplete(tmp_path):
    frame = random_registry(300, 14).rename(columns={"who_grade": "Grade", "modality": "Procedure"})
    frame.loc[[2, 3], "Grade"] = None
    frame.to_csv(tmp_path / "site.csv", index=False)
    (tmp_path / "map.toml").write_text('[columns]\nGrade = "who_grade"\nProcedure = "modality"\n')
    out = tmp_path / "model"
    stopped = run(
        "fit", "--data", str(tmp_path / "site.csv"), "--columns", str(tmp_path / "map.toml"), "--out", str(out)
    )
    assert stopped.returncode != 0 and "who_grade" in stopped.stderr and not out.exists()
    done = run(
        "fit",
        "--data",
        str(tmp_path / "site.csv"),
        "--columns",
        str(tmp_path / "map.toml"),
        "--drop-incomplete",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "excluded: 2 rows (missing who_grade)" in done.stdout
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["rows_read"] == 300 and card["data"]["rows_used"] == {"hpfs": 298, "os": 298}
    assert card["data"]["excluded"] == [{"reason": "missing who_grade", "rows": 2}]
    assert card["data"]["source"] == "registry" and "published" not in card


def test_promote_from_the_command_line(model_dir, tmp_path):
    import shutil

    served = tmp_path / "served"
    v = tmp_path / "work" / "v1"
    shutil.copytree(model_dir, v)
    done = run("promote", str(v), served=served)
    assert done.returncode == 0, done.stderr
    # The app reads served/current: the version fitted elsewhere was copied there, and nothing was left beside it.
    assert (served / "current").resolve() == (served / "v1").resolve()
    assert "copied" in done.stdout and not (tmp_path / "work" / "current").exists()
    v = served / "v1"
    (v / "hpfs.npz").write_bytes(b"tampered")
    refused = run("promote", str(v), served=served)
    assert refused.returncode != 0 and "SHA-256" in refused.stderr


def test_update_and_impute_refuse_bad_arguments_plainly(model_dir, tmp_path):
    """A base that is not a model version, or fewer than 2 imputations: a message, no traceback, nothing written."""
    csv = tmp_path / "r.csv"
    random_registry(200, 5).to_csv(csv, index=False)
    for args, message in (
        (
            ["update", "--base", str(tmp_path / "nothing"), "--data", str(csv), "--out", str(tmp_path / "u")],
            "does not exist",
        ),
        (["fit", "--data", str(csv), "--out", str(tmp_path / "u"), "--impute", "1"], "at least 2 imputations"),
    ):
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "u").exists()
