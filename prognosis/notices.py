"""What every prediction must say about where it comes from: the texts of the card, the pages and the API.

One place, so that the model card, the result page, the patient view and every API response say the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prognosis import covariates

# Below this many training patients of the patient's grade treated with an option (at the evidence's scale for a
# synthetic model), the response warns that the option's estimates rest on few similar patients (docs/methods.md).
FEW_SIMILAR_PATIENTS = 10
# Counts below this are never shown exactly ("fewer than 5"), so that no small group of patients is disclosed.
SMALLEST_SHOWN = 5

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


def patients_text(count: int) -> str:
    """A count of patients as it may be shown: 'fewer than 5' below SMALLEST_SHOWN."""
    return f"fewer than {SMALLEST_SHOWN}" if count < SMALLEST_SHOWN else f"{count}"


def few_similar(similar: Mapping[str, int]) -> list[str]:
    """The options whose estimates rest on few patients like this one: ``similar`` (option -> count) below
    FEW_SIMILAR_PATIENTS."""
    return [option for option, count in similar.items() if count < FEW_SIMILAR_PATIENTS]


def patient_warnings(
    *,
    notice: str | None,
    evidence_patients: int | None,
    grade: str,
    similar: Mapping[str, int],
    unknown: Sequence[str],
    unused: Sequence[str],
) -> list[str]:
    """What a prediction for this patient must say about the data behind it, in the order a response shows it.

    ``notice`` is the model's provenance notice (``prognosis.provenance``: a synthetic model, or one updated from it
    that keeps its hazard ratios; None for registry evidence), ``similar`` counts the training patients of the
    patient's grade per option (the smallest over endpoints), ``unknown`` the optional inputs averaged over,
    ``unused`` the given inputs the model does not use.
    """
    warnings = [notice] if notice else []
    warnings.append(OBSERVATIONAL)
    few = few_similar(similar)
    if few:
        within = covariates.MODALITY_WITHIN.label_of(grade).lower()
        counts = covariates.join([f"{patients_text(similar[o])} received {o}" for o in few])
        scale = " (counted at the size of the original study)" if evidence_patients else ""
        warnings.append(
            f"Few similar patients: among patients with {within} in the data behind this model{scale}, "
            f"{counts}. The estimates for {covariates.join(few)} rest on few patients like this one."
        )
    if unused:
        warnings.append(
            "Not used by this model (its training data did not record them): "
            + ", ".join(covariates.BY_NAME[n].label.lower() for n in unused)
            + "."
        )
    if unknown:
        labels = ", ".join(covariates.BY_NAME[n].label.lower() for n in unknown)
        warnings.append(
            f"Unknown: {labels}. The prediction averages over the values these take in training "
            "patients with the same known characteristics."
        )
    return warnings
