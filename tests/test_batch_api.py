"""``POST /api/v1/predict/batch`` (issue 12.2): many patients per request, each with the single route's numbers or its
own errors, a documented limit on patients and body size, rate limiting that counts patients."""

from __future__ import annotations

import io
import itertools
import json
import random
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from calculator import api, api_docs, create_app, views
from calculator.config import Config
from prognosis.covariates import COVARIATES, DEFAULT_HORIZONS_MONTHS, ENDPOINTS, OPTIONS
from tests.conftest import TEST_CONFIG

URL = "/api/v1/predict/batch"
SINGLE = "/api/v1/predict"
GOOD = {"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": True}


def post(client, body, url=URL):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def mixed_patients(n: int, seed: int = 7) -> list[dict]:
    """Patients drawn over every covariate's values, optional ones often unknown (absent or null), with repeats."""
    rng = random.Random(seed)
    patients = []
    for _ in range(n):
        patient = {}
        for cov in COVARIATES:
            values = api.json_levels(cov)
            if cov.required:
                patient[cov.name] = rng.choice(values)
            elif rng.random() < 0.5:
                patient[cov.name] = rng.choice([*values, None])
        patients.append(patient)
    return patients + patients[:3]  # identical patients are scored once and answered for each


def assert_same(batch_option: dict, single_option: dict) -> None:
    """A batch result's option equals the single route's landmarks and median to 1e-9."""
    assert [p["months"] for p in batch_option["landmarks"]] == [p["months"] for p in single_option["landmarks"]]
    for got, expected in zip(batch_option["landmarks"], single_option["landmarks"], strict=True):
        for key in ("survival", "ci_lower", "ci_upper"):
            if expected[key] is None:
                assert got[key] is None
            else:
                assert got[key] == pytest.approx(expected[key], abs=1e-9, rel=0)
    for key in ("estimate", "ci_lower", "ci_upper"):
        expected = single_option["median_months"][key]
        got = batch_option["median_months"][key]
        assert (got is None) if expected is None else got == pytest.approx(expected, abs=1e-9, rel=0)


@pytest.mark.parametrize(("horizons", "condition"), [(None, None), ([6, 18.5, 24, 200], None), ([24, 36], 12.0)])
def test_every_row_equals_the_single_patient_api(client, horizons, condition):
    patients = mixed_patients(40)
    body = {"patients": patients}
    if horizons:
        body["horizons_months"] = horizons
    if condition:
        body["conditional_on_months"] = condition
    response = post(client, body)
    assert response.status_code == 200, response.json
    answer = response.json
    assert answer["scored"] == len(patients) and answer["refused"] == 0
    assert [r["index"] for r in answer["results"]] == list(range(len(patients)))
    assert answer["horizons_months"] == [float(h) for h in (horizons or DEFAULT_HORIZONS_MONTHS)]
    for patient, result in zip(patients, answer["results"], strict=True):
        single = post(
            client,
            {
                **patient,
                **({"horizons_months": horizons} if horizons else {}),
                **({"conditional_on_months": condition} if condition else {}),
            },
            SINGLE,
        ).json
        assert set(result["predictions"]) == set(ENDPOINTS)
        for name in ENDPOINTS:
            assert set(result["predictions"][name]) == set(OPTIONS)
            for option in OPTIONS:
                assert_same(result["predictions"][name][option], single["predictions"][name][option])
        assert result["unknown"] == single["unknown"]
        assert result["few_similar"] == single["few_similar"]
        assert "errors" not in result
    assert answer["condition"] == (None if condition is None else single["condition"])
    assert answer["model"] == {key: single["model"][key] for key in answer["model"]}


def single_errors(client, patient) -> list[dict]:
    response = post(client, patient, SINGLE)
    assert response.status_code == 400
    return response.json["errors"]


def test_each_patient_gets_its_own_errors_and_the_others_are_scored(client):
    bad = [
        {**GOOD, "who_grade": 4},
        {**GOOD, "octreotid": True},
        {"tumor_burden": "<25%"},
        {**GOOD, "tumor_type": "liver", "cytotoxic": "yes"},
    ]
    patients = [GOOD, *bad, {**GOOD, "horizons_months": [12]}, 7, None, [GOOD], {**GOOD, "who_grade": 1}]
    answer = post(client, {"patients": patients}).json
    results = answer["results"]
    assert answer["scored"] == 2 and answer["refused"] == len(patients) - 2
    assert "predictions" in results[0] and "predictions" in results[-1]
    for i, patient in enumerate(bad, start=1):
        assert results[i] == {"index": i, "errors": single_errors(client, patient)}  # the single route's messages
    horizons = results[len(bad) + 1]["errors"]
    assert horizons == [
        {
            "field": "horizons_months",
            "message": "unknown field in a patient: give horizons_months once for the whole batch, beside patients",
        }
    ]
    for i in range(len(bad) + 2, len(patients) - 1):
        assert results[i]["errors"] == [{"field": "patient", "message": "must be a JSON object"}]


