"""The pages: result, permalink, CSRF, model card, errors, security headers, health probes."""

from __future__ import annotations

import ast
import html
import json
import math
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest

from calculator.security import CONTENT_SECURITY_POLICY
from prognosis import notices
from prognosis.covariates import (
    BY_NAME,
    COMPARISONS,
    ENDPOINTS,
    MODALITY,
    MODALITY_WITHIN,
    OPTION_STYLES,
    OPTIONS,
    options_text,
)
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
        figure = page[page.index(f'id="{name}-chart-title"') :]
        figure = figure[: figure.index("</svg>")]
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
        assert re.search(
            rf"Of 100 patients with these characteristics who received {option} in the data behind this "
            r"model, about \d+ were free of hepatic progression at 2 years \(95% interval \d+–\d+\)",
            page,
        )
        assert re.search(rf"who received {option} in the data behind this model, about \d+ were alive at 2 years", page)
    for comparison in ("SIRT vs TACE", "TAE vs TACE", "SIRT vs TAE"):
        assert page.count(f'<th scope="row">{comparison}</th>') == len(ENDPOINTS)
    assert "Treatment was not randomized" in page and "associations" in page
    assert 'class="banner banner-synthetic"' in page and "not for clinical decisions" in page
    assert "test-synthetic-2000" in page
    assert "Please note" in page  # the warnings list


def test_unknown_inputs_are_said_to_be_averaged_over(client):
    page = result_page(client)
    assert "averages over the values these take in training patients with the same known characteristics" in page
    known = result_page(
        client,
        {
            **VALID_FORM,
            "tumor_type": "gut",
            "extrahepatic_metastases": "0",
            "octreotide": "1",
            "biologic": "0",
            "cytotoxic": "0",
        },
    )
    assert 'class="note unknown-note"' not in known


def test_the_permalink_reproduces_the_result(client):
    posted = result_page(client, {**VALID_FORM, "tumor_burden": "", "tumor_burden_pct": "30", "biologic": "1"})
    direct = client.get("/result?who_grade=2&tumor_burden_pct=30&prior_resection_ablation=0&biologic=1")
    assert direct.status_code == 200
    assert direct.get_data(as_text=True) == posted
    assert "25-50% (from 30%)" in posted


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


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/result?who_grade=1&tumor_burden=%3E75%25&prior_resection_ablation=1",
        "/model",
        "/nope",
        "/healthz",
        "/readyz",
        "/static/css/calculator.css",
        "/api/v1/openapi.json",
        "/api",
        "/patient?who_grade=1&tumor_burden=%3E75%25&prior_resection_ablation=1&years=5",
    ],
)
def test_security_headers_on_every_response(client, path):
    with client.get(path) as response:
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/result?who_grade=3&tumor_burden=50-75%25&prior_resection_ablation=1",
        "/model",
        "/nope",
        "/api",
        "/patient?who_grade=3&tumor_burden=50-75%25&prior_resection_ablation=1&years=3",
    ],
)
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
    for path in (
        "/static/css/calculator.css",
        "/static/css/print.css",
        "/static/js/calculator.js",
        "/static/favicon.svg",
    ):
        with client.get(path) as response:
            assert response.status_code == 200, path


@pytest.mark.parametrize(
    ("term", "label"),
    [
        ("who_grade[2]", "WHO 2010 grade: Grade 2"),
        ("tumor_burden[>75%]", "Hepatic tumor burden: > 75%"),
        ("prior_resection_ablation", "Prior hepatic resection or ablation"),
        ("modality[SIRT]:who_grade[3]", "SIRT vs TACE, grade 3"),
        ("modality[TACE]:who_grade[2]", "TACE, grade 2"),
        ("something_else", "something_else"),
        ("tumor_burden[unknown]", "tumor_burden[unknown]"),
    ],
)
def test_term_labels_for_cards_without_labels(term, label):
    from calculator.views import term_label

    assert term_label(term) == label


