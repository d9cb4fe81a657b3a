"""Registries with chosen truths for tests: canonical schema, proportional hazards, any coefficients."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prognosis import covariates


def random_registry(
    n: int,
    seed: int,
    *,
    optional: tuple[str, ...] = covariates.OPTIONAL,
    coef_scale: float = 0.5,
    round_to: float | None = None,
) -> pd.DataFrame:
    """A registry whose true log-HRs are drawn at random (not the published ones).

    Times are exponential with a shared frailty-free PH truth per endpoint; ``round_to`` rounds times up to a grid
    to create tied event times, as real registries recorded in days or months have.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"patient_id": [f"T{i:05d}" for i in range(n)]})
    for cov in (
        covariates.WHO_GRADE,
        covariates.TUMOR_BURDEN,
        covariates.PRIOR_RESECTION_ABLATION,
        covariates.MODALITY,
        *(covariates.BY_NAME[o] for o in optional),
    ):
        p = rng.dirichlet(np.full(len(cov.levels), 3.0))
        frame[cov.name] = rng.choice(np.array(cov.levels, dtype=object), size=n, p=p)
    terms = covariates.term_ids(optional)
    x = covariates.design_matrix(frame, terms)
    hpfs = hpfs_time = None
    for endpoint, base in (("os", 0.02), ("hpfs", 0.05)):
        beta = rng.normal(0.0, coef_scale, size=len(terms))
        t = rng.exponential(1.0 / (base * np.exp(x @ beta)))
        c = rng.uniform(1.0, 120.0, size=n)
        if round_to:
            t, c = np.ceil(t / round_to) * round_to, np.ceil(c / round_to) * round_to
        observed = np.minimum(t, c)
        event = (t <= c).astype(int)
        if endpoint == "hpfs":
            # Progression cannot be observed after the patient's last follow-up or death.
            late = observed > frame["os_months"].to_numpy()
            observed = np.where(late, frame["os_months"].to_numpy(), observed)
            event = np.where(late, 0, event)
            hpfs, hpfs_time = event, observed
        else:
            frame["os_months"], frame["os_event"] = observed, event
    frame["hpfs_months"], frame["hpfs_event"] = hpfs_time, hpfs
    return frame


def with_missing(frame: pd.DataFrame, seed: int, intercepts: dict[str, float]) -> pd.DataFrame:
    """The optional covariates ``intercepts`` names made missing at random given the outcome and grade: more often
    after an early death, and in grade 3."""
    rng = np.random.default_rng(seed)
    died_early = (frame["os_event"].to_numpy() == 1) & (frame["os_months"].to_numpy() < 24)
    grade3 = frame["who_grade"].astype(str).to_numpy() == "3"
    out = frame.astype(dict.fromkeys(covariates.OPTIONAL, object))
    for name, intercept in intercepts.items():
        linear = intercept + 1.2 * died_early + 0.8 * grade3
        out.loc[rng.random(len(out)) < 1 / (1 + np.exp(-linear)), name] = None
    return out
