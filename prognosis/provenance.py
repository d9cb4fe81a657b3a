"""Where the served model's numbers come from, for every page and answer: a synthetic model, a model updated from a
synthetic one that keeps its hazard ratios ("synthetic-derived"), or registry data.

The banner, the result page, the patient view, the model card and the API all ask :func:`provenance` rather than
reading ``data.source`` themselves, so that an update of the synthetic model (``python -m training update``; its
``data.source`` is ``registry``) carries the synthetic notice everywhere a synthetic model does. Pure functions of
the model card; no Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prognosis import notices
from prognosis.covariates import ENDPOINTS, join

SYNTHETIC = "synthetic"
# The update methods that keep the base model's hazard ratios (only ``refit`` re-estimates them freely).
REFIT = "refit"
# What each update method re-estimated on the registry, in words (docs/retraining.md, section 2).
METHOD_WORDS = {
    "original": "nothing re-estimated (the base model as it is)",
    "baseline": "the baseline hazard re-estimated",
    "recalibration": "the baseline hazard and one calibration slope re-estimated",
    "refit": "every coefficient re-estimated",
}


@dataclass(frozen=True)
class Provenance:
    """``synthetic``: the model itself was trained on a synthetic registry; ``derived``: updated from a synthetic
    model while keeping (some of) its hazard ratios; ``notice``: what the banner and the answers say then (None for
    registry evidence); ``base_version`` and ``updates`` (endpoint -> method) for an updated model."""

    synthetic: bool
    derived: bool
    notice: str | None
    base_version: str | None = None
    base_source: str | None = None
    updates: dict[str, str] = field(default_factory=dict)

    @property
    def synthetic_derived(self) -> bool:
        """Whether this prediction rests on synthetic hazard ratios (the model's own or its base's)."""
        return self.synthetic or self.derived

    @property
    def updated(self) -> bool:
        return self.base_version is not None

    def update_text(self) -> str:
        """'Updated from model X (synthetic data) on registry data: hepatic progression-free survival: the baseline
        hazard re-estimated; overall survival: …' (empty for a model that was not updated)."""
        if not self.updated:
            return ""
        source = f" ({self.base_source} data)" if self.base_source else ""
        methods = "; ".join(
            f"{_label(name)}: {METHOD_WORDS.get(method, method)}" for name, method in self.updates.items()
        )
        return f"Updated from model {self.base_version}{source}" + (f" — {methods}" if methods else "") + "."


def _label(endpoint: str) -> str:
    spec = ENDPOINTS.get(endpoint)
    return spec.label.lower() if spec is not None else endpoint


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def updates_of(card: Mapping[str, Any]) -> dict[str, str]:
    """Endpoint -> update method, for the endpoints of an updated model's card."""
    out = {}
    for name, endpoint in _mapping(card.get("endpoints")).items():
        method = _mapping(_mapping(endpoint).get("update")).get("method")
        if isinstance(method, str):
            out[name] = method
    return out


def kept_hazard_ratios(card: Mapping[str, Any]) -> list[str]:
    """The endpoints of an updated model whose hazard ratios are still the base model's (method not refit)."""
    return [name for name, method in updates_of(card).items() if method != REFIT]


def derived_notice(base_version: str, kept: list[str], evidence_patients: int | None) -> str:
    """The notice of a model updated from a synthetic one that keeps its hazard ratios."""
    size = (
        f" (its uncertainty scaled to the {evidence_patients} patients of the original study)"
        if evidence_patients
        else ""
    )
    return (
        f"The hazard ratios of {join([_label(name) for name in kept])} are those of the base model "
        f"{base_version}, which was trained on a SYNTHETIC registry generated to reproduce the published estimates "
        f"of the original study{size}, not on patient data; only the baseline hazard or a calibration slope was "
        "re-estimated on registry data. Not for clinical decisions before refitting on registry data."
    )


def provenance(card: Mapping[str, Any] | None) -> Provenance:
    """The provenance of the model whose card is ``card`` (None: no model loaded, nothing to say)."""
    if not card:
        return Provenance(False, False, None)
    data = _mapping(card.get("data"))
    base = _mapping(card.get("base_model"))
    updates = updates_of(card)
    base_version = base.get("version") or next(
        (
            u.get("base_version")
            for u in (_mapping(_mapping(e).get("update")) for e in _mapping(card.get("endpoints")).values())
            if u.get("base_version")
        ),
        None,
    )
    base_source = base.get("data_source") if isinstance(base.get("data_source"), str) else None
    if data.get("source") == SYNTHETIC:
        return Provenance(
            True, False, notices.synthetic_notice(data.get("evidence_patients")), base_version, base_source, updates
        )
    kept = kept_hazard_ratios(card)
    if base_source == SYNTHETIC and kept:
        return Provenance(
            False,
            True,
            derived_notice(str(base_version), kept, base.get("evidence_patients")),
            base_version,
            base_source,
            updates,
        )
    return Provenance(False, False, None, base_version, base_source, updates)
