"""The pages: the form, the result (its URL is the permalink), the model card, the options' stylesheet, probes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from calculator import api, api_docs, charts, patient_view
from calculator.errors import error_response
from calculator.forms import CONDITION, PatientForm, number_text, unit_of, with_unit
from calculator.model_store import ModelLoadError, get_model
from prognosis import notices, provenance, scoring
from prognosis.covariates import (
    BY_NAME,
    COVARIATES,
    DEFAULT_HORIZONS_MONTHS,
    ENDPOINTS,
    MODALITY,
    MODALITY_WITHIN,
    OPTIONS,
    join,
    options_text,
    term_label,
)
from prognosis.model import Model
from prognosis.store import verify_directory

bp = Blueprint("views", __name__)

SENTENCE_MONTHS = 24.0  # the horizon of the plain-language sentences (under a condition: the first landmark after it)
TABLE_STEP_MONTHS = 6.0  # rows of the data table behind each chart, up to 20 years (rows past follow-up are dropped)
TABLE_MONTHS = tuple(TABLE_STEP_MONTHS * k for k in range(1, 41))
# How the "few similar patients" warning begins (prognosis/notices.py): the page shows it apart, prominently.
FEW_SIMILAR_WARNING = "Few similar patients"
# The generated stylesheet never changes for a given URL (its digest is in it).
STYLESHEET_MAX_AGE = 365 * 24 * 3600


def current_model() -> Model | None:
    """The served model, or None when it cannot be loaded (pages still render, without predictions)."""
    try:
        return get_model()
    except Exception as exc:  # noqa: BLE001 (a page, even an error page, must render whatever is wrong)
        current_app.logger.error("model not available: %s: %s", type(exc).__name__, exc)
        return None


@bp.app_context_processor
def inject_globals() -> dict[str, Any]:
    model = current_model()
    return {
        "model": model,
        "provenance": provenance.provenance(model.card if model is not None else None),
        "endpoints": ENDPOINTS,
        "options": OPTIONS,
        "modality": MODALITY,
        "modality_within": MODALITY_WITHIN,
        "options_text": options_text,
        "join": join,
        "notices": notices,
        "option_labels": [MODALITY.label_of(option) for option in OPTIONS],
        "option_styles_digest": charts.OPTION_STYLESHEET_DIGEST,
    }


@bp.get("/styles/options.<digest>.css")
def option_styles(digest: str) -> ResponseReturnValue:
    """The options' colours and dash patterns, generated from the definitions (calculator/charts.py)."""
    if digest != charts.OPTION_STYLESHEET_DIGEST:  # a page from before the definitions changed
        return redirect(url_for(".option_styles", digest=charts.OPTION_STYLESHEET_DIGEST))
    response = current_app.response_class(charts.OPTION_STYLESHEET, mimetype="text/css")
    response.headers["Cache-Control"] = f"public, max-age={STYLESHEET_MAX_AGE}, immutable"
    return response


