"""The pages: result, permalink, CSRF, model card, errors, security headers, health probes."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from calculator.forms import unit_of
from calculator.security import CONTENT_SECURITY_POLICY
from prognosis.covariates import BY_NAME, ENDPOINTS, OPTIONS
from tests.conftest import VALID_FORM


def result_page(client, data: dict[str, str] = VALID_FORM) -> str:
    response = client.post("/", data=data)
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_a_valid_post_redirects_to_the_permalink(client):
    response = client.post("/", data={**VALID_FORM, "tumor_type": "gut", "octreotide": ""})
    assert response.status_code == 303
    assert response.headers["Location"] == "/result?" + urlencode({**VALID_FORM, "tumor_type": "gut"})


def test_the_result_shows_both_charts_with_three_curves_and_bands(client):
    page = result_page(client)
    assert page.count('<svg class="chart"') == len(ENDPOINTS)
    for name in ENDPOINTS:
        figure = page[page.index(f'id="{name}-chart-title"'):]
        figure = figure[:figure.index("</svg>")]
        lines = re.findall(r'<polyline class="line option-\d+" data-option="(\w+)" points="([^"]+)"', figure)
        bands = re.findall(r'<polygon class="band option-\d+" data-option="(\w+)" points="([^"]+)"', figure)
        assert [option for option, _ in lines] == list(OPTIONS)
        assert [option for option, _ in bands] == list(OPTIONS)
        assert all(len(points.split()) > 10 for _, points in lines + bands)
    assert page.count('<script type="application/json" class="chart-data">') == len(ENDPOINTS)


def test_the_result_shows_tables_sentences_caveat_banner_and_model(client, model_dir):
    page = result_page(client)
    assert page.count('<table class="summary">') == len(ENDPOINTS)
    assert page.count('<table class="differences">') == len(ENDPOINTS)
    assert page.count('<details class="data-table">') == len(ENDPOINTS)
    for option in OPTIONS:
        assert re.search(rf"Of 100 patients with these characteristics who received {option} in the data behind this "
                         r"model, about \d+ were free of hepatic progression at 2 years \(95% interval \d+–\d+\)",
                         page)
        assert re.search(rf"who received {option} in the data behind this model, about \d+ were alive at 2 years",
                         page)
    for comparison in ("SIRT vs TACE", "TAE vs TACE", "SIRT vs TAE"):
        assert page.count(f'<th scope="row">{comparison}</th>') == len(ENDPOINTS)
    assert "Treatment was not randomized" in page and "associations" in page
    assert 'class="banner banner-synthetic"' in page and "not for clinical decisions" in page
    assert "test-synthetic-2000" in page
    assert "Please note" in page  # the warnings list


def test_unknown_inputs_are_said_to_be_averaged_over(client):
    page = result_page(client)
    assert "averages over the values these take in training patients with the same known characteristics" in page
    known = result_page(client, {**VALID_FORM, "tumor_type": "gut", "extrahepatic_metastases": "0",
                                 "octreotide": "1", "biologic": "0", "cytotoxic": "0"})
    assert 'class="note unknown-note"' not in known


def test_the_permalink_reproduces_the_result(client):
    posted = result_page(client, {**VALID_FORM, "tumor_burden": "", "tumor_burden_pct": "30", "biologic": "1"})
    direct = client.get("/result?who_grade=2&tumor_burden_pct=30&prior_resection_ablation=0&biologic=1")
    assert direct.status_code == 200
    assert direct.get_data(as_text=True) == posted
    assert f"25-50% (from 30{unit_of(BY_NAME['tumor_burden'].alternative)})" in posted


def test_an_invalid_permalink_shows_the_form_with_messages(client):
    response = client.get("/result?who_grade=7&tumor_burden=%3C25%25")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="who_grade-error"' in page and 'id="prior_resection_ablation-error"' in page
    assert 'name="csrf_token"' in page


def test_a_post_without_csrf_token_is_refused(csrf_app):
    client = csrf_app.test_client()
    response = client.post("/", data=VALID_FORM)
    assert response.status_code == 400
    assert "The form has expired" in response.get_data(as_text=True)


def test_a_post_with_the_csrf_token_is_accepted(csrf_app):
    client = csrf_app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    assert client.post("/", data={**VALID_FORM, "csrf_token": token}).status_code == 303


def test_the_model_card_shows_both_tables_per_endpoint_with_published_values(client):
    response = client.get("/model")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("Multivariate Cox model") == len(ENDPOINTS)
    assert page.count("Univariate Cox models") == len(ENDPOINTS)
    assert page.count('<table class="estimates">') == 2 * len(ENDPOINTS)
    assert "Published HR" in page and "SIRT vs TACE, grade 2" in page
    assert "test-synthetic-2000" in page and "scikit-survival" in page and "Rows read" in page


def test_the_model_card_renders_a_validation_section_generically(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    monkeypatch.setitem(model.card, "validation", {"c_index": {"hpfs": 0.6812345}, "notes": ["external", "n=80"]})
    page = app.test_client().get("/model").get_data(as_text=True)
    assert "Validation" in page and "c_index" in page and "0.6812" in page and "n=80" in page


def test_404_leaks_nothing(client):
    response = client.get("/no/such/page?mrn=12345&who_grade=2")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Page not found" in page
    assert "12345" not in page and "mrn" not in page and "Traceback" not in page


def test_500_leaks_nothing(app, capsys):
    from flask import request

    @app.get("/boom")
    def boom():
        raise RuntimeError("patient " + request.args["mrn"])

    response = app.test_client().get("/boom?mrn=98765")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong" in page and "98765" not in page and "Traceback" not in page
    logged = capsys.readouterr().out
    assert "RuntimeError" in logged and "/boom" in logged and "98765" not in logged


def test_405_and_413_pages(client, app):
    assert client.put("/").status_code == 405
    big = {**VALID_FORM, "padding": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}
    assert client.post("/", data=big).status_code == 413


@pytest.mark.parametrize("path", ["/", "/result?who_grade=1&tumor_burden=%3E75%25&prior_resection_ablation=1",
                                  "/model", "/nope", "/healthz", "/readyz", "/static/css/calculator.css",
                                  "/api/v1/openapi.json"])
def test_security_headers_on_every_response(client, path):
    with client.get(path) as response:
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/result?who_grade=3&tumor_burden=50-75%25&prior_resection_ablation=1",
                                  "/model", "/nope"])
def test_no_inline_script_or_style_and_nothing_from_elsewhere(client, path):
    page = client.get(path).get_data(as_text=True)
    assert " style=" not in page and "<style" not in page
    for tag in re.findall(r"<script[^>]*>", page):
        assert 'type="application/json"' in tag or re.search(r'src="/static/', tag), tag
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_data(as_text=True) == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "model_version": "test-synthetic-2000"}


def test_without_a_model_readyz_fails_and_pages_say_so(broken_app):
    client = broken_app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "not ready" and ready.json["reason"]
    assert client.get("/").status_code == 200
    unavailable = client.get("/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0")
    assert unavailable.status_code == 503
    assert "not available" in unavailable.get_data(as_text=True)
    assert client.get("/model").status_code == 503


def test_static_files_are_served(client):
    for path in ("/static/css/calculator.css", "/static/css/print.css", "/static/js/calculator.js",
                 "/static/favicon.svg"):
        with client.get(path) as response:
            assert response.status_code == 200, path


@pytest.mark.parametrize(("term", "label"), [
    ("who_grade[2]", "WHO 2010 grade: Grade 2"),
    ("tumor_burden[>75%]", "Hepatic tumor burden: > 75%"),
    ("prior_resection_ablation", "Prior hepatic resection or ablation"),
    ("modality[SIRT]:who_grade[3]", "SIRT vs TACE, grade 3"),
    ("modality[TACE]:who_grade[2]", "TACE, grade 2"),
    ("something_else", "something_else"),
    ("tumor_burden[unknown]", "tumor_burden[unknown]"),
])
def test_term_labels_for_cards_without_labels(term, label):
    from calculator.views import term_label

    assert term_label(term) == label


def test_chart_geometry_is_a_step_function_inside_the_plot():
    from calculator import charts

    curve = {"times_months": [0.0, 5.0, 20.0], "survival": [1.0, 0.8, 0.5], "ci_lower": [1.0, 0.7, 0.4],
             "ci_upper": [1.0, 0.9, None]}
    chart = charts.survival_chart(dict.fromkeys(OPTIONS, curve), OPTIONS)
    assert chart.x_max == 24 and [t.label for t in chart.x_ticks] == ["0", "12", "24"]
    line = [tuple(map(float, p.split(","))) for p in chart.series[0].line.split()]
    xs, ys = zip(*line)
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys)  # right-continuous steps, going down the page
    assert all(chart.left <= x <= chart.right and chart.top <= y <= chart.bottom for x, y in line)
    assert line[-1][0] < chart.right  # the curve stops at its last time: nothing extrapolated
    assert [s.option for s in chart.series] == list(OPTIONS)
    assert [s.slot for s in chart.series] == list(range(len(OPTIONS)))
    band = [tuple(map(float, p.split(","))) for p in chart.series[0].band.split()]
    assert max(x for x, _ in band) == line[2][0]  # the band stops where an interval bound is missing


def test_responses_with_patient_inputs_are_not_stored(client):
    assert client.get("/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0") \
        .headers["Cache-Control"] == "no-store"
    assert client.post("/", data=VALID_FORM).headers["Cache-Control"] == "no-store"
    assert client.post("/api/v1/predict", json={}).headers["Cache-Control"] == "no-store"
