"""The one definition of the model's covariates, treatment options, endpoints and term ids.

The registry loader, the design matrix, the synthetic generator, the form and the API schema are all
derived from this module; change a covariate here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Covariate:
    """A patient characteristic that enters the model.

    ``levels`` are the canonical values (strings); ``reference`` is the level without a term.
    A binary covariate has levels ``("0", "1")`` and one term named after the covariate.
    """

    name: str
    label: str
    levels: tuple[str, ...]
    reference: str
    required: bool
    help: str
    level_labels: Mapping[str, str] = field(default_factory=dict)
    # Synonyms accepted from registries and the API, lower-case, mapped to a canonical level.
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.levels == ("0", "1")

    @property
    def non_reference(self) -> tuple[str, ...]:
        return tuple(level for level in self.levels if level != self.reference)

    def label_of(self, level: str) -> str:
        return self.level_labels.get(level, level)

    def canonical(self, value: object) -> str | None:
        """Map a raw value to a canonical level, or None if it is not one."""
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
            text = str(int(value))
        else:
            text = str(value).strip()
        if text in self.levels:
            return text
        folded = text.lower()
        for level in self.levels:
            if level.lower() == folded:
                return level
        return self.aliases.get(folded)


_BINARY_ALIASES = {
    "0": "0", "1": "1", "no": "0", "yes": "1", "n": "0", "y": "1",
    "false": "0", "true": "1", "f": "0", "t": "1", "0.0": "0", "1.0": "1",
}


def _binary(name: str, label: str, required: bool, help_text: str) -> Covariate:
    return Covariate(
        name=name, label=label, levels=("0", "1"), reference="0", required=required, help=help_text,
        level_labels={"0": "No", "1": "Yes"}, aliases=_BINARY_ALIASES,
    )


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
    aliases={"< 25%": "<25%", "25–50%": "25-50%", "50–75%": "50-75%", "> 75%": ">75%",
             "<25": "<25%", "25-50": "25-50%", "50-75": "50-75%", ">75": ">75%"},
)

PRIOR_RESECTION_ABLATION = _binary(
    "prior_resection_ablation", "Prior hepatic resection or ablation", True,
    "Any hepatic resection or thermal ablation of liver metastases before this embolotherapy.",
)

TUMOR_TYPE = Covariate(
    name="tumor_type",
    label="Primary tumor site",
    levels=("pancreatic", "gut", "bronchial", "other"),
    reference="pancreatic",
    required=False,
    help="Site of the primary neuroendocrine tumor.",
    level_labels={"pancreatic": "Pancreatic", "gut": "Gut (small bowel, colon, rectum)",
                  "bronchial": "Bronchial", "other": "Other / unknown primary"},
    aliases={"pancreas": "pancreatic", "pnet": "pancreatic", "small bowel": "gut", "gi": "gut",
             "lung": "bronchial", "bronchopulmonary": "bronchial"},
)

EXTRAHEPATIC_METASTASES = _binary(
    "extrahepatic_metastases", "Extrahepatic metastases", False,
    "Metastases outside the liver (bone, lung, nodes, peritoneum) at the time of embolotherapy.",
)
OCTREOTIDE = _binary(
    "octreotide", "Somatostatin analogue", False,
    "Octreotide or lanreotide during the course of treatment.",
)
BIOLOGIC = _binary(
    "biologic", "Biologic / targeted therapy", False,
    "Everolimus, sunitinib or another targeted agent during the course of treatment.",
)
CYTOTOXIC = _binary(
    "cytotoxic", "Cytotoxic chemotherapy", False,
    "Systemic cytotoxic chemotherapy (e.g. capecitabine/temozolomide, platinum-etoposide).",
)

COVARIATES: tuple[Covariate, ...] = (
    WHO_GRADE, TUMOR_BURDEN, PRIOR_RESECTION_ABLATION,
    TUMOR_TYPE, EXTRAHEPATIC_METASTASES, OCTREOTIDE, BIOLOGIC, CYTOTOXIC,
)
BY_NAME: dict[str, Covariate] = {c.name: c for c in COVARIATES}
REQUIRED: tuple[str, ...] = tuple(c.name for c in COVARIATES if c.required)
OPTIONAL: tuple[str, ...] = tuple(c.name for c in COVARIATES if not c.required)

MODALITY = Covariate(
    name="modality",
    label="Embolotherapy",
    levels=("TACE", "SIRT", "TAE"),
    reference="TACE",
    required=True,
    help="Conventional chemoembolization (TACE), radioembolization with Y-90 (SIRT), or bland embolization (TAE).",
    level_labels={"TACE": "TACE (conventional chemoembolization)", "SIRT": "SIRT (Y-90 radioembolization)",
                  "TAE": "TAE (bland embolization)"},
    aliases={"tace": "TACE", "ctace": "TACE", "sirt": "SIRT", "y90": "SIRT", "y-90": "SIRT", "tare": "SIRT",
             "radioembolization": "SIRT", "tae": "TAE", "bland": "TAE"},
)
OPTIONS: tuple[str, ...] = MODALITY.levels

# Burden as a percentage of liver volume is binned as the registry schema says: [0,25) [25,50) [50,75] (75,100].
BURDEN_PCT_EDGES = (25.0, 50.0, 75.0)


def bin_tumor_burden(pct: float) -> str | None:
    """Bin a percentage of liver volume into a burden category (None if outside 0-100)."""
    if not (0.0 <= pct <= 100.0):
        return None
    if pct < 25.0:
        return "<25%"
    if pct < 50.0:
        return "25-50%"
    if pct <= 75.0:
        return "50-75%"
    return ">75%"


@dataclass(frozen=True)
class Endpoint:
    name: str
    label: str
    time: str
    event: str
    event_label: str
    free_of: str


ENDPOINTS: dict[str, Endpoint] = {
    "hpfs": Endpoint("hpfs", "Hepatic progression-free survival", "hpfs_months", "hpfs_event",
                     "hepatic progression", "free of hepatic progression"),
    "os": Endpoint("os", "Overall survival", "os_months", "os_event", "death", "alive"),
}


# Landmark horizons shown by default and tabulated in the model card.
DEFAULT_HORIZONS_MONTHS: tuple[float, ...] = (12.0, 24.0, 36.0, 60.0)


def covariate_terms(cov: Covariate) -> list[str]:
    if cov.binary:
        return [cov.name]
    return [f"{cov.name}[{level}]" for level in cov.non_reference]


def modality_terms() -> list[str]:
    """Modality effect relative to TACE within each grade (reference: TACE in the same grade)."""
    return [f"modality[{m}]:who_grade[{g}]" for g in WHO_GRADE.levels for m in MODALITY.non_reference]


def term_ids(optional: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Model term ids in the CONTRACT's spelling, for the required covariates plus the given optional ones."""
    unknown = set(optional) - set(OPTIONAL)
    if unknown:
        raise ValueError(f"not optional covariates: {sorted(unknown)}")
    terms = covariate_terms(WHO_GRADE) + covariate_terms(TUMOR_BURDEN) + covariate_terms(PRIOR_RESECTION_ABLATION)
    terms += modality_terms()
    for name in OPTIONAL:
        if name in optional:
            terms += covariate_terms(BY_NAME[name])
    return terms


