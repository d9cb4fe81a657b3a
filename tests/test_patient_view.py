"""The view for the patient (/patient, issue 12.3): the result's numbers as icon arrays of 100 people in plain words,
one printed page, no JavaScript needed."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest

from calculator import patient_view
from calculator.patient_view import HORIZON_YEARS, in_100, uncertainty_text
from prognosis import notices, scoring
from prognosis.covariates import (
    BY_NAME,
    DEFAULT_HORIZONS_MONTHS,
    ENDPOINTS,
    MODALITY,
    MODALITY_WITHIN,
    OPTION_STYLES,
    OPTIONS,
    REQUIRED,
)
from tests.browser_support import ARTIFACTS, printed_pages, shot
from tests.conftest import VALID_FORM

GRADE_3 = {**VALID_FORM, MODALITY_WITHIN.name: MODALITY_WITHIN.levels[-1]}
PATIENTS = [
    VALID_FORM,
    {**VALID_FORM, "tumor_type": "gut", "octreotide": "1"},
    GRADE_3,
    {**GRADE_3, "tumor_burden": ">75%", "prior_resection_ablation": "1"},
]
# Words a patient should not meet unexplained: abbreviations (as written) and statistics (in any case).
ABBREVIATIONS = ["HR", "CI", "Cox", "RMST", *(ep.short for ep in ENDPOINTS.values())]
STATISTICS = [
    "hazard",
    "confidence",
    r"95\s*%",
    "median",
    "censor",
    "cause-specific",
    "confounding",
    "covariate",
    "p-value",
    r"\bn\.e\.",
    r"\bn\.r\.",
    "landmark",
    "endpoint",
    "probability",
    "percentage point",
    r"\bvs\b",
    r"about 0\b",
    r"about 100\b",
]


def patient_page(client, query: dict[str, str], years: int | None = None) -> str:
    response = client.get("/patient?" + urlencode({**query, **({"years": years} if years else {})}))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def figures(page: str, name: str, with_count: bool = False) -> dict[str, str] | dict[str, tuple[str, str]]:
    """Each option's figure (icon array and words) in one endpoint's section; with its data-count if asked."""
    start = page.index(f'<section class="patient-endpoint" aria-labelledby="{name}-heading">')
    section = page[start : page.index("</section>", start)]
    found = re.findall(
        r'<figure class="icon-panel" data-option="([^"]+)" data-count="(\d*)">(.*?)</figure>', section, re.S
    )
    return {option: (count, figure) if with_count else figure for option, count, figure in found}


def text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def summary_percentages(page: str, name: str) -> dict[str, dict[float, str]]:
    """The result page's landmark survival, as shown in its summary table: option -> months -> '46%'."""
    start = page.index(f'<section class="endpoint" id="{name}"')
    table = page[page.index('<table class="summary">', start) :]
    table = table[: table.index("</table>")]
    months = [float(m) for m in re.findall(r'<th scope="col">([\d.]+) months</th>', table)]
    out = {}
    for option, cells in re.findall(
        r'<th scope="row"><span class="key option-\d+" aria-hidden="true"></span>'
        r"([^<]+)</th>\s*<td>[^<]*</td>\s*((?:<td>[^<]*</td>\s*)+)",
        table,
    ):
        values = re.findall(r"<td>([^<]*)</td>", cells)[: len(months)]
        out[html.unescape(option)] = {m: html.unescape(v).split(" ")[0] for m, v in zip(months, values, strict=True)}
    return out


# --- words and numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "count", "words"),
    [
        (0.456, 46, "about 46"),
        (0.011, 1, "about 1"),
        (0.004, 0, "fewer than 1"),
        (0.0, 0, "fewer than 1"),
        (0.996, 100, "more than 99"),
        (1.0, 100, "about 100"),
        (0.995, 100, "more than 99"),
        (0.994, 99, "about 99"),
    ],
)
def test_numbers_in_100_never_round_to_0(p, count, words):
    assert in_100(p) == (count, words)


@pytest.mark.parametrize(
    ("lower", "upper", "text"),
    [
        (0.38, 0.53, "It could be as few as 38 or as many as 53 in 100."),
        (0.001, 0.4, "It could be fewer than 1 or as many as 40 in 100."),
        (0.97, 0.999, "It could be as few as 97 or more than 99 in 100."),
        (0.001, 0.999, "It could be fewer than 1 or more than 99 in 100."),
        (0.0001, 0.004, "Even allowing for this, it is fewer than 1 in 100."),
        (0.996, 0.999, "Even allowing for this, it is more than 99 in 100."),
        (0.451, 0.454, "Even allowing for this, it is about 45 in 100."),
    ],
)
def test_the_uncertainty_in_words(lower, upper, text):
    assert uncertainty_text(lower, upper) == text


def test_an_option_beyond_follow_up_has_no_icons_and_says_why():
    view = patient_view.option_view(OPTIONS[0], next(iter(ENDPOINTS.values())), None, 5, False)
    assert view.count is None and view.icons == ()
    assert "Not known at 5 years" in view.sentence and "not followed for that long" in view.sentence


