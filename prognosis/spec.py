"""The kinds of things the model is defined by: covariates (categorical or numeric), options, endpoints.

The project's own definitions are in ``prognosis.definitions``; ``prognosis.covariates`` derives from them
everything the rest of the code uses. These classes hold no project data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

CATEGORICAL, NUMERIC = "categorical", "numeric"


@dataclass(frozen=True)
class NumericAlternative:
    """A number that may be entered instead of a categorical covariate and is binned into one of its levels
    (hepatic tumor burden as a percentage of liver volume)."""

    name: str
    label: str
    help: str
    minimum: float
    maximum: float
    to_level: Callable[[float], str]
    edges: tuple[float, ...] = ()  # where the levels change, for messages
    unit: str = ""  # as written after a number: "%"
    description: str = ""  # what the number is, for messages: "percent of liver volume"

    def level(self, value: float) -> str | None:
        """The level ``value`` falls in, or None outside [minimum, maximum] (or not finite)."""
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            return None
        return self.to_level(value)


@dataclass(frozen=True)
class Covariate:
    """A patient characteristic that enters the model.

    Categorical (``kind`` "categorical"): ``levels`` are the canonical values (strings), ``reference`` the level
    without a term; a binary covariate has levels ``("0", "1")`` and one term named after the covariate.
    Numeric (``kind`` "numeric"): one term named after the covariate whose value is the number itself, within
    [``minimum``, ``maximum``] in ``unit``; numeric covariates must be required (an unknown number cannot be averaged
    over the cohort's patterns).
    """

    name: str
    label: str
    required: bool
    help: str
    levels: tuple[str, ...] = ()
    reference: str = ""
    level_labels: Mapping[str, str] = field(default_factory=dict)
    # Synonyms accepted from registries and the API, lower-case, mapped to a canonical level.
    aliases: Mapping[str, str] = field(default_factory=dict)
    kind: str = CATEGORICAL
    unit: str = ""
    minimum: float = -math.inf
    maximum: float = math.inf
    alternative: NumericAlternative | None = None

    def __post_init__(self) -> None:
        if self.kind == NUMERIC and not self.required:
            raise ValueError(f"{self.name}: a numeric covariate must be required")
        if self.kind == CATEGORICAL and self.reference not in self.levels:
            raise ValueError(f"{self.name}: reference {self.reference!r} is not one of its levels")

    @property
    def numeric(self) -> bool:
        return self.kind == NUMERIC

    @property
    def binary(self) -> bool:
        return self.levels == ("0", "1")

    @property
    def non_reference(self) -> tuple[str, ...]:
        return tuple(level for level in self.levels if level != self.reference)

    def label_of(self, level: str) -> str:
        return self.level_labels.get(level, level)

    def canonical(self, value: object) -> str | None:
        """Map a raw value to a canonical level (for a numeric covariate: its number as text), or None."""
        if self.numeric:
            number = _number(value)
            if number is None or not self.minimum <= number <= self.maximum:
                return None
            return repr(number)
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


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


BINARY_ALIASES = {
    "0": "0",
    "1": "1",
    "no": "0",
    "yes": "1",
    "n": "0",
    "y": "1",
    "false": "0",
    "true": "1",
    "f": "0",
    "t": "1",
    "0.0": "0",
    "1.0": "1",
}


def binary(name: str, label: str, required: bool, help_text: str) -> Covariate:
    """A yes/no covariate: levels "0"/"1", reference "0", one term named after it."""
    return Covariate(
        name=name,
        label=label,
        levels=("0", "1"),
        reference="0",
        required=required,
        help=help_text,
        level_labels={"0": "No", "1": "Yes"},
        aliases=BINARY_ALIASES,
    )


@dataclass(frozen=True)
class OptionStyle:
    """How an option is drawn: a colour from a colour-blind-safe palette and an SVG dash pattern ("" = solid)."""

    colour: str
    dash: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A time-to-event outcome: its columns, its wording, and the endpoint whose time it cannot exceed.

    ``not_after`` names an endpoint whose time bounds this one (hepatic progression is observed only while the
    patient is followed, so hpfs_months <= os_months); the registry checks it and the synthetic generator keeps it.
    """

    name: str
    label: str
    time: str
    event: str
    event_label: str
    free_of: str
    definition: str
    not_after: str | None = None

    @property
    def short(self) -> str:
        return self.name.upper()
