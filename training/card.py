"""The model card: what a model version is, what trained it, its estimates and its validation (JSON and Markdown).

The sections follow the TRIPOD+AI items a user of a deployed model needs (Collins et al., BMJ 2024;385:e078378):
intended use and users, data source and dates, eligibility, outcomes and horizons, predictors and their coding,
sample size and events, missing data, the full model (coefficients and baseline survival: a prediction can be
recomputed by hand), performance with intervals (``validation``, written by ``training.validate``), limitations,
version and changelog.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
from scipy.stats import norm

from prognosis import covariates, notices

PUBLISHED = Path(__file__).parent / "data" / "table1.json"
SOFTWARE = ("numpy", "scipy", "pandas", "scikit-learn", "scikit-survival", "joblib")

OBSERVATIONAL_NOTICE = notices.OBSERVATIONAL
# Published standard errors are recovered from HR and p only where p is printed with enough precision to invert.
PUBLISHED_SE_P_RANGE = (0.005, 0.5)


@cache
def published_table() -> dict:
    """The seed's Table 1 as data: ``{endpoint: {"multivariate"|"univariate": {term: row}}}`` and its source."""
    data = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    tables = {
        ep: {kind: {row["term"]: row for row in rows} for kind, rows in tables.items()}
        for ep, tables in data["endpoints"].items()
    }
    return {
        "source": data["source"],
        "citation": data["cohort"]["full_paper"]["citation"],
        "endpoints": tables,
        "attribution": notices.ATTRIBUTION,
    }


def published_se(hr: float, p_value: float | None) -> float | None:
    """The standard error of log HR implied by a published HR and two-sided Wald p: |ln HR| / z(1 - p/2); None
    where p is outside PUBLISHED_SE_P_RANGE (too rounded to invert)."""
    if p_value is None or not PUBLISHED_SE_P_RANGE[0] <= p_value <= PUBLISHED_SE_P_RANGE[1] or hr <= 0:
        return None
    return abs(math.log(hr)) / float(norm.isf(p_value / 2))


def software_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in SOFTWARE}


INTENDED_USERS = (
    "Interventional radiologists, oncologists and hepatologists discussing embolotherapy options for a patient with "
    "neuroendocrine tumor liver metastases (tumor board, clinic), and the patient with them."
)
ELIGIBILITY = (
    "Patients with liver metastases of a neuroendocrine tumor treated with a first embolotherapy course "
    f"({covariates.options_text('or')}), one row each, with "
    + covariates.join([covariates.BY_NAME[name].label for name in covariates.REQUIRED])
    + " and treatment recorded "
    "(docs/registry.md). Rows the loader excluded are counted in data.excluded."
)
DATA_DATES = (
    "The registry schema carries no treatment dates: the accrual period is not recorded in the card; created_at is "
    "when these data were read and the model fitted."
)
MISSING_DATA = (
    "Complete-case analysis. A missing required covariate or treatment stops the fit (or, with --drop-incomplete, "
    "excludes the row, counted in data.excluded); an optional covariate enters the model only when recorded for every "
    "row; a row without one endpoint's outcome serves only the other endpoint (data.endpoint_missing)."
)
MULTIPLE_IMPUTATION = (
    "Multiple imputation of the optional covariates by chained equations (White & Royston 2009): each incomplete "
    "optional covariate imputed in turn by a logistic or multinomial logistic model of the required covariates, the "
    "other optional covariates, and each endpoint's event indicator and Nelson-Aalen cumulative hazard; M completed "
    "registries fitted and pooled by Rubin's rules (coefficients, covariance T = W + (1 + 1/M) B, the Breslow "
    "baseline averaged at the pooled coefficients, the univariate table too). Every row with an outcome is used. A "
    "missing required covariate or treatment still stops the fit (or, with --drop-incomplete, excludes the row). "
    "Validation should impute inside each bootstrap replicate with the recorded seed, M and iterations."
)
UNKNOWN_INPUTS = (
    "At prediction time an optional input left unknown is averaged over its distribution given the patient's known "
    "inputs (never the treatment), estimated from the training cohort by a chain of ridge-penalised logistic "
    "regressions (docs/methods.md); no cell count of the cohort is stored."
)
LIMITATIONS = [
    OBSERVATIONAL_NOTICE,
    "Proportional hazards are assumed: each hazard ratio is an average over follow-up (see the proportional-hazards "
    "test in the validation).",
    "Predictions beyond the last observed event time are not estimated; the 60-month horizon rests on few patients.",
    "Performance is estimated internally (bootstrap) on the training registry unless the validation says external; "
    "other centres, eras or selection policies may differ (transportability is untested).",
    "The model does not include performance status, liver function, Ki-67 as a number, or tumor functionality.",
]
FORMULA = (
    "S(t | x) = S0(t) ** exp(sum_j coef_j * x_j), with x_j = 1 when the patient has term j (0 otherwise; "
    "reference levels have no term) and S0 the Breslow baseline survival of the all-reference patient, "
    "tabulated at the horizons under baseline_survival."
)


