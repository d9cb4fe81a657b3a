"""Fit the model of the optional covariates given the baseline inputs (``prognosis.model.UnknownsModel``).

When a user leaves an optional input unknown, the calculator averages its prediction over the values that input
takes in training patients *like this one*, i.e. over P(unknown | known) — not over the whole cohort, which would
mislead wherever an optional input depends on a required one (cytotoxic therapy is far more common in grade 3).
The joint distribution is a chain of multinomial logistic regressions, one per optional covariate in the
definitions' order: P(o_1 | r) P(o_2 | r, o_1) ..., r the required covariates' terms (never the treatment, which is
hypothetical at prediction time). Main effects only, with a ridge penalty (a normal prior with SD 1 on every log
odds ratio, none on the intercepts): sparse combinations are smoothed towards the others, and because only
coefficients are stored, no count of any cell of the cohort — however small — is disclosed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from prognosis import covariates
from prognosis.model import ChainLink, UnknownsModel

# Ridge penalty on log odds ratios: lambda = 1 / prior variance, prior SD 1.
RIDGE = 1.0


def _fit_link(x: np.ndarray, y: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """Ridge multinomial logistic regression; returns coefficients (k - 1, 1 + p), intercept first."""
    n, p = x.shape
    design = np.column_stack([np.ones(n), x])
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    penalty = np.full(1 + p, RIDGE)
    penalty[0] = 0.0

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        beta = flat.reshape(k - 1, 1 + p)
        eta = np.zeros((n, k))
        eta[:, 1:] = design @ beta.T
        log_norm = np.logaddexp.reduce(eta, axis=1)
        loglik = weights @ (np.sum(onehot * eta, axis=1) - log_norm)
        prob = np.exp(eta - log_norm[:, None])
        grad = -((onehot - prob)[:, 1:] * weights[:, None]).T @ design + beta * penalty
        return float(-loglik + 0.5 * np.sum(penalty * beta**2)), grad.ravel()

    start = np.zeros((k - 1) * (1 + p))
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10})
    return result.x.reshape(k - 1, 1 + p)


def fit_unknowns_model(
    frame: pd.DataFrame, optional: tuple[str, ...], *, weights: np.ndarray | None = None, given_required: bool = True
) -> UnknownsModel:
    """The chain P(o_1 | r) P(o_2 | r, o_1) ... over the optional covariates ``optional`` recorded in ``frame``.

    ``weights`` weight the rows (counts of aggregated rows); ``given_required=False`` leaves the required
    covariates out of the inputs (a cohort known only by its optional covariates' patterns).
    """
    weights = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    inputs = (
        [t for name in covariates.REQUIRED for t in covariates.covariate_terms(covariates.BY_NAME[name])]
        if given_required
        else []
    )
    links = []
    for name in covariates.OPTIONAL:
        if name not in optional:
            continue
        cov = covariates.BY_NAME[name]
        y = pd.Categorical(frame[name].astype(str), categories=cov.levels).codes
        if (y < 0).any():
            raise ValueError(f"{name}: values outside its levels")
        x = covariates.design_matrix(frame, inputs) if inputs else np.zeros((len(frame), 0))
        links.append(ChainLink(name, cov.levels, tuple(inputs), _fit_link(x, y, len(cov.levels), weights)))
        inputs = inputs + covariates.covariate_terms(cov)
    return UnknownsModel(tuple(links))
