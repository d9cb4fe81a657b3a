"""The project's definitions: covariates, treatment options, endpoints and horizons. Change them here.

Everything else — the registry loader, the design matrix, the synthetic generator, fitting, the model card, the
form, the API schema, the pages and their styles — derives from these through ``prognosis.covariates``.
docs/extending.md walks through adding a numeric covariate, a fourth option and a third endpoint.
"""

from __future__ import annotations

from prognosis.spec import Covariate, Endpoint, NumericAlternative, OptionStyle, binary

# Known at the treatment decision: the calculator is used before embolotherapy, so every predictor must be known
# then. Systemic therapy counts when received before, or planned together with, the embolotherapy — never what
# happened afterwards, which is unknown at the decision and would invite immortal-time bias.
_AT_DECISION = "received before, or planned together with, this embolotherapy (known at the treatment decision)"


def _burden_level(pct: float) -> str:
    """The registry schema's bins of tumor burden in % of liver volume: [0,25) [25,50) [50,75] (75,100]."""
    if pct < 25.0:
        return "<25%"
    if pct < 50.0:
        return "25-50%"
    if pct <= 75.0:
        return "50-75%"
    return ">75%"


WHO_GRADE = Covariate(
    name="who_grade",
    label="WHO 2010 grade",
    levels=("1", "2", "3"),
    reference="1",
    required=True,
    help="WHO 2010 grade of the neuroendocrine tumor: G1 (Ki-67 < 3%), G2 (3-20%), G3 (> 20%).",
    level_labels={"1": "Grade 1", "2": "Grade 2", "3": "Grade 3"},
    aliases={"g1": "1", "g2": "2", "g3": "3", "grade 1": "1", "grade 2": "2", "grade 3": "3"},
)

TUMOR_BURDEN = Covariate(
    name="tumor_burden",
    label="Hepatic tumor burden",
    levels=("<25%", "25-50%", "50-75%", ">75%"),
    reference="<25%",
    required=True,
    help="Share of the liver volume replaced by tumor, on the pre-treatment cross-sectional imaging.",
    level_labels={"<25%": "< 25%", "25-50%": "25-50%", "50-75%": "50-75%", ">75%": "> 75%"},
    aliases={
        "< 25%": "<25%",
        "25–50%": "25-50%",
        "50–75%": "50-75%",
        "> 75%": ">75%",
        "<25": "<25%",
        "25-50": "25-50%",
        "50-75": "50-75%",
        ">75": ">75%",
    },
    alternative=NumericAlternative(
        name="tumor_burden_pct",
        label="Or as a percentage of liver volume",
        help="If you know the percentage, enter it: it is binned into the categories above.",
        minimum=0.0,
        maximum=100.0,
        to_level=_burden_level,
        edges=(25.0, 50.0, 75.0),
        unit="%",
        description="percent of liver volume",
    ),
)

PRIOR_RESECTION_ABLATION = binary(
    "prior_resection_ablation",
    "Prior hepatic resection or ablation",
    True,
    "Any hepatic resection or thermal ablation of liver metastases before this embolotherapy.",
)

TUMOR_TYPE = Covariate(
    name="tumor_type",
    label="Primary tumor site",
    levels=("pancreatic", "gut", "bronchial", "other"),
    reference="pancreatic",
    required=False,
    help="Site of the primary neuroendocrine tumor.",
    level_labels={
        "pancreatic": "Pancreatic",
        "gut": "Gut (small bowel, colon, rectum)",
        "bronchial": "Bronchial",
        "other": "Other / unknown primary",
    },
    aliases={
        "pancreas": "pancreatic",
        "pnet": "pancreatic",
        "small bowel": "gut",
        "gi": "gut",
        "lung": "bronchial",
        "bronchopulmonary": "bronchial",
    },
)

EXTRAHEPATIC_METASTASES = binary(
    "extrahepatic_metastases",
    "Extrahepatic metastases",
    False,
    "Metastases outside the liver (bone, lung, nodes, peritoneum) known at the time of embolotherapy.",
)
OCTREOTIDE = binary(
    "octreotide",
    "Somatostatin analogue",
    False,
    f"Octreotide or lanreotide {_AT_DECISION}.",
)
BIOLOGIC = binary(
    "biologic",
    "Biologic / targeted therapy",
    False,
    f"Everolimus, sunitinib or another targeted agent {_AT_DECISION}.",
)
CYTOTOXIC = binary(
    "cytotoxic",
    "Cytotoxic chemotherapy",
    False,
    f"Systemic cytotoxic chemotherapy (e.g. capecitabine/temozolomide, platinum-etoposide) {_AT_DECISION}.",
)

# The patient's characteristics, in the order the form, the card and the registry report show them.
COVARIATES: tuple[Covariate, ...] = (
    WHO_GRADE,
    TUMOR_BURDEN,
    PRIOR_RESECTION_ABLATION,
    TUMOR_TYPE,
    EXTRAHEPATIC_METASTASES,
    OCTREOTIDE,
    BIOLOGIC,
    CYTOTOXIC,
)

# The treatment options compared, the first being the reference of the option terms.
MODALITY = Covariate(
    name="modality",
    label="Embolotherapy",
    levels=("TACE", "SIRT", "TAE"),
    reference="TACE",
    required=True,
    help="Conventional chemoembolization (TACE), radioembolization with Y-90 (SIRT), or bland embolization (TAE).",
    level_labels={
        "TACE": "TACE (conventional chemoembolization)",
        "SIRT": "SIRT (Y-90 radioembolization)",
        "TAE": "TAE (bland embolization)",
    },
    aliases={
        "tace": "TACE",
        "ctace": "TACE",
        "sirt": "SIRT",
        "y90": "SIRT",
        "y-90": "SIRT",
        "tare": "SIRT",
        "radioembolization": "SIRT",
        "tae": "TAE",
        "bland": "TAE",
    },
)
# The option effect is estimated within each level of this covariate (the seed's "embolotherapy by grade"), and the
# "few similar patients" count is per level of it and option.
MODALITY_WITHIN = WHO_GRADE

# Okabe–Ito colours (colour-blind safe), each option with its own dash pattern as well, so that print in grey works.
OPTION_STYLES: dict[str, OptionStyle] = {
    "TACE": OptionStyle("#0072B2"),
    "SIRT": OptionStyle("#D55E00", "9 4"),
    "TAE": OptionStyle("#009E73", "2 3"),
}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "hpfs",
        "Hepatic progression-free survival",
        "hpfs_months",
        "hpfs_event",
        "hepatic progression",
        "free of hepatic progression",
        "Time from the embolotherapy to hepatic (liver) progression. Death without hepatic progression ends "
        "follow-up for this endpoint (it is censored, not counted as an event): the curve is the probability "
        "of no hepatic progression in the absence of death (cause-specific), not of being alive and "
        "progression-free.",
        not_after="os",
    ),
    Endpoint(
        "os",
        "Overall survival",
        "os_months",
        "os_event",
        "death",
        "alive",
        "Time from the embolotherapy to death from any cause.",
    ),
)

# Landmark horizons shown by default and tabulated in the model card.
DEFAULT_HORIZONS_MONTHS: tuple[float, ...] = (12.0, 24.0, 36.0, 60.0)
