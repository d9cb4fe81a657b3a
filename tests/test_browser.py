"""The calculator in Debian's Chromium, driven by Playwright, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from prognosis.covariates import ENDPOINTS, MODALITY_WITHIN, OPTION_STYLES, OPTIONS
from tests.browser_support import ARTIFACTS, shot

pytestmark = pytest.mark.browser


def tab_to(page, selector: str, limit: int = 40) -> None:
    """Press Tab until the focused element matches ``selector``."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def assert_charts(page) -> None:
    charts = page.locator("svg.chart")
    assert charts.count() == len(ENDPOINTS)
    for i in range(len(ENDPOINTS)):
        chart = charts.nth(i)
        for kind in ("polyline.line", "polygon.band"):
            shapes = chart.locator(kind)
            assert shapes.count() == len(OPTIONS)
            assert all(shapes.nth(k).is_visible() for k in range(len(OPTIONS)))


def test_a_clinician_fills_the_form_by_keyboard_and_reads_the_result(watched, base_url):
    w = watched()
    page = w.page
    page.goto(base_url + "/")
    shot(page, "01-form")

    tab_to(page, 'input[name="who_grade"]')
    page.keyboard.press("Space")  # grade 1
    page.keyboard.press("ArrowRight")  # grade 2
    tab_to(page, 'input[name="tumor_burden_pct"]')  # burden as a percentage instead of a category
    page.keyboard.type("30")
    tab_to(page, 'input[name="prior_resection_ablation"]')
    page.keyboard.press("Space")  # no
    tab_to(page, 'input[name="tumor_type"]')
    page.keyboard.press("ArrowRight")  # from Unknown to pancreatic
    page.keyboard.press("ArrowRight")  # gut
    tab_to(page, 'button[type="submit"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert "/result?" in page.url
    assert "tumor_burden=25-50%25" in page.url and "tumor_type=gut" in page.url
    assert_charts(page)
    assert page.locator("table.summary").count() == len(ENDPOINTS)
    assert page.locator("table.differences").count() == len(ENDPOINTS)
    assert page.get_by_text("25-50% (from 30%)").is_visible()
    assert page.locator(".banner-synthetic").is_visible()
    assert page.get_by_text("Treatment was not randomized", exact=False).is_visible()
    sentences = page.locator(".sentences li").all_inner_texts()
    assert len(sentences) == len(ENDPOINTS) * len(OPTIONS)

    # The data table behind each chart opens from the keyboard.
    for i in range(len(ENDPOINTS)):
        page.locator("details.data-table summary").nth(i).focus()
        page.keyboard.press("Enter")
        table = page.locator("details.data-table table").nth(i)
        assert table.is_visible() and table.locator("tbody tr").count() > 5
    shot(page, "02-result")

    # Values on hover.
    chart = page.locator("svg.chart").first
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    readout = page.locator(".readout").first
    assert re.match(r"At \d+ months: TACE \d+% \(\d+%–\d+%\)", readout.inner_text())

    # Toggling an option hides its curve and band in that chart only.
    figure = page.locator("figure.chart-figure").first
    toggle = figure.locator('button.legend-toggle:has-text("SIRT")')
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false"
    assert figure.locator('polyline[data-option="SIRT"]').is_hidden()
    assert figure.locator('polygon[data-option="SIRT"]').is_hidden()
    assert page.locator("figure.chart-figure").nth(1).locator('polyline[data-option="SIRT"]').is_visible()
    assert "SIRT" not in readout.inner_text()
    shot(page, "03-result-sirt-hidden")
    toggle.click()
    assert figure.locator('polyline[data-option="SIRT"]').is_visible()

    # The permalink reproduces the result in a fresh page.
    permalink = page.get_by_role("link", name="Permalink to this result").get_attribute("href")
    again = watched().page
    again.goto(base_url + permalink)
    assert again.locator(".sentences li").all_inner_texts() == sentences
    assert_charts(again)

    # Print: a one-page handout without navigation, form controls or buttons.
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 718, "height": 1047})  # A4 less the 10 mm margins, in CSS pixels
    assert page.locator(".site-header").is_hidden()
    assert page.locator(".actions").is_hidden()
    assert page.locator(".banner-synthetic").is_visible()
    assert_charts(page)
    shot(page, "04-print")
    pdf = page.pdf(path=str(ARTIFACTS / "04-print.pdf"), format="A4", print_background=True)
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1