def test_the_horizons_are_the_default_landmarks_in_whole_years():
    assert HORIZON_YEARS == tuple(int(m / 12) for m in DEFAULT_HORIZONS_MONTHS if m % 12 == 0)
    assert HORIZON_YEARS == (1, 2, 3, 5) and patient_view.DEFAULT_YEARS == 2


# --- the page -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", PATIENTS)
def test_the_numbers_equal_the_results_landmark_survival_rounded(client, app, query):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    patient = {name: query.get(name) for name in BY_NAME}
    prediction = scoring.predict(model, patient)
    result = client.get("/result?" + urlencode(query)).get_data(as_text=True)
    for years in HORIZON_YEARS:
        page = patient_page(client, query, years)
        for name in ENDPOINTS:
            shown = summary_percentages(result, name)
            for option, (count, figure) in figures(page, name, with_count=True).items():
                point = next(
                    p for p in prediction["predictions"][name][option]["landmarks"] if p["months"] == 12 * years
                )
                words = text_of(figure)
                if point["survival"] is None:
                    assert "Not known" in words and "<svg" not in figure
                    continue
                expected = round(100 * point["survival"])
                percent = shown[option][12.0 * years]  # the result page's '46%', '<1%' or '>99%'
                kept = len(re.findall(r'class="person kept option-\d+"', figure))
                lost = len(re.findall(r'class="person lost"', figure))
                assert kept + lost == 100  # the icons add to 100
                assert kept == expected
                if percent == "<1%":
                    assert expected == 0 and "Fewer than 1 in 100" in words and "almost none" in words
                elif percent == ">99%":
                    assert expected == 100 and "More than 99 in 100" in words and "almost all" in words
                else:
                    assert percent == f"{expected}%"
                    assert f"About {expected} in 100" in words
                assert "about 0 " not in words.lower() and "about 100 " not in words.lower()
                low, high = round(100 * point["ci_lower"]), round(100 * point["ci_upper"])
                uncertainty = uncertainty_text(point["ci_lower"], point["ci_upper"])
                assert uncertainty in words
                assert f"as few as {low}" in uncertainty or low == 0 or "Even allowing" in uncertainty
                assert f"as many as {high}" in uncertainty or high >= 100 or "Even allowing" in uncertainty
                assert count == str(expected)


def test_each_icon_array_has_a_text_equivalent_for_screen_readers(client):
    page = patient_page(client, VALID_FORM)
    for name, endpoint in ENDPOINTS.items():
        for option, figure in figures(page, name).items():
            svg = re.search(r'<svg class="icon-array"[^>]*role="img" aria-labelledby="([^"]+)"', figure)
            assert svg, (name, option)
            title = re.search(rf'<title id="{svg.group(1)}">([^<]+)</title>', figure).group(1)
            count = len(re.findall(r'class="person kept', figure))
            assert re.match(
                rf"(About {count}|Fewer than 1|More than 99) of 100 people (was|were) "
                rf"{re.escape(endpoint.free_of)} after 2 years: ",
                html.unescape(title),
            )
            assert (f"{count} filled figure" in title) or count in (0, 100)


def test_plain_words_without_jargon(client):
    for query in (VALID_FORM, GRADE_3):
        for years in HORIZON_YEARS:
            page = patient_page(client, query, years)
            body = text_of(page[page.index("<body") :])
            main = text_of(page[page.index("<main") : page.index("</main>")])
            for word in ABBREVIATIONS:
                assert not re.search(rf"\b{re.escape(word)}\b", body), word
            for word in STATISTICS:
                assert not re.search(word, body, re.I), (word, re.search(word, body, re.I))
            assert "interval" not in main.lower()
            # the observational caveat in plain words: chosen by doctors, not the effects of the treatments
            assert patient_view.PLAIN_OBSERVATIONAL in main
            assert "Their doctors chose each treatment" in main and "not the effects of the treatments" in main


def test_the_synthetic_notice_and_the_model_version(client, app):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    page = html.unescape(patient_page(client, VALID_FORM))
    assert model.data_source == "synthetic"
    assert notices.synthetic_notice(model.evidence_patients) in page  # the banner every page carries
    assert patient_view.PLAIN_SYNTHETIC in page
    assert f"Model version {model.version}" in text_of(page)


def test_the_same_permalink_query_plus_the_horizon(client):
    query = {**VALID_FORM, "tumor_type": "gut"}
    result = html.unescape(client.get("/result?" + urlencode(query)).get_data(as_text=True))
    link = re.search(r'<a href="(/patient\?[^"]+)">View for the patient</a>', result).group(1)
    assert link == "/patient?" + urlencode(query)
    page = html.unescape(patient_page(client, query))
    assert "2 years after treatment" in page  # the default horizon
    for years in HORIZON_YEARS:
        href = "/patient?" + urlencode({"years": years, **query})
        assert f'href="{href}"' in page
    assert 'aria-current="page">2 years</a>' in page
    assert f'href="/result?{urlencode(query)}"' in page  # back to the clinician's result
    assert 'aria-current="page">5 years</a>' in html.unescape(patient_page(client, query, 5))


