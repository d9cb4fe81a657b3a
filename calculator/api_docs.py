"""The API page for people (issue 12.4): the OpenAPI document (``calculator.api.openapi_document``) as HTML, with
example requests and responses (one patient, a batch) taken from real predictions.

Everything on the page is read from the document (fields, types, allowed values, responses) or made from the
definitions and the served model (the example), so that a field added to the definitions appears with no edit here.
Pure functions; no Flask. The route is in ``calculator/views.py``, the page in ``templates/api.html``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calculator import api
from prognosis.covariates import COVARIATES, DEFAULT_HORIZONS_MONTHS, ENDPOINTS, OPTIONAL, OPTIONS, REQUIRED
from prognosis.model import Model

Schema = Mapping[str, Any]

EXAMPLE_ARRAY_ITEMS = 3  # arrays in the example response are cut after this many values
EXAMPLE_DIGITS = 4  # and numbers rounded to this many decimals


@dataclass(frozen=True)
class Field:
    """One field of a request or response body; ``name`` is a path (``predictions.<endpoint>.<option>.survival``)."""

    name: str
    type: str
    allowed: str
    required: bool
    default: str
    title: str
    description: str
    depth: int = 0


@dataclass(frozen=True)
class Response:
    status: str
    description: str
    schema: str


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    operation_id: str
    request_schema: str
    responses: tuple[Response, ...]


@dataclass(frozen=True)
class ApiPage:
    title: str
    version: str
    openapi: str
    description: str
    operations: tuple[Operation, ...]
    bodies: dict[str, tuple[Field, ...]]  # component name -> its fields, flattened
    placeholders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "<endpoint>" -> its keys


@dataclass(frozen=True)
class Example:
    request: dict[str, Any]
    response: dict[str, Any]
    response_text: str  # abridged for the page
    error_request: dict[str, Any]
    error_response: dict[str, Any]
    batch_request: dict[str, Any]
    batch_response: dict[str, Any]
    batch_response_text: str
    condition_months: float  # the example's condition (conditional_on_months): a year, or less if follow-up is short


# --- reading the document -------------------------------------------------------------------------------------


def _resolve(document: Schema, schema: Schema) -> tuple[Schema, str]:
    """A schema with its ``$ref`` followed, and the component's name ('' when inline)."""
    ref = schema.get("$ref", "")
    if not ref:
        return schema, ""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node, ref.rsplit("/", 1)[-1]


def _types(schema: Schema) -> list[str]:
    declared = schema.get("type")
    if declared is not None:
        return [declared] if isinstance(declared, str) else list(declared)
    if "enum" in schema:  # an enum without a type: the types of its values
        names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
        return list(dict.fromkeys(names.get(type(value), "value") for value in schema["enum"]))
    return []


def type_text(document: Schema, schema: Schema) -> str:
    """'integer or null', 'array of number', 'object'."""
    schema, name = _resolve(document, schema)
    words = []
    for kind in _types(schema) or (["object"] if "properties" in schema else []):
        if kind == "array" and "items" in schema:
            words.append(f"array of {type_text(document, schema['items'])}")
        else:
            words.append(kind)
    return " or ".join(words) or name or schema.get("title") or "any"


def _bounds(schema: Schema) -> str:
    words = []
    for key, text in (
        ("exclusiveMinimum", "greater than"),
        ("minimum", "at least"),
        ("exclusiveMaximum", "less than"),
        ("maximum", "at most"),
    ):
        if key in schema and not isinstance(schema[key], bool):
            words.append(f"{text} {schema[key]:g}")
    return " and ".join(words)


def allowed_text(document: Schema, schema: Schema) -> str:
    """The values a field takes: its enum, its bounds, its number of items."""
    schema, _ = _resolve(document, schema)
    if "enum" in schema:
        return ", ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    types = _types(schema)
    if "boolean" in types:
        return ", ".join(["true", "false"] + (["null"] if "null" in types else []))
    words = [_bounds(schema)] if _bounds(schema) else []
    if "minItems" in schema or "maxItems" in schema:
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        words.append(f"{low} to {high} items" if high is not None else f"at least {low} items")
        item = allowed_text(document, schema.get("items", {}))
        if item:
            words.append(f"each {item}")
    return "; ".join(words)