def test_charts_arrow_keys_read_values(watched, base_url):
    page = watched().page
    page.goto(base_url + "/result?who_grade=3&tumor_burden=%3E75%25&prior_resection_ablation=1")
    chart = page.locator("svg.chart").nth(1)
    chart.focus()
    for _ in range(24):
        page.keyboard.press("ArrowRight")
    assert page.locator(".readout").nth(1).inner_text().startswith("At 24 months: TACE ")


def test_invalid_input_shows_the_message_by_the_field(watched, base_url):
    page = watched().page
    page.goto(base_url + "/")
    page.get_by_label("Grade 3").check()
    page.get_by_label("Or as a percentage of liver volume").fill("130")
    page.get_by_label("Yes").first.check()
    with page.expect_navigation():
        page.get_by_role("button", name="Show predictions").click()
    error = page.locator("#tumor_burden_pct-error")
    assert error.is_visible() and "from 0 to 100" in error.inner_text()
    assert page.get_by_label("Grade 3").is_checked()
    assert page.get_by_label("Or as a percentage of liver volume").input_value() == "130"
    shot(page, "05-form-error")


def test_the_result_works_without_javascript(watched, base_url):
    page = watched(java_script_enabled=False).page
    page.goto(base_url + "/result?who_grade=1&tumor_burden=%3C25%25&prior_resection_ablation=0&octreotide=1")
    assert_charts(page)
    assert page.locator("button.legend-toggle").count() == 0
    page.locator("details.data-table summary").first.click()
    assert page.locator("details.data-table table").first.is_visible()
    shot(page, "06-result-no-javascript")


def test_the_model_card_shows_every_section_and_figure(watched, base_url):
    w = watched()
    page = w.page
    page.goto(base_url + "/model")
    assert page.locator("h2").count() >= 15
    assert page.locator("table.estimates").count() == 2 * len(ENDPOINTS)
    forests = page.locator("svg.forest")
    assert forests.count() == len(ENDPOINTS)
    for i in range(len(ENDPOINTS)):
        forest = forests.nth(i)
        assert forest.is_visible() and forest.bounding_box()["width"] > 500
        assert forest.locator("rect.forest-hr").count() == 19
    assert page.locator("svg.calibration-plot").count() == 3 * len(ENDPOINTS)
    assert page.locator("svg.risk-groups").count() == len(ENDPOINTS)
    assert page.locator("table.ph-table").is_visible()
    # The stylesheet applies (a CSP-blocked inline style would not): markers are drawn in the series colour.
    fill = page.locator("svg.forest rect.forest-hr").first.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(0, 114, 178)"
    assert w.errors == []
    shot(page, "07-model-card")


def rgb(hex_colour: str) -> str:
    """'#0072B2' as getComputedStyle writes it: 'rgb(0, 114, 178)'."""
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "rgb({}, {}, {})".format(*(int(digits[i : i + 2], 16) for i in (0, 2, 4)))