BAD_BATCHES = [
    ("not an object", [GOOD], "body", 400),
    ("no patients", {"horizons_months": [12]}, "patients", 400),
    ("empty list", {"patients": []}, "patients", 400),
    ("patients not a list", {"patients": GOOD}, "patients", 400),
    ("unknown key", {"patients": [GOOD], "patient": GOOD}, "patient", 400),
    ("bad horizons", {"patients": [GOOD], "horizons_months": [0]}, "horizons_months", 400),
    ("bad condition", {"patients": [GOOD], "conditional_on_months": -2}, "conditional_on_months", 400),
    ("condition past the end", {"patients": [GOOD], "conditional_on_months": 10_000}, "conditional_on_months", 400),
]


@pytest.mark.parametrize(("body", "field", "status"), [b[1:] for b in BAD_BATCHES], ids=[b[0] for b in BAD_BATCHES])
def test_a_batch_that_cannot_be_read_is_refused_as_a_whole(client, body, field, status):
    response = post(client, body)
    assert response.status_code == status
    assert field in [e["field"] for e in response.json["errors"]]


def test_the_patient_limit_is_enforced_with_a_clear_400(client):
    most = Config.BATCH_MAX_PATIENTS
    assert post(client, {"patients": [GOOD] * most}).status_code == 200
    response = post(client, {"patients": [GOOD] * (most + 1)})
    assert response.status_code == 400
    assert response.json["errors"] == [
        {
            "field": "patients",
            "message": f"too many patients: at most {most} per "
            f"request, {most + 1} sent; split them over several requests",
        }
    ]


def test_the_batch_has_a_body_limit_of_its_own_that_fits_its_patients(client, app):
    full = {cov.name: api.json_levels(cov)[-1] for cov in COVARIATES}
    # The largest batch, pretty-printed with every field, fits the batch limit ...
    body = json.dumps({"patients": [full] * Config.BATCH_MAX_PATIENTS}, indent=2)
    assert app.config["MAX_CONTENT_LENGTH"] < len(body) <= Config.BATCH_MAX_CONTENT_LENGTH
    assert client.post(URL, data=body, content_type="application/json").status_code == 200
    # ... which the single route keeps refusing.
    padded = json.dumps({**GOOD, "tumor_type": None}).replace("{", "{" + " " * len(body), 1)
    assert client.post(SINGLE, data=padded, content_type="application/json").status_code == 413
    # Past the batch limit: 413, saying what the limit is.
    over = json.dumps({"patients": [GOOD], "padding": "x" * Config.BATCH_MAX_CONTENT_LENGTH})
    response = client.post(URL, data=over, content_type="application/json")
    assert response.status_code == 413 and response.json["errors"][0]["field"] == "body"
    assert f"at most {Config.BATCH_MAX_CONTENT_LENGTH} bytes" in response.json["errors"][0]["message"]


