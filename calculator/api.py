"""The JSON API: ``POST /api/v1/predict`` (one patient), ``POST /api/v1/predict/batch`` (many patients, landmark
survival and medians) and their OpenAPI document, all derived from the definitions (``prognosis.covariates``):
covariates and their kinds, options, endpoints."""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, current_app, has_app_context, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from calculator import body_limit, rate_limit
from calculator.config import Config
from calculator.model_store import ModelLoadError, get_model
from prognosis import batch, notices, provenance, scoring
from prognosis.covariates import (
    COVARIATES,
    DEFAULT_HORIZONS_MONTHS,
    ENDPOINTS,
    MODALITY_WITHIN,
    OPTIONS,
    REQUIRED,
    Covariate,
    join,
    options_text,
)
from prognosis.model import Model

bp = Blueprint("api", __name__, url_prefix="/api/v1")

HORIZONS = "horizons_months"
CONDITION = "conditional_on_months"
PATIENTS = "patients"
MAX_HORIZONS = 10
MAX_HORIZON_MONTHS = 240.0
COVARIATE_FIELDS = tuple(c.name for c in COVARIATES)
FIELDS = COVARIATE_FIELDS + (HORIZONS, CONDITION)
BATCH_FIELDS = (PATIENTS, HORIZONS, CONDITION)

Errors = list[dict[str, str]]


# --- what a covariate looks like in JSON --------------------------------------------------------------------


def json_type(cov: Covariate) -> str:
    """'number' for a numeric covariate, 'boolean' for a binary one, 'integer' for numeric levels (WHO grade),
    else 'string'."""
    if cov.numeric:
        return "number"
    if cov.binary:
        return "boolean"
    return "integer" if all(level.isdigit() for level in cov.levels) else "string"


def json_levels(cov: Covariate) -> list[Any]:
    """The values a covariate takes in JSON; for a numeric one, examples within its range (its bounds and middle)."""
    kind = json_type(cov)
    if kind == "number":
        bounds = [v for v in (cov.minimum, cov.maximum) if math.isfinite(v)]
        middle = [(cov.minimum + cov.maximum) / 2] if len(bounds) == 2 else []
        return sorted(set(bounds + middle)) or [0.0]
    if kind == "boolean":
        return [False, True]
    return [int(level) for level in cov.levels] if kind == "integer" else list(cov.levels)


def to_json_value(cov: Covariate, level: str | None) -> Any:
    """A canonical level as the API spells it (None stays None; a numeric covariate's value is a number)."""
    if level is None:
        return None
    if cov.numeric:
        return float(level)
    return json_levels(cov)[cov.levels.index(level)]


def _level(cov: Covariate, value: Any) -> str | None:
    """The canonical level of a JSON value, strictly typed: no bool for a grade, no 1 for true, no aliases; a
    numeric covariate takes a JSON number within its range."""
    kind = json_type(cov)
    if kind == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            return None
        return cov.canonical(number)
    ok = {
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "string": isinstance(value, str),
    }[kind]
    if not ok or value not in json_levels(cov):
        return None
    return cov.levels[json_levels(cov).index(value)]


def _range(cov: Covariate) -> str:
    bounds = [
        f"at least {cov.minimum:g}" if math.isfinite(cov.minimum) else "",
        f"at most {cov.maximum:g}" if math.isfinite(cov.maximum) else "",
    ]
    text = " and ".join(b for b in bounds if b)
    return text + (f" ({cov.unit})" if cov.unit else "")


def _expected(cov: Covariate) -> str:
    kind = json_type(cov)
    if kind == "number":
        text = "a number" + (f" {_range(cov)}" if _range(cov) else "")
    elif kind == "boolean":
        text = "true or false"
    else:
        text = "one of " + ", ".join(json.dumps(v) for v in json_levels(cov))
    return text if cov.required else text + ", or null if unknown"


def _quoted_hint(cov: Covariate, value: Any) -> str:
    # "3" for 3 or "true" for true reads as one of the levels in the message; say what is wrong with it.
    quoted = {json.dumps(v): v for v in json_levels(cov) if not isinstance(v, str)}
    if isinstance(value, str) and value.strip().lower() in quoted:
        return f" (got the string {json.dumps(value)}: send {json.dumps(quoted[value.strip().lower()])} without quotes)"
    return ""


