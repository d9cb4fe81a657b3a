"""The JSON API: ``POST /api/v1/predict`` and its OpenAPI document, both derived from the definitions
(``prognosis.covariates``): covariates and their kinds, options, endpoints."""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from calculator.model_store import ModelLoadError, get_model
from prognosis import notices, scoring
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

bp = Blueprint("api", __name__, url_prefix="/api/v1")

HORIZONS = "horizons_months"
MAX_HORIZONS = 10
MAX_HORIZON_MONTHS = 240.0
FIELDS = tuple(c.name for c in COVARIATES) + (HORIZONS,)

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
    ok = {"boolean": isinstance(value, bool),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "string": isinstance(value, str)}[kind]
    if not ok or value not in json_levels(cov):
        return None
    return cov.levels[json_levels(cov).index(value)]


def _range(cov: Covariate) -> str:
    bounds = [f"at least {cov.minimum:g}" if math.isfinite(cov.minimum) else "",
              f"at most {cov.maximum:g}" if math.isfinite(cov.maximum) else ""]
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


def parse_request(body: Any) -> tuple[dict[str, str | None], tuple[float, ...] | None, Errors]:
    """Validate a decoded request body: the canonical patient, the horizons (None = default) and any errors."""
    if not isinstance(body, dict):
        return {}, None, [_error("body", "must be a JSON object")]
    errors = []
    for key in body:
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1)
            errors.append(_error(key, "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else
                                                         "; allowed: " + ", ".join(FIELDS))))
    patient: dict[str, str | None] = {}
    for cov in COVARIATES:
        value = body.get(cov.name)
        level = None if value is None else _level(cov, value)
        if value is None and cov.required:
            errors.append(_error(cov.name, f"required: {_expected(cov)}"))
        elif value is not None and level is None:
            errors.append(_error(cov.name, f"must be {_expected(cov)}"))
        patient[cov.name] = level
    horizons = None
    if HORIZONS in body:
        horizons = _horizons(body[HORIZONS])
        if horizons is None:
            errors.append(_error(HORIZONS, f"must be a list of 1 to {MAX_HORIZONS} numbers of months, each greater "
                                           f"than 0 and at most {MAX_HORIZON_MONTHS:g}"))
    return patient, horizons, errors