@bp.route("/", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    """The form; a valid POST redirects to the result's permalink."""
    if request.method == "POST":
        form = PatientForm()
        model = current_model()
        # The condition is judged against the model's follow-up too (without a model, the result page says so).
        if form.validate() and (model is None or form.check_condition(model)):
            # As url_for's **values (Any): mypy would match a dict[str, str] against its `_external: bool` too.
            query: dict[str, Any] = form.query()
            return redirect(url_for(".result", **query), code=303)
        # A form with messages is an ordinary page (200); a malformed permalink, below, is a bad request.
        return render_template("calculator.html", form=form)
    # Query parameters ("change inputs" from a result) prefill the form without judging it.
    return render_template("calculator.html", form=PatientForm(formdata=request.args or None))


@bp.get("/result")
def result() -> ResponseReturnValue:
    """The prediction for the patient in the query string."""
    form, model = valid_form()
    patient = form.patient()
    months = form.condition_months()
    # Returned curves are thinned (exact only at their kept times), so the data tables ask scoring for exact
    # values on a regular grid instead of reading them off the curves.
    prediction = scoring.predict(
        model, patient, horizons=result_horizons(months), table_months=TABLE_MONTHS, conditional_on_months=months
    )
    survival_charts = {
        ep: charts.survival_chart(prediction["predictions"][ep], OPTIONS, start=months or 0.0) for ep in ENDPOINTS
    }
    at = sentence_months(months)
    return render_template(
        "result.html",
        form=form,
        prediction=prediction,
        charts=survival_charts,
        chart_data={ep: chart_data(prediction["predictions"][ep], chart) for ep, chart in survival_charts.items()},
        tables={ep: data_table(prediction["predictions"][ep]) for ep in ENDPOINTS},
        sentences=sentences(prediction, at),
        difference_sentences=difference_sentences(prediction, at),
        warnings=sorted_warnings(prediction, model),
        few_similar=prediction["few_similar"],
        similar=similar_text(prediction, model),
        inputs=described_inputs(form, prediction),
        condition=condition_of(prediction),
        after=months,
        query=form.query(),
    )


def valid_form() -> tuple[PatientForm, Model]:
    """The form of the query string, validated, and the served model; aborts with the form and its messages (400)
    or 503."""
    form = PatientForm(formdata=request.args)
    if not form.validate():
        abort(current_app.make_response((render_template("calculator.html", form=form), 400)))
    try:
        model = get_model()
    except ModelLoadError:
        abort(503)
    if not form.check_condition(model):
        abort(current_app.make_response((render_template("calculator.html", form=form), 400)))
    return form, model


@bp.get("/patient")
def patient() -> ResponseReturnValue:
    """The view for the patient: the result's query plus ``years`` (one of patient_view.HORIZON_YEARS)."""
    form, model = valid_form()
    months = form.condition_months()
    # Under a condition, only the horizons after it (none: the page says so).
    offered = patient_view.horizon_years(months)
    choices = {str(years): years for years in offered}
    asked = request.args.get("years")
    years = choices.get(asked or str(patient_view.default_years(offered)))
    if years is None and offered:
        after = f" (after the {number_text(months)} months already passed)" if months else ""
        return error_response(
            400,
            "The time after treatment must be one of "
            f"{join([str(y) for y in offered or patient_view.HORIZON_YEARS], 'or')} "
            f"years{after}.",
        )
    prediction = scoring.predict(model, form.patient(), conditional_on_months=months)
    endpoint_views = patient_view.patient_view(prediction, years) if years is not None else []
    inputs = described_inputs(form, prediction, condition=False)  # the condition is said in plain words instead
    words = [label for label, _ in inputs] + [
        text
        for view in endpoint_views
        for text in (view.kept, view.lost, view.note, view.condition, *(o.label for o in view.options))
    ]
    return render_template(
        "patient.html",
        prediction=prediction,
        years=years,
        horizon_years=offered,
        condition=patient_view.condition_words(prediction),
        views=endpoint_views,
        inputs=inputs,
        unknown=[BY_NAME[name].label.lower() for name in prediction["unknown"]],
        query=form.query(),
        plain=patient_view,
        glossary=patient_view.glossary(words),
    )


@bp.get("/model")
def model_card() -> ResponseReturnValue:
    """The full model card (TRIPOD+AI items), with its figures drawn on the server (calculator/card_figures.py)."""
    from calculator.card_figures import card_figures  # local: keeps this edit to the one route

    try:
        model = get_model()
    except ModelLoadError:
        abort(503)
    return render_template(
        "model.html",
        card=model.card,
        loaded=model,
        figures=card_figures(model.card),
        origin=provenance.provenance(model.card),
    )


@bp.get("/api")
def api_page() -> ResponseReturnValue:
    """The API for people: the OpenAPI document as HTML, with an example of a real prediction (calculator/api_docs.py).

    Here rather than under /api/v1/, so that the page is not rate-limited as the API is and its errors are pages.
    """
    model, example = current_model(), None
    if model is not None:
        try:
            example = api_docs.example_for(model)
        except Exception as exc:  # noqa: BLE001 (the reference must render even when the example cannot be made)
            current_app.logger.error("API page: no example: %s: %s", type(exc).__name__, exc)
    return render_template(
        "api.html",
        page=api_docs.read_document(api.openapi_document()),
        example=example,
        abridged=api_docs.abridged_json,
        keep=api_docs.EXAMPLE_ARRAY_ITEMS,
        digits=api_docs.EXAMPLE_DIGITS,
    )


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
    except Exception as exc:  # noqa: BLE001 (readiness must answer whatever the failure)
        return _not_ready(f"the model cannot be loaded: {type(exc).__name__}: {exc}")
    try:
        _reverify(model)
    except Exception as exc:  # noqa: BLE001 (any failure to re-verify means not ready)
        return _not_ready(
            f"the served model's files no longer verify ({type(exc).__name__}: {exc}); this worker "
            f"still serves version {model.version}, verified when it was loaded, but a restarted "
            "worker could not load it",
            serving=model.version,
        )
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
    """The JSON data island the page script reads for values on hover (``start``: where the curves begin, the
    condition's months or 0)."""
    keys = ("times_months", "survival", "ci_lower", "ci_upper")
    return {
        "geometry": chart.geometry(),
        "options": list(OPTIONS),
        "start": chart.start,
        "curves": {option: {key: curves[option][key] for key in keys} for option in OPTIONS},
    }


def result_horizons(months: float | None) -> tuple[float, ...]:
    """The landmarks of the result page: the default ones, and under a condition past all of them the first whole
    year after it too, so that there is always a landmark after the condition."""
    if months is None or any(h > months for h in DEFAULT_HORIZONS_MONTHS):
        return DEFAULT_HORIZONS_MONTHS
    return (*DEFAULT_HORIZONS_MONTHS, 12.0 * (math.floor(months / 12.0) + 1))


def sentence_months(months: float | None) -> float:
    """The horizon of the sentences: SENTENCE_MONTHS, or under a condition at or after it the first landmark
    after the condition."""
    if months is None or months < SENTENCE_MONTHS:
        return SENTENCE_MONTHS
    return next(h for h in result_horizons(months) if h > months)


def months_text(months: float) -> str:
    return f"{months:g} month{'' if months == 1 else 's'}"


def condition_of(prediction: dict) -> list[tuple[Any, str]] | None:
    """Per endpoint what a conditional prediction assumes, in words (None: unconditional)."""
    condition = prediction.get("condition")
    if not condition:
        return None
    return [(ENDPOINTS[name], entry["text"]) for name, entry in condition.items()]


def data_table(curves: dict[str, dict]) -> list[tuple[float, list[dict]]]:
    """The rows of the data table behind a chart: each tabulated month at which some option is estimable, with
    every option's value there (under a condition, the months after it only)."""
    tables = [curves[option].get("table") or [] for option in OPTIONS]
    rows = []
    for points in zip(*tables, strict=True):
        if any(p["survival"] is not None for p in points):
            rows.append((points[0]["months"], list(points)))
    return rows


def sorted_warnings(prediction: dict, model: Model) -> dict[str, list[str]]:
    """Scoring's warnings by where the page shows them: ``few`` prominently at the top, ``other`` in the list.

    The observational caveat and the synthetic notice are left out: the page shows them in its caveat and its
    banner, which every page of a synthetic (or synthetic-derived) model carries.
    """
    shown_elsewhere = {notices.OBSERVATIONAL, provenance.provenance(model.card).notice}
    warnings = [w for w in prediction["warnings"] if w not in shown_elsewhere]
    # scoring's few_similar says whether there is such a warning; it is the one that begins with its heading.
    few = [w for w in warnings if w.startswith(FEW_SIMILAR_WARNING)] if prediction["few_similar"] else []
    # Under a heading of its own, the warning goes without its first words.
    headed = [_capitalized(w.removeprefix(FEW_SIMILAR_WARNING).lstrip(": ")) for w in few]
    return {"few": headed, "other": [w for w in warnings if w not in few]}


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def similar_text(prediction: dict, model: Model) -> str:
    """Who the estimates rest on: patients like this one (same level of MODALITY_WITHIN) by option."""
    level = prediction["inputs"][MODALITY_WITHIN.name]
    scale = (
        f", counted at the size of the original study ({model.evidence_patients} patients)"
        if model.evidence_patients
        else ""
    )
    counts = join(
        [
            f"{notices.patients_text(count)} received {option}"
            for option, count in prediction["similar_patients"].items()
        ]
    )
    return (
        f"Among patients with {MODALITY_WITHIN.label_of(level).lower()} in the data behind this model{scale}, {counts}."
    )


def years_text(months: float) -> str:
    return f"{months / 12:g} year{'' if months == 12 else 's'}" if months % 12 == 0 else f"{months:g} months"


def _in_100(p: float) -> tuple[str, str]:
    """A probability as a count out of 100 patients, and which end it rounds to ('low': fewer than 1, 'high': more
    than 99; '' otherwise), so that no text shows a rounded 0 or 100 that is not."""
    count = round(100 * p)
    if count <= 0:
        return "fewer than 1", "low"
    if count >= 100 and p < 1.0:
        return "more than 99", "high"
    return f"{count}", "high" if count >= 100 else ""


def interval_in_100(lower: float, upper: float, per: str = "") -> str:
    """A 95% interval out of 100 patients that never reads '0–0': 'up to 3', '97 or more', 'below 1' at the ends."""
    (low, low_end), (high, high_end) = _in_100(lower), _in_100(upper)
    if high_end == "low":
        return f"95% interval: below 1{per}"
    if low_end == "high":
        return f"95% interval: above 99{per}"
    if low_end == "low" and high_end == "high":
        return f"95% interval: from fewer than 1 to more than 99{per}"
    if low_end == "low":
        return f"95% interval: up to {high}{per}"
    if high_end == "high":
        return f"95% interval: {low}{per} or more"
    return f"95% interval {low}–{high}{per}"


def survival_sentence(option: str, endpoint: Any, point: dict, years: str, after: float | None = None) -> str:
    """'Of 100 patients with these characteristics who received SIRT in the data behind this model, about 46 were
    free of hepatic progression at 2 years (95% interval 38–53).' At the ends: 'fewer than 1 in 100'. Under a
    condition (``after`` months already free of the event): 'Of 100 patients … who received SIRT in the data behind
    this model and were still free of hepatic progression at 12 months, about 60 were still free of hepatic
    progression at 2 years (…)'."""
    who = f"patients with these characteristics who received {option} in the data behind this model"
    still = ""
    if after is not None:
        who += f" and were still {endpoint.free_of} at {months_text(after)}"
        still = "still "
    count, end = _in_100(point["survival"])
    if end:
        interval = interval_in_100(point["ci_lower"], point["ci_upper"], " in 100")
        return f"Of {who}, {count} in 100 were {still}{endpoint.free_of} at {years} ({interval})."
    verb = "was" if count == "1" else "were"
    interval = interval_in_100(point["ci_lower"], point["ci_upper"])
    return f"Of 100 {who}, about {count} {verb} {still}{endpoint.free_of} at {years} ({interval})."


def _condition_months(prediction: dict, endpoint: str) -> float | None:
    condition = prediction.get("condition")
    return condition[endpoint]["months"] if condition else None


def sentences(prediction: dict, months: float = SENTENCE_MONTHS) -> dict[str, list[str]]:
    """One plain-language sentence per endpoint and option, at ``months``, saying whom the numbers are about (under
    a condition: patients still free of the event then)."""
    years = years_text(months)
    out: dict[str, list[str]] = {}
    for name, endpoint in ENDPOINTS.items():
        out[name] = []
        after = _condition_months(prediction, name)
        for option in OPTIONS:
            landmarks = prediction["predictions"][name][option]["landmarks"]
            point = next((p for p in landmarks if p["months"] == months), None)
            if point is None or point["survival"] is None:
                out[name].append(
                    f"For {option}, {endpoint.label.lower()} at {years} cannot be estimated: it lies "
                    "beyond the follow-up of the data behind this model."
                )
                continue
            out[name].append(survival_sentence(option, endpoint, point, years, after))
    return out


def difference_sentences(prediction: dict, months: float = SENTENCE_MONTHS) -> dict[str, list[str]]:
    """Each comparison at ``months``, in words that compare patients, not treatments: 'higher / lower in
    patients who received …' (under a condition: among those still free of the event then)."""
    years = years_text(months)
    out: dict[str, list[str]] = {}
    for name, endpoint in ENDPOINTS.items():
        out[name] = []
        after = _condition_months(prediction, name)
        for contrast in prediction["contrasts"][name]:
            d = next((d for d in contrast["survival_difference"] if d["months"] == months), None)
            if d is None or d["estimate"] is None:
                continue
            a, b = contrast["a"], contrast["b"]
            interval = f"95% interval {signed(d['ci_lower'])} to {signed(d['ci_upper'])} points"
            points = round(100 * abs(d["estimate"]))
            direction = "higher" if d["estimate"] > 0 else "lower"
            difference = f"{points} percentage point{'' if points == 1 else 's'} {direction}"
            if after is not None:
                among = (
                    f"At {years}, among patients with these characteristics who were still {endpoint.free_of} "
                    f"at {months_text(after)}, the share still {endpoint.free_of} was"
                )
                compared = (
                    f"about the same in those who received {a} as"
                    if points == 0
                    else f"{difference} in those who received {a} than"
                )
                out[name].append(f"{among} {compared} in those who received {b} ({interval}).")
                continue
            if points == 0:
                out[name].append(
                    f"At {years}, the share {endpoint.free_of} was about the same in patients with these "
                    f"characteristics who received {a} as in those who received {b} ({interval})."
                )
                continue
            out[name].append(
                f"At {years}, the share {endpoint.free_of} was {difference} in patients with these "
                f"characteristics who received {a} than in those who received {b} ({interval})."
            )
    return out


def described_inputs(form: PatientForm, prediction: dict, condition: bool = True) -> list[tuple[str, str]]:
    """(label, value) of each input as the model understood it; the warnings say how unknowns were handled. With
    ``condition``, the months already free of the event too (if given)."""
    rows = []
    for cov in COVARIATES:
        level = prediction["inputs"][cov.name]
        if level is None:
            value = "Unknown"
        elif cov.numeric:
            value = with_unit(float(level), unit_of(cov))
        else:
            value = cov.label_of(level)
            entered = form.entered(cov)
            if entered is not None and cov.alternative is not None:
                value += f" (from {with_unit(entered, unit_of(cov.alternative))})"
        rows.append((cov.label, value))
    months = form.condition_months()
    if condition and months is not None:
        rows.append((form[CONDITION].label.text, months_text(months)))
    return rows


# --- number formats used by the templates -------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return _finite(value) is None


def _finite(value: Any) -> float | None:
    """A number as a finite float; None when missing or not finite (not estimable)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@bp.app_template_filter()
def pct(value: float | None) -> str:
    """0.456 → '46%'; 0.003 → '<1%', 0.997 → '>99%' (never a rounded 0% or 100% that is not); None → 'n.e.'."""
    x = _finite(value)
    if x is None:
        return "n.e."
    text = f"{100 * x:.0f}"
    if text == "0" and x > 0.0:
        return "<1%"
    if text == "100" and x < 1.0:
        return ">99%"
    return f"{text}%"


@bp.app_template_filter("number")
def number(value: float) -> str:
    """A number entered in the form, as typed without trailing zeros: 30.0 → '30'."""
    return number_text(value)


@bp.app_template_filter()
def survival_ci(point: dict) -> str:
    """A landmark as '46% (38–53)'."""
    if _missing(point.get("survival")):
        return "not estimable"
    return f"{pct(point['survival'])} ({pct(point['ci_lower']).rstrip('%')}–{pct(point['ci_upper']).rstrip('%')})"


@bp.app_template_filter()
def months_ci(value: dict, missing: str = "not estimable", missing_bound: str = "n.e.") -> str:
    """Months with an interval, as '23.4 (18.0–30.2)'; for a median pass 'not reached', 'n.r.'."""

    def one(v: float | None) -> str:
        x = _finite(v)
        return missing_bound if x is None else f"{x:.1f}"

    if _missing(value.get("estimate")):
        return missing
    return f"{one(value['estimate'])} ({one(value['ci_lower'])}–{one(value['ci_upper'])})"


@bp.app_template_filter()
def difference_ci(value: dict, scale: float = 100.0, digits: int = 0) -> str:
    """A difference as '+5 (−3 to +13)'; scale 100 turns probabilities into percentage points."""
    if _missing(value.get("estimate")):
        return "not estimable"

    def one(v: float | None) -> str:
        x = _finite(v)
        return "n.e." if x is None else signed(x, scale, digits)

    return f"{one(value['estimate'])} ({one(value['ci_lower'])} to {one(value['ci_upper'])})"


def signed(x: float, scale: float = 100.0, digits: int = 0) -> str:
    """A difference with its sign, as '+5' or '−3' (a typographic minus); '0' when it rounds to zero."""
    rounded = round(scale * x, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{rounded:.{digits}f}" if rounded == 0 else f"{rounded:+.{digits}f}".replace("-", "−")


@bp.app_template_filter()
def ratio(value: float | None) -> str:
    x = _finite(value)
    return "–" if x is None else f"{x:.2f}"


@bp.app_template_filter()
def p_value(value: float | None) -> str:
    x = _finite(value)
    return "–" if x is None else ("< 0.001" if x < 0.001 else f"{x:.3f}")


@bp.app_template_global()
def label_of_term(row: dict) -> str:
    return row.get("label") or term_label(row["term"])
