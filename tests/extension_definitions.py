"""Definitions extended the three ways docs/extending.md describes: a numeric covariate (Ki-67 index), a fourth
option (PRRT) and a third endpoint (progression-free survival). Loaded with ``PROGNOSIS_DEFINITIONS``, they prove
that everything else follows the definitions (tests/test_extending.py)."""

from __future__ import annotations

from prognosis.definitions import (
    BIOLOGIC,
    CYTOTOXIC,
    DEFAULT_HORIZONS_MONTHS,
    ENDPOINTS,
    EXTRAHEPATIC_METASTASES,
    MODALITY,
    OCTREOTIDE,
    OPTION_STYLES,
    PRIOR_RESECTION_ABLATION,
    TUMOR_BURDEN,
    TUMOR_TYPE,
    WHO_GRADE,
)
from prognosis.spec import NUMERIC, Covariate, Endpoint, OptionStyle

__all__ = ["DEFAULT_HORIZONS_MONTHS"]

KI67 = Covariate(
    name="ki67_index",
    label="Ki-67 index",
    required=True,
    kind=NUMERIC,
    unit="%",
    minimum=0.0,
    maximum=100.0,
    help="Ki-67 proliferation index of the tumor, in percent of tumor cells.",
)

COVARIATES = (
    WHO_GRADE,
    TUMOR_BURDEN,
    PRIOR_RESECTION_ABLATION,
    KI67,
    TUMOR_TYPE,
    EXTRAHEPATIC_METASTASES,
    OCTREOTIDE,
    BIOLOGIC,
    CYTOTOXIC,
)

MODALITY = Covariate(
    name=MODALITY.name,
    label=MODALITY.label,
    levels=(*MODALITY.levels, "PRRT"),
    reference=MODALITY.reference,
    required=True,
    help=MODALITY.help + " Or peptide receptor radionuclide therapy (PRRT).",
    level_labels={**MODALITY.level_labels, "PRRT": "PRRT (peptide receptor radionuclide therapy)"},
    aliases={**MODALITY.aliases, "prrt": "PRRT", "lutathera": "PRRT"},
)
MODALITY_WITHIN = WHO_GRADE
OPTION_STYLES = {**OPTION_STYLES, "PRRT": OptionStyle("#CC79A7", "6 2 1 2")}

ENDPOINTS = (
    *ENDPOINTS,
    Endpoint(
        "pfs",
        "Progression-free survival",
        "pfs_months",
        "pfs_event",
        "progression anywhere",
        "free of progression anywhere",
        "Time from the embolotherapy to progression at any site.",
        not_after="os",
    ),
)
