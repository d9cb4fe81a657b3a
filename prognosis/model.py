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
class ChainLink:
    """P(covariate = level | inputs): a multinomial logistic model, the first level its baseline category.

    ``coef`` has one row per other level and an intercept followed by one column per input term.
    """

    name: str
    levels: tuple[str, ...]
    inputs: tuple[str, ...]
    coef: np.ndarray

    def log_probabilities(self, x: np.ndarray) -> np.ndarray:
        """log P(level | x) for rows of input terms ``x`` (n, len(inputs)): shape (n, len(levels))."""
        eta = np.zeros((x.shape[0], len(self.levels)))
        eta[:, 1:] = self.coef[:, 0] + x @ self.coef[:, 1:].T
        return eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)


@dataclass(frozen=True, eq=False)
class UnknownsModel:
    """The training cohort's distribution of the optional covariates given the patient's baseline inputs, as a
    chain of regressions P(o_1 | r) P(o_2 | r, o_1) ... (r: the required covariates; never the treatment).

    Scoring averages over the unknown optional inputs with P(unknown | known) from this joint; a smooth model
    rather than a table of counts, so sparse combinations are smoothed and no cell of the cohort is disclosed.
    """

    links: tuple[ChainLink, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(link.name for link in self.links)


@dataclass(frozen=True, eq=False)
class Cohort:
    """Aggregates of the training cohort that the calculator needs; no patient-level rows.

    ``grade_modality[level][option]``: patients with that level of MODALITY_WITHIN treated with that option, at the
    scale of the evidence (for "few similar patients"); ``unknowns``: for averaging over unknown inputs.
    """

    grade_modality: dict[str, dict[str, int]]
    unknowns: UnknownsModel


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
        return replace(
            self, covariance=self.covariance * factor, risk_sets=rs, variance_scale=self.variance_scale * factor
        )


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

    @property
    def evidence_patients(self) -> int | None:
        """For a model trained on a synthetic registry: the size of the study it stands for (None otherwise)."""
        return self.card["data"].get("evidence_patients")
