"""Riley et al.'s sample-size criteria as ``fit`` (and ``update``) report them: per endpoint in the card and in plain
words; the anticipated R-squared from the served model when it can be had, the conservative default otherwise."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import covariates
from prognosis.store import load_model
from registry import load_registry
from training import retrain, synthetic

REPO = Path(__file__).resolve().parent.parent
TERMS = covariates.term_ids(covariates.OPTIONAL)


def run(*args: str, served: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALCULATOR_MODEL_DIR": str(served or "/nonexistent/current")}
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )


def registry_180(folder: Path, drop: tuple[str, ...] = ()) -> Path:
    frame = synthetic.synthesize(180, 7).drop(columns=list(drop))
    frame["patient_id"] = [f"R{i:04d}" for i in range(len(frame))]
    path = folder / "registry-180.csv"
    frame.to_csv(path, index=False)
    return path


def criterion_one(r2: float, parameters: int) -> int:
    """Riley et al. (BMJ 2020) criterion (i): n = p / ((S - 1) ln(1 - R2_CS / S)), S = 0.9, rounded up."""
    return math.ceil(parameters / ((0.9 - 1) * math.log(1 - r2 / 0.9)))


def test_a_180_patient_registry_with_19_terms_is_reported_too_small(tmp_path):
    """Must show: both endpoints too small by Riley et al.'s criteria, in the card and in plain words with what it
    would take; criterion (i) recomputed from the reported R-squared and parameter count."""
    done = run("fit", "--data", str(registry_180(tmp_path)), "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    for endpoint in covariates.ENDPOINTS:
        block = card["endpoints"][endpoint]["sample_size"]
        assert list(block)[:7] == [
            "r2_cs",
            "parameters",
            "patients",
            "events",
            "criteria",
            "minimum_patients",
            "adequate",
        ]
        assert block["parameters"] == 19 and block["patients"] == 180 and block["adequate"] is False
        assert block["criteria"]["shrinkage"] == criterion_one(block["r2_cs"], block["parameters"])
        assert block["minimum_patients"] == max(block["criteria"].values()) > 180
        # No served model here: the conservative default, and why.
        assert block["nagelkerke_r2"] == pytest.approx(0.15) and block["reference_model"] is None
        assert block["r2_cs_source"].startswith("conservative default") and "no served model" in block["r2_cs_source"]
        assert f"{endpoint.upper()}: 180 patients" in done.stdout
        assert (
            f"TOO SMALL: it would take at least {block['minimum_patients']} patients (about "
            f"{block['minimum_events']} events" in done.stdout
        )
        # ... so the model was shrunk (the default --shrinkage auto).
        assert card["endpoints"][endpoint]["shrinkage"]["method"] == "bootstrap_uniform"
    markdown = (tmp_path / "m" / "model_card.md").read_text()
    assert markdown.count("**too small**") == 2


def test_the_served_models_r2_on_the_registry_is_the_anticipated_one(model_dir, tmp_path):
    """With a served model using terms the registry has, the anticipated R-squared is its linear predictor's on the
    registry with one slope fitted (lifelines' likelihood ratio: 1 - exp(-LR / n)), shrunk for that slope."""
    from lifelines import CoxPHFitter

    csv = registry_180(tmp_path)
    done = run("fit", "--data", str(csv), "--out", str(tmp_path / "m"), "--shrinkage", "none", served=model_dir)
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    served = load_model(model_dir)
    frame = pd.read_csv(csv)
    for endpoint in covariates.ENDPOINTS:
        block = card["endpoints"][endpoint]["sample_size"]
        spec = covariates.ENDPOINTS[endpoint]
        lp = (
            covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), TERMS)
            @ served.endpoints[endpoint].coef
        )
        data = pd.DataFrame({"lp": lp, "t": frame[spec.time], "e": frame[spec.event]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr = CoxPHFitter().fit(data, "t", "e").log_likelihood_ratio_test().test_statistic
        r2 = 1 - math.exp(-lr / 180)
        assert block["r2_cs"] == pytest.approx((1 + 1 / (180 * math.log(1 - r2))) * r2, rel=1e-5)
        assert block["reference_model"] == served.version and served.version in block["r2_cs_source"]
        assert block["criteria"]["shrinkage"] == criterion_one(block["r2_cs"], 19)
        assert block["adequate"] is False
        assert card["endpoints"][endpoint]["shrinkage"] == {
            **card["endpoints"][endpoint]["shrinkage"],
            "method": "none",
            "factor": 1.0,
        }


def test_a_served_model_with_covariates_the_registry_lacks_gives_the_default(model_dir, tmp_path):
    csv = registry_180(tmp_path, drop=covariates.OPTIONAL)
    done = run("fit", "--data", str(csv), "--out", str(tmp_path / "m"), "--shrinkage", "none", served=model_dir)
    assert done.returncode == 0, done.stderr
    block = json.loads((tmp_path / "m" / "model_card.json").read_text())["endpoints"]["os"]["sample_size"]
    assert block["parameters"] == 12 and block["nagelkerke_r2"] == pytest.approx(0.15)
    assert "which this registry lacks" in block["r2_cs_source"] and "tumor_type" in block["r2_cs_source"]


def test_the_served_models_own_data_give_its_apparent_r2_shrunk_for_all_its_terms(model_dir):
    """Refitting the data the served model was trained on: its apparent R-squared is optimistic, shrunk by van
    Houwelingen's heuristic for all 19 terms rather than for one slope."""
    registry = load_registry(str(Path(model_dir).parent / "test-synthetic-2000.csv"))
    served = load_model(model_dir)
    data = retrain.endpoint_data(registry, "os")
    _, own = retrain.assess_sample_size(data, 19, served, role="served", registry_sha256=registry.sha256)
    _, other = retrain.assess_sample_size(data, 19, served, role="served", registry_sha256="0" * 64)
    assert "own training data" in own["r2_cs_source"] and "one slope" in other["r2_cs_source"]
    n = own["patients"]
    apparent = np.array([other["r2_cs"], own["r2_cs"]])

    # Undo each shrinkage: both come from the same apparent R-squared.
    def unshrunk(adjusted: float, p: int) -> float:
        from scipy.optimize import brentq

        return brentq(lambda r: (1 + p / (n * math.log(1 - r))) * r - adjusted, adjusted, 0.999)

    assert unshrunk(apparent[1], 19) == pytest.approx(unshrunk(apparent[0], 1), rel=1e-6)
    assert own["r2_cs"] < other["r2_cs"]