def predictors() -> list[dict]:
    """Each predictor's coding: levels, reference and the terms (indicators) it becomes."""
    rows = []
    for cov in (*covariates.COVARIATES, covariates.MODALITY):
        rows.append(
            {
                "name": cov.name,
                "label": cov.label,
                "required": cov.required,
                "levels": list(cov.levels),
                "reference": cov.reference,
                "definition": cov.help,
                "coding": (
                    "indicator (1 = yes)"
                    if cov.binary
                    else "one indicator per non-reference level"
                    if cov is not covariates.MODALITY
                    else "one indicator per non-reference option within each grade (modality-by-grade terms)"
                ),
            }
        )
    return rows


def outcomes() -> dict:
    return {
        name: {
            "label": ep.label,
            "event": ep.event_label,
            "definition": ep.definition,
            "time_origin": "the first embolotherapy",
            "time_unit": "months",
            "columns": [ep.time, ep.event],
            "horizons_months": list(covariates.DEFAULT_HORIZONS_MONTHS),
        }
        for name, ep in covariates.ENDPOINTS.items()
    }


def changelog_entry(
    version: str, created_at: datetime, data: dict, previous: dict | None, updates: dict[str, dict] | None = None
) -> dict:
    """What this version changes relative to the one served when it was trained (``previous``: its card), or, for an
    update (``updates``: each endpoint's ``update`` block), relative to the base version it was updated from."""
    rows = ", ".join(f"{ep.upper()} {n}" for ep, n in data["rows_used"].items())
    if updates:
        base = next(iter(updates.values()))["base_version"]
        methods = ", ".join(f"{ep.upper()} {u['method']} ({u['selected_by']})" for ep, u in updates.items())
        change = (
            f"Updated from base version {base}: {methods}; on {data['source']} data "
            f"(SHA-256 {data['sha256'][:12]}…), rows used {rows}."
        )
        return {
            "version": version,
            "date": created_at.isoformat(timespec="seconds"),
            "change": change,
            "base_version": base,
        }
    if previous is None:
        change = f"First version: fitted on {data['source']} data (SHA-256 {data['sha256'][:12]}…), rows used {rows}."
    else:
        pdata = previous.get("data", {})
        prows = ", ".join(f"{ep.upper()} {n}" for ep, n in pdata.get("rows_used", {}).items())
        same = pdata.get("sha256") == data["sha256"]
        change = (
            f"Retrained, replacing {previous.get('model_version')}: "
            + (
                "same data"
                if same
                else f"data {str(pdata.get('sha256', ''))[:12]}… ({prows}) → {data['sha256'][:12]}… ({rows})"
            )
            + "."
        )
    return {"version": version, "date": created_at.isoformat(timespec="seconds"), "change": change}


def base_notices(base: dict | None, endpoints: dict[str, dict]) -> list[str]:
    """An updated model whose hazard ratios are still a synthetic base model's says so."""
    if not base or base.get("data_source") != "synthetic":
        return []
    kept = [name.upper() for name, result in endpoints.items() if result.get("update", {}).get("method") != "refit"]
    if not kept:
        return []
    return [
        f"The hazard ratios of {covariates.join(kept)} are those of the base model {base['version']}, which was "
        "trained on SYNTHETIC data reproducing published estimates (only the baseline hazard or a calibration "
        "slope was re-estimated on registry data): not for clinical decisions."
    ]


