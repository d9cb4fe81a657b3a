"""The model card: what a model version is, what trained it, and its Table 1-style estimates (JSON and Markdown)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import metadata
from pathlib import Path

from calculator import covariates

PUBLISHED = Path(__file__).parent / "data" / "table1.json"
SOFTWARE = ("numpy", "scipy", "pandas", "scikit-learn", "scikit-survival", "joblib")

SYNTHETIC_NOTICE = (
    "Trained on a SYNTHETIC registry generated to reproduce the published estimates of Table 1 "
    "(Chen et al., Cardiovasc Intervent Radiol 2017). Its intervals reflect the size of the synthetic registry, "
    "not the uncertainty of the original study (155 patients). Not for clinical decisions before retraining on "
    "registry data."
)
OBSERVATIONAL_NOTICE = (
    "Treatment was not randomized: differences between TACE, SIRT and TAE are associations in observational data "
    "and may reflect how patients were selected for each (confounding by indication), not effects of the treatment."
)


@cache
def published_table() -> dict:
    """The seed's Table 1 as data: ``{endpoint: {"multivariate"|"univariate": {term: row}}}`` and its source."""
    data = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    tables = {ep: {kind: {row["term"]: row for row in rows} for kind, rows in tables.items()}
              for ep, tables in data["endpoints"].items()}
    return {"source": data["source"], "citation": data["cohort"]["full_paper"]["citation"], "endpoints": tables}


def software_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in SOFTWARE}


def term_label(term: str) -> str:
    """Human label of a term id, e.g. ``modality[SIRT]:who_grade[2]`` → 'SIRT vs TACE, grade 2'."""
    parts = dict(p[:-1].split("[", 1) if "[" in p else (p, "1") for p in term.split(":"))
    if "modality" in parts:
        grade = covariates.WHO_GRADE.label_of(parts["who_grade"])
        if parts["modality"] == "TACE":
            return f"TACE, {grade.lower()}"
        return f"{parts['modality']} vs TACE, {grade.lower()}"
    name, level = next(iter(parts.items()))
    cov = covariates.BY_NAME[name]
    return cov.label if cov.binary else f"{cov.label}: {cov.label_of(level)}"


def build_card(*, version: str, created_at: datetime, data: dict, optional: tuple[str, ...],
               endpoints: dict[str, dict]) -> dict:
    """Assemble ``model_card.json``; a synthetic model carries the published values beside the fitted ones."""
    synthetic = data["source"] == "synthetic"
    published = published_table()["endpoints"] if synthetic else {}
    card = {
        "model_version": version,
        "created_at": created_at.isoformat(timespec="seconds"),
        "software": software_versions(),
        "data": data,
        "intended_use": (
            "Prognostic estimates of hepatic progression-free survival and overall survival after a first "
            "embolotherapy course (TACE, SIRT or TAE) for neuroendocrine tumor liver metastases, to inform "
            "discussion between clinicians and patients. Not a treatment recommendation."),
        "notices": ([SYNTHETIC_NOTICE] if synthetic else []) + [OBSERVATIONAL_NOTICE],
        "model": {
            "type": "Cox proportional hazards (scikit-survival CoxPHSurvivalAnalysis)",
            "ties": "efron",
            "baseline_hazard": "Breslow",
            "reference_levels": {c.name: c.reference for c in covariates.COVARIATES if not c.binary}
            | {"modality": covariates.MODALITY.reference},
            "optional_covariates": list(optional),
            "terms": [{"term": t, "label": term_label(t)} for t in covariates.term_ids(optional)],
            "intervals": "Wald 95% for hazard ratios; predicted survival: log-scale pointwise 95% including "
                         "coefficient and baseline-hazard uncertainty (Tsiatis 1981)",
        },
        "endpoints": {},
    }
    if synthetic:
        src = published_table()
        card["published"] = {"source": src["source"], "citation": src["citation"]}
    for name, result in endpoints.items():
        tables = {}
        for kind in ("multivariate", "univariate"):
            rows = []
            for row in result[kind]:
                row = dict(row, label=term_label(row["term"]))
                pub = published.get(name, {}).get(kind, {}).get(row["term"])
                if pub:
                    row["published_hr"], row["published_p_value"] = pub["hr"], pub["p_value"]
                rows.append(row)
            tables[kind] = rows
        card["endpoints"][name] = {
            "label": covariates.ENDPOINTS[name].label,
            "n": result["n"],
            "events": result["events"],
            "ties": "efron",
            "last_event_months": result["last_event_months"],
            "baseline_survival": result["baseline_survival"],
            **tables,
        }
    return card


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    return "–" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def render_markdown(card: dict) -> str:
    """A human-readable model card next to the JSON."""
    data = card["data"]
    lines = [f"# Model card — version {card['model_version']}", "",
             f"Created {card['created_at']}. Data: **{data['source']}** registry, SHA-256 `{data['sha256']}`, "
             f"{data['rows_read']} rows read; used: "
             + ", ".join(f"{ep.upper()} {n}" for ep, n in data["rows_used"].items()) + ".", ""]
    for notice in card["notices"]:
        lines += [f"> {notice}", ""]
    lines += ["## Intended use", "", card["intended_use"], "", "## Model", "",
              f"{card['model']['type']}; ties: {card['model']['ties']}; baseline hazard: "
              f"{card['model']['baseline_hazard']}. {card['model']['intervals']}.", ""]
    for name, ep in card["endpoints"].items():
        lines += [f"## {ep['label']} ({name.upper()}) — {ep['n']} patients, {ep['events']} events", ""]
        for kind in ("multivariate", "univariate"):
            published = any("published_hr" in r for r in ep[kind])
            head = "| term | HR | 95% CI | p |" + (" published HR | published p |" if published else "")
            lines += [f"### {kind.capitalize()}", "", head, "|---" * (6 if published else 4) + "|"]
            for r in ep[kind]:
                line = (f"| {r['label']} | {_fmt(r['hr'])} | {_fmt(r['ci_lower'])}–{_fmt(r['ci_upper'])} "
                        f"| {_p(r['p_value'])} |")
                if published:
                    line += f" {_fmt(r.get('published_hr'))} | {_fmt(r.get('published_p_value'), 3)} |"
                lines.append(line)
            lines.append("")
    lines += ["## Software", "", ", ".join(f"{k} {v}" for k, v in card["software"].items()), ""]
    return "\n".join(lines)
