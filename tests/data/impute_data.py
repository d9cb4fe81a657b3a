"""Inputs of tests/data/r_impute_pool.R, for tests/test_impute.py: what ``fit --impute 5 --seed 11`` pools.

Run from the repository root:  .venv/bin/python -m tests.data.impute_data  then  Rscript tests/data/r_impute_pool.R

- impute_registry.csv: a 400-patient synthetic registry (registry ids) with extrahepatic_metastases, tumor_type and
  octreotide missing at random given the outcome and grade (blank cells);
- impute_completed.csv: the 5 completed registries ``training.retrain.impute_registry`` makes of it with seed 11
  (column imputation), which the pipeline fits and R pools with mice.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from registry import load_registry
from tests.registries import with_missing
from training import retrain, synthetic

DATA = Path(__file__).resolve().parent
REGISTRY = DATA / "impute_registry.csv"
COMPLETED = DATA / "impute_completed.csv"
IMPUTATIONS, SEED = 5, 11


def completed_frames(path: Path = REGISTRY) -> pd.DataFrame:
    """The completed registries as the pipeline makes them (``fit --impute 5 --seed 11``), stacked."""
    registry = load_registry(str(path), allow_missing_optional=True)
    imputed = retrain.impute_registry(registry, IMPUTATIONS, SEED)
    return pd.concat([frame.assign(imputation=m + 1) for m, frame in enumerate(imputed.completed_frames())])


def main() -> None:
    frame = synthetic.synthesize(400, 61)
    frame["patient_id"] = [f"M{i:05d}" for i in range(len(frame))]
    with_missing(frame, 62, {"extrahepatic_metastases": -0.8, "tumor_type": -1.5, "octreotide": -2.0}).to_csv(
        REGISTRY, index=False
    )
    completed_frames().to_csv(COMPLETED, index=False)


if __name__ == "__main__":
    main()