def _placeholder(keys: list[str]) -> str:
    """What the keys of a map are, in the definitions' terms."""
    if set(keys) == set(ENDPOINTS):
        return "<endpoint>"
    if set(keys) == set(OPTIONS):
        return "<option>"
    return "<key>"


def _compound(document: Schema, schema: Schema) -> bool:
    schema, _ = _resolve(document, schema)
    return "properties" in schema or bool({"object", "array"} & set(_types(schema)))


def flatten(
    document: Schema,
    schema: Schema,
    prefix: str = "",
    required: bool = True,
    depth: int = 0,
    placeholders: dict[str, tuple[str, ...]] | None = None,
) -> list[Field]:
    """The fields of a body schema as rows: nested objects by dotted paths, array items by ``[]``, and objects whose
    keys all share one schema (one per endpoint, one per option) by a placeholder (``<endpoint>``)."""
    placeholders = {} if placeholders is None else placeholders
    schema, _ = _resolve(document, schema)
    properties: Mapping[str, Schema] = schema.get("properties", {})
    rows: list[Field] = []

    def row(kind: str | None = None, allowed: str | None = None) -> Field:
        default = json.dumps(schema["default"]) if "default" in schema else ""
        return Field(
            prefix,
            kind or type_text(document, schema),
            allowed if allowed is not None else allowed_text(document, schema),
            required,
            default,
            schema.get("title", ""),
            schema.get("description", ""),
            depth,
        )

    keys = list(properties)
    # A map (one key per endpoint, per option): every key required, all with the same schema of an object or array.
    shared = (
        len(keys) > 1
        and all(properties[k] == properties[keys[0]] for k in keys)
        and set(schema.get("required", keys)) == set(keys)
        and _compound(document, properties[keys[0]])
    )
    if shared:
        name = _placeholder(keys)
        placeholders[name] = tuple(keys)
        rows.append(row(None, f"one key per {name.strip('<>')}: " + ", ".join(keys)))
        rows += flatten(document, properties[keys[0]], f"{prefix}.{name}".lstrip("."), True, depth + 1, placeholders)
        return rows
    if properties:
        if prefix:
            rows.append(row("object", ""))
        needed = set(schema.get("required", ()))
        for key, sub in properties.items():
            rows += flatten(
                document,
                sub,
                f"{prefix}.{key}" if prefix else key,
                key in needed,
                depth + 1 if prefix else depth,
                placeholders,
            )
        return rows
    items = schema.get("items")
    if items is not None:
        resolved, _ = _resolve(document, items)
        if "properties" in resolved:
            rows.append(row("array of objects", allowed_text(document, schema)))
            needed = set(resolved.get("required", ()))
            for key, sub in resolved["properties"].items():
                rows += flatten(document, sub, f"{prefix}[].{key}", key in needed, depth + 1, placeholders)
            return rows
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        return [row(f"object of {type_text(document, extra)}", "")]
    return [row()]


def read_document(document: Schema) -> ApiPage:
    """The page's contents from an OpenAPI document: its operations and the fields of every body they name."""
    operations: list[Operation] = []
    bodies: dict[str, tuple[Field, ...]] = {}
    placeholders: dict[str, tuple[str, ...]] = {}
    components = document.get("components", {}).get("schemas", {})
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            request_schema = ""
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                _, request_schema = _resolve(document, media.get("schema", {}))
            responses = []
            for status, response in operation.get("responses", {}).items():
                schema_name = ""
                for media in response.get("content", {}).values():
                    _, schema_name = _resolve(document, media.get("schema", {}))
                responses.append(Response(status, response.get("description", ""), schema_name))
            operations.append(
                Operation(
                    method.upper(),
                    path,
                    operation.get("summary", ""),
                    operation.get("operationId", ""),
                    request_schema,
                    tuple(responses),
                )
            )
            for name in [request_schema, *(r.schema for r in responses)]:
                if name and name not in bodies:
                    bodies[name] = tuple(flatten(document, components[name], placeholders=placeholders))
    info = document.get("info", {})
    return ApiPage(
        info.get("title", ""),
        str(info.get("version", "")),
        document.get("openapi", ""),
        info.get("description", ""),
        tuple(operations),
        bodies,
        placeholders,
    )


# --- the example, from a real prediction ---------------------------------------------------------------------