def test_chart_geometry_is_a_step_function_inside_the_plot():
    from calculator import charts

    curve = {
        "times_months": [0.0, 5.0, 20.0],
        "survival": [1.0, 0.8, 0.5],
        "ci_lower": [1.0, 0.7, 0.4],
        "ci_upper": [1.0, 0.9, None],
    }
    chart = charts.survival_chart(dict.fromkeys(OPTIONS, curve), OPTIONS)
    assert chart.x_max == 24 and [t.label for t in chart.x_ticks] == ["0", "12", "24"]
    line = [tuple(map(float, p.split(","))) for p in chart.series[0].line.split()]
    xs, ys = zip(*line, strict=True)
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys)  # right-continuous steps, going down the page
    assert all(chart.left <= x <= chart.right and chart.top <= y <= chart.bottom for x, y in line)
    assert line[-1][0] < chart.right  # the curve stops at its last time: nothing extrapolated
    assert [s.option for s in chart.series] == list(OPTIONS)
    assert [s.slot for s in chart.series] == list(range(len(OPTIONS)))
    band = [tuple(map(float, p.split(","))) for p in chart.series[0].band.split()]
    assert max(x for x, _ in band) == line[2][0]  # the band stops where an interval bound is missing


def test_responses_with_patient_inputs_are_not_stored(client):
    assert (
        client.get("/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0").headers["Cache-Control"]
        == "no-store"
    )
    assert client.post("/", data=VALID_FORM).headers["Cache-Control"] == "no-store"
    assert client.post("/api/v1/predict", json={}).headers["Cache-Control"] == "no-store"


# --- one source of truth: options, endpoints and colours come from the definitions (issue 10.3) -----------------

REPO = Path(__file__).resolve().parent.parent
# The modules that write what pages and answers say: the web app's, and the provenance texts of the core.
WEB_MODULES = (
    *(
        f"calculator/{name}.py"
        for name in ("views", "forms", "api", "charts", "card_figures", "patient_view", "api_docs")
    ),
    "prognosis/provenance.py",
)


def _string_literals(path: Path) -> list[str]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_templates_static_files_and_web_code_name_no_option_or_endpoint():
    names = [*OPTIONS, *ENDPOINTS, *(ep.short for ep in ENDPOINTS.values()), *(ep.label for ep in ENDPOINTS.values())]
    words = re.compile("|".join(rf"(?<![\w-]){re.escape(name)}(?![\w-])" for name in names))
    sources = [
        *(REPO / "templates").rglob("*.html"),
        *(REPO / "calculator" / "static").rglob("*.css"),
        *(REPO / "calculator" / "static").rglob("*.js"),
    ]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert words.search(text) is None, (path.name, words.search(text))
        assert not re.search(r"slot-\d|--slot", text), path.name  # no fixed colour slots for the options
    for module in WEB_MODULES:
        for literal in _string_literals(REPO / module):
            assert words.search(literal) is None, (module, literal)


def test_the_rendered_pages_name_the_options_and_endpoints_of_the_definitions(client):
    form = html.unescape(client.get("/").get_data(as_text=True))
    assert f"Predicted outcomes of {options_text()}" in form
    for option in OPTIONS:
        assert MODALITY.label_of(option) in form
    for endpoint in ENDPOINTS.values():
        assert endpoint.label.lower() in form
    page = html.unescape(result_page(client))
    assert f"<h1>Predicted outcomes of {options_text()}</h1>" in page
    for endpoint in ENDPOINTS.values():
        assert f"{endpoint.label}: predicted curves under {options_text()}" in page
    for a, b in COMPARISONS:
        assert page.count(f'<th scope="row">{a} vs {b}</th>') == len(ENDPOINTS)


def stylesheet_url(page: str) -> str:
    return re.search(r'<link rel="stylesheet" href="(/styles/options\.[0-9a-f]+\.css)">', page).group(1)


def test_option_colours_come_from_option_styles_in_a_long_cached_stylesheet(client):
    page = result_page(client)
    url = stylesheet_url(page)
    assert stylesheet_url(client.get("/").get_data(as_text=True)) == url  # every page links the same file
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "text/css"
    cache = response.headers["Cache-Control"]
    assert "immutable" in cache and int(re.search(r"max-age=(\d+)", cache).group(1)) >= 365 * 24 * 3600
    css = response.get_data(as_text=True)
    for slot, option in enumerate(OPTIONS):
        style = OPTION_STYLES[option]
        assert f".option-{slot} {{ stroke: {style.colour}; fill: {style.colour}; }}" in css
        assert f".key.option-{slot} {{ background: {style.colour}; }}" in css
        if style.dash:
            assert f".line.option-{slot}, .option-{slot} .swatch line {{ stroke-dasharray: {style.dash}; }}" in css
        assert f'<polyline class="line option-{slot}" data-option="{option}"' in page
        assert f'<span class="key option-{slot}" aria-hidden="true"></span>{option}</th>' in page
    static = (REPO / "calculator" / "static" / "css" / "calculator.css").read_text(encoding="utf-8")
    assert ".option-" not in static  # the options' colours live in one place
    # A page from before the definitions changed asks for an old digest: it gets the current file.
    stale = client.get("/styles/options.0000000000000000.css")
    assert stale.status_code == 302 and stale.headers["Location"].endswith(url)