def build_card(
    *,
    version: str,
    created_at: datetime,
    data: dict,
    optional: tuple[str, ...],
    endpoints: dict[str, dict],
    previous: dict | None = None,
    missing_data: dict | None = None,
    base: dict | None = None,
) -> dict:
    """Assemble ``model_card.json``; a synthetic model carries the published values beside the fitted ones.

    ``previous`` is the card of the version served when this one was trained (for an update: the base model's): its
    changelog is carried over. ``missing_data``: the CONTRACT block (complete case when not given). ``base``: the
    base model of an update (version, data source, digests).
    """
    synthetic = data["source"] == "synthetic"
    published = published_table()["endpoints"] if synthetic else {}
    synthetic_notices = [notices.synthetic_notice(data.get("evidence_patients"))] if synthetic else []
    synthetic_notices += base_notices(base, endpoints)
    missing_data = dict(
        missing_data
        or {"method": "complete_case", "imputations": 0, "rows_imputed": 0, "fraction_missing_information": {}}
    )
    missing_data.setdefault(
        "description", MULTIPLE_IMPUTATION if missing_data["method"] == "multiple_imputation" else MISSING_DATA
    )
    card: dict = {
        "model_version": version,
        "created_at": created_at.isoformat(timespec="seconds"),
        "software": software_versions(),
        "data": data,
        "intended_use": (
            "Prognostic estimates of hepatic progression-free survival and overall survival after a first "
            f"embolotherapy course ({covariates.options_text('or')}) for neuroendocrine tumor liver metastases, to "
            "inform discussion between clinicians and patients. Not a treatment recommendation."
        ),
        "intended_users": INTENDED_USERS,
        "notices": synthetic_notices + [OBSERVATIONAL_NOTICE],
        "eligibility": ELIGIBILITY,
        "data_dates": DATA_DATES,
        "outcomes": outcomes(),
        "predictors": predictors(),
        "missing_data": missing_data,
        "unknown_inputs": UNKNOWN_INPUTS,
        "limitations": synthetic_notices + LIMITATIONS,
        "model": {
            "type": "Cox proportional hazards (scikit-survival CoxPHSurvivalAnalysis)",
            "ties": "efron",
            "baseline_hazard": "Breslow",
            "reference_levels": {c.name: c.reference for c in covariates.COVARIATES if not c.binary}
            | {"modality": covariates.MODALITY.reference},
            "optional_covariates": list(optional),
            "terms": [{"term": t, "label": covariates.term_label(t)} for t in covariates.term_ids(optional)],
            "intervals": "Wald 95% for hazard ratios; predicted survival: log-scale pointwise 95% including "
            "coefficient and baseline-hazard uncertainty (Tsiatis 1981)"
            + (
                "; every variance scaled to the evidence the synthetic registry stands for (data.evidence_patients)"
                if synthetic
                else ""
            )
            + "; a shrunk model (endpoints.<endpoint>.shrinkage) has its coefficients and their "
            "covariance multiplied by the factor and its factor squared: hazard-ratio intervals pulled "
            "towards 1, Wald p-values unchanged, the factor's own uncertainty not included"
            + ("; an updated model's intervals: endpoints.<endpoint>.update.estimates" if base else ""),
            "formula": FORMULA,
        },
        "endpoints": {},
    }
    if base:
        card["base_model"] = base
    if synthetic:
        src = published_table()
        card["published"] = {
            "source": src["source"],
            "citation": src["citation"],
            "attribution": src["attribution"],
            "se_note": "published_se = |ln HR| / z(1 - p/2), recovered for terms whose printed p "
            f"lies in [{PUBLISHED_SE_P_RANGE[0]}, {PUBLISHED_SE_P_RANGE[1]}]",
        }
    for name, result in endpoints.items():
        tables = {}
        for kind in ("multivariate", "univariate"):
            rows = []
            for row in result[kind]:
                row = dict(row, label=covariates.term_label(row["term"]))
                pub = published.get(name, {}).get(kind, {}).get(row["term"])
                if pub:
                    row["published_hr"], row["published_p_value"] = pub["hr"], pub["p_value"]
                    se = published_se(pub["hr"], pub["p_value"])
                    if se is not None:
                        row["published_se"], row["se_ratio"] = se, row["se"] / se
                rows.append(row)
            tables[kind] = rows
        card["endpoints"][name] = {
            "label": covariates.ENDPOINTS[name].label,
            "n": result["n"],
            "events": result["events"],
            "ties": "efron",
            "last_event_months": result["last_event_months"],
            "baseline_survival": result["baseline_survival"],
            "variance_scale": result.get("variance_scale", 1.0),
            **tables,
            **{key: result[key] for key in ("sample_size", "shrinkage", "update") if key in result},
        }
        ratios = [row["se_ratio"] for row in tables["multivariate"] if "se_ratio" in row]
        if ratios:
            card["endpoints"][name]["published_se_agreement"] = {
                "terms": len(ratios),
                "median_ratio": float(np.median(ratios)),
            }
    updates = {name: result["update"] for name, result in endpoints.items() if "update" in result}
    card["changelog"] = [changelog_entry(version, created_at, data, previous, updates)] + list(
        (previous or {}).get("changelog", [])
    )
    return card


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def render_markdown(card: dict) -> str:
    """A human-readable model card next to the JSON (every section the JSON has; older cards render what they have)."""
    data = card["data"]
    lines = [
        f"# Model card — version {card['model_version']}",
        "",
        f"Created {card['created_at']}. Data: **{data['source']}** registry, SHA-256 `{data['sha256']}`, "
        f"{data['rows_read']} rows read; used: "
        + ", ".join(f"{ep.upper()} {n}" for ep, n in data["rows_used"].items())
        + ".",
        "",
    ]
    for notice in card["notices"]:
        lines += [f"> {notice}", ""]
    lines += ["## Intended use", "", card["intended_use"], ""]
    if data.get("evidence_patients"):
        lines += [
            f"Evidence: the synthetic registry stands for a study of {data['evidence_patients']} patients; "
            "every variance (hazard ratio intervals, curve intervals, differences) is scaled to that size.",
            "",
        ]
    if card.get("published", {}).get("attribution"):
        lines += [f"Sources: {card['published']['attribution']}", ""]
    for key, title in (
        ("intended_users", "Intended users"),
        ("eligibility", "Eligibility"),
        ("data_dates", "Data dates"),
        ("missing_data", "Missing data"),
        ("unknown_inputs", "Unknown inputs at prediction time"),
    ):
        text = card.get(key)
        if isinstance(text, dict):
            text = text.get("description") or f"Method: {text.get('method')}."
        if text:
            lines += [f"## {title}", "", text, ""]
    if card.get("outcomes"):
        lines += ["## Outcomes", ""]
        for name, out in card["outcomes"].items():
            lines.append(
                f"- **{out['label']}** ({name.upper()}): months from {out['time_origin']} to "
                f"{out['event']} or last follow-up (`{out['columns'][0]}`, `{out['columns'][1]}`). "
                f"{out.get('definition', '')} Horizons "
                + ", ".join(f"{h:g}" for h in out["horizons_months"])
                + " months."
            )
        lines.append("")
    if card.get("predictors"):
        lines += [
            "## Predictors",
            "",
            "| predictor | levels (reference first) | coding | required |",
            "|---|---|---|---|",
        ]
        for p in card["predictors"]:
            levels = [p["reference"]] + [lv for lv in p["levels"] if lv != p["reference"]]
            lines.append(
                f"| {p['label']} (`{p['name']}`) | {', '.join(levels)} | {p['coding']} | "
                f"{'yes' if p['required'] else 'no'} |"
            )
        lines.append("")
    lines += [
        "## Model",
        "",
        f"{card['model']['type']}; ties: {card['model']['ties']}; baseline hazard: "
        f"{card['model']['baseline_hazard']}. {card['model']['intervals']}.",
        "",
    ]
    if card["model"].get("formula"):
        lines += [f"Prediction by hand: {card['model']['formula']}", ""]
    for name, ep in card["endpoints"].items():
        lines += [f"## {ep['label']} ({name.upper()}) — {ep['n']} patients, {ep['events']} events", ""]
        if ep.get("baseline_survival"):
            lines += [
                "Baseline survival S0 (all-reference patient): "
                + ", ".join(f"{b['months']:g} months {_fmt(b['survival'], 4)}" for b in ep["baseline_survival"])
                + ".",
                "",
            ]
        for kind in ("multivariate", "univariate"):
            published = any("published_hr" in r for r in ep[kind])
            coef = kind == "multivariate" and any("coef" in r for r in ep[kind])
            head = (
                "| term |"
                + (" coef | SE |" if coef else "")
                + " HR | 95% CI | p |"
                + (" published HR | published p |" if published else "")
                + (" published SE | SE / published |" if published and coef else "")
            )
            columns = 4 + (2 if coef else 0) + (2 if published else 0) + (2 if published and coef else 0)
            lines += [f"### {kind.capitalize()}", "", head, "|---" * columns + "|"]
            for r in ep[kind]:
                line = (
                    f"| {r['label']} |"
                    + (f" {r['coef']:.5f} | {r['se']:.4f} |" if coef else "")
                    + f" {_fmt(r['hr'])} | {_fmt(r['ci_lower'])}–{_fmt(r['ci_upper'])} | {_p(r['p_value'])} |"
                )
                if published:
                    line += f" {_fmt(r.get('published_hr'))} | {_fmt(r.get('published_p_value'), 3)} |"
                if published and coef:
                    line += f" {_fmt(r.get('published_se'), 3)} | {_fmt(r.get('se_ratio'))} |"
                lines.append(line)
            lines.append("")
            agreement = ep.get("published_se_agreement")
            if kind == "multivariate" and agreement:
                lines += [
                    f"Standard errors against the published ones (recovered from HR and p): median ratio "
                    f"{agreement['median_ratio']:.2f} over {agreement['terms']} terms.",
                    "",
                ]
        lines += render_retraining(ep, card.get("missing_data"), name)
    lines += render_validation(card.get("validation"))
    if card.get("limitations"):
        lines += ["## Limitations", ""] + [f"- {item}" for item in card["limitations"]] + [""]
    if card.get("changelog"):
        lines += (
            ["## Changelog", ""]
            + [f"- **{e['version']}** ({e['date']}): {e['change']}" for e in card["changelog"]]
            + [""]
        )
    lines += ["## Software", "", ", ".join(f"{k} {v}" for k, v in card["software"].items()), ""]
    return "\n".join(lines)


