"""The JSON API: strict validation, the CONTRACT's response shape, the OpenAPI document, no 5xx."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calculator import api
from prognosis import notices
from prognosis.covariates import (
    COVARIATES,
    DEFAULT_HORIZONS_MONTHS,
    ENDPOINTS,
    OPTIONAL,
    OPTIONS,
    REQUIRED,
    Covariate,
    options_text,
)
from prognosis.spec import NUMERIC
from tests.extension_definitions import KI67

URL = "/api/v1/predict"
GOOD = {"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": True}


def post_json(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


BAD_BODIES = [
    ("unknown field", {**GOOD, "age": 61}, "age"),
    ("misspelled optional", {**GOOD, "octreotid": True}, "octreotid"),
    ("bool grade", {**GOOD, "who_grade": True}, "who_grade"),
    ("string grade", {**GOOD, "who_grade": "2"}, "who_grade"),
    ("float grade", {**GOOD, "who_grade": 2.0}, "who_grade"),
    ("grade 4", {**GOOD, "who_grade": 4}, "who_grade"),
    ("grade 0", {**GOOD, "who_grade": 0}, "who_grade"),
    ("burden unknown level", {**GOOD, "tumor_burden": "unknown"}, "tumor_burden"),
    ("burden alias", {**GOOD, "tumor_burden": "<25"}, "tumor_burden"),
    ("burden number", {**GOOD, "tumor_burden": 30}, "tumor_burden"),
    ("null required", {**GOOD, "who_grade": None}, "who_grade"),
    ("missing required", {"who_grade": 1, "tumor_burden": "<25%"}, "prior_resection_ablation"),
    ("binary as 1", {**GOOD, "prior_resection_ablation": 1}, "prior_resection_ablation"),
    ("binary as string", {**GOOD, "extrahepatic_metastases": "true"}, "extrahepatic_metastases"),
    ("tumor type unknown level", {**GOOD, "tumor_type": "liver"}, "tumor_type"),
    ("tumor type as number", {**GOOD, "tumor_type": 2}, "tumor_type"),
    ("optional as list", {**GOOD, "cytotoxic": [True]}, "cytotoxic"),
    ("horizon zero", {**GOOD, "horizons_months": [0, 12]}, "horizons_months"),
    ("horizon negative", {**GOOD, "horizons_months": [-12]}, "horizons_months"),
    ("horizon too far", {**GOOD, "horizons_months": [12, 241]}, "horizons_months"),
    ("horizons not a list", {**GOOD, "horizons_months": 12}, "horizons_months"),
    ("horizons empty", {**GOOD, "horizons_months": []}, "horizons_months"),
    ("too many horizons", {**GOOD, "horizons_months": list(range(1, 12))}, "horizons_months"),
    ("horizon as string", {**GOOD, "horizons_months": ["12"]}, "horizons_months"),
    ("horizon as bool", {**GOOD, "horizons_months": [True]}, "horizons_months"),
    ("horizons null", {**GOOD, "horizons_months": None}, "horizons_months"),
    ("array body", [GOOD], "body"),
    ("string body", "who_grade=2", "body"),
    ("null body", None, "body"),
    ("empty object", {}, "who_grade"),
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES])
def test_bad_bodies_get_400_naming_the_field(client, body, field):
    response = post_json(client, body)
    assert response.status_code == 400
    errors = response.json["errors"]
    assert field in [e["field"] for e in errors], errors
    assert all(set(e) == {"field", "message"} and e["message"] for e in errors)


BAD_REQUESTS = [
    ("malformed JSON", {"data": b'{"who_grade": 2,', "content_type": "application/json"}, 400),
    ("NaN", {"data": b'{"who_grade": NaN}', "content_type": "application/json"}, 400),
    ("Infinity", {"data": b'{"horizons_months": [Infinity]}', "content_type": "application/json"}, 400),
    ("duplicate key", {"data": b'{"who_grade": 2, "who_grade": 9}', "content_type": "application/json"}, 400),
    ("not UTF-8", {"data": b'{"tumor_type": "\xff\xfe"}', "content_type": "application/json"}, 400),
    ("absurdly deep", {"data": b"[" * 8000 + b"]" * 8000, "content_type": "application/json"}, 400),
    ("huge integer", {"data": b'{"who_grade": ' + b"9" * 5000 + b"}", "content_type": "application/json"}, 400),
    ("empty body", {"data": b"", "content_type": "application/json"}, 400),
    ("text/plain", {"data": json.dumps(GOOD), "content_type": "text/plain"}, 415),
    ("form encoded", {"data": {"who_grade": "2"}}, 415),
    ("no content type", {"data": json.dumps(GOOD)}, 415),
    ("oversize", {"data": json.dumps({**GOOD, "x": "y" * 20_000}), "content_type": "application/json"}, 413),
]


@pytest.mark.parametrize(
    ("kwargs", "status"), [(k, s) for _, k, s in BAD_REQUESTS], ids=[i for i, _, _ in BAD_REQUESTS]
)
def test_bad_requests_get_4xx_about_the_body(client, kwargs, status):
    response = client.post(URL, **kwargs)
    assert response.status_code == status
    assert response.json["errors"][0]["field"] == "body"
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_misspelled_field_gets_a_suggestion(client):
    errors = post_json(client, {**GOOD, "octreotid": True}).json["errors"]
    assert errors == [{"field": "octreotid", "message": "unknown field; did you mean 'octreotide'?"}]


@pytest.mark.parametrize(
    "field,value,expected",
    [("who_grade", "3", "send 3 without quotes"), ("prior_resection_ablation", "true", "send true without quotes")],
)
def test_a_quoted_number_or_boolean_is_named_as_such(client, field, value, expected):
    body = {"who_grade": 2, "tumor_burden": "<25%", "prior_resection_ablation": False, field: value}
    response = client.post("/api/v1/predict", json=body)
    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["field"] == field and expected in error["message"], error


def test_a_good_request_answers_with_the_contract(client):
    response = post_json(client, GOOD)
    assert response.status_code == 200
    body = response.json
    assert {"model", "predictions", "warnings"} <= set(body)
    assert set(body["model"]) >= {"model_version", "sha256", "data_source"}
    assert body["model"]["data_source"] == "synthetic"
    assert set(body["predictions"]) == set(ENDPOINTS)
    for endpoint in ENDPOINTS:
        assert set(body["predictions"][endpoint]) == set(OPTIONS)
        for option in OPTIONS:
            curve = body["predictions"][endpoint][option]
            assert {"times_months", "survival", "ci_lower", "ci_upper", "median_months", "landmarks"} <= set(curve)
            n = len(curve["times_months"])
            assert n > 1 and len(curve["survival"]) == len(curve["ci_lower"]) == len(curve["ci_upper"]) == n
            assert set(curve["median_months"]) == {"estimate", "ci_lower", "ci_upper"}
            assert [p["months"] for p in curve["landmarks"]] == list(DEFAULT_HORIZONS_MONTHS)
            assert all(set(p) == {"months", "survival", "ci_lower", "ci_upper"} for p in curve["landmarks"])
    assert isinstance(body["warnings"], list) and all(isinstance(w, str) for w in body["warnings"])
    assert body["inputs"] == {**GOOD, **dict.fromkeys(OPTIONAL)}
    assert len(response.data) < 100_000


def test_horizons_and_every_optional_input(client):
    body = {
        **GOOD,
        "tumor_type": "bronchial",
        "extrahepatic_metastases": False,
        "octreotide": True,
        "biologic": False,
        "cytotoxic": True,
        "horizons_months": [6, 18.5],
    }
    response = post_json(client, body)
    assert response.status_code == 200
    for endpoint in ENDPOINTS:
        for option in OPTIONS:
            assert [p["months"] for p in response.json["predictions"][endpoint][option]["landmarks"]] == [6, 18.5]
    assert response.json["unknown"] == []


def test_null_and_absent_optional_inputs_are_the_same(client):
    absent = post_json(client, GOOD).json
    null = post_json(client, {**GOOD, **dict.fromkeys(OPTIONAL)}).json
    assert absent == null


def test_the_api_needs_no_csrf_token(csrf_app):
    assert post_json(csrf_app.test_client(), GOOD).status_code == 200


def test_without_a_model_the_api_answers_503_json(broken_app):
    response = post_json(broken_app.test_client(), GOOD)
    assert response.status_code == 503
    assert response.json["errors"][0]["field"] == "model"


@pytest.mark.parametrize(("method", "path", "status"), [("get", URL, 405), ("post", "/api/v1/nothing", 404)])
def test_api_errors_are_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json and response.json["errors"][0]["message"]


def test_openapi_document_describes_the_request_from_covariates(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.data)
    assert document["openapi"].startswith("3.1")
    assert "post" in document["paths"][URL]
    schemas = document["components"]["schemas"]
    request = schemas["PredictRequest"]
    assert request["additionalProperties"] is False
    assert set(request["properties"]) == {c.name for c in COVARIATES} | {"horizons_months", "conditional_on_months"}
    assert request["required"] == list(REQUIRED)
    assert request["properties"]["who_grade"]["enum"] == [1, 2, 3]
    assert request["properties"]["tumor_burden"]["enum"] == ["<25%", "25-50%", "50-75%", ">75%"]
    assert request["properties"]["tumor_type"]["enum"][-1] is None
    assert request["properties"]["octreotide"]["type"] == ["boolean", "null"]
    refs = {ref.split("/")[-1] for ref in _refs(document)}
    assert refs <= set(schemas)
    assert set(schemas["PredictResponse"]["required"]) == {"model", "predictions", "warnings"}


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_request_schema_and_the_validator_agree_on_types():
    for cov in COVARIATES:
        for value in api.json_levels(cov):
            patient, _, errors = api.parse_request({**GOOD, cov.name: value})
            assert not errors and patient[cov.name] in cov.levels


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_values = st.sampled_from([v for c in COVARIATES for v in api.json_levels(c)]) | json_values
bodies = st.dictionaries(st.sampled_from(api.FIELDS) | st.text(max_size=10), field_values, max_size=9) | json_values


def test_random_bodies_never_yield_a_5xx(app):
    client = app.test_client()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies)
    def check(body):
        response = post_json(client, body)
        assert response.status_code in (200, 400), response.data
        assert response.is_json

    check()


def test_random_bytes_never_yield_a_5xx(app):
    client = app.test_client()

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def check(data):
        response = client.post(URL, data=data, content_type="application/json")
        assert response.status_code in (200, 400)

    check()


valid_bodies = st.fixed_dictionaries(
    {c.name: st.sampled_from(api.json_levels(c)) for c in COVARIATES if c.required},
    optional={
        **{c.name: st.none() | st.sampled_from(api.json_levels(c)) for c in COVARIATES if not c.required},
        "horizons_months": st.lists(
            st.floats(min_value=0, max_value=240, exclude_min=True) | st.integers(1, 240), min_size=1, max_size=10
        ),
    },
)


def test_every_valid_body_scores(app):
    client = app.test_client()

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=valid_bodies)
    def check(body):
        response = post_json(client, body)
        assert response.status_code == 200, response.json
        months = body.get("horizons_months", list(DEFAULT_HORIZONS_MONTHS))
        for endpoint in ENDPOINTS:
            for option in OPTIONS:
                assert [p["months"] for p in response.json["predictions"][endpoint][option]["landmarks"]] == months

    check()


# --- numeric covariates and the texts every answer carries --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (12.5, "12.5"),
        (0, "0.0"),
        (100, "100.0"),
        (100.5, None),
        (-1, None),
        (True, None),
        ("12", None),
        (None, None),
        ([12], None),
        (10**400, None),
    ],
)
def test_a_numeric_covariate_takes_a_json_number_within_its_range(value, level):
    assert api._level(KI67, value) == level
    assert api.json_type(KI67) == "number"
    if level is not None:
        assert api.to_json_value(KI67, level) == float(value)


def test_a_numeric_covariate_is_documented_with_its_range():
    schema = api._covariate_schema(KI67)
    assert schema["type"] == "number" and schema["minimum"] == 0.0 and schema["maximum"] == 100.0
    assert "In %." in schema["description"]
    assert api._expected(KI67) == "a number at least 0 and at most 100 (%)"
    assert api.json_levels(KI67) == [0.0, 50.0, 100.0]
    optional = Covariate(name="x", label="X", required=True, help="", kind=NUMERIC)
    assert api._covariate_schema(optional)["type"] == "number" and "minimum" not in api._covariate_schema(optional)


def test_the_openapi_document_names_options_endpoints_and_their_definitions(client):
    info = client.get("/api/v1/openapi.json").json["info"]["description"]
    assert options_text("or") in info and notices.OBSERVATIONAL in info
    for endpoint in ENDPOINTS.values():
        assert endpoint.label.lower() in info and endpoint.definition in info


def test_every_answer_carries_the_observational_caveat_and_the_synthetic_notice(app):
    from calculator.model_store import get_model

    with app.app_context():
        evidence = get_model().evidence_patients
    body = post_json(app.test_client(), GOOD).json
    assert evidence and notices.OBSERVATIONAL in body["warnings"]
    assert notices.synthetic_notice(evidence) in body["warnings"]