def test_a_fourth_option_gets_its_colour_and_a_curve(monkeypatch):
    from calculator import charts
    from prognosis.spec import OptionStyle

    options = (*OPTIONS, "PRRT")
    monkeypatch.setattr(charts, "OPTIONS", options)
    monkeypatch.setattr(charts, "OPTION_STYLES", {**OPTION_STYLES, "PRRT": OptionStyle("#CC79A7", "6 2 1 2")})
    css = charts.option_stylesheet()
    assert ".option-3 { stroke: #CC79A7; fill: #CC79A7; } /* PRRT */" in css
    assert ".line.option-3, .option-3 .swatch line { stroke-dasharray: 6 2 1 2; }" in css
    curve = {
        "times_months": [0.0, 5.0, 20.0],
        "survival": [1.0, 0.8, 0.5],
        "ci_lower": [1.0, 0.7, 0.4],
        "ci_upper": [1.0, 0.9, 0.6],
    }
    chart = charts.survival_chart(dict.fromkeys(options, curve), options)
    assert [(s.option, s.slot) for s in chart.series] == list(zip(options, range(4), strict=True))
    monkeypatch.setattr(charts, "OPTION_STYLES", {**OPTION_STYLES, "PRRT": OptionStyle("red;} body{x:1")})
    with pytest.raises(ValueError, match="not a CSS colour"):
        charts.option_stylesheet()


# --- what the page says (issue 8) --------------------------------------------------------------------------------


def endpoint_section(page: str, name: str) -> str:
    start = page.index(f'<section class="endpoint" id="{name}"')
    return page[start : page.index("</section>", start)]


def test_each_endpoint_chart_has_its_definition_beside_it(client):
    page = result_page(client)
    for name, endpoint in ENDPOINTS.items():
        section = endpoint_section(page, name)
        definition = section.index(html.escape(endpoint.definition))
        assert definition < section.index('<figure class="chart-figure"')
    hpfs = html.unescape(endpoint_section(page, "hpfs"))
    assert "censored" in hpfs and "not of being alive and progression-free" in hpfs


def test_the_caveat_is_the_observational_notice_shown_once_and_the_banner_the_synthetic_one(client, app):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    page = html.unescape(result_page(client))
    caveat = page[page.index('<aside class="caveat"') : page.index("</aside>", page.index('<aside class="caveat"'))]
    assert notices.OBSERVATIONAL in caveat
    assert page.count(notices.OBSERVATIONAL) == 1  # the caveat, not again in the warnings
    assert model.evidence_patients
    banner = page[
        page.index('class="banner banner-synthetic"') : page.index("</aside>", page.index("banner-synthetic"))
    ]
    assert notices.synthetic_notice(model.evidence_patients) in banner
    assert f"({model.evidence_patients} patients)" in banner
    assert "do not reflect" not in page  # the old caveat, no longer true
    assert page.index('class="caveat"') < page.index('class="endpoints"')


def test_the_source_is_named_with_its_attribution(client):
    page = html.unescape(result_page(client))
    about = page[page.index('<section class="about"') :]
    assert notices.ATTRIBUTION in about


def test_neutral_wording_no_option_is_favoured(client):
    page = html.unescape(result_page(client))
    assert "favour" not in page.lower() and "better" not in page.lower() and "worse" not in page.lower()
    assert "a positive value means higher in patients who received the first, a negative value lower" in re.sub(
        r"\s+", " ", page
    )
    for name, endpoint in ENDPOINTS.items():
        section = endpoint_section(page, name)
        for a, b in COMPARISONS:
            assert re.search(
                rf"At 2 years, the share {endpoint.free_of} was (\d+ percentage points? (higher|lower) "
                rf"in patients with these characteristics who received {a} than|about the same in "
                rf"patients with these characteristics who received {a} as) in those who received {b} "
                r"\(95% interval [−+]?\d+ to [−+]?\d+ points\)",
                section,
            ), (a, b)