def render_retraining(ep: dict, missing: dict | None, name: str) -> list[str]:
    """Sample size, shrinkage, update and missing information of one endpoint (older cards have none of them)."""
    lines: list[str] = []
    size = ep.get("sample_size")
    if size:
        crit = size["criteria"]
        lines += [
            f"**Sample size** (Riley et al., BMJ 2020): {size['parameters']} parameters, anticipated Cox–Snell "
            f"R² {size['r2_cs']:.3f} ({size.get('r2_cs_source', 'given')}). Patients needed: (i) shrinkage ≥ 0.9 "
            f"{crit['shrinkage']}, (ii) optimism in R² ≤ 0.05 {crit['optimism']}, (iii) "
            f"{size.get('horizon', 24):g}-month risk within ±0.05 {crit['precision']}; minimum "
            f"{size['minimum_patients']} against {size['patients']} here: "
            + (
                "**adequate**."
                if size["adequate"]
                else f"**too small** (expected shrinkage {_fmt(size.get('expected_shrinkage'))})."
            ),
            "",
        ]
    shrunk = ep.get("shrinkage")
    if shrunk:
        if shrunk["method"] == "none":
            lines += [f"**Shrinkage**: none ({shrunk.get('reason', '')}).", ""]
        else:
            lines += [
                f"**Shrinkage**: every coefficient multiplied by {shrunk['factor']:.3f} ({shrunk.get('reason')}; "
                f"bootstrap calibration slope {_fmt(shrunk.get('calibration_slope'), 3)} over "
                f"{shrunk.get('replicates')} replicates, Monte-Carlo SE {_fmt(shrunk.get('mc_se'), 3)}); the "
                "baseline hazard re-estimated at the shrunk coefficients. Hazard ratios and their intervals are "
                "the shrunk ones (pulled towards 1 by the factor on the log scale; p-values unchanged).",
                "",
            ]
    update = ep.get("update")
    if update:
        lines += [
            f"**Update** of base version {update['base_version']}: **{update['method']}** "
            f"({update['selected_by']}; closed test at α = {update['alpha']} chose {update['closed_test_method']}"
            f"). Observed/expected events under the base model {_fmt(update.get('observed_expected'), 3)}, "
            f"calibration slope {_fmt(update.get('calibration_slope'), 3)}. {update.get('estimates', '')}.",
            "",
            "| comparison | statistic | df | p | rejected |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['comparison']} | {_fmt(t['statistic'])} | {t['df']} | {_p(t['p_value'])} | "
            f"{'yes' if t.get('rejected') else 'no'} |"
            for t in update["tests"]
        ]
        lines.append("")
    fmi = (missing or {}).get("fraction_missing_information", {}).get(name)
    if fmi:
        lines += [
            "Fraction of missing information (multiple imputation): "
            + ", ".join(f"`{term}` {value:.2f}" for term, value in fmi.items())
            + ".",
            "",
        ]
    return lines


