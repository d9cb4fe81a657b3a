"""Hardening: security headers everywhere, CSRF, body limits, cookies, rate limiting, request ids, logs without
patient data, and a tampered artifact refused before it is unpickled."""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest

from calculator import create_app
from calculator.rate_limit import TokenBuckets
from tests.conftest import TEST_CONFIG, VALID_FORM

API = "/api/v1/predict"
GOOD = {"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": True}
BIG = 20 * 1024  # over the default 16 KiB body limit


def csrf_token(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


# --- security headers on every kind of response -------------------------------------------------------------------

# (id, method, path, request kwargs, expected status)
RESPONSES = [
    ("form", "get", "/", {}, 200),
    ("result", "get", "/result?who_grade=1&tumor_burden=%3E75%25&prior_resection_ablation=1", {}, 200),
    ("invalid permalink", "get", "/result?who_grade=9", {}, 400),
    ("form post", "post", "/", {"data": VALID_FORM}, 303),
    ("form post, invalid", "post", "/", {"data": {"who_grade": "9"}}, 200),
    ("model card", "get", "/model", {}, 200),
    ("static", "get", "/static/js/calculator.js", {}, 200),
    ("404", "get", "/nope", {}, 404),
    ("405", "delete", "/", {}, 405),
    ("413 form", "post", "/", {"data": {**VALID_FORM, "x": "y" * BIG}}, 413),
    ("healthz", "get", "/healthz", {}, 200),
    ("readyz", "get", "/readyz", {}, 200),
    ("openapi", "get", "/api/v1/openapi.json", {}, 200),
    ("api 200", "post", API, {"json": GOOD}, 200),
    ("api 400", "post", API, {"json": {"who_grade": 4}}, 400),
    ("api 413", "post", API, {"data": "[" + "1," * BIG + "1]", "content_type": "application/json"}, 413),
    ("api 415", "post", API, {"data": "who_grade=2"}, 415),
    ("api 404", "get", "/api/v1/nothing", {}, 404),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"), [r[1:] for r in RESPONSES], ids=[r[0] for r in RESPONSES]
)
def test_every_response_carries_the_security_headers(client, method, path, kwargs, status):
    with getattr(client, method)(path, **kwargs) as response:
        assert response.status_code == status
        csp = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert directives["script-src"] == "'self'" and directives["default-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_errors_under_the_api_are_json_with_field_level_messages(client):
    for method, path, kwargs, _ in [r[1:] for r in RESPONSES if r[0].startswith("api 4")]:
        response = getattr(client, method)(path, **kwargs)
        errors = response.json["errors"]
        assert errors and all(e["field"] and e["message"] for e in errors)


# --- CSRF ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged", "from another session"])
def test_a_form_post_without_a_valid_csrf_token_is_refused_with_400(csrf_app, token):
    client = csrf_app.test_client()
    csrf_token(client)  # this client has a session with its own token
    if token == "from another session":
        token = csrf_token(csrf_app.test_client())
    data = dict(VALID_FORM) if token is None else {**VALID_FORM, "csrf_token": token}
    response = client.post("/", data=data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The form has expired or was not sent from this site" in page
    assert 'name="who_grade"' not in page  # refused, not the form silently re-rendered


def test_the_token_of_the_same_session_is_accepted(csrf_app):
    client = csrf_app.test_client()
    assert client.post("/", data={**VALID_FORM, "csrf_token": csrf_token(client)}).status_code == 303


# --- body size ----------------------------------------------------------------------------------------------------


def test_body_size_limit_is_configurable(model_dir):
    client = create_app({**TEST_CONFIG, "MODEL_DIR": model_dir, "MAX_CONTENT_LENGTH": 512}).test_client()
    padded = {**GOOD, "tumor_type": None}
    body = json.dumps(padded).replace("{", "{" + " " * 600, 1)
    response = client.post(API, data=body, content_type="application/json")
    assert response.status_code == 413 and response.json["errors"][0]["field"] == "body"
    assert client.post(API, json=GOOD).status_code == 200


# --- cookies --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_httponly_samesite_and_secure_when_configured(model_dir, secure):
    app = create_app({**TEST_CONFIG, "MODEL_DIR": model_dir, "SESSION_COOKIE_SECURE": secure})
    cookies = app.test_client().get("/").headers.getlist("Set-Cookie")
    assert cookies, "the form's CSRF token lives in the session cookie"
    for cookie in cookies:
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite"} <= attributes
        assert "samesite=lax" in cookie.lower()
        assert ("secure" in attributes) is secure


def test_the_api_sets_no_cookie(client):
    assert client.post(API, json=GOOD).headers.getlist("Set-Cookie") == []


# --- rate limiting ----------------------------------------------------------------------------------------------------


def limited_client(model_dir, per_minute: int, **config):
    return create_app(
        {**TEST_CONFIG, "MODEL_DIR": model_dir, "RATE_LIMIT_PER_MINUTE": per_minute, **config}
    ).test_client()


def test_the_api_answers_429_with_a_json_error_past_the_limit(model_dir):
    client = limited_client(model_dir, 5)
    assert [client.post(API, json=GOOD).status_code for _ in range(5)] == [200] * 5
    refused = client.post(API, json=GOOD)
    assert refused.status_code == 429
    assert refused.is_json and refused.json["errors"][0]["field"] == "request"
    assert "at most 5 per minute" in refused.json["errors"][0]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-Request-ID"] and refused.headers["X-Content-Type-Options"] == "nosniff"
    # Per client address; the pages and the probes are not limited.
    other = {"REMOTE_ADDR": "10.0.0.2"}
    assert client.post(API, json=GOOD, environ_base=other).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_key(model_dir):
    client = limited_client(model_dir, 1, PROXY_HOPS=1)
    first = {"X-Forwarded-For": "10.1.1.1"}
    assert client.post(API, json=GOOD, headers=first).status_code == 200
    assert client.post(API, json=GOOD, headers=first).status_code == 429
    assert client.post(API, json=GOOD, headers={"X-Forwarded-For": "10.1.1.2"}).status_code == 200


def test_rate_limiting_is_off_when_set_to_zero(client):
    assert all(client.post(API, json={"who_grade": 9}).status_code == 400 for _ in range(150))


def test_token_buckets_refill_at_the_configured_rate():
    buckets = TokenBuckets(per_minute=60, burst=3)  # one token a second, three saved up at most
    assert [buckets.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=0.0) == pytest.approx(1.0)
    assert buckets.take("a", now=0.5) == pytest.approx(0.5)
    assert buckets.take("a", now=1.0) == 0.0
    assert buckets.take("b", now=1.0) == 0.0  # another client has its own bucket
    assert [buckets.take("a", now=100.0) for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_token_buckets_forget_idle_clients_to_bound_memory(monkeypatch):
    monkeypatch.setattr(TokenBuckets, "MAX_KEYS", 100)
    buckets = TokenBuckets(per_minute=60)
    for i in range(1_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(buckets._buckets) <= 100


# --- request ids ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("4f1c2a9e-77b0-4c1e-9d55-0a2c3b4d5e6f", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ('"}{"level": "CRITICAL', False),
        ("grade 3; burden >75%", False),
        ("", False),
    ],
)
def test_a_sane_request_id_is_kept_and_anything_else_replaced(client, sent, kept):
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    echoed = response.headers["X-Request-ID"]
    assert (echoed == sent) is kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_generated_request_ids_differ(client):
    assert len({client.get("/healthz").headers["X-Request-ID"] for _ in range(20)}) == 20


# --- logs: JSON lines, request ids, never a patient's inputs ------------------------------------------------------


def log_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_logs_are_json_lines_with_request_ids_and_no_patient_inputs(app, capsys):
    client = app.test_client()
    capsys.readouterr()
    patient = {
        "who_grade": 3,
        "tumor_burden": ">75%",
        "prior_resection_ablation": False,
        "tumor_type": "bronchial",
        "extrahepatic_metastases": True,
        "octreotide": False,
        "horizons_months": [17.77, 33.33],
    }
    api = client.post(API, json=patient, headers={"X-Request-ID": "trace-api-1"})
    assert api.status_code == 200
    form = {
        "who_grade": "3",
        "tumor_burden": "",
        "tumor_burden_pct": "81.234",
        "prior_resection_ablation": "1",
        "tumor_type": "bronchial",
    }
    posted = client.post("/", data=form)
    assert posted.status_code == 303
    page = client.get(posted.headers["Location"], headers={"X-Request-ID": "trace-page-1"})
    assert page.status_code == 200 and "81.234" in page.get_data(as_text=True)
    invalid = client.post(API, json={**patient, "who_grade": 31337, "tumor_type": "bronchial-typical"})
    assert invalid.status_code == 400
    bad_form = client.post("/", data={**form, "tumor_burden_pct": "4242.5"})
    assert bad_form.status_code == 200

    out = capsys.readouterr().out
    records = log_records(out)  # every line is one JSON object
    requests = [r for r in records if r["message"] == "request"]
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", API, 200),
        ("POST", "/", 303),
        ("GET", "/result", 200),
        ("POST", API, 400),
        ("POST", "/", 200),
    ]
    by_id = {r["request_id"]: r for r in requests}
    assert by_id["trace-api-1"]["path"] == API and by_id["trace-page-1"]["path"] == "/result"
    assert all(isinstance(r["duration_ms"], float) and r["level"] == "INFO" for r in requests)
    for value in (
        "bronchial",
        ">75%",
        "%3E75%25",
        "17.77",
        "33.33",
        "81.234",
        "31337",
        "4242.5",
        "tumor_burden",
        "who_grade",
        "?",
    ):
        assert value not in out, value


def test_a_failing_model_is_logged_without_inputs(broken_app, capsys):
    client = broken_app.test_client()
    capsys.readouterr()
    assert client.post(API, json={**GOOD, "tumor_type": "bronchial"}).status_code == 503
    records = log_records(capsys.readouterr().out)
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and all("request_id" in r for r in errors)
    assert "bronchial" not in json.dumps(records)


# --- a tampered artifact is refused before unpickling ---------------------------------------------------------


class _Exploit:
    """Unpickling this runs code: it would create a file. It must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_artifact_is_refused_before_unpickling_and_the_app_is_not_ready(model_dir, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(model_dir, tampered)
    marker = tmp_path / "pwned"
    (tampered / "hpfs.npz").write_bytes(pickle.dumps(_Exploit(marker)))  # the arrays the app loads, now a pickle
    client = create_app({**TEST_CONFIG, "MODEL_DIR": tampered}).test_client()

    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "not ready"
    assert "hpfs.npz does not match its SHA-256" in ready.json["reason"]
    api = client.post(API, json=GOOD)
    assert api.status_code == 503 and api.json["errors"][0]["field"] == "model"
    assert client.get("/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0").status_code == 503
    assert not marker.exists()


@pytest.mark.parametrize(("size", "status"), [(100, 400), (BIG, 413)])
def test_a_streamed_body_without_a_length_is_bounded_too(client, size, status):
    """Chunked bodies have no Content-Length for werkzeug to check: they are read up to the limit and refused past it
    (werkzeug alone would cut them silently and judge the truncated body)."""
    body = io.BytesIO(b"[" + b"0," * (size // 2) + b"0]")
    response = client.post(
        API,
        input_stream=body,
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )  # as gunicorn
    assert response.status_code == status
    assert response.json["errors"][0]["field"] == "body"
