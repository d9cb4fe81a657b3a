"""The model card page (/model): every section, the server-drawn figures, CSP-safe markup, a bounded size.

The ``client`` serves the session's small validated synthetic model (tests/model_fixtures.py); its card is read
from disk to count what the page must show.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from calculator import card_figures, create_app
from tests.conftest import TEST_CONFIG

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "model_artifacts" / "current"
SECTIONS = {
    "intended-use": "Intended use and users",
    "data": "Data",
    "eligibility": "Eligibility",
    "outcomes": "Outcomes and horizons",
    "predictors": "Predictors and their coding",
    "missing-data": "Missing data",
    "model-specification": "Model specification",
    "hazard-ratios": "Hazard ratios",
    "performance": "Performance",
    "calibration": "Calibration",
    "risk-groups": "Survival by predicted risk group",
    "proportional-hazards": "Proportional hazards",
    "limitations": "Limitations",
    "software": "Software",
    "changelog": "Changelog",
}
VALIDATION_SECTIONS = ("performance", "calibration", "risk-groups", "proportional-hazards")


def card_of(model_dir) -> dict:
    return json.loads((Path(model_dir) / "model_card.json").read_text(encoding="utf-8"))


def get_page(client) -> str:
    response = client.get("/model")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def section(page: str, key: str) -> str:
    """The HTML of one top-level section, from its heading to the next one."""
    start = page.index(f'<h2 id="{key}">')
    following = [page.find(f'<h2 id="{k}">', start + 1) for k in SECTIONS if k != key]
    end = min([i for i in following if i > start] + [page.index("</article>")])
    return page[start:end]


def svg(page: str, title_id: str) -> str:
    """The <svg> element labelled by ``title_id``."""
    start = page.rindex("<svg", 0, page.index(f'id="{title_id}"'))
    return page[start : page.index("</svg>", start) + len("</svg>")]


def shown(group: dict) -> bool:
    return group["predicted"] is not None and group["observed"] is not None


def assert_clean_markup(page: str) -> None:
    """Nothing that the CSP (style-src 'self'; script-src 'self') would block."""
    assert " style=" not in page and "<style" not in page
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert " src=" in tag or 'type="application/json"' in tag, tag
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers


def test_every_section_heading_is_present_in_order(client, model_dir):
    page = get_page(client)
    card = card_of(model_dir)
    assert f"<h1>Model card — version {card['model_version']}</h1>" in page
    positions = [page.index(f'<h2 id="{key}">{title}</h2>') for key, title in SECTIONS.items()]
    assert positions == sorted(positions)
    for key in SECTIONS:  # the table of contents links every section
        assert f'href="#{key}"' in page
    assert "not available" not in page  # a complete, validated card


def test_the_header_names_version_source_and_the_synthetic_notice(client, model_dir):
    page = get_page(client)
    card = card_of(model_dir)
    header = page[page.index('<header class="card-header">') : page.index("</header>", page.index("card-header"))]
    assert card["created_at"] in header and card["model_version"] in header
    assert 'class="notice-synthetic"' in header and "SYNTHETIC registry" in header
    assert "Cite as" in header and card["data"]["sha256"][:12] in header and "Chen JX" in header
    assert "confounding by indication" in header
    data = section(page, "data")
    assert card["data"]["sha256"] in data and f"<dd>{card['data']['rows_read']}</dd>" in data
    assert "Rows excluded</dt><dd>none" in data


def test_model_specification_gives_coefficients_baseline_survival_and_the_formula(client, model_dir):
    spec = section(get_page(client), "model-specification")
    card = card_of(model_dir)
    assert "S<sub>0</sub>(t)<sup>exp(z′β)</sup>" in spec
    for ep in card["endpoints"].values():
        for row in ep["multivariate"]:
            assert f"{row['coef']:.5f}" in spec
        for b in ep["baseline_survival"]:
            assert f"{b['survival']:.4f}" in spec
    hpfs = card["endpoints"]["hpfs"]
    example = card_figures.worked_example(hpfs, card_figures.EXAMPLE_TERMS)
    assert example is not None and f"<strong>{example['survival']:.3f}</strong>" in spec
    hr = {row["term"]: row["hr"] for row in hpfs["multivariate"]}
    s0 = next(b["survival"] for b in hpfs["baseline_survival"] if b["months"] == card_figures.EXAMPLE_MONTHS)
    assert example["survival"] == pytest.approx(s0 ** (hr["who_grade[2]"] * hr["tumor_burden[25-50%]"]))


def test_both_endpoints_have_a_forest_plot_with_a_marker_per_term(client, model_dir):
    page = get_page(client)
    card = card_of(model_dir)
    terms = len(card["model"]["terms"])
    assert terms == 19
    for name, ep in card["endpoints"].items():
        figure = svg(page, f"forest-{name}-title")
        assert 'role="img"' in figure and f'aria-labelledby="forest-{name}-title forest-{name}-desc"' in figure
        assert f'<desc id="forest-{name}-desc">' in figure
        assert len(ep["multivariate"]) == terms
        assert figure.count('class="forest-hr"') == terms
        assert figure.count('class="whisker"') == terms
        assert figure.count('class="forest-published"') == sum("published_hr" in r for r in ep["multivariate"]) == terms
        assert figure.count('class="reference"') == 1
        assert re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', figure).count("1") == 1
        for row in ep["multivariate"]:
            assert f"{row['hr']:.2f} ({row['ci_lower']:.2f}–{row['ci_upper']:.2f})" in figure
    # The Table 1-style tables stay, with the published values beside.
    hazard = section(page, "hazard-ratios")
    assert hazard.count('<table class="estimates">') == 2 * len(card["endpoints"])
    assert hazard.count("Published HR") == 2 * len(card["endpoints"])


def test_performance_shows_each_measure_with_its_interval(client, model_dir):
    performance = section(get_page(client), "performance")
    validation = card_of(model_dir)["validation"]
    assert "passed" in performance
    for name in ("hpfs", "os"):
        v = validation[name]
        c, slope, ibs = v["harrell_c"], v["calibration_slope"], v["integrated_brier_score"]
        assert f"{c['apparent']:.3f} ({c['ci_lower']:.3f}–{c['ci_upper']:.3f})" in performance
        assert f"{c['optimism_corrected']:.3f}" in performance
        assert f"{v['uno_c']['apparent']:.3f}" in performance
        assert f"{slope['apparent']:.3f} ({slope['ci_lower']:.3f}–{slope['ci_upper']:.3f})" in performance
        assert f"{ibs['model']:.3f} vs {ibs['null_km']:.3f}" in performance
        for auc, brier in zip(v["time_dependent_auc"], v["brier_score"], strict=True):
            assert f"<td>{auc['auc']:.3f}</td>" in performance and f"<td>{brier['brier']:.3f}</td>" in performance
    for warning in validation["warnings"]:
        assert html.escape(warning, quote=False) in performance


def test_calibration_plots_show_one_point_per_group_at_each_horizon(client, model_dir):
    page = get_page(client)
    calibration = section(page, "calibration")
    validation = card_of(model_dir)["validation"]
    for name in ("hpfs", "os"):
        horizons = validation[name]["calibration"]
        assert [h["months"] for h in horizons] == [12.0, 24.0, 36.0]
        for i, horizon in enumerate(horizons, start=1):
            figure = svg(calibration, f"cal-{name}-{i}-title")
            points = re.findall(r'<circle class="cal-point( outside)?"[^>]*data-group="(\d+)"', figure)
            assert [int(g) for _, g in points] == [g["group"] for g in horizon["groups"] if shown(g)]
            assert sum(bool(o) for o, _ in points) == sum(g["within_ci"] is False for g in horizon["groups"])
            assert figure.count('class="diagonal"') == 1
            assert f'data-months="{horizon["months"]:g}"' in figure
        # the table: one row per group, with every horizon's predicted and observed values
        table = calibration[calibration.index(f"calibration-{name}-heading") :]
        table = table[table.index('<table class="card-table calibration-table">') :]
        table = table[: table.index("</table>")]
        assert len(re.findall(r'<tr><th scope="row">\d+</th>', table)) == len(horizons[0]["groups"])
        for horizon in horizons:
            for g in horizon["groups"]:
                assert g["predicted"] is None or f"<td>{g['predicted']:.3f}</td>" in table


def test_kaplan_meier_curves_by_predicted_risk_group(client, model_dir):
    page = section(get_page(client), "risk-groups")
    validation = card_of(model_dir)["validation"]
    for name in ("hpfs", "os"):
        groups = validation[name]["risk_group_curves"]["groups"]
        figure = svg(page, f"km-{name}-title")
        assert len(re.findall(r'<polyline class="km-observed group-\d"', figure)) == len(groups)
        assert len(re.findall(r'<polyline class="km-predicted group-\d"', figure)) == len(groups)
        assert len(re.findall(r'<polygon class="band group-\d"', figure)) == len(groups)
    assert page.count('<table class="card-table risk-group-table">') == 2


def test_the_ph_table_flags_each_term_that_fails(client, model_dir):
    card = card_of(model_dir)
    page = section(get_page(client), "proportional-hazards")
    assert page.count('<table class="card-table ph-table">') == 1
    table = page[page.index('<table class="card-table ph-table">') : page.index("</table>")]
    labels = {t["term"]: t["label"] for t in card["model"]["terms"]}
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>', table)
    assert rows == [html.escape(labels[t["term"]], quote=False) for t in card["validation"]["hpfs"]["ph_test"]["terms"]]
    failing = [
        (name, t["term"])
        for name in ("hpfs", "os")
        for t in card["validation"][name]["ph_test"]["terms"]
        if t["p"] is not None and t["p"] < 0.05
    ]
    global_failing = [name for name in ("hpfs", "os") if card["validation"][name]["ph_test"]["global_p"] < 0.05]
    assert table.count('class="ph-fail"') == len(failing) + len(global_failing)
    failing_endpoints = {name for name, _ in failing} | set(global_failing)
    assert page.count('class="warnings ph-warning"') == len(failing_endpoints)
    assert "Global" in table


def test_a_failing_ph_term_gets_a_plain_warning(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    validation = json.loads(json.dumps(model.card["validation"]))
    for name in ("hpfs", "os"):
        for term in validation[name]["ph_test"]["terms"]:
            term["p"] = 0.5
        validation[name]["ph_test"]["global_p"] = 0.5
    validation["os"]["ph_test"]["terms"][0]["p"] = 0.0004
    monkeypatch.setitem(model.card, "validation", validation)
    page = section(get_page(app.test_client()), "proportional-hazards")
    assert page.count('class="warnings ph-warning"') == 1
    assert "Overall survival: proportional hazards doubtful</strong>" in page
    assert "WHO 2010 grade: Grade 2 (p &lt; 0.001)" in page
    assert page.count('class="ph-fail"') == 1
    assert "Hepatic progression-free survival: no term departs from proportional hazards" in page


def test_figures_are_accessible_and_ids_unique(client, model_dir):
    page = get_page(client)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    figures = re.findall(r'<svg class="figure-svg[^"]*"[^>]*>', page)
    validation = card_of(model_dir)["validation"]
    smoothed = sum(
        e.get("estimable", True) for name in ("hpfs", "os") for e in validation[name].get("smoothed_calibration", [])
    )
    # forest plots, calibration plots, Kaplan–Meier charts, smoothed calibration curves (when validation gives them)
    assert len(figures) == 2 + 2 * 3 + 2 + smoothed
    for tag in figures:
        assert 'role="img"' in tag
        title, desc = re.search(r'aria-labelledby="([^" ]+) ([^" ]+)"', tag).groups()
        assert f'<title id="{title}">' in page and f'<desc id="{desc}">' in page


def test_no_inline_style_or_script(client):
    assert_clean_markup(get_page(client))


def test_a_card_without_validation_says_not_available(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    monkeypatch.delitem(model.card, "validation")
    page = get_page(app.test_client())
    for key in VALIDATION_SECTIONS:
        assert "not available" in section(page, key), key
    assert "not validated" in page
    for name in ("hpfs", "os"):  # what the card has still shows
        assert svg(page, f"forest-{name}-title").count('class="forest-hr"') == 19
    assert "cal-point" not in page and "km-observed" not in page
    assert_clean_markup(page)


def test_an_older_card_renders_what_it_has(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    for key in (
        "validation",
        "predictors",
        "outcomes",
        "model",
        "intended_users",
        "eligibility",
        "missing_data",
        "limitations",
        "changelog",
        "data_dates",
    ):
        monkeypatch.delitem(model.card, key)
    page = get_page(app.test_client())
    for key in (
        "predictors",
        "outcomes",
        "missing-data",
        "eligibility",
        "limitations",
        "changelog",
        *VALIDATION_SECTIONS,
    ):
        assert "not available" in section(page, key), key
    for name in ("hpfs", "os"):  # labels fall back to the estimates' own
        assert svg(page, f"forest-{name}-title").count('class="forest-hr"') == 19


def test_unknown_keys_are_shown_generically_and_known_ones_are_not(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    monkeypatch.setitem(model.card, "fairness", {"subgroups": ["grade 3"], "gap": 0.0123456})
    page = get_page(app.test_client())
    other = page[page.index('<h2 id="other-details">') :]
    assert "fairness" in other and "grade 3" in other and "0.01235" in other
    assert '<dl class="generic">' not in page[: page.index('<h2 id="other-details">')]  # no validation dumped


def test_the_shipped_model_card_is_complete_and_under_1_mb():
    if not (SHIPPED / "model_card.json").exists():
        pytest.skip("no shipped model in model_artifacts/current")
    app = create_app({**TEST_CONFIG, "MODEL_DIR": str(SHIPPED)})
    response = app.test_client().get("/model")
    assert response.status_code == 200
    assert len(response.data) < 1_000_000
    page = response.get_data(as_text=True)
    card = card_of(SHIPPED)
    for key, title in SECTIONS.items():
        assert f'<h2 id="{key}">{title}</h2>' in page
    assert "not available" not in page
    for name, ep in card["endpoints"].items():
        assert svg(page, f"forest-{name}-title").count('class="forest-hr"') == len(ep["multivariate"])
    assert page.count('<circle class="cal-point') == sum(
        shown(g) for name in card["endpoints"] for h in card["validation"][name]["calibration"] for g in h["groups"]
    )
    assert "[0.0, " not in page  # no raw arrays dumped
    assert_clean_markup(page)


# --- the geometry, without the page ---------------------------------------------------------------------------


def test_forest_plot_uses_a_log_scale_and_cuts_wide_intervals():
    rows = [
        {"term": "a", "hr": 1.0, "ci_lower": 0.5, "ci_upper": 2.0},
        {"term": "b", "hr": 2.0, "ci_lower": 0.001, "ci_upper": 500.0, "published_hr": 4.0},
    ]
    plot = card_figures.forest_plot(rows)
    assert plot is not None and plot.markers == 2 and plot.has_published
    a, b = plot.rows
    assert a.hr == pytest.approx(plot.reference)
    assert a.upper - a.hr == pytest.approx(a.hr - a.lower)  # symmetric on the log scale
    assert b.published - b.hr == pytest.approx(a.upper - a.hr)  # 2 → 4 is one doubling, as 1 → 2
    assert b.cut_lower and b.cut_upper and (b.lower, b.upper) == (plot.left, plot.right)
    assert [t.label for t in plot.ticks][:3] == ["1/64", "1/32", "1/16"] and plot.ticks[-1].label == "64"
    assert card_figures.forest_plot([]) is None


def test_calibration_and_risk_group_figures_tolerate_missing_values():
    horizon = {
        "months": 36.0,
        "groups": [
            {"group": 1, "predicted": 0.6, "observed": 0.58, "ci_lower": 0.5, "ci_upper": 0.66, "within_ci": True},
            {"group": 2, "predicted": 0.1, "observed": None, "ci_lower": None, "ci_upper": None, "within_ci": None},
            {"group": 3, "predicted": 0.0, "observed": 0.0, "ci_lower": None, "ci_upper": None, "within_ci": None},
        ],
    }
    plot = card_figures.calibration_plot(horizon)
    assert plot is not None and [p.group for p in plot.points] == [1, 3]
    assert plot.points[1].lower is None and plot.points[1].upper is None
    assert plot.x_ticks[0].label == "0%" and plot.x_ticks[-1].label == "60%"
    assert card_figures.calibration_plot({"months": 12.0, "groups": []}) is None
    assert card_figures.risk_group_chart({"months": [], "groups": []}) is None
    chart = card_figures.risk_group_chart(
        {
            "months": [0.0, 1.0, 2.0],
            "groups": [
                {
                    "group": 1,
                    "n": 5,
                    "events": 2,
                    "observed": [1.0, 0.8, None],
                    "ci_lower": [1.0, 0.5, None],
                    "ci_upper": [1.0, 0.95, None],
                    "predicted": [1.0, 0.85, 0.7],
                }
            ],
        }
    )
    assert chart is not None and chart.series[0].observed.count(",") == 3  # (0,1) (1,1) (1,0.8): up to the gap
    assert chart.table_months == ()


# --- what the card says about its evidence (issue 8) ------------------------------------------------------------


def endpoint_block(page: str, name: str) -> str:
    """One endpoint's part of the hazard-ratio section."""
    start = page.index(f'<section class="card-endpoint" aria-labelledby="card-{name}-heading">')
    return page[start : page.index("</section>", start)]


