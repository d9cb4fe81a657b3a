"""The pages: the form, the result (its URL is the permalink), the model card, and health probes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from calculator import charts
from prognosis import scoring
from prognosis.covariates import COVARIATES, ENDPOINTS, MODALITY, OPTIONS, TUMOR_BURDEN, term_label
from calculator.forms import PatientForm
from calculator.model_store import ModelLoadError, get_model
from prognosis.model import Model
from prognosis.store import verify_directory

bp = Blueprint("views", __name__)

SENTENCE_MONTHS = 24.0  # the horizon of the plain-language sentences
TABLE_STEP_MONTHS = 6.0  # rows of the data table behind each chart, up to 20 years (rows past follow-up are dropped)
TABLE_MONTHS = tuple(TABLE_STEP_MONTHS * k for k in range(1, 41))


def current_model() -> Model | None:
    """The served model, or None when it cannot be loaded (pages still render, without predictions)."""
    try:
        return get_model()
    except Exception as exc:  # a page, even an error page, must render whatever is wrong with the artifact
        current_app.logger.error("model not available: %s: %s", type(exc).__name__, exc)
        return None


@bp.app_context_processor
def inject_globals() -> dict[str, Any]:
    return {"model": current_model(), "endpoints": ENDPOINTS, "options": OPTIONS, "modality": MODALITY}


@bp.route("/", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    """The form; a valid POST redirects to the result's permalink."""
    if request.method == "POST":
        form = PatientForm()
        if form.validate():
            return redirect(url_for(".result", **form.query()), code=303)
        # A form with messages is an ordinary page (200); a malformed permalink, below, is a bad request.
        return render_template("calculator.html", form=form)
    # Query parameters ("change inputs" from a result) prefill the form without judging it.
    return render_template("calculator.html", form=PatientForm(formdata=request.args or None))


@bp.get("/result")
def result() -> ResponseReturnValue:
    """The prediction for the patient in the query string."""
    form = PatientForm(formdata=request.args)
    if not form.validate():
        return render_template("calculator.html", form=form), 400
    try:
        model = get_model()
    except ModelLoadError:
        abort(503)
    patient = form.patient()
    # Returned curves are thinned (exact only at their kept times), so the data tables ask scoring for exact
    # values on a regular grid instead of reading them off the curves.
    prediction = scoring.predict(model, patient, table_months=TABLE_MONTHS)
    survival_charts = {ep: charts.survival_chart(prediction["predictions"][ep], OPTIONS) for ep in ENDPOINTS}
    return render_template(
        "result.html",
        form=form,
        prediction=prediction,
        charts=survival_charts,
        chart_data={ep: chart_data(prediction["predictions"][ep], chart) for ep, chart in survival_charts.items()},
        sentences=sentences(prediction),
        inputs=described_inputs(form, prediction),
        query=form.query(),
    )


@bp.get("/model")
def model_card() -> ResponseReturnValue:
    """The full model card (TRIPOD+AI items), with its figures drawn on the server (calculator/card_figures.py)."""
    from calculator.card_figures import card_figures  # local: keeps this edit to the one route

    try:
        model = get_model()
    except ModelLoadError:
        abort(503)
    return render_template("model.html", card=model.card, loaded=model, figures=card_figures(model.card))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


# Per process: model directory -> (manifest digest, monotonic time) of the last re-verification that passed.
_reverified: dict[Path, tuple[str, float]] = {}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the model is loaded, and its files on disk still verify against the digests it was loaded with.

    A worker keeps serving the model it verified when it loaded it, whatever happens on disk later; but if the
    files no longer verify, a restarted worker could not load them, so this instance says it is not ready (and a
    load balancer takes it out of rotation) until they are repaired. Failures are re-checked on every probe, so
    recovery is seen at once; a pass is trusted for READY_RECHECK_SECONDS, to keep the probe cheap.
    """
    try:
        model = get_model()
    except Exception as exc:  # readiness must answer whatever the failure
        return _not_ready(f"the model cannot be loaded: {type(exc).__name__}: {exc}")
    try:
        _reverify(model)
    except Exception as exc:
        return _not_ready(f"the served model's files no longer verify ({type(exc).__name__}: {exc}); this worker "
                          f"still serves version {model.version}, verified when it was loaded, but a restarted "
                          "worker could not load it", serving=model.version)
    return jsonify({"status": "ready", "model_version": model.version})


def _not_ready(reason: str, **extra: str) -> ResponseReturnValue:
    current_app.logger.warning("not ready: %s", reason)
    return jsonify({"status": "not ready", "reason": reason, **extra}), 503


def _reverify(model: Model) -> None:
    """Hash the model's files again (as at load); raise ModelLoadError when they changed or cannot be read."""
    now = time.monotonic()
    passed = _reverified.get(model.directory)
    if passed and passed[0] == model.sha256 and now - passed[1] < current_app.config["READY_RECHECK_SECONDS"]:
        return
    _reverified.pop(model.directory, None)
    digest = verify_directory(model.directory)
    if digest != model.sha256:
        raise ModelLoadError(f"{model.directory} changed while it was being checked; try again")
    _reverified[model.directory] = (digest, now)