def term_label(term: str) -> str:
    """Human label of a term id, e.g. ``modality[SIRT]:who_grade[2]`` → 'SIRT vs TACE, grade 2' (an id that is
    not one of ours is returned as it is)."""
    try:
        parts = dict(p[:-1].split("[", 1) if "[" in p else (p, "1") for p in term.split(":"))
        if MODALITY.name in parts:
            grade = WHO_GRADE.label_of(parts[WHO_GRADE.name]).lower()
            option = parts[MODALITY.name]
            if option == MODALITY.reference:
                return f"{option}, {grade}"
            return f"{option} vs {MODALITY.reference}, {grade}"
        (name, level), = parts.items()
        cov = BY_NAME[name]
    except (KeyError, ValueError):
        return term
    if level not in cov.levels:
        return term
    return cov.label if cov.binary else f"{cov.label}: {cov.label_of(level)}"


def design_matrix(columns: Mapping[str, object], terms: list[str]) -> np.ndarray:
    """Indicator matrix (rows x terms) from canonical string values per column.

    ``columns`` maps each covariate name and ``modality`` to an array-like of canonical levels
    (a pandas DataFrame works). Used both for fitting and for scoring, so a term means the same in both.
    """
    cache: dict[str, np.ndarray] = {}

    def col(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = np.asarray(columns[name], dtype=object).astype(str)
        return cache[name]

    out = []
    for term in terms:
        indicator = None
        for part in term.split(":"):
            if "[" in part:
                name, level = part[:-1].split("[", 1)
            else:
                name, level = part, "1"
            hit = col(name) == level
            indicator = hit if indicator is None else indicator & hit
        out.append(indicator)
    return np.column_stack(out).astype(float) if out else np.zeros((0, 0))
