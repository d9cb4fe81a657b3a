"""Write the data sets of the multiple-imputation oracles. Run from the repository root, then the two R scripts:
    .venv/bin/python -m tests.data.mi_data
    Rscript tests/data/r_mice_pool.R && Rscript tests/data/r_mice_frequencies.R

- mi_pool_completed.csv: 5 completed versions (column ``imputation``) of a 300-patient synthetic registry whose
  optional covariates were made missing at random; tests/data/r_mice_pool.R fits coxph(ties = "efron") to each and
  pools with mice::pool.
- mi_frequency_input.csv: a 500-patient synthetic registry with tumor_type, extrahepatic_metastases and octreotide
  missing at random (dependent on the outcomes and grade), plus the imputation model's complete predictors as numeric
  columns (``x_*``: the required terms, each endpoint's event indicator and Nelson-Aalen cumulative hazard) and the
  values before they were masked (``true_*``);
  tests/data/r_mice_frequencies.R imputes it with mice (logreg / polyreg) and saves the imputed levels' frequencies.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from prognosis import covariates
from tests.registries import with_missing
from training import imputation
from training.synthetic import synthesize

HERE = Path(__file__).parent
RATES = {"tumor_type": -1.2, "extrahepatic_metastases": -0.6, "octreotide": -2.0}


pool_frame = with_missing(synthesize(300, 31), 32, RATES)
imp = imputation.impute(pool_frame, imputations=5, iterations=10, seed=33)
completed = pd.concat([c.assign(imputation=i + 1) for i, c in enumerate(imp.completed_frames())], ignore_index=True)
completed.to_csv(HERE / "mi_pool_completed.csv", index=False, float_format="%.17g")

truth = synthesize(500, 41)
freq = with_missing(truth, 42, RATES)
outcome, names = imputation.outcome_predictors(freq)
terms = covariates.term_ids(())
base = covariates.design_matrix(
    freq.astype(dict.fromkeys(covariates.REQUIRED + (covariates.MODALITY.name,), str)), terms
)
predictors = pd.DataFrame(
    np.column_stack([base, outcome]), columns=[f"x_{i + 1}" for i in range(base.shape[1] + outcome.shape[1])]
)
# The values before they were made missing, to judge the imputations against the truth.
masked = pd.DataFrame({f"true_{name}": truth[name].to_numpy() for name in RATES})
freq = pd.concat([freq.reset_index(drop=True), predictors, masked], axis=1)
freq.to_csv(HERE / "mi_frequency_input.csv", index=False, float_format="%.17g")
print({name: int(freq[name].isna().sum()) for name in covariates.OPTIONAL}, "predictors:", terms + names)