def _horizons(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_HORIZONS:
        return None
    if not all(isinstance(h, (int, float)) and not isinstance(h, bool) for h in value):
        return None
    horizons = tuple(float(h) for h in value)
    if not all(math.isfinite(h) and 0 < h <= MAX_HORIZON_MONTHS for h in horizons):
        return None
    return horizons


def _errors(status: int, errors: Errors) -> ResponseReturnValue:
    return jsonify({"errors": errors}), status


# --- routes ---------------------------------------------------------------------------------------------------

@bp.post("/predict")
def predict() -> ResponseReturnValue:
    """Predicted survival for each endpoint under each option for the patient in the JSON body."""
    if request.mimetype != "application/json":
        return _errors(415, [_error("body", "send JSON with Content-Type: application/json")])
    try:
        body = parse_body(request.get_data(cache=False))
    except (ValueError, RecursionError):
        return _errors(400, [_error("body", "malformed JSON (NaN, Infinity and duplicate keys are not allowed)")])
    patient, horizons, errors = parse_request(body)
    if errors:
        return _errors(400, errors)
    try:
        model = get_model()
    except ModelLoadError as exc:
        current_app.logger.error("model not available: %s", exc)
        return _errors(503, [_error("model", "the prediction model is not available; try again later")])
    result = scoring.predict(model, patient, horizons=horizons or DEFAULT_HORIZONS_MONTHS)
    result["inputs"] = {cov.name: to_json_value(cov, result["inputs"][cov.name]) for cov in COVARIATES}
    return strict_json(result)


def strict_json(result: dict) -> ResponseReturnValue:
    """``jsonify`` that never sends NaN or Infinity (not JSON: strict parsers reject the whole answer).

    Should scoring ever produce a non-finite number, it is sent as null (not estimable) and logged as an error,
    rather than sending invalid JSON or failing the request.
    """
    try:
        body = current_app.json.dumps(result, allow_nan=False, separators=(",", ":"))
    except ValueError:
        current_app.logger.error("scoring returned non-finite numbers; they were sent as null")
        body = current_app.json.dumps(_finite(result), allow_nan=False, separators=(",", ":"))
    return current_app.response_class(f"{body}\n", mimetype=current_app.json.mimetype)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


# --- OpenAPI ----------------------------------------------------------------------------------------------------

def _covariate_schema(cov: Covariate) -> dict[str, Any]:
    kind = json_type(cov)
    schema: dict[str, Any] = {"title": cov.label, "description": cov.help}
    if kind == "number":
        schema["type"] = "number" if cov.required else ["number", "null"]
        schema |= {key: bound for key, bound in (("minimum", cov.minimum), ("maximum", cov.maximum))
                   if math.isfinite(bound)}
        if cov.unit:
            schema["description"] += f" In {cov.unit}."
    elif kind == "boolean":
        schema["type"] = "boolean" if cov.required else ["boolean", "null"]
    else:
        schema["type"] = kind if cov.required else [kind, "null"]
        schema["enum"] = json_levels(cov) + ([] if cov.required else [None])
    if not cov.required:
        schema["description"] += (" Null or absent: unknown (the prediction averages over the values it takes in "
                                   "training patients with the same known characteristics).")
    return schema


def _nullable_number() -> dict[str, Any]:
    return {"type": ["number", "null"]}


def _interval(*extra: str) -> dict[str, Any]:
    keys = (*extra, "estimate", "ci_lower", "ci_upper")
    return {"type": "object", "required": list(keys), "properties": {k: _nullable_number() for k in keys}}


def _by(keys: tuple[str, ...] | list[str], schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(keys), "properties": dict.fromkeys(keys, schema),
            "additionalProperties": False}


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document generated from covariates.py (request) and the scoring response shape."""
    request_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED),
        "properties": {cov.name: _covariate_schema(cov) for cov in COVARIATES} | {
            HORIZONS: {
                "type": "array", "minItems": 1, "maxItems": MAX_HORIZONS,
                "items": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_HORIZON_MONTHS},
                "default": list(DEFAULT_HORIZONS_MONTHS),
                "description": "Landmark horizons in months for survival, differences and restricted mean survival.",
            },
        },
    }
    numbers = {"type": "array", "items": {"type": "number"}}
    landmark = {"type": "object", "required": ["months", "survival", "ci_lower", "ci_upper"],
                "properties": {"months": {"type": "number"}, "survival": _nullable_number(),
                               "ci_lower": _nullable_number(), "ci_upper": _nullable_number()}}
    option = {
        "type": "object",
        "required": ["times_months", "survival", "ci_lower", "ci_upper", "median_months", "landmarks"],
        "properties": {
            "times_months": numbers, "survival": numbers, "ci_lower": numbers, "ci_upper": numbers,
            "median_months": _interval(), "landmarks": {"type": "array", "items": landmark},
            "rmst": _interval("horizon_months"),
        },
        "description": "Predicted survival under one option: a right-continuous step function with pointwise "
                       "log-scale 95% intervals (curves thinned; values at the kept times are exact).",
    }
    contrast = {
        "type": "object",
        "properties": {"comparison": {"type": "string"}, "a": {"enum": list(OPTIONS)}, "b": {"enum": list(OPTIONS)},
                       "survival_difference": {"type": "array", "items": _interval("months")},
                       "rmst_difference": _interval("horizon_months")},
    }
    response_schema = {
        "type": "object",
        "required": ["model", "predictions", "warnings"],
        "properties": {
            "model": {"type": "object", "required": ["model_version", "sha256", "data_source"],
                      "properties": {"model_version": {"type": "string"}, "sha256": {"type": "string"},
                                     "data_source": {"enum": ["synthetic", "registry"]},
                                     "created_at": {"type": "string"}}},
            "predictions": _by(list(ENDPOINTS), _by(OPTIONS, {"$ref": "#/components/schemas/OptionPrediction"})),
            "contrasts": _by(list(ENDPOINTS), {"type": "array", "items": {"$ref": "#/components/schemas/Contrast"}}),
            "inputs": {"type": "object", "description": "The patient as understood (null: unknown)."},
            "unknown": {"type": "array", "items": {"type": "string"},
                        "description": "Optional inputs the prediction averaged over."},
            "similar_patients": {"type": "object", "additionalProperties": {"type": "integer"},
                                 "description": f"Training patients of this {MODALITY_WITHIN.label} level treated "
                                                "with each option (for a synthetic model counted at the size of "
                                                "the original study)."},
            "warnings": {"type": "array", "items": {"type": "string"},
                         "description": "Always the observational caveat; for a model trained on a synthetic "
                                        "registry its notice; few similar patients, estimates not available, "
                                        "unknown inputs."},
        },
    }
    errors_schema = {"type": "object", "required": ["errors"], "properties": {"errors": {
        "type": "array", "items": {"type": "object", "required": ["field", "message"],
                                   "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}

    endpoints_text = join([ep.label.lower() for ep in ENDPOINTS.values()])
    definitions = " ".join(f"{ep.short}: {ep.definition}" for ep in ENDPOINTS.values())

    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "NET embolotherapy prognostic calculator", "version": "1",
                 "description": f"Predicted {endpoints_text} after {options_text('or')} for neuroendocrine tumor "
                                f"liver metastases. {definitions} {notices.OBSERVATIONAL}"},
        "paths": {"/api/v1/predict": {"post": {
            "operationId": "predict",
            "summary": f"Predict {join([ep.short for ep in ENDPOINTS.values()])} under each option for one "
                       "patient",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
            "responses": {
                "200": {"description": "Predictions",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                "400": error("Invalid input: malformed JSON, unknown field, wrong type or value"),
                "413": error("Request body too large"),
                "415": error("Content-Type is not application/json"),
                "429": error("Too many requests from this client address (rate limit; see the Retry-After header)"),
                "503": error("The model is not available"),
            },
        }}},
        "components": {"schemas": {
            "PredictRequest": request_schema, "PredictResponse": response_schema,
            "OptionPrediction": option, "Contrast": contrast, "Errors": errors_schema,
        }},
    }