def render_validation(block: dict | None) -> list[str]:
    """The validation section of the Markdown card (key names: docs/validation.md)."""
    lines = ["## Validation", ""]
    if not block:
        return lines + ["This version has not been validated: run `python -m training validate DIR --data SOURCE`.", ""]
    method = block["method"]
    lines += [
        f"Status: **{block['status']}**"
        + (" — " + "; ".join(block["failures"]) if block.get("failures") else "")
        + ". "
        f"Validated {block['validated_at']} on data SHA-256 `{block['data']['sha256'][:16]}…` "
        f"({method['kind']}; {method['bootstrap_replicates']} bootstrap replicates, seed {method['seed']}). "
        "Harrell's C: 95% percentile interval of the model's C over bootstrap resamples; "
        "optimism-corrected values by Harrell's bootstrap. Proportional hazards: score test on scaled "
        f'Schoenfeld residuals (R cox.zph, transform "{method["ph_transform"]}").',
        "",
    ]
    for name in ("hpfs", "os"):
        ep = block.get(name)
        if not ep:
            continue
        c, slope, uno = ep["harrell_c"], ep["calibration_slope"], ep["uno_c"]
        ibs = ep.get("integrated_brier_score") or {}
        lines += [
            f"### {name.upper()}: {ep['n']} patients, {ep['events']} events, {ep['parameters']} parameters "
            f"({ep['events_per_parameter']:.1f} events per parameter)",
            "",
            "| measure | apparent | 95% CI | optimism | optimism-corrected |",
            "|---|---|---|---|---|",
            f"| Harrell's C | {_fmt(c['apparent'], 3)} | {_fmt(c['ci_lower'], 3)}–{_fmt(c['ci_upper'], 3)} | "
            f"{_fmt(c['optimism'], 3)} | {_fmt(c['optimism_corrected'], 3)} |",
            f"| Calibration slope | {_fmt(slope['apparent'], 3)} | {_fmt(slope['ci_lower'], 3)}–"
            f"{_fmt(slope['ci_upper'], 3)} | {_fmt(slope['optimism'], 3)} | "
            f"{_fmt(slope['optimism_corrected'], 3)} |",
            f"| Uno's C (τ = {uno['tau_months']} months) | {_fmt(uno['apparent'], 3)} | – | – | – |",
            f"| Integrated Brier score ({_fmt(ibs.get('from_months'), 1)}–{_fmt(ibs.get('to_months'), 1)} "
            f"months; Kaplan–Meier {_fmt(ibs.get('null_km'), 3)}) | {_fmt(ibs.get('model'), 3)} | – | – | – |",
            "",
        ]
        lines += ["| months | time-dependent AUC | Brier score |", "|---|---|---|"]
        for auc, brier in zip(ep["time_dependent_auc"], ep["brier_score"], strict=True):
            lines.append(f"| {auc['months']:g} | {_fmt(auc['auc'], 3)} | {_fmt(brier['brier'], 3)} |")
        lines.append("")
        for row in ep["calibration"]:
            lines += [
                f"Calibration at {row['months']:g} months (risk groups, lowest predicted risk first):",
                "",
                "| group | n | events | predicted | observed (Kaplan–Meier) | 95% CI |",
                "|---|---|---|---|---|---|",
            ]
            for g in row["groups"]:
                lines.append(
                    f"| {g['group']} | {g['n']} | {g['events']} | {_fmt(g['predicted'], 3)} | "
                    f"{_fmt(g['observed'], 3)} | {_fmt(g['ci_lower'], 3)}–{_fmt(g['ci_upper'], 3)} |"
                )
            lines.append("")
        ph = ep["ph_test"]
        lines += [
            f"Proportional hazards: global χ² {_fmt(ph['global_chisq'])} on {ph['global_df']} df, "
            f"p {_p(ph['global_p'])}.",
            "",
            "| term | χ² | p |",
            "|---|---|---|",
        ]
        lines += [f"| {t['term']} | {_fmt(t['chisq'])} | {_p(t['p'])} |" for t in ph["terms"]]
        lines.append("")
    if block.get("warnings"):
        lines += ["Warnings:", ""] + [f"- {w}" for w in block["warnings"]] + [""]
    return lines
