"""Where the numbers come from (issue 9): what retraining records on the model card page (sample size, shrinkage,
updating, the smoothed calibration curves), the base version named on the card and the result, and a model updated
from the synthetic one that keeps its hazard ratios carrying the synthetic notice on every page and answer."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest

from calculator import card_figures, create_app, patient_view
from prognosis import notices, provenance
from prognosis.covariates import ENDPOINTS
from registry import load_registry
from tests.conftest import TEST_CONFIG, VALID_FORM
from training.pipeline import update_registry
from training.synthetic import synthesize

GOOD = {"who_grade": 2, "tumor_burden": "25-50%", "prior_resection_ablation": True}
PAGES = ["/", "/result?" + urlencode(VALID_FORM), "/patient?" + urlencode(VALID_FORM), "/model", "/api"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry that is not synthetic (its patient ids are not the generator's)."""
    path = tmp_path_factory.mktemp("registry") / "registry.csv"
    frame = synthesize(600, 23)
    frame["patient_id"] = [f"R{i:05d}" for i in range(len(frame))]
    frame.to_csv(path, index=False)
    return load_registry(str(path))


@pytest.fixture(scope="module")
def updated_dirs(model_dir, registry, tmp_path_factory):  # noqa: F811 (model_dir: the session's synthetic model)
    """The session's synthetic model updated on the registry: keeping its hazard ratios (baseline), and refitted."""
    root = tmp_path_factory.mktemp("updated")
    kept = update_registry(model_dir, registry, root / "baseline", method="baseline", version="upd-baseline")
    refit = update_registry(model_dir, registry, root / "refit", method="refit", version="upd-refit", replicates=10)
    return {"baseline": kept, "refit": refit}


def client_for(directory):
    return create_app({**TEST_CONFIG, "MODEL_DIR": str(directory), "WTF_CSRF_ENABLED": False}).test_client()