def test_a_bad_horizon_or_patient_is_a_bad_request(client):
    wrong = client.get("/patient?" + urlencode({**VALID_FORM, "years": "4"}))
    assert wrong.status_code == 400 and "must be one of 1, 2, 3 or 5 years" in wrong.get_data(as_text=True)
    assert client.get("/patient?" + urlencode({**VALID_FORM, "years": "<script>"})).status_code == 400
    incomplete = client.get("/patient?" + urlencode({name: VALID_FORM[name] for name in REQUIRED[:1]}))
    assert incomplete.status_code == 400 and 'class="field-error"' in incomplete.get_data(as_text=True)


def test_few_similar_patients_are_said_in_plain_words(client, app):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    prediction = scoring.predict(model, {name: GRADE_3.get(name) for name in BY_NAME})
    few = {o for o, n in prediction["similar_patients"].items() if n < notices.FEW_SIMILAR_PATIENTS}
    assert few
    page = patient_page(client, GRADE_3)
    for option, figure in figures(page, next(iter(ENDPOINTS))).items():
        assert ("Only a few people like you had this treatment" in figure) == (option in few)


def test_icons_take_their_options_colour_class_and_the_page_no_inline_style_or_script(client):
    page = patient_page(client, VALID_FORM)
    for name in ENDPOINTS:
        for slot, (option, figure) in enumerate(figures(page, name).items()):
            assert option == OPTIONS[slot]
            assert set(re.findall(r'class="person kept (option-\d+)"', figure)) <= {f"option-{slot}"}
            assert MODALITY.label_of(option) in figure
    assert " style=" not in page and "<style" not in page and not re.search(r"\son[a-z]+=", page)
    for tag in re.findall(r"<script[^>]*>", page):
        assert re.search(r'src="/static/', tag), tag


# --- in the browser -----------------------------------------------------------------------------------------


def rgb(hex_colour: str) -> str:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "rgb({}, {}, {})".format(*(int(digits[i : i + 2], 16) for i in (0, 2, 4)))


@pytest.mark.browser
def test_the_patient_view_works_without_javascript_and_its_horizon_links_too(watched, base_url):
    page = watched(java_script_enabled=False).page
    page.goto(f"{base_url}/patient?{urlencode(VALID_FORM)}")
    arrays = page.locator("svg.icon-array")
    assert arrays.count() == len(ENDPOINTS) * len(OPTIONS)
    for i in range(arrays.count()):
        array = arrays.nth(i)
        assert array.is_visible() and array.bounding_box()["width"] > 100
        assert array.locator("use.person").count() == 100
    # Filled figures in the option's colour, empty ones white: they differ by fill, not by colour alone.
    for option in OPTIONS:
        kept = page.locator(f'figure[data-option="{option}"] use.person.kept').first
        if kept.count():
            assert kept.evaluate("e => getComputedStyle(e).fill") == rgb(OPTION_STYLES[option].colour)
    lost = page.locator("use.person.lost").first
    assert lost.evaluate("e => getComputedStyle(e).fill") == "rgb(255, 255, 255)"
    with page.expect_navigation():
        page.get_by_role("link", name="5 years").click()
    assert "years=5" in page.url
    assert page.locator("h1").inner_text().endswith("5 years after treatment")
    assert page.get_by_role("link", name="5 years").get_attribute("aria-current") == "page"


@pytest.mark.browser
@pytest.mark.parametrize(
    ("name", "query", "years"),
    [
        ("patient-view", VALID_FORM, 2),
        ("patient-view-grade-3-5-years", {**GRADE_3, "tumor_burden": ">75%", "prior_resection_ablation": "1"}, 5),
        ("patient-view-1-year", {**VALID_FORM, "tumor_type": "gut", "octreotide": "1", "biologic": "0"}, 1),
        ("patient-view-conditional", {**VALID_FORM, "conditional_on_months": "12"}, 3),
    ],
)
def test_the_patient_view_prints_on_one_page_on_a4_and_letter(watched, base_url, name, query, years):
    page = watched().page
    page.goto(f"{base_url}/patient?{urlencode({**query, 'years': years})}")
    shot(page, name)
    for paper in ("A4", "Letter"):
        assert printed_pages(page, f"{name}-{paper}", paper) == 1, paper
    assert page.locator(".site-header").is_hidden() and page.locator(".horizons").is_hidden()
    assert page.locator("svg.icon-array").first.is_visible()
    assert page.locator(".banner-synthetic").is_visible()
    assert page.locator(".model-version").is_visible()
    assert (ARTIFACTS / f"{name}-Letter.pdf").exists()