def test_each_multivariate_term_shows_its_se_beside_the_published_one(client, model_dir):
    page = get_page(client)
    card = card_of(model_dir)
    hazard = section(page, "hazard-ratios")
    for name, ep in card["endpoints"].items():
        block = endpoint_block(hazard, name)
        table = block[block.index('<table class="estimates">') : block.index("</table>")]
        assert "SE of log HR" in table and "Published SE" in table and "SE ratio" in table
        rows = re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", table, re.S)
        assert len(rows) == len(ep["multivariate"])
        for row, term in zip(rows, ep["multivariate"], strict=True):
            assert f'<td class="se">{term["se"]:.3f}</td>' in row
            if "published_se" in term:
                assert f'<td class="published published-se">{term["published_se"]:.3f}</td>' in row
                assert f'<td class="published se-ratio">{term["se_ratio"]:.2f}</td>' in row
            else:
                assert '<td class="published published-se">–</td>' in row
        agreement = ep["published_se_agreement"]
        assert re.search(
            rf"over the {agreement['terms']} multivariate terms whose published SE\s+can be recovered: "
            rf"median ratio <strong>{agreement['median_ratio']:.2f}</strong>",
            block,
        )


def test_the_card_shows_the_evidence_size_and_the_attribution(client, model_dir):
    page = get_page(client)
    card = card_of(model_dir)
    assert card["data"]["evidence_patients"]
    assert f"<dt>Evidence size</dt><dd>{card['data']['evidence_patients']} patients" in section(page, "data")
    attribution = card["published"]["attribution"]
    header = page[page.index('<header class="card-header">') : page.index("</header>", page.index("card-header"))]
    hazard = html.unescape(section(page, "hazard-ratios"))
    assert attribution in html.unescape(header) and attribution in hazard
    assert card["published"]["se_note"] in hazard