def test_sentences_name_whom_the_numbers_are_about_and_never_say_about_0():
    from calculator.views import sentences

    def prediction(survival: float, lower: float, upper: float) -> dict:
        point = {"months": 24.0, "survival": survival, "ci_lower": lower, "ci_upper": upper}
        return {"predictions": {name: {option: {"landmarks": [point]} for option in OPTIONS} for name in ENDPOINTS}}

    hpfs = ENDPOINTS["hpfs"]
    option = OPTIONS[1]
    who = f"patients with these characteristics who received {option} in the data behind this model"
    cases = [
        ((0.456, 0.38, 0.53), f"Of 100 {who}, about 46 were {hpfs.free_of} at 2 years (95% interval 38–53)."),
        ((0.011, 0.004, 0.03), f"Of 100 {who}, about 1 was {hpfs.free_of} at 2 years (95% interval: up to 3)."),
        (
            (0.002, 0.0001, 0.03),
            f"Of {who}, fewer than 1 in 100 were {hpfs.free_of} at 2 years (95% interval: up to 3 in 100).",
        ),
        (
            (0.0004, 0.00001, 0.004),
            f"Of {who}, fewer than 1 in 100 were {hpfs.free_of} at 2 years (95% interval: below 1 in 100).",
        ),
        (
            (0.997, 0.97, 1.0),
            f"Of {who}, more than 99 in 100 were {hpfs.free_of} at 2 years (95% interval: 97 in 100 or more).",
        ),
        (
            (0.9991, 0.996, 1.0),
            f"Of {who}, more than 99 in 100 were {hpfs.free_of} at 2 years (95% interval: above 99 in 100).",
        ),
        ((0.98, 0.93, 0.999), f"Of 100 {who}, about 98 were {hpfs.free_of} at 2 years (95% interval: 93 or more)."),
        (
            (0.2, 0.001, 0.999),
            f"Of 100 {who}, about 20 were {hpfs.free_of} at 2 years (95% interval: from fewer than 1 to more than 99).",
        ),
    ]
    for (s, lo, hi), expected in cases:
        text = sentences(prediction(s, lo, hi))["hpfs"][1]
        assert text == expected
        assert "about 0" not in text and "0–0" not in text and "about 100" not in text


def test_no_sentence_on_any_page_says_about_0(client):
    for grade in MODALITY_WITHIN.levels:
        for burden in BY_NAME["tumor_burden"].levels:
            page = client.get(
                "/result?" + urlencode({"who_grade": grade, "tumor_burden": burden, "prior_resection_ablation": "1"})
            ).get_data(as_text=True)
            sentences = " ".join(re.findall(r'<ul class="sentences">(.*?)</ul>', page, re.S))
            assert sentences.count("<li>") == len(ENDPOINTS) * len(OPTIONS)
            assert "about 0 " not in sentences and "0–0)" not in sentences and "about 100 " not in sentences


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0%"),
        (0.004, "<1%"),
        (0.005, "<1%"),
        (0.0051, "1%"),
        (0.456, "46%"),
        (0.994, "99%"),
        (0.996, ">99%"),
        (1.0, "100%"),
        (None, "n.e."),
        (float("nan"), "n.e."),
    ],
)
def test_percentages_never_round_to_0_or_100_when_they_are_not(value, text):
    from calculator.views import pct

    assert pct(value) == text


def grade3_query() -> str:
    return urlencode({"who_grade": MODALITY_WITHIN.levels[-1], "tumor_burden": "<25%", "prior_resection_ablation": "0"})


def test_few_similar_patients_are_shown_prominently(client, app):
    from calculator import views
    from prognosis import scoring

    with app.app_context():
        model = views.get_model()
    response = client.get("/result?" + grade3_query())
    page = html.unescape(response.get_data(as_text=True))
    patient = {"who_grade": MODALITY_WITHIN.levels[-1], "tumor_burden": "<25%", "prior_resection_ablation": "0"}
    prediction = scoring.predict(model, patient)
    few = [o for o, n in prediction["similar_patients"].items() if n < notices.FEW_SIMILAR_PATIENTS]
    assert few, "the fixture's top grade has few patients per option at the evidence's scale"
    warning = next(w for w in prediction["warnings"] if w.startswith(views.FEW_SIMILAR_WARNING))
    box = page[page.index('<aside class="few-similar"') : page.index("</aside>", page.index('class="few-similar"'))]
    assert "<h2" in box and warning.split(": ", 1)[1][1:] in box
    assert page.index('class="few-similar"') < page.index('class="endpoints"')
    assert "Please note" not in box
    # Not for a patient with many similar patients.
    common = client.get("/result?" + urlencode({**patient, "who_grade": MODALITY_WITHIN.levels[0]}))
    assert 'class="few-similar"' not in common.get_data(as_text=True)