def example_request() -> dict[str, Any]:
    """A request from the definitions: each required covariate at its reference level (a number: the middle of its
    range), the first optional categorical one at its first other level, the other optional ones left unknown."""
    body: dict[str, Any] = {}
    for cov in COVARIATES:
        levels = api.json_levels(cov)
        if cov.required:
            body[cov.name] = levels[len(levels) // 2] if cov.numeric else levels[cov.levels.index(cov.reference)]
    optional = next((cov for cov in COVARIATES if cov.name in OPTIONAL and not cov.numeric), None)
    if optional is not None:
        body[optional.name] = api.to_json_value(optional, optional.non_reference[0])
    return body


def _as_sent(result: Mapping[str, Any]) -> dict[str, Any]:
    """An answer as the API sends it (non-finite numbers as null)."""
    return json.loads(json.dumps(result, allow_nan=True), parse_constant=lambda _: None)


def predict_response(model: Model, body: Mapping[str, Any]) -> dict[str, Any]:
    """What ``POST /api/v1/predict`` answers for a valid ``body`` (``calculator.api.prediction_body``)."""
    patient, options, errors = api.parse_predict(dict(body))
    errors += api.condition_errors(model, options.conditional_on_months)
    if errors:
        raise ValueError(f"the example request is not valid: {errors}")
    return _as_sent(api.prediction_body(model, patient, options))


def batch_request() -> dict[str, Any]:
    """A batch from the definitions: the example patient, the same patient with its first optional categorical input
    unknown, and one with a required input out of range (refused on its own), at two horizons."""
    first = example_request()
    second = {key: value for key, value in first.items() if key in REQUIRED}
    required = next(cov for cov in COVARIATES if cov.required and not cov.numeric)
    wrong = {**second, required.name: "?" if api.json_type(required) == "string" else 0}
    return {"patients": [first, second, wrong], "horizons_months": list(DEFAULT_HORIZONS_MONTHS[:2])}


def batch_response(model: Model, body: Mapping[str, Any]) -> dict[str, Any]:
    """What ``POST /api/v1/predict/batch`` answers for a valid ``body`` (``calculator.api.batch_body``)."""
    parsed = api.parse_batch(dict(body), max_patients=len(body.get("patients") or ()))
    errors = parsed.errors + api.condition_errors(model, parsed.options.conditional_on_months)
    if errors:
        raise ValueError(f"the example batch is not valid: {errors}")
    return _as_sent(api.batch_body(model, parsed))


def error_example(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request with its first field misspelt, and the errors the API answers."""
    wrong = dict(body)
    first = next(iter(wrong))
    wrong = {(first[:-1] if key == first else key): value for key, value in wrong.items()}
    _, _, errors = api.parse_request(wrong)
    return wrong, {"errors": errors}


def make_example(model: Model) -> Example:
    request = example_request()
    response = predict_response(model, request)
    wrong, errors = error_example(request)
    batch_body = batch_request()
    batch = batch_response(model, batch_body)
    condition = min(12.0, float(int(api.last_condition_months(model) / 2)))
    return Example(
        request, response, abridged_json(response), wrong, errors, batch_body, batch, abridged_json(batch), condition
    )


_examples: dict[str, Example] = {}


def example_for(model: Model) -> Example:
    """The example for the served model, made once per model version."""
    if model.sha256 not in _examples:
        _examples.clear()
        _examples[model.sha256] = make_example(model)
    return _examples[model.sha256]


# --- showing JSON -----------------------------------------------------------------------------------------------


def _scalar(value: Any, digits: int) -> str:
    if isinstance(value, float) and math.isfinite(value):
        value = round(value, digits)
    return json.dumps(value, ensure_ascii=False)


def abridged_json(value: Any, keep: int = EXAMPLE_ARRAY_ITEMS, digits: int = EXAMPLE_DIGITS, indent: int = 0) -> str:
    """JSON as people read it: indented objects, arrays of numbers on one line, long arrays cut after ``keep``
    values with '… N more', numbers rounded to ``digits`` decimals. Not for machines (the cut is not JSON)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {abridged_json(v, keep, digits, indent + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        more = len(value) - keep if len(value) > keep + 1 else 0
        shown = value[:keep] if more else value
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            text = ", ".join(_scalar(v, digits) for v in shown)
            return f"[{text}{f', … {more} more' if more else ''}]"
        items = [inner + abridged_json(v, keep, digits, indent + 1) for v in shown]
        if more:
            items.append(f"{inner}… {more} more")
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return _scalar(value, digits)
