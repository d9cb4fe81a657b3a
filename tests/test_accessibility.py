"""WCAG 2.2 AA on every page (issue 12.4): axe-core, from the axe-playwright-python package (nothing from a CDN), in
Debian's Chromium. A serious or critical violation fails the test, which prints every violation it found."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from prognosis.covariates import MODALITY_WITHIN
from tests.browser_support import FAILING_IMPACTS, axe_violations, describe
from tests.conftest import VALID_FORM

pytestmark = pytest.mark.browser

GRADE_3 = {**VALID_FORM, MODALITY_WITHIN.name: MODALITY_WITHIN.levels[-1]}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def open_form_with_errors(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_label("Grade 3").check()
    page.get_by_label("Or as a percentage of liver volume").fill("130")
    with page.expect_navigation():
        page.get_by_role("button", name="Show predictions").click()
    assert page.locator(".field-error").count() >= 2


def open_result_in_use(page, base_url: str) -> None:
    """A result with unknown inputs, as a reader leaves it: data tables open, an option hidden, a value read."""
    page.goto(f"{base_url}/result?{urlencode(VALID_FORM)}")
    assert page.locator(".unknown-note").is_visible()
    for i in range(page.locator("details.data-table").count()):
        page.locator("details.data-table summary").nth(i).click()
    page.locator("figure.chart-figure").first.locator("button.legend-toggle").nth(1).click()
    page.locator("svg.chart").first.focus()
    page.keyboard.press("ArrowRight")


def open_conditional_result_in_use(page, base_url: str) -> None:
    """A conditional result (issue 12.1) as a reader leaves it: data tables open, a value read after the condition."""
    page.goto(f"{base_url}/result?{urlencode(CONDITIONAL)}")
    assert page.locator("aside.condition").is_visible()
    for i in range(page.locator("details.data-table").count()):
        page.locator("details.data-table summary").nth(i).click()
    page.locator("svg.chart").first.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")


def open_form_with_a_condition_past_the_end(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_label("Grade 2").check()
    page.get_by_label("< 25%").check()
    page.locator('input[name="prior_resection_ablation"][value="0"]').check()
    page.get_by_label("Already free of the event for").fill("100000")
    with page.expect_navigation():
        page.get_by_role("button", name="Show predictions").click()
    assert page.locator("#conditional_on_months-error").is_visible()


CONDITIONAL = {**VALID_FORM, "conditional_on_months": "12"}

PAGES = {
    "form": "/",
    "form-with-errors": open_form_with_errors,
    "result-with-unknowns": open_result_in_use,
    "result-grade-3-with-warnings": f"/result?{urlencode(GRADE_3)}",
    "patient-view": f"/patient?{urlencode(VALID_FORM)}",
    "patient-view-grade-3-5-years": f"/patient?{urlencode({**GRADE_3, 'years': 5})}",
    "model-card": "/model",
    "api-page": "/api",
    "api-page-batch": "/api#op-predict_batch",
    "result-conditional": open_conditional_result_in_use,
    "patient-view-conditional": f"/patient?{urlencode({**CONDITIONAL, 'years': 3})}",
    "form-with-condition-error": open_form_with_a_condition_past_the_end,
    "error-404": "/no/such/page",
    "error-400": f"/patient?{urlencode({**VALID_FORM, 'years': 4})}",
}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_or_critical_accessibility_violations(watched, base_url, name, viewport):
    w = watched(viewport=viewport)
    page = w.page
    opened = PAGES[name]
    if callable(opened):
        opened(page, base_url)
    else:
        response = page.goto(base_url + opened)
        if name.startswith("error-"):
            # The browser logs the page's own status as a console error; nothing else may be logged.
            status = f"the server responded with a status of {response.status}"
            assert response.status >= 400 and sum(status in e for e in w.errors) == 1
            w.errors[:] = [e for e in w.errors if status not in e]
    violations = axe_violations(page)
    if violations:
        print(f"axe-core on {name} ({viewport['width']} px):\n{describe(violations)}")
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    assert failing == [], f"{name}: serious or critical accessibility violations:\n{describe(failing)}"


def test_axe_runs_and_finds_what_it_should(watched, base_url):
    """The check itself works: a target too small and an image without a name, planted in a page, are found."""
    page = watched().page
    page.goto(base_url + "/")
    page.evaluate("""() => {
        const a = document.createElement("a"); a.href = "#"; a.textContent = "x";
        const b = document.createElement("a"); b.href = "#"; b.textContent = "y";
        for (const link of [a, b]) {  // the CSSOM, which the content policy allows (a style attribute it would not)
            Object.assign(link.style, {display: "inline-block", width: "8px", height: "8px", fontSize: "6px"});
            document.querySelector("main").prepend(link);
        }
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("role", "img"); document.querySelector("main").append(svg);
    }""")
    found = {v["id"]: v["impact"] for v in axe_violations(page)}
    assert found.get("svg-img-alt") in FAILING_IMPACTS
    assert found.get("target-size") in FAILING_IMPACTS