# --- request parsing --------------------------------------------------------------------------------------------


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field[:80], "message": message}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two values silently; the client could not tell which one was scored.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def parse_body(data: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys. Raises ValueError (or RecursionError when absurdly deep)."""
    return json.loads(data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def _unknown_field(key: str, allowed: tuple[str, ...], elsewhere: tuple[str, ...] = ()) -> dict[str, str]:
    if key in elsewhere:
        return _error(key, f"unknown field in a patient: give {key} once for the whole batch, beside {PATIENTS}")
    hint = difflib.get_close_matches(key, allowed, n=1)
    return _error(
        key, "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else "; allowed: " + ", ".join(allowed))
    )


def parse_patient(
    body: Any, allowed: tuple[str, ...] = COVARIATE_FIELDS, elsewhere: tuple[str, ...] = ()
) -> tuple[dict[str, str | None], Errors]:
    """One patient's canonical covariates from a decoded JSON object, and any errors (the messages of the single
    route); keys outside ``allowed`` are unknown fields (``elsewhere``: those that belong beside the patients)."""
    if not isinstance(body, dict):
        return {}, [_error("body", "must be a JSON object")]
    errors = [_unknown_field(key, allowed, elsewhere) for key in body if key not in allowed]
    patient: dict[str, str | None] = {}
    for cov in COVARIATES:
        value = body.get(cov.name)
        level = None if value is None else _level(cov, value)
        if value is None and cov.required:
            errors.append(_error(cov.name, f"required: {_expected(cov)}"))
        elif value is not None and level is None:
            errors.append(_error(cov.name, f"must be {_expected(cov)}{_quoted_hint(cov, value)}"))
        patient[cov.name] = level
    return patient, errors


HORIZONS_MESSAGE = (
    f"must be a list of 1 to {MAX_HORIZONS} numbers of months, each greater than 0 and at most {MAX_HORIZON_MONTHS:g}"
)
CONDITION_MESSAGE = (
    "must be a number of months >= 0 (how long after the embolotherapy the patient is known to be "
    "still free of the event), or null for no condition"
)


@dataclass(frozen=True)
class Options:
    """What applies to every patient of a request: the horizons (None: the default) and the time already survived
    without the event (None: unconditional)."""

    horizons: tuple[float, ...] | None
    conditional_on_months: float | None


def parse_options(body: dict) -> tuple[Options, Errors]:
    """``horizons_months`` and ``conditional_on_months`` of a request body, checked for type and range (the
    condition against the model's follow-up: :func:`condition_errors`)."""
    errors = []
    horizons = None
    if HORIZONS in body:
        horizons = _horizons(body[HORIZONS])
        if horizons is None:
            errors.append(_error(HORIZONS, HORIZONS_MESSAGE))
    condition = None
    if body.get(CONDITION) is not None:
        condition = _condition(body[CONDITION])
        if condition is None:
            errors.append(_error(CONDITION, CONDITION_MESSAGE))
    return Options(horizons, condition), errors


def parse_request(body: Any) -> tuple[dict[str, str | None], tuple[float, ...] | None, Errors]:
    """Validate a decoded request body: the canonical patient, the horizons (None = default) and any errors (the
    condition too: :func:`parse_predict` also returns its value)."""
    patient, options, errors = parse_predict(body)
    return patient, options.horizons, errors


def parse_predict(body: Any) -> tuple[dict[str, str | None], Options, Errors]:
    """A ``POST /predict`` body: the canonical patient, its options and every error found."""
    patient, errors = parse_patient(body, FIELDS)
    if not isinstance(body, dict):
        return patient, Options(None, None), errors
    options, option_errors = parse_options(body)
    return patient, options, errors + option_errors


def _horizons(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_HORIZONS:
        return None
    if not all(isinstance(h, (int, float)) and not isinstance(h, bool) for h in value):
        return None
    try:
        horizons = tuple(float(h) for h in value)
    except OverflowError:  # an integer too large for a float
        return None
    if not all(math.isfinite(h) and 0 < h <= MAX_HORIZON_MONTHS for h in horizons):
        return None
    return horizons


def _condition(value: Any) -> float | None:
    """A JSON number of months >= 0, as a float; None when it is not one."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        months = float(value)
    except OverflowError:
        return None
    return months if math.isfinite(months) and months >= 0 else None


def condition_errors(model: Model, conditional_on_months: float | None) -> Errors:
    """The condition refused by scoring (past an endpoint's last event time), as the field's error."""
    try:
        scoring.check_condition(model, conditional_on_months)
    except ValueError as exc:
        return [_error(CONDITION, str(exc))]
    return []


def last_condition_months(model: Model) -> float:
    """The largest time already survived that can be conditioned on: the earliest of the endpoints' last event
    times."""
    return min(model.endpoints[name].risk_sets.last_event_time for name in ENDPOINTS)


def _errors(status: int, errors: Errors) -> ResponseReturnValue:
    return jsonify({"errors": errors}), status


def _setting(name: str) -> Any:
    """An app setting (calculator/config.py), its default outside a request."""
    return current_app.config[name] if has_app_context() else getattr(Config, name)


def batch_cost(patients: int) -> int:
    """How many requests a batch of ``patients`` counts as for rate limiting: one per BATCH_PATIENTS_PER_REQUEST
    patients, rounded up (at least one)."""
    return max(1, math.ceil(patients / max(1, int(_setting("BATCH_PATIENTS_PER_REQUEST")))))


# --- answers ----------------------------------------------------------------------------------------------------


def _served_model() -> Model | None:
    try:
        return get_model()
    except ModelLoadError as exc:
        current_app.logger.error("model not available: %s", exc)
        return None


def _unavailable() -> ResponseReturnValue:
    return _errors(503, [_error("model", "the prediction model is not available; try again later")])


def _json_body() -> tuple[Any, ResponseReturnValue | None]:
    """The decoded JSON body, or the response refusing it (415, 400)."""
    if request.mimetype != "application/json":
        return None, _errors(415, [_error("body", "send JSON with Content-Type: application/json")])
    try:
        return parse_body(request.get_data(cache=False)), None
    except (ValueError, RecursionError):
        return None, _errors(400, [_error("body", "malformed JSON (NaN, Infinity and duplicate keys are not allowed)")])


def prediction_body(model: Model, patient: dict[str, str | None], options: Options) -> dict:
    """What ``POST /api/v1/predict`` answers for a valid request (also the API page's example)."""
    result = scoring.predict(
        model,
        patient,
        horizons=options.horizons or DEFAULT_HORIZONS_MONTHS,
        conditional_on_months=options.conditional_on_months,
    )
    result["inputs"] = {cov.name: to_json_value(cov, result["inputs"][cov.name]) for cov in COVARIATES}
    return result


@bp.post("/predict")
def predict() -> ResponseReturnValue:
    """Predicted survival for each endpoint under each option for the patient in the JSON body."""
    body, refused = _json_body()
    if refused is not None:
        return refused
    patient, options, errors = parse_predict(body)
    # The condition is judged against the model's follow-up; with other errors too, every field is named at once.
    model = _served_model() if not errors or options.conditional_on_months is not None else None
    if model is not None:
        errors += condition_errors(model, options.conditional_on_months)
    if errors:
        return _errors(400, errors)
    if model is None:
        return _unavailable()
    return strict_json(prediction_body(model, patient, options))


def strict_json(result: dict) -> ResponseReturnValue:
    """``jsonify`` that never sends NaN or Infinity (not JSON: strict parsers reject the whole answer), encoded with
    orjson (~10x faster than the json module on a prediction; the same JSON values, keys sorted as Flask sorts them).

    Should scoring ever produce a non-finite number, it is sent as null (not estimable) and logged as an error,
    rather than sending invalid JSON or failing the request.
    """
    if not _all_finite(result):
        current_app.logger.error("scoring returned non-finite numbers; they were sent as null")
        result = _finite(result)
    body = orjson.dumps(result, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    return current_app.response_class(body, mimetype="application/json")


def _all_finite(value: Any) -> bool:
    """Whether every float in ``value`` (dicts and lists) is finite: a list of numbers is summed in C at once (a
    non-finite sum is checked item by item), and x - x is nonzero only for NaN and infinities."""
    todo = [value]
    while todo:
        item = todo.pop()
        for v in item.values() if type(item) is dict else item:
            kind = type(v)
            if kind is float:
                if v - v:
                    return False
            elif kind is list:
                try:
                    total = sum(v, 0.0)
                except TypeError:
                    todo.append(v)
                    continue
                if total - total and not all(x - x == 0.0 for x in v):
                    return False
            elif kind is dict:
                todo.append(v)
    return True


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- many patients at once ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRequest:
    """A batch body as parsed: per patient its canonical covariates and its own errors, the shared options and the
    errors of the body itself (more patients than allowed among them)."""

    patients: list[tuple[dict[str, str | None], Errors]]
    options: Options
    errors: Errors


def parse_batch(body: Any, max_patients: int) -> BatchRequest:
    """A ``POST /predict/batch`` body: ``patients`` (each checked as the single route checks a patient), and
    ``horizons_months`` and ``conditional_on_months`` for all of them."""
    if not isinstance(body, dict):
        return BatchRequest([], Options(None, None), [_error("body", "must be a JSON object")])
    errors = [_unknown_field(key, BATCH_FIELDS) for key in body if key not in BATCH_FIELDS]
    options, option_errors = parse_options(body)
    errors += option_errors
    given = body.get(PATIENTS)
    if not isinstance(given, list) or not given:
        errors.append(
            _error(
                PATIENTS,
                f"required: a list of 1 to {max_patients} patients, each a JSON object with "
                "the fields of a single prediction's request",
            )
        )
        return BatchRequest([], options, errors)
    if len(given) > max_patients:
        errors.append(
            _error(
                PATIENTS,
                f"too many patients: at most {max_patients} per request, {len(given)} sent; "
                "split them over several requests",
            )
        )
        return BatchRequest([], options, errors)
    patients = [parse_patient(p, COVARIATE_FIELDS, elsewhere=(HORIZONS, CONDITION)) for p in given]
    # A patient that is not an object: its error names the patient, not the body.
    patients = [
        (patient, [_error("patient", "must be a JSON object") if e["field"] == "body" else e for e in patient_errors])
        for patient, patient_errors in patients
    ]
    return BatchRequest(patients, options, errors)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _scored_option(scored: batch.BatchResult, row: int, stem: str, horizons: tuple[float, ...]) -> dict[str, Any]:
    """One option of one endpoint (columns named ``<stem>_...``, prognosis.batch.column_names) for one row."""

    def value(column: str) -> float | None:
        return _number(scored.columns[column][row])

    landmarks = [
        {
            "months": h,
            **{key: value(f"{stem}_{key}_{batch.months_label(h)}") for key in ("survival", "ci_lower", "ci_upper")},
        }
        for h in horizons
    ]
    median = {
        "estimate": value(f"{stem}_median"),
        "ci_lower": value(f"{stem}_median_ci_lower"),
        "ci_upper": value(f"{stem}_median_ci_upper"),
    }
    return {"median_months": median, "landmarks": landmarks}


def batch_warnings(model: Model, horizons: tuple[float, ...], months: float | None) -> list[str]:
    """What applies to every patient of a batch: where no value is given, the provenance and the caveat."""
    warnings = scoring.horizon_warnings(model, horizons, months)
    origin = provenance.provenance(model.card)
    if origin.notice:
        warnings.append(origin.notice)
    warnings.append(notices.OBSERVATIONAL)
    return warnings


def batch_body(model: Model, parsed: BatchRequest) -> dict:
    """What ``POST /api/v1/predict/batch`` answers for a valid body: per patient the landmark survival with its
    interval and the median with its interval per endpoint and option (``prognosis.batch.score_patients``, the
    numbers of the single route), or that patient's errors."""
    horizons = tuple(parsed.options.horizons or DEFAULT_HORIZONS_MONTHS)
    months = scoring.check_condition(model, parsed.options.conditional_on_months)
    valid = [i for i, (_, errors) in enumerate(parsed.patients) if not errors]
    rows = {cov.name: [parsed.patients[i][0][cov.name] for i in valid] for cov in COVARIATES}
    scored = batch.score_patients(model, rows, horizons, months) if valid else None
    in_model = next(iter(model.endpoints.values())).cohort.unknowns.names
    results: list[dict[str, Any]] = [{"index": i, "errors": errors} for i, (_, errors) in enumerate(parsed.patients)]
    for row, i in enumerate(valid):
        assert scored is not None
        if scored.error[row] is not None:  # validated above; kept so that a row scoring refuses is still reported
            results[i]["errors"] = [_error("patient", str(scored.error[row]))]
            continue
        patient = parsed.patients[i][0]
        results[i] = {
            "index": i,
            "predictions": {
                name: {option: _scored_option(scored, row, f"{name}_{option}", horizons) for option in OPTIONS}
                for name in ENDPOINTS
            },
            "unknown": [n for n in in_model if patient[n] is None],
            "few_similar": notices.few_similar(scoring.similar_patients(model, str(patient[MODALITY_WITHIN.name]))),
        }
    condition = (
        None
        if months is None
        else {name: {"months": months, "text": scoring.condition_text(name, months)} for name in ENDPOINTS}
    )
    model_block: dict[str, Any] = {
        "model_version": model.version,
        "sha256": model.sha256,
        "data_source": model.data_source,
        "created_at": model.created_at,
    }
    origin = provenance.provenance(model.card)
    if origin.base_version:
        model_block["base_version"] = origin.base_version
    return {
        "model": model_block,
        HORIZONS: list(horizons),
        "condition": condition,
        "scored": sum("predictions" in r for r in results),
        "refused": sum("errors" in r for r in results),
        "results": results,
        "warnings": batch_warnings(model, horizons, months),
    }


@bp.post("/predict/batch")
@body_limit.limit("BATCH_MAX_CONTENT_LENGTH")
def predict_batch() -> ResponseReturnValue:
    """Landmark survival and medians for each of up to BATCH_MAX_PATIENTS patients; a patient with errors gets them
    in its result and does not stop the others."""
    max_patients = int(current_app.config["BATCH_MAX_PATIENTS"])
    try:
        body, refused = _json_body()
    except RequestEntityTooLarge:
        limit = current_app.config["BATCH_MAX_CONTENT_LENGTH"]
        return _errors(
            413,
            [
                _error(
                    "body",
                    f"the request body is too large: at most {limit} bytes for a batch "
                    f"(up to {max_patients} patients); split the patients over several "
                    "requests",
                )
            ],
        )
    if refused is not None:
        return refused
    parsed = parse_batch(body, max_patients)
    errors = list(parsed.errors)
    model = _served_model() if not errors or parsed.options.conditional_on_months is not None else None
    if model is not None:
        errors += condition_errors(model, parsed.options.conditional_on_months)
    if errors:
        return _errors(400, errors)
    # One request was counted on arrival; a batch counts as one per BATCH_PATIENTS_PER_REQUEST patients.
    limited = rate_limit.charge(
        batch_cost(len(parsed.patients)) - 1,
        f"a batch of {len(parsed.patients)} patients counts as {batch_cost(len(parsed.patients))} requests",
    )
    if limited is not None:
        return limited
    if model is None:
        return _unavailable()
    return strict_json(batch_body(model, parsed))


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API (the condition's upper bound from the served model, when loaded)."""
    return jsonify(openapi_document(_served_model()))


# --- OpenAPI ----------------------------------------------------------------------------------------------------


def _covariate_schema(cov: Covariate) -> dict[str, Any]:
    kind = json_type(cov)
    schema: dict[str, Any] = {"title": cov.label, "description": cov.help}
    if kind == "number":
        schema["type"] = "number" if cov.required else ["number", "null"]
        schema |= {
            key: bound for key, bound in (("minimum", cov.minimum), ("maximum", cov.maximum)) if math.isfinite(bound)
        }
        if cov.unit:
            schema["description"] += f" In {cov.unit}."
    elif kind == "boolean":
        schema["type"] = "boolean" if cov.required else ["boolean", "null"]
    else:
        schema["type"] = kind if cov.required else [kind, "null"]
        schema["enum"] = json_levels(cov) + ([] if cov.required else [None])
    if not cov.required:
        schema["description"] += (
            " Null or absent: unknown (the prediction averages over the values it takes in "
            "training patients with the same known characteristics)."
        )
    return schema


def _nullable_number(description: str = "") -> dict[str, Any]:
    return {"type": ["number", "null"], **({"description": description} if description else {})}


INTERVAL_TEXT = {
    "estimate": "The estimate; null when not estimable.",
    "ci_lower": "Lower bound of its 95% interval; null when not estimable.",
    "ci_upper": "Upper bound of its 95% interval; null when not estimable.",
}


def _interval(extra: dict[str, str] | None = None, description: str = "", **texts: str) -> dict[str, Any]:
    """An estimate with its 95% interval (``extra``: further keys with their descriptions, first)."""
    keys = {**(extra or {}), **{key: texts.get(key, text) for key, text in INTERVAL_TEXT.items()}}
    schema = {
        "type": "object",
        "required": list(keys),
        "properties": {k: _nullable_number(text) for k, text in keys.items()},
    }
    return schema | ({"description": description} if description else {})


def _by(keys: tuple[str, ...] | list[str], schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out = {
        "type": "object",
        "required": list(keys),
        "properties": dict.fromkeys(keys, schema),
        "additionalProperties": False,
    }
    return out | ({"description": description} if description else {})


def _condition_schema(model: Model | None) -> dict[str, Any]:
    endpoints = "; ".join(f"for {ep.label.lower()}: still {ep.free_of}" for ep in ENDPOINTS.values())
    schema: dict[str, Any] = {
        "type": ["number", "null"],
        "minimum": 0,
        "title": "Already free of the event for (months)",
        "description": "Optional: how many months after the embolotherapy the patient is known to be still free of "
        f"the event ({endpoints}); one value for every endpoint. Curves, landmarks, medians and "
        "differences are then conditional on it, S(t | T > s) = S(t) / S(s), on the same time axis "
        "(months since the embolotherapy, from s on), and restricted mean survival is not given. "
        "Null, absent or 0: unconditional. A value past an endpoint's last observed event time is "
        "refused (400): survival there is not estimable, so neither is survival conditional on it.",
    }
    if model is not None:
        last = last_condition_months(model)
        schema["maximum"] = last
        schema["description"] += f" For the served model ({model.version}) at most {last:g} months."
    return schema


def _horizons_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_HORIZONS,
        "items": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_HORIZON_MONTHS},
        "default": list(DEFAULT_HORIZONS_MONTHS),
        "description": "Landmark horizons in months since the embolotherapy for survival, differences and "
        "restricted mean survival.",
    }


def _model_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model_version", "sha256", "data_source"],
        "description": "The model version that answered.",
        "properties": {
            "model_version": {"type": "string", "description": "The model version (its card: /model)."},
            "sha256": {"type": "string", "description": "Digest of the served model's files (their manifest)."},
            "data_source": {
                "enum": ["synthetic", "registry"],
                "description": "What the model was trained on: a synthetic registry generated to "
                "reproduce published estimates, or registry data.",
            },
            "created_at": {"type": "string", "description": "When the model version was made (ISO 8601)."},
            "base_version": {
                "type": "string",
                "description": "For a model updated from another one (python -m training update): "
                "the base model's version. An update of a synthetic model that "
                "keeps its hazard ratios carries the synthetic notice in warnings.",
            },
        },
    }


def _landmark_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["months", "survival", "ci_lower", "ci_upper"],
        "properties": {
            "months": {"type": "number", "description": "The horizon, in months since the embolotherapy."},
            "survival": _nullable_number(
                "Predicted probability of being still free of the event at the horizon "
                "(under a condition: given free of it at conditional_on_months); null "
                "past the last observed event time or, under a condition, at or "
                "before it."
            ),
            "ci_lower": _nullable_number("Lower bound of its pointwise 95% interval."),
            "ci_upper": _nullable_number("Upper bound of its pointwise 95% interval (at most 1)."),
        },
    }


def _median_schema() -> dict[str, Any]:
    return _interval(
        description="Median time to the event in months since the embolotherapy (under a condition, the conditional "
        "median): where the curve first falls to 0.5 or below; the bounds where its interval bounds do. "
        "Null when not reached within the follow-up.",
        estimate="The median; null when the curve stays above 0.5 (not reached).",
        ci_lower="Where the interval's lower bound first falls to 0.5 or below; null when it never does.",
        ci_upper="Where the interval's upper bound first falls to 0.5 or below; null when it never does.",
    )


def _batch_description() -> str:
    return (
        f"At most {_setting('BATCH_MAX_PATIENTS')} patients per request (400 beyond) and a request body of at "
        f"most {_setting('BATCH_MAX_CONTENT_LENGTH')} bytes (413 beyond); for rate limiting a batch counts as "
        f"one request per {_setting('BATCH_PATIENTS_PER_REQUEST')} patients, rounded up (but never more than the "
        "per-minute limit, so that a full batch is always possible). A patient with errors gets them in its "
        "result (the messages of the single route) and does not stop the others."
    )


def openapi_document(model: Model | None = None) -> dict[str, Any]:
    """An OpenAPI 3.1 document generated from covariates.py (requests) and the scoring response shapes; ``model``
    (the served one) bounds ``conditional_on_months`` by its follow-up."""
    request_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED),
        "properties": {cov.name: _covariate_schema(cov) for cov in COVARIATES}
        | {
            HORIZONS: _horizons_schema(),
            CONDITION: _condition_schema(model),
        },
    }
    numbers = {"type": "array", "items": {"type": "number"}}
    option = {
        "type": "object",
        "required": ["times_months", "survival", "ci_lower", "ci_upper", "median_months", "landmarks"],
        "properties": {
            "times_months": numbers
            | {
                "description": "Months since the embolotherapy at which the curve steps "
                "(from 0; under a condition from conditional_on_months, where "
                "the curve is 1). Thinned: the values at these times are "
                "exact."
            },
            "survival": numbers
            | {
                "description": "Predicted probability of being still free of the event at each "
                "time (right-continuous step function; under a condition, given "
                "free of it at conditional_on_months)."
            },
            "ci_lower": numbers
            | {
                "description": "Lower bound of the pointwise 95% interval at each time (log "
                "scale; coefficient and baseline-hazard uncertainty)."
            },
            "ci_upper": numbers
            | {"description": "Upper bound of the pointwise 95% interval at each time (at most 1)."},
            "median_months": _median_schema(),
            "landmarks": {
                "type": "array",
                "items": _landmark_schema(),
                "description": "The curve read at each of horizons_months, in their order.",
            },
            "rmst": _interval(
                {
                    "horizon_months": "The horizon it runs to: the last of horizons_months within the "
                    "follow-up; null when none is, or under a condition."
                },
                description="Restricted mean survival time: mean months free of the event from the "
                "embolotherapy up to horizon_months. Every value null under a condition "
                "(it would count the months already survived; the reason is in "
                "warnings).",
            ),
        },
        "description": "Predicted survival under one option: a right-continuous step function with pointwise "
        "log-scale 95% intervals (curves thinned; values at the kept times are exact).",
    }
    contrast = {
        "type": "object",
        "description": "One comparison between options: first minus second, in patients with these "
        "characteristics who received each (an association, not a treatment effect).",
        "properties": {
            "comparison": {"type": "string", "description": "'<a> vs <b>'."},
            "a": {"enum": list(OPTIONS), "description": "The first option."},
            "b": {"enum": list(OPTIONS), "description": "The second option."},
            "survival_difference": {
                "type": "array",
                "items": _interval({"months": "The horizon."}),
                "description": "Survival under a minus under b at each horizon (a "
                "probability difference, -1 to 1), with delta-method 95% "
                "intervals; null where either is not estimable.",
            },
            "rmst_difference": _interval(
                {"horizon_months": "The horizon of the restricted mean."},
                description="Restricted mean survival time under a minus under b, in months; null under a condition.",
            ),
        },
    }
    condition = _by(
        list(ENDPOINTS),
        {
            "type": "object",
            "required": ["months", "text"],
            "description": "What the prediction of this endpoint assumes.",
            "properties": {
                "months": {"type": "number", "description": "The time already survived without the event."},
                "text": {"type": "string", "description": "What the prediction assumes, in words."},
            },
        },
        "Null without a condition; else per endpoint what the prediction assumes: still free of that endpoint's "
        "event conditional_on_months after the embolotherapy.",
    )
    condition["type"] = ["object", "null"]
    few_similar = {
        "type": "array",
        "items": {"enum": list(OPTIONS)},
        "description": f"The options whose estimates rest on few similar patients: fewer than "
        f"{notices.FEW_SIMILAR_PATIENTS} training patients of this "
        f"{MODALITY_WITHIN.label} level treated with the option.",
    }
    unknown = {
        "type": "array",
        "items": {"type": "string"},
        "description": "Optional inputs the prediction averaged over.",
    }
    warnings = {
        "type": "array",
        "items": {"type": "string"},
        "description": "Always the observational caveat; for a model trained on a synthetic registry (or "
        "updated from one, keeping its hazard ratios) its notice; few similar patients, "
        "estimates not available, unknown inputs, the condition.",
    }
    response_schema = {
        "type": "object",
        "required": ["model", "predictions", "warnings"],
        "properties": {
            "model": _model_schema(),
            "condition": condition,
            "predictions": _by(
                list(ENDPOINTS),
                _by(OPTIONS, {"$ref": "#/components/schemas/OptionPrediction"}, "One endpoint, per option."),
                "Per endpoint and option, the predicted curve, median, landmarks and restricted mean.",
            ),
            "contrasts": _by(
                list(ENDPOINTS),
                {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Contrast"},
                    "description": "One endpoint's comparisons.",
                },
                "Per endpoint, each option against the reference option, then the others against each other.",
            ),
            "inputs": {"type": "object", "description": "The patient as understood (null: unknown)."},
            "unknown": unknown,
            "similar_patients": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": f"Training patients of this {MODALITY_WITHIN.label} level treated "
                "with each option (for a synthetic model counted at the size of "
                "the original study).",
            },
            "few_similar": few_similar,
            "warnings": warnings,
        },
    }
    error_list: dict[str, Any] = {
        "type": "array",
        "description": "Every problem found.",
        "items": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "description": "The field at fault ('body': the request as a whole)."},
                "message": {"type": "string", "description": "What is wrong, and what is expected."},
            },
        },
    }
    errors_schema = {"type": "object", "required": ["errors"], "properties": {"errors": error_list}}
    max_patients = int(_setting("BATCH_MAX_PATIENTS"))
    batch_request = {
        "type": "object",
        "additionalProperties": False,
        "required": [PATIENTS],
        "properties": {
            PATIENTS: {
                "type": "array",
                "minItems": 1,
                "maxItems": max_patients,
                "items": {"title": "patient object"},
                "description": "The patients, each a JSON object with the patient fields of PredictRequest "
                f"(not {HORIZONS} or {CONDITION}, which apply to all). A patient that is not "
                "valid gets its errors in its result; the others are scored.",
            },
            HORIZONS: _horizons_schema(),
            CONDITION: _condition_schema(model),
        },
    }
    landmark_prediction = {
        "type": "object",
        "required": ["median_months", "landmarks"],
        "additionalProperties": False,
        "description": "One option for one patient: the numbers of the single route's median_months and landmarks.",
        "properties": {
            "median_months": _median_schema(),
            "landmarks": {
                "type": "array",
                "items": _landmark_schema(),
                "description": "Survival at each of horizons_months, in their order.",
            },
        },
    }
    batch_result = {
        "type": "object",
        "required": ["index"],
        "additionalProperties": False,
        "description": "One patient: predictions, unknown and few_similar when scored; errors when refused.",
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "The patient's position in patients, from 0."},
            "predictions": _by(
                list(ENDPOINTS),
                _by(OPTIONS, {"$ref": "#/components/schemas/LandmarkPrediction"}, "One endpoint, per option."),
                "Per endpoint and option, the median and the landmark survival with 95% intervals.",
            ),
            "unknown": unknown,
            "few_similar": few_similar,
            "errors": error_list
            | {
                "description": "Why this patient was not scored (the single route's messages; field 'patient': "
                "it is not a JSON object)."
            },
        },
    }
    batch_response = {
        "type": "object",
        "required": ["model", HORIZONS, "condition", "scored", "refused", "results", "warnings"],
        "properties": {
            "model": _model_schema(),
            HORIZONS: {"type": "array", "items": {"type": "number"}, "description": "The horizons used."},
            "condition": condition,
            "scored": {"type": "integer", "description": "Patients scored."},
            "refused": {"type": "integer", "description": "Patients refused (their errors are in their results)."},
            "results": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/BatchResult"},
                "description": "One per patient, in the order sent.",
            },
            "warnings": warnings
            | {
                "description": "What applies to every patient: horizons not estimable, the "
                "condition, the provenance notice and the observational caveat. "
                "Per-patient notes: unknown and few_similar in each result."
            },
        },
    }

    endpoints_text = join([ep.label.lower() for ep in ENDPOINTS.values()])
    definitions = " ".join(f"{ep.short}: {ep.definition}" for ep in ENDPOINTS.values())

    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
        }

    def ok(schema: str, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }

    shorts = join([ep.short for ep in ENDPOINTS.values()])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NET embolotherapy prognostic calculator",
            "version": "1",
            "description": f"Predicted {endpoints_text} after {options_text('or')} for neuroendocrine tumor "
            f"liver metastases. {definitions} {notices.OBSERVATIONAL}",
        },
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": f"Predict {shorts} under each option for one patient",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
                    },
                    "responses": {
                        "200": ok("PredictResponse", "Predictions"),
                        "400": error(
                            "Invalid input: malformed JSON, unknown field, wrong type or value, or a "
                            "condition past the last observed event time"
                        ),
                        "413": error("Request body too large"),
                        "415": error("Content-Type is not application/json"),
                        "429": error(
                            "Too many requests from this client address (rate limit; see the Retry-After header)"
                        ),
                        "503": error("The model is not available"),
                    },
                }
            },
            "/api/v1/predict/batch": {
                "post": {
                    "operationId": "predict_batch",
                    "summary": f"Predict {shorts} at the landmarks, with medians, under each option for up to "
                    f"{max_patients} patients",
                    "description": _batch_description(),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
                    },
                    "responses": {
                        "200": ok("BatchResponse", "A result per patient: its predictions or its errors"),
                        "400": error(
                            f"Invalid request: malformed JSON, unknown field, no patients or more than "
                            f"{max_patients}, wrong horizons or condition (the errors of a patient are in its "
                            "result, with status 200)"
                        ),
                        "413": error(
                            f"Request body too large (more than {_setting('BATCH_MAX_CONTENT_LENGTH')} bytes)"
                        ),
                        "415": error("Content-Type is not application/json"),
                        "429": error(
                            "Too many requests from this client address (a batch counts as one request per "
                            f"{_setting('BATCH_PATIENTS_PER_REQUEST')} patients; see the Retry-After header)"
                        ),
                        "503": error("The model is not available"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": request_schema,
                "PredictResponse": response_schema,
                "OptionPrediction": option,
                "Contrast": contrast,
                "Errors": errors_schema,
                "BatchRequest": batch_request,
                "BatchResponse": batch_response,
                "BatchResult": batch_result,
                "LandmarkPrediction": landmark_prediction,
            }
        },
    }