def test_each_outcome_has_its_definition(client, model_dir):
    outcomes = section(get_page(client), "outcomes")
    for name, out in card_of(model_dir)["outcomes"].items():
        assert f'<td class="definition">{out["definition"]}</td>' in html.unescape(outcomes), name
    assert "cause-specific" in outcomes


def test_missing_data_and_unknown_inputs_are_described(client, model_dir):
    missing = html.unescape(section(get_page(client), "missing-data"))
    card = card_of(model_dir)
    assert card["missing_data"]["method"] == "complete_case"
    assert "<dt>Method</dt><dd>Complete-case analysis</dd>" in missing
    assert card["missing_data"]["description"] in missing
    assert "Unknown inputs at prediction time" in missing and card["unknown_inputs"] in missing


def test_multiple_imputation_shows_its_numbers(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    terms = [row["term"] for row in model.card["endpoints"]["hpfs"]["multivariate"]]
    fmi = {name: {term: 0.01 * (i + 1) for i, term in enumerate(terms)} for name in model.card["endpoints"]}
    monkeypatch.setitem(
        model.card,
        "missing_data",
        {
            "method": "multiple_imputation",
            "imputations": 20,
            "rows_imputed": 431,
            "imputed_columns": ["tumor_type", "cytotoxic"],
            "fraction_missing_information": fmi,
        },
    )
    missing = section(get_page(app.test_client()), "missing-data")
    assert "<dd>Multiple imputation</dd>" in missing
    assert "<dt>Imputations</dt><dd>20</dd>" in missing and "<dt>Rows imputed</dt><dd>431</dd>" in missing
    assert "<code>tumor_type</code>, <code>cytotoxic</code>" in missing
    table = missing[missing.index('<table class="card-table fraction-missing">') : missing.index("</table>")]
    assert len(re.findall(r'<tr><th scope="row">', table)) == len(terms)
    assert f"<td>{0.01 * len(terms):.3f}</td>" in table
    assert "not available" not in missing


def test_an_older_card_with_missing_data_as_text_renders_it(app, monkeypatch):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    monkeypatch.setitem(model.card, "missing_data", "Complete-case analysis, as written by an older version.")
    monkeypatch.delitem(model.card, "unknown_inputs")
    missing = section(get_page(app.test_client()), "missing-data")
    assert "as written by an older version" in missing
    assert "Handling of unknown inputs: not available" in missing