def test_a_grade_3_result_says_how_little_evidence_there_is_and_prints_on_one_page(watched, base_url):
    page = watched().page
    top = MODALITY_WITHIN.levels[-1]
    page.goto(f"{base_url}/result?{MODALITY_WITHIN.name}={top}&tumor_burden=%3C25%25&prior_resection_ablation=0")
    # Few similar patients: a box of its own, above the charts.
    box = page.locator("aside.few-similar")
    assert box.is_visible() and "Few similar patients" in box.inner_text()
    assert box.bounding_box()["y"] < page.locator("svg.chart").first.bounding_box()["y"]
    # Each endpoint's definition beside its chart; the observational caveat once, near the top.
    for name, endpoint in ENDPOINTS.items():
        assert page.locator(f"#{name} p.definition").inner_text().endswith(endpoint.definition)
    assert page.get_by_text("Treatment was not randomized", exact=False).count() == 1
    # Colours from the definitions' OPTION_STYLES, through the generated stylesheet.
    for slot, option in enumerate(OPTIONS):
        line = page.locator(f'svg.chart polyline.line[data-option="{option}"]').first
        assert line.evaluate("e => getComputedStyle(e).stroke") == rgb(OPTION_STYLES[option].colour)
        assert f"option-{slot}" in line.get_attribute("class")
    # The time axis ends where the curves stop carrying information, and values still read at its end.
    chart = page.locator("svg.chart").first
    x_max = json.loads(page.locator("script.chart-data").first.text_content())["geometry"]["x_max"]
    assert chart.locator(".axis text").all_text_contents()[-3] == f"{x_max:g}"  # the last tick, before the titles
    chart.focus()
    page.keyboard.press("End")
    assert page.locator(".readout").first.inner_text().startswith(f"At {x_max:g} months: ")
    assert "about 0 " not in page.locator("main").inner_text()
    shot(page, "08-result-grade-3")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 718, "height": 1047})
    assert page.locator("aside.few-similar").is_visible()
    pdf = page.pdf(path=str(ARTIFACTS / "08-print-grade-3.pdf"), format="A4", print_background=True)
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1


def test_the_model_card_shows_standard_errors_beside_the_published_ones(watched, base_url):
    page = watched().page
    page.goto(base_url + "/model")
    table = page.locator("table.estimates").first
    assert table.locator("th", has_text="Published SE").is_visible()
    assert table.locator("td.se-ratio").count() > 0
    assert page.locator("p.se-agreement").count() == len(ENDPOINTS)


def test_the_api_link_opens_the_page_for_people_and_it_links_the_json(watched, base_url):
    page = watched().page
    page.goto(base_url + "/")
    with page.expect_navigation():
        page.get_by_role("navigation", name="Main").get_by_role("link", name="API").click()
    assert page.url == base_url + "/api"
    assert page.get_by_role("heading", name="The API", level=1).is_visible()
    assert page.locator("table.api-fields").count() >= 2
    assert page.locator("pre.api-example").count() >= 2
    shot(page, "09-api-page")
    # The document the page is made from, linked for programs (fetched, not opened: shown as a document, a JSON file
    # has Chromium ask for /favicon.ico, which the app does not serve, a 404 in the console).
    href = page.get_by_role("link", name="/api/v1/openapi.json").get_attribute("href")
    assert page.request.get(base_url + href).json()["openapi"].startswith("3.1")


def test_a_conditional_result_draws_from_the_condition_and_reads_from_there(watched, base_url):
    """Issue 12.1: the condition said first, the curves from s on the months-since-embolotherapy axis, values read
    from s on (before it the readout says why there is none), and a screenshot to look at."""
    page = watched().page
    page.goto(
        base_url + "/result?who_grade=2&tumor_burden=25-50%25&prior_resection_ablation=0&conditional_on_months=12"
    )
    box = page.locator("aside.condition")
    assert box.is_visible() and box.bounding_box()["y"] < page.locator("svg.chart").first.bounding_box()["y"]
    for endpoint in ENDPOINTS.values():
        assert f"still {endpoint.free_of} 12 months after the embolotherapy" in box.inner_text()
    assert_charts(page)
    chart = page.locator("svg.chart").first
    assert chart.locator("rect.before-condition").is_visible() and chart.locator("line.condition-line").count() == 1
    # The line is drawn (a vertical line has no width for is_visible): dashed, in the stylesheet's colour.
    assert chart.locator("line.condition-line").evaluate("e => getComputedStyle(e).strokeDasharray") != "none"
    chart.focus()
    page.keyboard.press("Home")
    readout = page.locator(".readout").first
    assert readout.inner_text().startswith("At 12 months: ") and "100%" in readout.inner_text()
    page.keyboard.press("ArrowLeft")
    assert "before the 12 months already passed" in readout.inner_text()
    page.keyboard.press("PageUp")
    assert readout.inner_text().startswith("At 23 months: ")
    path = shot(page, "10-conditional-result")
    screens = Path("/tmp/screens")
    screens.mkdir(exist_ok=True)
    shutil.copy(path, screens / "conditional-result.png")
