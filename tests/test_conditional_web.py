"""Conditional survival on the API, the form, the result page and the patient view (issue 12.1): curves from s on the
same time axis, S(t | T > s) = S(t) / S(s), said in words, refused past the last event time."""

from __future__ import annotations

import html
import json
import math
import re
from urllib.parse import urlencode

import numpy as np
import pytest

from calculator import charts, patient_view, views
from prognosis import scoring
from prognosis.covariates import DEFAULT_HORIZONS_MONTHS, ENDPOINTS, OPTIONS
from tests.conftest import VALID_FORM

URL = "/api/v1/predict"
GOOD = {"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": True}
# Patients of several kinds: required inputs only (unknowns averaged over), every input known, a mix.
PATIENTS = [
    GOOD,
    {
        **GOOD,
        "tumor_type": "gut",
        "extrahepatic_metastases": False,
        "octreotide": True,
        "biologic": False,
        "cytotoxic": False,
    },
    {"who_grade": 3, "tumor_burden": ">75%", "prior_resection_ablation": False, "octreotide": True},
]


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def served_model(app):
    with app.app_context():
        return views.get_model()


def last_event(app) -> float:
    model = served_model(app)
    return min(model.endpoints[name].risk_sets.last_event_time for name in ENDPOINTS)


def read_unconditional(client, patient, times):
    """The unconditional landmarks at ``times`` (exact reads of the step function), ten per request."""
    out = {}
    for start in range(0, len(times), 10):
        chunk = [float(t) for t in times[start : start + 10]]
        answer = post(client, {**patient, "horizons_months": chunk}).json
        for name in ENDPOINTS:
            for option in OPTIONS:
                for point in answer["predictions"][name][option]["landmarks"]:
                    out[(name, option, point["months"])] = point["survival"]
    return out


# --- the API --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patient", PATIENTS, ids=["unknowns", "all-known", "grade-3"])
@pytest.mark.parametrize("s", [6.0, 12.0, 30.5])
def test_conditional_curves_are_the_unconditional_ones_over_s(client, patient, s):
    """Every returned point of the conditional curves and landmarks equals S(t)/S(s) of the unconditional
    prediction to 1e-6, and every interval contains its estimate."""
    horizons = [h for h in (12.0, 24.0, 36.0, 48.0, 60.0) if h > s]
    conditional = post(client, {**patient, "conditional_on_months": s, "horizons_months": horizons})
    assert conditional.status_code == 200, conditional.json
    body = conditional.json
    # The curves' own times (a sample of them) and the landmarks, read exactly off the unconditional step function.
    times = set(horizons)
    for name in ENDPOINTS:
        for option in OPTIONS:
            curve_times = body["predictions"][name][option]["times_months"]
            times |= set(curve_times[1 :: max(1, len(curve_times) // 6)])
    unconditional = read_unconditional(client, patient, [s, *sorted(times)])
    checked = 0
    for name in ENDPOINTS:
        for option in OPTIONS:
            curve = body["predictions"][name][option]
            at_s = unconditional[(name, option, s)]
            assert curve["times_months"][0] == s and curve["survival"][0] == 1.0  # from s, at 1
            for t, value in zip(curve["times_months"], curve["survival"], strict=True):
                if t == s or (name, option, t) not in unconditional or unconditional[(name, option, t)] is None:
                    continue
                assert value == pytest.approx(unconditional[(name, option, t)] / at_s, abs=1e-6), (name, option, t)
                checked += 1
            for point in curve["landmarks"]:
                expected = unconditional[(name, option, point["months"])]
                if expected is None:
                    assert point["survival"] is None
                    continue
                assert point["survival"] == pytest.approx(expected / at_s, abs=1e-6)
                assert point["ci_lower"] <= point["survival"] <= point["ci_upper"]
                checked += 1
            lows, highs = np.array(curve["ci_lower"]), np.array(curve["ci_upper"])
            values = np.array(curve["survival"])
            assert np.all(lows <= values + 1e-12) and np.all(values <= highs + 1e-12)
            median = curve["median_months"]
            if median["estimate"] is not None:
                assert median["estimate"] > s
                assert median["ci_lower"] is None or median["ci_lower"] <= median["estimate"]
                assert median["ci_upper"] is None or median["ci_upper"] >= median["estimate"]
    assert checked > 50


def test_the_answer_says_what_changed(client):
    s = 12.0
    body = post(client, {**GOOD, "conditional_on_months": s}).json
    assert set(body["condition"]) == set(ENDPOINTS)
    for name in ENDPOINTS:
        assert body["condition"][name] == {"months": s, "text": scoring.condition_text(name, s)}
        for option in OPTIONS:
            prediction = body["predictions"][name][option]
            assert prediction["rmst"]["estimate"] is None and prediction["rmst"]["horizon_months"] is None
            assert [p["survival"] for p in prediction["landmarks"] if p["months"] <= s] == [None]
        for contrast in body["contrasts"][name]:
            assert contrast["rmst_difference"]["estimate"] is None
    assert any("Restricted mean survival time is not given" in w for w in body["warnings"])
    assert isinstance(body["few_similar"], list)
    # No condition, null and 0 are the unconditional answer.
    plain = post(client, GOOD).json
    assert plain["condition"] is None
    assert post(client, {**GOOD, "conditional_on_months": None}).json == plain
    assert post(client, {**GOOD, "conditional_on_months": 0}).json == plain


@pytest.mark.parametrize("value", [-1, -0.001, "12", True, [12], {"months": 12}])
def test_a_condition_that_is_not_a_number_of_months_is_refused(client, value):
    response = post(client, {**GOOD, "conditional_on_months": value})
    assert response.status_code == 400
    assert response.json["errors"] == [
        {"field": "conditional_on_months", "message": response.json["errors"][0]["message"]}
    ]
    assert "number of months >= 0" in response.json["errors"][0]["message"]


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"1e999"])
def test_non_finite_conditions_are_refused(client, value):
    body = (
        b'{"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": true, '
        b'"conditional_on_months": ' + value + b"}"
    )
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] in ("body", "conditional_on_months")


