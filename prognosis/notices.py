"""What every prediction must say about where it comes from: the texts of the card, the pages and the API.

One place, so that the model card, the result page, the patient view and every API response say the same.
"""

from __future__ import annotations

from prognosis import covariates

OBSERVATIONAL = (
    f"Treatment was not randomized: differences between {covariates.options_text()} are associations in "
    "observational data and may reflect how patients were selected for each (confounding by indication), not "
    "effects of the treatment. They are not treatment recommendations."
)

# Where the published numbers come from (table1.json names its source too).
SEED_ABSTRACT = (
    "the multicenter study's abstract (184 cases treated 2004-2015; its Table 1 of univariate and "
    "multivariate Cox hazard ratios)"
)
FULL_PAPER = (
    "Chen JX, Rose S, White SB, et al. Embolotherapy for Neuroendocrine Tumor Liver Metastases: "
    "Prognostic Factors for Hepatic Progression-Free Survival and Overall Survival. Cardiovasc Intervent "
    "Radiol 2017;40(1):69-80"
)
ATTRIBUTION = (
    f"Hazard ratios: {SEED_ABSTRACT}. Cohort counts and grade-specific medians: the 155-patient full paper "
    f"({FULL_PAPER}), whose own multivariate results differ from the abstract's (for example, it found no "
    "difference between embolotherapy modalities for HPFS)."
)


def synthetic_notice(evidence_patients: int | None) -> str:
    """The notice every page and response of a model trained on a synthetic registry carries."""
    size = (
        f"Its uncertainty is scaled to the size of that study ({evidence_patients} patients): intervals are as "
        "wide as the original evidence allows, no narrower."
        if evidence_patients
        else ""
    )
    return (
        "Trained on a SYNTHETIC registry generated to reproduce the published estimates of the original study, "
        f"not on patient data. {size} Not for clinical decisions before retraining on registry data."
    ).replace("  ", " ")
