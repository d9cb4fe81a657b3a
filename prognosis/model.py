"""The fitted model as typed values: what training writes, what the app reads and what scoring uses.

Arrays and plain values only (no estimator objects), so a model version is stored as ``.npz`` arrays plus JSON and
loaded without unpickling anything (``prognosis.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class RiskSets:
    """Cumulative Breslow quantities at each distinct event time t_i (Therneau & Grambsch 2000, section 10.2).

    With S0_i the risk-set sum of exp(x'beta) and x̄_i the risk-weighted mean covariate: ``cum_hazard`` = sum d/S0,
    ``cum_var_hazard`` = sum d/S0², ``cum_xbar_hazard`` = sum x̄ d/S0 (shape (T, p)). Everything scoring needs for
    curves and their intervals.
    """

    event_times: np.ndarray
    events: np.ndarray
    at_risk: np.ndarray
    cum_hazard: np.ndarray
    cum_var_hazard: np.ndarray
    cum_xbar_hazard: np.ndarray

    @property
    def last_event_time(self) -> float:
        return float(self.event_times[-1])


@dataclass(frozen=True, eq=False)
class Patterns:
    """The combinations of the optional covariates seen in the training cohort, with their counts.

    ``values`` has one row per combination and one column per name in ``names`` (canonical levels).
    """

    names: tuple[str, ...]
    values: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True, eq=False)
class Cohort:
    """Aggregate counts of the training cohort that the calculator needs; no patient-level rows.

    ``grade_modality[grade][option]``: patients of that grade treated with that option (for "few similar patients");
    ``patterns``: for averaging a prediction over what a user leaves unknown.
    """

    grade_modality: dict[str, dict[str, int]]
    patterns: Patterns


@dataclass(frozen=True, eq=False)
class EndpointModel:
    """One endpoint's Cox model: terms, coefficients, their covariance, the Breslow risk sets and the cohort.

    ``covariance`` and ``risk_sets.cum_var_hazard`` are the variances served, i.e. already scaled to the evidence the
    data stand for (``variance_scale``, 1 for a registry; see ``evidence_scaled``).
    """

    name: str
    terms: tuple[str, ...]
    coef: np.ndarray
    covariance: np.ndarray
    risk_sets: RiskSets
    cohort: Cohort
    variance_scale: float = 1.0

    def linear_predictor(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef

    def evidence_scaled(self, factor: float) -> EndpointModel:
        """The same model with every variance multiplied by ``factor`` (case weights 1/factor: point estimates
        unchanged, correlations kept)."""
        rs = replace(self.risk_sets, cum_var_hazard=self.risk_sets.cum_var_hazard * factor)
        return replace(self, covariance=self.covariance * factor, risk_sets=rs,
                       variance_scale=self.variance_scale * factor)


@dataclass(frozen=True, eq=False)
class Model:
    """One verified model version: its endpoints, its card, and where and what it is (manifest digest)."""

    directory: Path
    sha256: str
    card: dict = field(repr=False)
    endpoints: dict[str, EndpointModel] = field(repr=False)

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def data_source(self) -> str:
        return self.card["data"]["source"]

    @property
    def created_at(self) -> str:
        return self.card["created_at"]