def text(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def card(directory) -> dict:
    return json.loads((Path(directory) / "model_card.json").read_text())


# --- the helper ---------------------------------------------------------------------------------------------------


def updated_card(methods: dict[str, str], base_source: str = "synthetic") -> dict:
    return {
        "data": {"source": "registry"},
        "base_model": {"version": "base-1", "data_source": base_source, "evidence_patients": 184},
        "endpoints": {name: {"update": {"base_version": "base-1", "method": methods[name]}} for name in methods},
    }


@pytest.mark.parametrize(
    ("card_", "synthetic", "derived"),
    [
        ({"data": {"source": "synthetic", "evidence_patients": 184}}, True, False),
        ({"data": {"source": "registry"}}, False, False),
        (updated_card(dict.fromkeys(ENDPOINTS, "baseline")), False, True),
        (updated_card(dict.fromkeys(ENDPOINTS, "recalibration")), False, True),
        (updated_card(dict.fromkeys(ENDPOINTS, "original")), False, True),
        (updated_card({**dict.fromkeys(ENDPOINTS, "refit"), next(iter(ENDPOINTS)): "baseline"}), False, True),
        (updated_card(dict.fromkeys(ENDPOINTS, "refit")), False, False),
        (updated_card(dict.fromkeys(ENDPOINTS, "baseline"), base_source="registry"), False, False),
        (None, False, False),
    ],
)
def test_which_predictions_are_synthetic_or_synthetic_derived(card_, synthetic, derived):
    origin = provenance.provenance(card_)
    assert (origin.synthetic, origin.derived, origin.synthetic_derived) == (synthetic, derived, synthetic or derived)
    assert (origin.notice is not None) == (synthetic or derived)
    if derived:
        kept = provenance.kept_hazard_ratios(card_)
        assert all(ENDPOINTS[name].label.lower() in origin.notice for name in kept)
        assert "base-1" in origin.notice and "SYNTHETIC" in origin.notice and "184 patients" in origin.notice
    if card_ and card_.get("base_model"):
        assert (
            origin.base_version == "base-1" and origin.updated and "Updated from model base-1" in origin.update_text()
        )


# --- a model updated from the synthetic one ------------------------------------------------------------------------


def test_an_update_that_keeps_synthetic_hazard_ratios_carries_the_notice_everywhere(updated_dirs, model_dir):
    directory = updated_dirs["baseline"]
    assert card(directory)["data"]["source"] == "registry"
    origin = provenance.provenance(card(directory))
    assert origin.derived and origin.base_version == card(model_dir)["model_version"]
    client = client_for(directory)
    for path in PAGES:
        page = html.unescape(client.get(path).get_data(as_text=True))
        banner = page[page.index('<aside class="banner banner-synthetic"') :]
        assert origin.notice in banner[: banner.index("</aside>")], path
        assert "Demonstration model" in banner
    # The API's answer carries it too, and names the base version.
    answer = client.post("/api/v1/predict", json=GOOD).json
    assert origin.notice in answer["warnings"] and notices.OBSERVATIONAL in answer["warnings"]
    assert answer["model"]["base_version"] == origin.base_version and answer["model"]["data_source"] == "registry"
    batch = client.post("/api/v1/predict/batch", json={"patients": [GOOD]}).json
    assert origin.notice in batch["warnings"] and batch["model"]["base_version"] == origin.base_version
    # The patient reads it in plain words; the result names the base version in "About this estimate".
    patient = html.unescape(client.get("/patient?" + urlencode(VALID_FORM)).get_data(as_text=True))
    assert patient_view.PLAIN_SYNTHETIC_DERIVED in patient
    result = html.unescape(client.get("/result?" + urlencode(VALID_FORM)).get_data(as_text=True))
    about = text(result[result.index('<section class="about"') :])
    assert f"Updated from model {origin.base_version} (synthetic data)" in about
    assert "the baseline hazard re-estimated" in about and notices.ATTRIBUTION in about
    assert result.count(origin.notice) == 1  # in the banner, not again in the warnings list


def test_a_refitted_update_is_registry_evidence_and_still_names_its_base(updated_dirs, model_dir):
    client = client_for(updated_dirs["refit"])
    base_version = card(model_dir)["model_version"]
    for path in PAGES:
        assert 'class="banner banner-synthetic"' not in client.get(path).get_data(as_text=True), path
    answer = client.post("/api/v1/predict", json=GOOD).json
    assert not any("SYNTHETIC" in w for w in answer["warnings"]) and answer["model"]["base_version"] == base_version
    result = text(client.get("/result?" + urlencode(VALID_FORM)).get_data(as_text=True))
    assert f"Updated from model {base_version}" in result and "every coefficient re-estimated" in result
    assert patient_view.PLAIN_SYNTHETIC_DERIVED not in client.get("/patient?" + urlencode(VALID_FORM)).get_data(
        as_text=True
    )


def development(page: str) -> str:
    start = page.index('<h2 id="development">')
    return page[start : page.index('<h2 id="performance">')]


def test_the_card_page_names_the_base_and_shows_each_update(updated_dirs, model_dir):
    directory = updated_dirs["baseline"]
    updated = card(directory)
    page = html.unescape(client_for(directory).get("/model").get_data(as_text=True))
    start = page.index('<header class="card-header">')
    header = page[start : page.index("</header>", start)]
    base_version = updated["base_model"]["version"]
    assert f"Model version <strong>{base_version}</strong>" in header and 'class="notice-synthetic"' in header
    assert "Hazard ratios from a synthetic model." in header
    section = development(page)
    assert f"updated from model version {base_version}" in section
    for name, endpoint in updated["endpoints"].items():
        update = endpoint["update"]
        block = section[section.index(f'id="update-{name}-heading"') :]
        block = block[: block.index("</section>")]
        assert update["base_version"] in block and update["method"] in block
        table = block[block.index('<table class="card-table update-tests">') : block.index("</table>")]
        assert table.count('<tr><th scope="row">') == len(update["tests"])
        for test in update["tests"]:
            assert test["comparison"] in table and f"{test['statistic']:.2f}" in table and f"<td>{test['df']}" in table
        assert f"{update['observed_expected']:.3f}" in block
    assert "not available" not in section


def test_the_card_page_shows_sample_size_and_shrinkage(client, model_dir):
    fitted = card(model_dir)
    section = html.unescape(development(client.get("/model").get_data(as_text=True)))
    assert "Fitted directly on its data (not updated from another model)." in section
    table = section[section.index('<table class="card-table sample-size">') :]
    table = table[: table.index("</table>")]
    for endpoint in fitted["endpoints"].values():
        size = endpoint["sample_size"]
        assert f"<td>{size['patients']}; {size['events']}</td>" in table
        assert f"<td>{size['parameters']}</td>" in table
        assert f"{size['r2_cs']:.3f}" in table
        for key in ("shrinkage", "optimism", "precision"):
            assert f"<td>{size['criteria'][key]}</td>" in table
        assert f"<strong>{size['minimum_patients']}</strong>" in table
        assert ("<td>yes</td>" if size["adequate"] else "no: too small") in table
        shrink = endpoint["shrinkage"]
        assert f"<td>{shrink['factor']:.3f}</td>" in section
    assert "not available" not in section


def test_an_older_card_without_these_records_says_so_plainly(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    endpoints = json.loads(json.dumps(model.card["endpoints"]))
    for endpoint in endpoints.values():
        endpoint.pop("sample_size", None)
        endpoint.pop("shrinkage", None)
    monkeypatch.setitem(model.card, "endpoints", endpoints)
    section = development(app.test_client().get("/model").get_data(as_text=True))
    assert "records no sample-size assessment, shrinkage or update" in section
    assert "not available" not in section


# --- the smoothed calibration curves --------------------------------------------------------------------------------


def smoothed_entry(months: float, external: bool = False) -> dict:
    """An entry of validation.<endpoint>.smoothed_calibration as docs/validation.md describes it."""
    predicted = [0.05 + 0.9 * i / 49 for i in range(50)]
    return {
        "months": months,
        "estimable": True,
        "external": external,
        "ici": 0.0213,
        "e50": 0.0187,
        "e90": 0.0412,
        "emax": 0.061,
        "observed_expected": 1.0832,
        "basis": "apparent" if external else "optimism_corrected",
        "measures": {
            key: {"apparent": value, "optimism": 0.0, "optimism_corrected": value}
            for key, value in (
                ("ici", 0.0213),
                ("e50", 0.0187),
                ("e90", 0.0412),
                ("emax", 0.061),
                ("observed_expected", 1.0832),
            )
        },
        "km_risk": 0.41,
        "mean_predicted": 0.38,
        "curve": {
            "kind": "apparent",
            "predicted": predicted,
            "observed": [p * 1.05 for p in predicted],
            "ci_lower": [p * 0.95 for p in predicted],
            "ci_upper": [min(1.0, p * 1.15) for p in predicted],
        },
        "predicted_distribution": {"edges": [i / 20 for i in range(21)], "counts": [3 * i for i in range(20)]},
    }


def test_smoothed_calibration_curves_are_drawn_with_their_band_and_table(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    validation = json.loads(json.dumps(model.card["validation"]))
    for name in ENDPOINTS:
        validation[name]["smoothed_calibration"] = [
            smoothed_entry(12.0),
            smoothed_entry(24.0),
            {"months": 36.0, "estimable": False, "reason": "beyond the follow-up", "external": False},
        ]
    monkeypatch.setitem(model.card, "validation", validation)
    page = app.test_client().get("/model").get_data(as_text=True)
    calibration = page[page.index('<h2 id="calibration">') : page.index('<h2 id="risk-groups">')]
    for name in ENDPOINTS:
        for i, months in ((1, 12), (2, 24)):
            start = calibration.rindex("<svg", 0, calibration.index(f'id="smooth-{name}-{i}-title"'))
            figure = calibration[start : calibration.index("</svg>", start)]
            assert 'role="img"' in figure and f'data-months="{months}"' in figure
            assert figure.count('<polyline class="smooth-line"') == 1 and figure.count('class="smooth-band"') == 1
            assert figure.count('class="diagonal"') == 1
            assert figure.count('class="histogram-bar"') == 19  # the empty first bin is not drawn
            assert "ICI 0.021, E50 0.019, E90 0.041, observed/expected 1.08" in text(figure)
        table = calibration[calibration.index(f'id="smoothed-{name}-caption"') :]
        table = table[: table.index("</table>")]
        assert "<td>0.021 (0.021)</td>" in table and "<td>1.083 (1.083)</td>" in table
        assert "not estimable: beyond the follow-up" in table
    assert 'id="smooth-' in calibration and "Hollow points" not in calibration


def test_the_smoothed_geometry_keeps_the_diagonal_at_45_degrees():
    plot = card_figures.smoothed_calibration_plot(smoothed_entry(12.0))
    assert plot is not None
    x1, y1, x2, y2 = plot.diagonal
    assert (x2 - x1) == pytest.approx(y1 - y2)
    points = [tuple(map(float, p.split(","))) for p in plot.line.split()]
    assert all(plot.left <= x <= plot.right and plot.top <= y <= plot.bottom for x, y in points)
    assert all(plot.histogram_top <= bar.y <= plot.histogram_bottom for bar in plot.histogram)
    assert card_figures.smoothed_calibration_plot({"months": 12.0, "estimable": False}) is None
    assert (
        card_figures.smoothed_calibration_plot({"months": 12.0, "curve": {"predicted": [0.1], "observed": [0.1]}})
        is None
    )


def test_the_served_cards_smoothed_calibration_is_drawn_when_validation_records_it(client, model_dir):
    """With the fixture's own validation: one figure per estimable horizon and endpoint, when it has them."""
    validation = card(model_dir)["validation"]
    entries = {
        name: [e for e in validation[name].get("smoothed_calibration", []) if e.get("estimable", True)]
        for name in ENDPOINTS
    }
    page = client.get("/model").get_data(as_text=True)
    for name, found in entries.items():
        assert page.count(f'id="smooth-{name}-') == 2 * len(found)  # title and desc of each figure
        for entry in found:
            assert f"{entry['ici']:.3f}" in page


# --- in the browser: the updated model's pages pass axe-core too ------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/model", "/result?" + urlencode(VALID_FORM), "/patient?" + urlencode(VALID_FORM)])
def test_the_updated_models_pages_have_no_serious_accessibility_violations(updated_dirs, path):
    from tests.browser_support import FAILING_IMPACTS, axe_violations, chromium, describe, served, watching

    with served(updated_dirs["baseline"]) as base_url, chromium() as browser:
        pages = watching(browser, base_url)
        open_page = next(pages)
        page = open_page().page
        page.goto(base_url + path)
        failing = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
        assert failing == [], describe(failing)
        next(pages, None)  # the watched page's console and requests are checked