@pytest.mark.parametrize(("size", "status"), [(40_000, 200), (Config.BATCH_MAX_CONTENT_LENGTH + 10, 413)])
def test_a_streamed_batch_is_bounded_by_the_batch_limit(client, size, status):
    patients = json.dumps([GOOD] * 2000)[1:-1]
    text = '{"patients": [' + patients[: max(0, size - 20)].rsplit("}", 1)[0] + "}]}"
    if status == 413:
        text = '{"patients": [' + ", ".join([json.dumps(GOOD)] * (size // 60)) + "]}"
    response = client.post(
        URL,
        input_stream=io.BytesIO(text.encode()),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert response.status_code == status, response.json
    if status == 413:
        assert response.json["errors"][0]["field"] == "body"


def test_the_limits_are_configurable(model_dir):
    client = create_app(
        {**TEST_CONFIG, "MODEL_DIR": model_dir, "BATCH_MAX_PATIENTS": 3, "BATCH_MAX_CONTENT_LENGTH": 2048}
    ).test_client()
    assert post(client, {"patients": [GOOD] * 3}).status_code == 200
    assert post(client, {"patients": [GOOD] * 4}).status_code == 400
    assert (
        client.post(
            URL, data=json.dumps({"patients": [GOOD], "x": "y" * 3000}), content_type="application/json"
        ).status_code
        == 413
    )
    document = client.get("/api/v1/openapi.json").json
    assert document["components"]["schemas"]["BatchRequest"]["properties"]["patients"]["maxItems"] == 3
    assert "At most 3 patients per request" in document["paths"][URL]["post"]["description"]
    assert "at most 2048 bytes" in document["paths"][URL]["post"]["description"]


def test_rate_limiting_counts_a_batch_by_its_patients(model_dir):
    per = Config.BATCH_PATIENTS_PER_REQUEST
    client = create_app({**TEST_CONFIG, "MODEL_DIR": model_dir, "RATE_LIMIT_PER_MINUTE": 20}).test_client()
    # 20 tokens: a batch of 10 x per patients costs 10, five single requests 5; another such batch does not fit.
    assert post(client, {"patients": [GOOD] * (10 * per)}).status_code == 200
    assert [client.post(SINGLE, json=GOOD).status_code for _ in range(5)] == [200] * 5
    refused = post(client, {"patients": [GOOD] * (10 * per)})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert f"a batch of {10 * per} patients counts as 10 requests" in refused.json["errors"][0]["message"]
    # The refused batch took only its arrival's token: single requests still pass.
    assert [client.post(SINGLE, json=GOOD).status_code for _ in range(3)] == [200] * 3
    # A batch larger than the bucket still passes once the client has been idle: it costs at most the bucket.
    other = {"REMOTE_ADDR": "10.0.0.9"}
    big = client.post(
        URL,
        data=json.dumps({"patients": [GOOD] * Config.BATCH_MAX_PATIENTS}),
        content_type="application/json",
        environ_base=other,
    )
    assert big.status_code == 200
    assert client.post(SINGLE, json=GOOD, environ_base=other).status_code == 429
    # A refused batch (bad body) costs one request, like any other.
    third = {"REMOTE_ADDR": "10.0.0.10"}
    for _ in range(19):
        assert client.post(URL, json={"patients": []}, environ_base=third).status_code == 400
    assert client.post(SINGLE, json=GOOD, environ_base=third).status_code == 200


def test_the_cost_of_a_batch():
    per = Config.BATCH_PATIENTS_PER_REQUEST
    assert [api.batch_cost(n) for n in (1, per, per + 1, 10 * per)] == [1, 1, 2, 10]


def test_the_document_and_the_page_describe_the_batch(client, app):
    document = client.get("/api/v1/openapi.json").json
    operation = document["paths"][URL]["post"]
    assert operation["operationId"] == "predict_batch"
    assert {"200", "400", "413", "415", "429", "503"} <= set(operation["responses"])
    description = operation["description"]
    assert f"At most {Config.BATCH_MAX_PATIENTS} patients" in description
    assert f"one request per {Config.BATCH_PATIENTS_PER_REQUEST} patients" in description
    schemas = document["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["patients"]["maxItems"] == Config.BATCH_MAX_PATIENTS
    assert set(schemas["BatchResult"]["properties"]) == {"index", "predictions", "unknown", "few_similar", "errors"}
    page = client.get("/api").get_data(as_text=True)
    assert "<code>POST /api/v1/predict/batch</code>" in page and "Fields of BatchResponse" in page
    assert "predictions.&lt;endpoint&gt;.&lt;option&gt;.landmarks[].survival" in page
    # The example on the page is what the API answers.
    with app.app_context():
        example = api_docs.example_for(views.get_model())
    answered = post(client, example.batch_request)
    assert answered.status_code == 200 and answered.json == example.batch_response
    assert example.batch_response["refused"] == 1 and example.batch_response["scored"] == 2
    import html

    text = html.unescape(page)
    assert api_docs.abridged_json(example.batch_request) in text and example.batch_response_text in text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(app, mode):
    operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)[URL]["POST"]
    seen: Counter[int] = Counter()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def check(case):
        seen[case.call_and_validate().status_code] += 1

    check()
    print(dict(seen))
    assert seen[200 if mode is GenerationMode.POSITIVE else 400] >= 20, seen


def test_every_combination_of_a_small_grid_scores(client):
    """Every required combination at once, each with its own answer, in one request."""
    required = [cov for cov in COVARIATES if cov.required]
    patients = [
        dict(zip([c.name for c in required], values, strict=True))
        for values in itertools.product(*(api.json_levels(c) for c in required))
    ]
    answer = post(client, {"patients": patients}).json
    assert answer["scored"] == len(patients)
    firsts = {json.dumps(r["predictions"], sort_keys=True) for r in answer["results"]}
    assert len(firsts) == len(patients)  # no two patients got the same numbers