# --- what the result page shows -----------------------------------------------------------------------------

def chart_data(curves: dict[str, dict], chart: charts.Chart) -> dict[str, Any]:
    """The JSON data island the page script reads for values on hover."""
    keys = ("times_months", "survival", "ci_lower", "ci_upper")
    return {"geometry": chart.geometry(), "options": list(OPTIONS),
            "curves": {option: {key: curves[option][key] for key in keys} for option in OPTIONS}}


def sentences(prediction: dict) -> dict[str, list[str]]:
    """One plain-language sentence per endpoint and option, at SENTENCE_MONTHS."""
    years = f"{SENTENCE_MONTHS / 12:g} years"
    out: dict[str, list[str]] = {}
    for name, endpoint in ENDPOINTS.items():
        out[name] = []
        for option in OPTIONS:
            landmarks = prediction["predictions"][name][option]["landmarks"]
            point = next((p for p in landmarks if p["months"] == SENTENCE_MONTHS), None)
            if point is None or point["survival"] is None:
                out[name].append(f"For {option}, {endpoint.label.lower()} at {years} cannot be estimated: it lies "
                                 "beyond the follow-up of the training data.")
                continue
            n, low, high = (round(100 * point[k]) for k in ("survival", "ci_lower", "ci_upper"))
            out[name].append(f"Of 100 patients like this treated with {option}, about {n} "
                             f"{'is' if n == 1 else 'are'} expected to be {endpoint.free_of} at {years} "
                             f"(95% interval {low}–{high}).")
    return out


def described_inputs(form: PatientForm, prediction: dict) -> list[tuple[str, str]]:
    """(label, value) of each input as the model understood it; the warnings say how unknowns were handled."""
    rows = []
    pct = form.burden_pct()
    for cov in COVARIATES:
        level = prediction["inputs"][cov.name]
        if level is None:
            value = "Unknown"
        else:
            value = cov.label_of(level)
            if cov is TUMOR_BURDEN and pct is not None:
                value += f" (from {pct:g}%)"
        rows.append((cov.label, value))
    return rows


# --- number formats used by the templates -------------------------------------------------------------------

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


@bp.app_template_filter()
def pct(value: float | None) -> str:
    """0.456 → '46%'; None → 'n.e.' (not estimable)."""
    return "n.e." if _missing(value) else f"{100 * value:.0f}%"


@bp.app_template_filter()
def survival_ci(point: dict) -> str:
    """A landmark as '46% (38–53)'."""
    if _missing(point.get("survival")):
        return "not estimable"
    return f"{pct(point['survival'])} ({pct(point['ci_lower']).rstrip('%')}–{pct(point['ci_upper']).rstrip('%')})"


@bp.app_template_filter()
def months_ci(value: dict, missing: str = "not estimable", missing_bound: str = "n.e.") -> str:
    """Months with an interval, as '23.4 (18.0–30.2)'; for a median pass 'not reached', 'n.r.'."""
    def one(x: float | None) -> str:
        return missing_bound if _missing(x) else f"{x:.1f}"
    if _missing(value.get("estimate")):
        return missing
    return f"{one(value['estimate'])} ({one(value['ci_lower'])}–{one(value['ci_upper'])})"


@bp.app_template_filter()
def difference_ci(value: dict, scale: float = 100.0, digits: int = 0) -> str:
    """A difference as '+5 (−3 to +13)'; scale 100 turns probabilities into percentage points."""
    if _missing(value.get("estimate")):
        return "not estimable"

    def one(x: float | None) -> str:
        if _missing(x):
            return "n.e."
        rounded = round(scale * x, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
        return f"{rounded:.{digits}f}" if rounded == 0 else f"{rounded:+.{digits}f}".replace("-", "−")
    return f"{one(value['estimate'])} ({one(value['ci_lower'])} to {one(value['ci_upper'])})"


@bp.app_template_filter()
def ratio(value: float | None) -> str:
    return "–" if _missing(value) else f"{value:.2f}"


@bp.app_template_filter()
def p_value(value: float | None) -> str:
    return "–" if _missing(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


@bp.app_template_global()
def label_of_term(row: dict) -> str:
    return row.get("label") or term_label(row["term"])