# --- the finish of the charts (issue 12.4) --------------------------------------------------------------------


def test_the_time_axis_ends_where_the_curves_carry_information():
    from calculator import charts

    times = [0.0] + [float(m) for m in range(1, 141)]
    falling = {
        "times_months": times,
        "survival": [max(0.001, 1 - m / 30) for m in times],
        "ci_lower": [max(0.0005, 1 - m / 25) for m in times],
        "ci_upper": [min(1.0, 1.2 - m / 40) for m in times],
    }
    # every option falls to 2% by month 30: the axis ends at 36 (a tick), not at 144
    chart = charts.survival_chart(dict.fromkeys(OPTIONS, falling), OPTIONS)
    assert charts.informative_end(dict.fromkeys(OPTIONS, falling), OPTIONS) == 30.0
    assert chart.x_max == 36 and chart.x_ticks[-1].label == "36"
    for series in chart.series:
        for points in (series.line, series.band):
            xs = [float(p.split(",")[0]) for p in points.split()]
            assert max(xs) == pytest.approx(chart.right)  # cut at the edge, never drawn past it
    # the latest option decides; never past the last event time
    slow = {**falling, "survival": [max(0.05, 1 - m / 200) for m in times]}
    curves = {**dict.fromkeys(OPTIONS, falling), OPTIONS[-1]: slow}
    assert charts.informative_end(curves, OPTIONS) == 140.0
    assert charts.survival_chart(curves, OPTIONS).x_max == 144
    late = {**falling, "survival": [0.5 ** (m / 10) for m in times]}  # 2% between months 56 and 57
    assert charts.informative_end({**dict.fromkeys(OPTIONS, falling), OPTIONS[0]: late}, OPTIONS) == 57.0
    assert charts.survival_chart({**dict.fromkeys(OPTIONS, falling), OPTIONS[0]: late}, OPTIONS).x_max == 60


def test_the_result_charts_end_early_and_the_data_island_keeps_every_value(client):
    page = client.get("/result?" + grade3_query()).get_data(as_text=True)
    islands = [
        json.loads(html.unescape(i))
        for i in re.findall(r'<script type="application/json" class="chart-data">(.*?)</script>', page, re.S)
    ]
    assert len(islands) == len(ENDPOINTS)
    ends = []
    for island in islands:
        x_max = island["geometry"]["x_max"]
        last = max(c["times_months"][-1] for c in island["curves"].values())
        informative = max(
            next((t for t, s in zip(c["times_months"], c["survival"], strict=True) if s <= 0.02), c["times_months"][-1])
            for c in island["curves"].values()
        )
        assert x_max == max(12, 12 * math.ceil(min(informative, last) / 12))
        ends.append(x_max < 12 * math.ceil(last / 12))
    assert any(ends)  # for this patient at least one chart no longer runs on flat to the last event
    # the data table behind the charts still runs to the end of follow-up
    assert page.count('<details class="data-table">') == len(ENDPOINTS)


# --- the view for the patient and the API page are reached from the pages (issue 12.3, 12.4) ----------------------


def test_the_navigation_links_the_api_page_and_the_result_the_patient_view(client):
    form = client.get("/").get_data(as_text=True)
    assert '<li><a href="/api">API</a></li>' in form
    api = client.get("/api")
    assert api.status_code == 200 and 'href="/api/v1/openapi.json"' in api.get_data(as_text=True)
    page = html.unescape(result_page(client))
    assert f'<a href="/patient?{urlencode(VALID_FORM)}">View for the patient</a>' in page


def test_the_synthetic_banner_is_a_landmark_of_its_own():
    """Every piece of the page sits in a landmark (axe 'region'): the banner, outside <main>, is an <aside>."""
    base = (REPO / "templates" / "base.html").read_text(encoding="utf-8")
    assert '<aside class="banner banner-synthetic" aria-label="Demonstration model">' in base
