"""The app with scoring taken out, for the API benchmark's floor: ``POST /api/v1/predict`` parses, checks, encodes
and sends an answer as the real route does, but the answer is one fixed prediction of the shipped size instead of
the patient's (``gunicorn ... 'benchmarks.api_floor:create_app()'``). What it measures is what no scoring speed-up
can remove. Never served: benchmark use only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from calculator import api
from calculator import create_app as create_calculator
from calculator.model_store import get_model
from prognosis import covariates, scoring
from prognosis.model import Model

# The fixed answer's patient: every required input at its reference level, every optional input unknown.
FIXED_PATIENT = {cov.name: cov.reference if cov.required else None for cov in covariates.COVARIATES}


class _FixedScoring:
    """Stands in for ``prognosis.scoring`` in ``calculator.api``: ``predict`` answers the first prediction it made,
    with the request's own (checked) inputs; everything else is the module's."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(scoring, name)

    def predict(self, model: Model, patient: Mapping[str, str | None], **options: Any) -> dict[str, Any]:
        if self.answer is None:
            self.answer = scoring.predict(model, FIXED_PATIENT)
        return {**self.answer, "inputs": scoring.validate_patient(patient)}


def create_app() -> Flask:
    app = create_calculator()
    with app.app_context():
        get_model()  # fail here, not on the first request, if the model does not load
    api.scoring = _FixedScoring()  # type: ignore[assignment]
    return app