def test_a_condition_past_the_last_event_time_is_refused_clearly(client, app):
    last = last_event(app)
    response = post(client, {**GOOD, "conditional_on_months": last + 0.5})
    assert response.status_code == 400
    (error,) = response.json["errors"]
    assert error["field"] == "conditional_on_months"
    assert "past the last observed" in error["message"] and f"{last:.1f} months" in error["message"]
    assert "not estimable" in error["message"]
    # With another error, both are named at once.
    both = post(client, {**GOOD, "who_grade": 7, "conditional_on_months": 10 * last}).json["errors"]
    assert {e["field"] for e in both} == {"who_grade", "conditional_on_months"}
    # At the last event time itself: answered (nothing is estimable after it).
    assert post(client, {**GOOD, "conditional_on_months": last}).status_code == 200


def test_the_document_describes_the_condition_and_the_response(client, app):
    document = client.get("/api/v1/openapi.json").json
    schemas = document["components"]["schemas"]
    condition = schemas["PredictRequest"]["properties"]["conditional_on_months"]
    assert condition["minimum"] == 0 and condition["maximum"] == pytest.approx(last_event(app))
    assert "S(t) / S(s)" in condition["description"]
    for ep in ENDPOINTS.values():
        assert f"still {ep.free_of}" in condition["description"]
    response = schemas["PredictResponse"]["properties"]
    assert {"condition", "few_similar"} <= set(response)
    assert "null" in response["condition"]["type"]
    assert "under a condition" in schemas["OptionPrediction"]["properties"]["rmst"]["description"]

    def undocumented(schema, path):
        """Properties without a description, recursively (references followed)."""
        if "$ref" in schema:
            return undocumented(schemas[schema["$ref"].rsplit("/", 1)[-1]], path)
        missing = []
        for key, sub in schema.get("properties", {}).items():
            if (
                "description" not in sub
                and "$ref" not in sub
                and "description" not in (schemas.get(sub.get("$ref", "").rsplit("/", 1)[-1], {}))
            ):
                missing.append(f"{path}.{key}")
            missing += undocumented(sub, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            missing += undocumented(schema["items"], f"{path}[]")
        return missing

    for name in (
        "PredictResponse",
        "OptionPrediction",
        "Contrast",
        "BatchResponse",
        "BatchResult",
        "LandmarkPrediction",
    ):
        assert undocumented(schemas[name], name) == [], name


# --- the form and the pages -------------------------------------------------------------------------------------


def result_query(s: float | str) -> str:
    return urlencode({**VALID_FORM, "conditional_on_months": s})


def test_the_form_asks_for_the_condition_and_the_permalink_carries_it(client):
    form = html.unescape(client.get("/").get_data(as_text=True))
    assert 'name="conditional_on_months"' in form and "Already free of the event for" in form
    for ep in ENDPOINTS.values():
        assert f"for {ep.label.lower()}: still {ep.free_of}" in form
    response = client.post("/", data={**VALID_FORM, "conditional_on_months": "12"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/result?" + result_query(12)
    # Empty and 0: no condition, left out of the permalink.
    for value in ("", "0"):
        response = client.post("/", data={**VALID_FORM, "conditional_on_months": value})
        assert response.headers["Location"] == "/result?" + urlencode(VALID_FORM)
    # "Change inputs" keeps it.
    prefilled = client.get("/?" + result_query(12)).get_data(as_text=True)
    assert re.search(r'name="conditional_on_months"[^>]*value="12"', prefilled)


@pytest.mark.parametrize(
    ("value", "message"),
    [("-3", "of at least 0"), ("abc", "of at least 0"), ("nan", "of at least 0"), ("100000", "Enter at most")],
)
def test_a_bad_condition_gets_a_message_on_its_field(client, value, message):
    response = client.post("/", data={**VALID_FORM, "conditional_on_months": value})
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    error = re.search(r'<p class="field-error" id="conditional_on_months-error">(.*?)</p>', page, re.S)
    assert error and message in error.group(1)
    assert client.get("/result?" + result_query(value)).status_code == 400
    assert client.get("/patient?" + result_query(value)).status_code == 400


def test_the_past_end_message_names_the_last_event_time(client, app):
    last = last_event(app)
    page = html.unescape(client.get("/result?" + result_query(last + 1)).get_data(as_text=True))
    error = re.search(r'id="conditional_on_months-error">(.*?)</p>', page, re.S).group(1)
    assert f"Enter at most {math.floor(10 * last) / 10:.1f} months" in error and f"{last:.1f} months" in error


def conditional_page(client, s: float = 12.0) -> str:
    response = client.get("/result?" + result_query(f"{s:g}"))
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def endpoint_section(page: str, name: str) -> str:
    start = page.index(f'<section class="endpoint" id="{name}"')
    return page[start : page.index("</section>", start)]


def test_the_result_says_what_changed_prominently(client):
    page = conditional_page(client)
    box = page[page.index('<aside class="condition"') : page.index("</aside>", page.index('<aside class="condition"'))]
    for name in ENDPOINTS:
        text = scoring.condition_text(name, 12.0)
        assert text[:1].upper() + text[1:] in box
    assert page.index('class="condition"') < page.index('class="endpoints"')
    assert "Already free of the event for</dt><dd>12 months" in page
    # The links carry the condition.
    assert f'href="/patient?{result_query(12)}"' in page and f'href="/result?{result_query(12)}"' in page
    # No box without a condition.
    assert 'class="condition"' not in html.unescape(
        client.get("/result?" + urlencode(VALID_FORM)).get_data(as_text=True)
    )


def test_charts_start_at_the_condition_on_the_same_axis(client):
    page = conditional_page(client)
    for name in ENDPOINTS:
        section = endpoint_section(page, name)
        island = json.loads(
            re.search(r'<script type="application/json" class="chart-data">(.*?)</script>', section, re.S).group(1)
        )
        assert island["start"] == 12.0
        geometry = island["geometry"]
        start_x = geometry["left"] + (geometry["right"] - geometry["left"]) * 12.0 / geometry["x_max"]
        for option in OPTIONS:
            assert island["curves"][option]["times_months"][0] == 12.0
            points = (
                re.search(rf'<polyline class="line option-\d+" data-option="{option}" points="([^"]+)"', section)
                .group(1)
                .split()
            )
            xs = [float(p.split(",")[0]) for p in points]
            assert min(xs) == pytest.approx(start_x, abs=0.06)  # nothing drawn before s
            assert points[0] == f"{start_x:.1f},{charts.TOP:.1f}"  # at 100% at s
        assert 'class="before-condition"' in section and 'class="condition-line"' in section
        assert ">0</text>" in section  # the axis still starts at the embolotherapy
        assert f"given {ENDPOINTS[name].free_of} at 12 months</title>" in section


def test_tables_sentences_and_differences_follow_the_condition(client, app):
    page = conditional_page(client)
    model = served_model(app)
    patient = {name: VALID_FORM.get(name) for name in views.BY_NAME}
    prediction = scoring.predict(model, patient, conditional_on_months=12.0, table_months=views.TABLE_MONTHS)
    for name, endpoint in ENDPOINTS.items():
        section = endpoint_section(page, name)
        # Data table: only months after the condition.
        table = section[section.index('<details class="data-table">') : section.index("</details>")]
        months = [float(m) for m in re.findall(r'<tr><th scope="row">([\d.]+)</th>', table)]
        assert months and min(months) > 12.0
        assert f"given {endpoint.free_of} at 12 months</caption>" in table
        # Summary: no landmark at or before s; the restricted mean not given, with the reason.
        summary = section[section.index('<table class="summary">') :]
        summary = summary[: summary.index("</table>")]
        columns = re.findall(r'<th scope="col">([\d.]+) months</th>', summary)
        assert columns == [f"{h:g}" for h in DEFAULT_HORIZONS_MONTHS if h > 12.0]
        assert summary.count("not given under a condition") == len(OPTIONS)
        assert "would not describe the time still" in section
        for option in OPTIONS:
            point = next(p for p in prediction["predictions"][name][option]["landmarks"] if p["months"] == 24.0)
            assert views.survival_ci(point) in summary
            median = prediction["predictions"][name][option]["median_months"]
            assert views.months_ci(median, "not reached", "n.r.") in summary
        # Differences: the same columns, the conditional differences.
        differences = section[section.index('<table class="differences">') :]
        differences = differences[: differences.index("</table>")]
        assert re.findall(r"At ([\d.]+) months, points", differences) == columns
        for contrast in prediction["contrasts"][name]:
            d = next(d for d in contrast["survival_difference"] if d["months"] == 24.0)
            assert views.difference_ci(d) in differences
        # Sentences about patients still free of the event at s.
        sentences = re.findall(r"<li>(Of (?:100 )?patients with these characteristics .*?)</li>", section, re.S)
        assert len(sentences) == len(OPTIONS)
        for sentence in sentences:
            assert f"and were still {endpoint.free_of} at 12 months" in sentence
            assert f"still {endpoint.free_of} at 2 years" in sentence
        assert f"who were still {endpoint.free_of} at 12 months, the share still {endpoint.free_of} was" in section


def test_a_condition_past_every_default_landmark_gets_a_landmark_after_it(client, app):
    s = 61.0
    if s >= last_event(app):
        pytest.skip("the fixture's follow-up is too short")
    page = conditional_page(client, s)
    section = endpoint_section(page, next(iter(ENDPOINTS)))
    summary = section[section.index('<table class="summary">') :]
    summary = summary[: summary.index("</table>")]
    assert re.findall(r'<th scope="col">([\d.]+) months</th>', summary) == ["72"]
    assert "at 6 years" in section  # the sentences move to the landmark after the condition


def test_sentences_under_a_condition_say_whom_they_are_about():
    endpoint = ENDPOINTS["os"]
    point = {"months": 24.0, "survival": 0.604, "ci_lower": 0.5, "ci_upper": 0.7}
    prediction = {
        "condition": {name: {"months": 12.0, "text": ""} for name in ENDPOINTS},
        "predictions": {name: {option: {"landmarks": [point]} for option in OPTIONS} for name in ENDPOINTS},
    }
    option = OPTIONS[1]
    assert views.sentences(prediction)["os"][1] == (
        f"Of 100 patients with these characteristics who received {option} in the data behind this model and were "
        f"still {endpoint.free_of} at 12 months, about 60 were still {endpoint.free_of} at 2 years "
        "(95% interval 50–70)."
    )
    low = {**point, "survival": 0.002, "ci_lower": 0.0001, "ci_upper": 0.03}
    prediction["predictions"]["os"][option]["landmarks"] = [low]
    assert views.sentences(prediction)["os"][1] == (
        f"Of patients with these characteristics who received {option} in the data behind this model and were "
        f"still {endpoint.free_of} at 12 months, fewer than 1 in 100 were still {endpoint.free_of} at 2 years "
        "(95% interval: up to 3 in 100)."
    )


def test_the_chart_geometry_starts_at_the_condition():
    curve = {
        "times_months": [12.0, 15.0, 30.0],
        "survival": [1.0, 0.8, 0.5],
        "ci_lower": [1.0, 0.7, 0.4],
        "ci_upper": [1.0, 0.9, 0.6],
    }
    chart = charts.survival_chart(dict.fromkeys(OPTIONS, curve), OPTIONS, start=12.0)
    assert chart.conditional and chart.x_max == 36 and [t.label for t in chart.x_ticks][0] == "0"
    line = [tuple(map(float, p.split(","))) for p in chart.series[0].line.split()]
    assert min(x for x, _ in line) == chart.start_x and line[0] == (chart.start_x, float(chart.top))
    band = [tuple(map(float, p.split(","))) for p in chart.series[0].band.split()]
    assert min(x for x, _ in band) == chart.start_x
    # a condition near the end of the axis still leaves room after it
    assert charts.survival_chart(dict.fromkeys(OPTIONS, curve), OPTIONS, start=36.0).x_max > 36


# --- the patient view ---------------------------------------------------------------------------------------------


def patient_page(client, query: dict) -> str:
    response = client.get("/patient?" + urlencode(query))
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def test_the_patient_view_follows_the_condition(client, app):
    query = {**VALID_FORM, "conditional_on_months": "12"}
    page = patient_page(client, query)
    assert "You are 1 year past your treatment" in page
    # Only the horizons after the condition; the default one still 2 years.
    links = re.findall(r'<a href="/patient\?([^"]+)"', page)
    assert [dict(re.findall(r"([^&=]+)=([^&]*)", link)).get("years") for link in links] == ["2", "3", "5"]
    assert all("conditional_on_months=12" in link for link in links)
    assert 'aria-current="page">2 years</a>' in page
    model = served_model(app)
    prediction = scoring.predict(
        model, {name: VALID_FORM.get(name) for name in views.BY_NAME}, conditional_on_months=12.0
    )
    for name, endpoint in ENDPOINTS.items():
        start = page.index(f'<section class="patient-endpoint" aria-labelledby="{name}-heading">')
        section = page[start : page.index("</section>", start)]
        assert f"Only people who were still {endpoint.free_of} 1 year after their treatment are counted" in section
        for option in OPTIONS:
            point = next(p for p in prediction["predictions"][name][option]["landmarks"] if p["months"] == 24.0)
            count, words = patient_view.in_100(point["survival"])
            figure = section[section.index(f'data-option="{option}"') :]
            figure = figure[: figure.index("</figure>")]
            assert len(re.findall(r'class="person kept option-\d+"', figure)) == count
            assert f"and were still {endpoint.free_of} 1 year after it" in figure
    # A year that is not after the condition is refused.
    assert client.get("/patient?" + urlencode({**query, "years": 1})).status_code == 400


def test_the_patient_view_past_its_last_horizon_says_so(client, app):
    s = 61.0
    if s >= last_event(app):
        pytest.skip("the fixture's follow-up is too short")
    page = patient_page(client, {**VALID_FORM, "conditional_on_months": f"{s:g}"})
    assert "you are already past that" in page and 'class="icon-array"' not in page


def test_the_hepatic_pictures_say_that_deaths_are_not_counted(client):
    page = patient_page(client, VALID_FORM)
    for name, endpoint in ENDPOINTS.items():
        start = page.index(f'<section class="patient-endpoint" aria-labelledby="{name}-heading">')
        section = page[start : page.index("</section>", start)]
        note = patient_view.competing_note(endpoint)
        if endpoint.not_after is None:
            assert note == "" and 'class="not-counted"' not in section
            continue
        other = ENDPOINTS[endpoint.not_after]
        assert note == (
            f"A {other.event_label} without {endpoint.event_label} is not counted here: these pictures "
            f"are about being {endpoint.free_of}, not about being {other.free_of} (shown separately)."
        )
        # Beside the icon arrays, before them.
        assert section.index(note) < section.index('class="icon-array"')
