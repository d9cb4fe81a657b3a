"""Write the inputs of the R oracles of the validation (tests/test_validate_r.py). Run from the repository root:
    .venv/bin/python tests/data/r_validate_data.py
    Rscript tests/data/r_validate_external.R && Rscript tests/data/r_validate_rms.R \
        && Rscript tests/data/r_validate_replicates.R && Rscript tests/data/r_validate_contrast.R
(R 4.2.2, survival 3.5-3, rms 6.5-0 made the saved values; the tests rerun each script when Rscript is present.)

- external: a model fitted on one synthetic registry (600 patients) and validated on another (300 patients from a
  different seed whose times are shrunk by 0.8: the hazard is 25% higher, so calibration is off). The two registries
  (r_validate_external_train.csv, r_validate_external_test.csv) are what `fit` and `validate` read; the design
  (r_validate_external_design.csv: the model's 19 term columns, time, event per endpoint and registry) is what R
  fits on.
- bootstrap: 200 patients, 10 predictors (8 continuous, 2 binary; 6 of them noise, so the model is visibly overfitted),
  continuous times (no ties, so rms's rcorr.cens and scikit-survival count the same pairs), about two thirds events
  (r_validate_bootstrap_input.csv); the resample indices of the first 40 replicates of the validation bootstrap with
  seed 20170101, stream 0 (r_validate_bootstrap_indices.csv).
- contrast: a 600-patient registry with random truths and continuous times (r_validate_contrast_registry.csv: no tied
  event times, so Breslow's and Efron's baselines agree) and three fully known patients, each under TACE, SIRT and
  TAE, as design rows (r_validate_contrast_patients.csv), for the intervals of the differences between options that
  the calculator serves (prognosis.scoring); the registry's design per endpoint (r_validate_contrast_design.csv).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.registries

from prognosis import covariates  # noqa: E402
from tests.registries import random_registry  # noqa: E402
from training.synthetic import synthesize  # noqa: E402

HERE = Path(__file__).parent
SEED, STREAM, INDEXED_REPLICATES = 20170101, 0, 40


def external() -> None:
    train, test = synthesize(600, 31), synthesize(300, 32)
    for ep in covariates.ENDPOINTS.values():
        test[ep.time] = test[ep.time] * 0.8
    train.to_csv(HERE / "r_validate_external_train.csv", index=False, float_format="%.17g")
    test.to_csv(HERE / "r_validate_external_test.csv", index=False, float_format="%.17g")
    terms = covariates.term_ids(covariates.OPTIONAL)
    parts = []
    for name, frame in (("train", train), ("test", test)):
        x = covariates.design_matrix(frame, terms)
        for ep in covariates.ENDPOINTS.values():
            part = pd.DataFrame(x, columns=[f"x{i}" for i in range(len(terms))])
            part.insert(0, "dataset", name)
            part.insert(1, "endpoint", ep.name)
            part["time"] = frame[ep.time].to_numpy(float)
            part["event"] = frame[ep.event].to_numpy(int)
            parts.append(part)
    pd.concat(parts).to_csv(HERE / "r_validate_external_design.csv", index=False, float_format="%.17g")


def bootstrap_case(n: int = 200, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=(n, 8)), rng.random((n, 2)) < 0.4]).astype(float)
    beta = np.array([0.6, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0])
    t = rng.exponential(1.0 / (0.05 * np.exp(x @ beta)))
    c = rng.uniform(5.0, 50.0, n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["time"], frame["event"] = np.minimum(t, c), (t <= c).astype(int)
    return frame


def indices(n: int) -> pd.DataFrame:
    seeds = np.random.SeedSequence([SEED, STREAM]).spawn(INDEXED_REPLICATES)
    rows = [np.random.default_rng(s).integers(0, n, size=n) for s in seeds]
    return pd.DataFrame({"replicate": np.repeat(np.arange(len(rows)) + 1, n), "row": np.concatenate(rows) + 1})


CONTRAST_PATIENTS = [
    {
        "who_grade": "1",
        "tumor_burden": "<25%",
        "prior_resection_ablation": "0",
        "tumor_type": "pancreatic",
        "extrahepatic_metastases": "0",
        "octreotide": "1",
        "biologic": "0",
        "cytotoxic": "0",
    },
    {
        "who_grade": "2",
        "tumor_burden": "25-50%",
        "prior_resection_ablation": "1",
        "tumor_type": "gut",
        "extrahepatic_metastases": "1",
        "octreotide": "0",
        "biologic": "1",
        "cytotoxic": "0",
    },
    {
        "who_grade": "3",
        "tumor_burden": ">75%",
        "prior_resection_ablation": "0",
        "tumor_type": "bronchial",
        "extrahepatic_metastases": "0",
        "octreotide": "0",
        "biologic": "0",
        "cytotoxic": "1",
    },
]


def contrast() -> None:
    registry = random_registry(600, 61)
    registry.to_csv(HERE / "r_validate_contrast_registry.csv", index=False, float_format="%.17g")
    terms = covariates.term_ids(covariates.OPTIONAL)
    design = pd.DataFrame(covariates.design_matrix(registry, terms), columns=[f"x{i}" for i in range(len(terms))])
    parts = []
    for ep in covariates.ENDPOINTS.values():
        part = design.copy()
        part.insert(0, "endpoint", ep.name)
        part["time"], part["event"] = registry[ep.time].to_numpy(float), registry[ep.event].to_numpy(int)
        parts.append(part)
    pd.concat(parts).to_csv(HERE / "r_validate_contrast_design.csv", index=False, float_format="%.17g")
    rows = [
        dict(patient, patient=i + 1, modality=option)
        for i, patient in enumerate(CONTRAST_PATIENTS)
        for option in covariates.OPTIONS
    ]
    frame = pd.DataFrame(rows)
    x = pd.DataFrame(covariates.design_matrix(frame, terms), columns=[f"x{i}" for i in range(len(terms))])
    x.insert(0, "patient", frame["patient"])
    x.insert(1, "option", frame["modality"])
    x.to_csv(HERE / "r_validate_contrast_patients.csv", index=False, float_format="%.17g")


if __name__ == "__main__":
    contrast()
    external()
    case = bootstrap_case()
    case.to_csv(HERE / "r_validate_bootstrap_input.csv", index=False, float_format="%.17g")
    indices(len(case)).to_csv(HERE / "r_validate_bootstrap_indices.csv", index=False)
    print("wrote the inputs of the validation's R oracles to", HERE)
