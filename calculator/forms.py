"""The patient form, derived field by field from :mod:`prognosis.covariates`.

Each covariate gets one field: radio buttons over its levels (a categorical covariate) or a number input (a numeric
one). A categorical covariate with an ``alternative`` (tumor burden as a percentage of liver volume) gets a second
field for that number, which is binned into one of its levels. One more, optional field asks how long after the
embolotherapy the patient is already free of the event (``conditional_on_months``, as in the API).
"""

from __future__ import annotations

import math
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, RadioField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3; types-WTForms is 3.2
from wtforms.validators import StopValidation, ValidationError

from prognosis import scoring
from prognosis.covariates import COVARIATES, ENDPOINTS, Covariate, NumericAlternative
from prognosis.model import Model

UNKNOWN = ""  # the form value of an optional covariate left unknown
CONDITION = "conditional_on_months"  # the API's name, and the permalink's
CONDITION_UNIT = "months"


def parse_number(raw: str | None) -> float | None:
    """A number as typed ("30", "30 %", "30,5"); None when empty; NaN when not a number."""
    text = (raw or "").strip().rstrip("%").strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return math.nan


parse_pct = parse_number  # the name the fuzz tests read percentages with


def unit_of(entry: Covariate | NumericAlternative) -> str:
    """The unit a number is entered in, as written after it ('' when the definitions give none)."""
    return entry.unit


def with_unit(value: float | str, unit: str) -> str:
    """'30%', '12.5 mm', or the bare number (a text is taken as it is: '0 to 100%')."""
    text = number_text(value) if isinstance(value, (int, float)) else value
    return text + unit if unit in ("", "%") else f"{text} {unit}"


def number_text(value: float) -> str:
    """A number as short as it can be written without losing digits (for permalinks and the page)."""
    return f"{value:.15g}"


def _range_text(minimum: float, maximum: float) -> str:
    if math.isfinite(minimum) and math.isfinite(maximum):
        return f"from {minimum:g} to {maximum:g}"
    if math.isfinite(minimum):
        return f"of at least {minimum:g}"
    return f"of at most {maximum:g}" if math.isfinite(maximum) else ""


class LevelField(RadioField):
    """Radio buttons over one covariate's levels; optional covariates get "Unknown" first, and as default."""

    def __init__(self, covariate: Covariate, **kwargs: Any) -> None:
        choices = [SelectChoice(level, covariate.label_of(level)) for level in covariate.levels]
        if not covariate.required:
            choices.insert(0, SelectChoice(UNKNOWN, "Unknown"))
            kwargs.setdefault("default", UNKNOWN)
        super().__init__(covariate.label, choices=choices, description=covariate.help, **kwargs)
        self.covariate = covariate

    def pre_validate(self, form: FlaskForm) -> None:
        if self.data in (None, UNKNOWN) and self.covariate.required:
            alternative = self.covariate.alternative
            if alternative is None:
                raise StopValidation("Required: choose one option.")
            # The number entered instead is judged by its own field (AlternativeField).
            if parse_number(form[alternative.name].data) is None:
                raise StopValidation("Required: choose a category or enter a number below.")
            return
        # WTForms 3.3 yields Choice objects; types-WTForms 3.2 still says tuples.
        if not any(choice.selected for choice in self.iter_choices()):  # type: ignore[attr-defined]
            raise ValidationError("Choose one of the listed options.")


class NumberField(StringField):
    """A number input for a numeric covariate, within its [minimum, maximum]."""

    def __init__(self, covariate: Covariate, **kwargs: Any) -> None:
        render_kw = {"type": "number", "step": "any", "inputmode": "decimal", "autocomplete": "off"}
        render_kw |= {
            bound: f"{value:g}"
            for bound, value in (("min", covariate.minimum), ("max", covariate.maximum))
            if math.isfinite(value)
        }
        super().__init__(covariate.label, description=covariate.help, render_kw=render_kw, **kwargs)
        self.covariate = covariate

    @property
    def unit(self) -> str:
        return unit_of(self.covariate)

    def level(self) -> str | None:
        """The covariate's canonical value (its number as text), or None when empty or not valid."""
        number = parse_number(self.data)
        return None if number is None else self.covariate.canonical(number)

    def pre_validate(self, form: FlaskForm) -> None:
        number = parse_number(self.data)
        if number is None:
            if self.covariate.required:
                raise StopValidation("Required: enter a number.")
            return
        if self.covariate.canonical(number) is None:
            bounds = _range_text(self.covariate.minimum, self.covariate.maximum)
            raise ValidationError("Enter a number" + (f" {with_unit(bounds, self.unit)}" if bounds else "") + ".")


class AlternativeField(StringField):
    """A number entered instead of a categorical covariate's level (``covariate.alternative``), binned into it."""

    def __init__(self, covariate: Covariate, **kwargs: Any) -> None:
        alternative = covariate.alternative
        assert alternative is not None
        super().__init__(
            alternative.label,
            description=alternative.help,
            render_kw={"inputmode": "decimal", "autocomplete": "off", "size": 6},
            **kwargs,
        )
        self.covariate = covariate
        self.alternative = alternative

    @property
    def unit(self) -> str:
        return unit_of(self.alternative)

    def number(self) -> float | None:
        return parse_number(self.data)

    def level(self) -> str | None:
        """The level the entered number falls in; None when empty or not valid."""
        number = self.number()
        return None if number is None else self.alternative.level(number)

    def pre_validate(self, form: FlaskForm) -> None:
        number = self.number()
        if number is None:
            return
        level = self.alternative.level(number)
        if level is None:
            bounds = _range_text(self.alternative.minimum, self.alternative.maximum)
            raise ValidationError(f"Enter a number {bounds}, or choose a category instead.")
        chosen = form[self.covariate.name].data
        if chosen not in (None, UNKNOWN, level):
            raise ValidationError(
                f"{with_unit(number, self.unit)} falls in {self.covariate.label_of(level)}, not "
                f"{self.covariate.label_of(chosen)}: change one of them or clear the number."
            )


def condition_help() -> str:
    """What the condition means for each endpoint, from the definitions' wording."""
    meaning = "; ".join(f"for {ep.label.lower()}: still {ep.free_of}" for ep in ENDPOINTS.values())
    return (
        f"Optional, for a patient seen some time after the embolotherapy: the months since it during which the "
        f"patient has been free of the event ({meaning}). The predictions are then for patients who got that "
        "far, from then on. Leave empty for a prediction from the day of the embolotherapy."
    )


class ConditionField(StringField):
    """The months since the embolotherapy already survived without the event: a number >= 0, or empty (none)."""

    def __init__(self, **kwargs: Any) -> None:
        render_kw = {"type": "number", "step": "any", "min": "0", "inputmode": "decimal", "autocomplete": "off"}
        super().__init__("Already free of the event for", description=condition_help(), render_kw=render_kw, **kwargs)

    unit = CONDITION_UNIT

    def months(self) -> float | None:
        """The number of months, if valid and more than 0 (0 is no condition); None otherwise."""
        number = parse_number(self.data)
        return number if number is not None and math.isfinite(number) and number > 0 else None

    def pre_validate(self, form: FlaskForm) -> None:
        number = parse_number(self.data)
        if number is not None and not (math.isfinite(number) and number >= 0):
            raise ValidationError("Enter a number of months of at least 0, or leave it empty.")


class PatientForm(FlaskForm):
    """One patient: a field per covariate, plus the numbers that may be entered instead of a category."""

    class Meta:
        # CSRFProtect checks every POST before a view runs (the template adds the token), so one form class
        # serves both the POST and the permalink's GET.
        csrf = False

    def alternative_field(self, covariate: Covariate) -> AlternativeField | None:
        return self[covariate.alternative.name] if covariate.alternative is not None else None

    def entered(self, covariate: Covariate) -> float | None:
        """The number entered instead of the covariate's category, if it is valid (after validation)."""
        field = self.alternative_field(covariate)
        return field.number() if field is not None and field.level() is not None else None

    def binned_label(self, covariate: Covariate) -> str | None:
        """The label of the level the number entered for ``covariate`` falls in, if it is a valid number."""
        field = self.alternative_field(covariate)
        level = field.level() if field is not None else None
        return covariate.label_of(level) if level else None

    def patient(self) -> dict[str, str | None]:
        """The canonical patient for scoring (after validation); unknown optional covariates are None."""
        patient: dict[str, str | None] = {}
        for cov in COVARIATES:
            field = self[cov.name]
            patient[cov.name] = field.level() if cov.numeric else (field.data or None)
            alternative = self.alternative_field(cov)
            if alternative is not None and alternative.level() is not None:
                patient[cov.name] = alternative.level()
        return patient

    def condition_months(self) -> float | None:
        """The months already survived without the event (after validation); None: no condition."""
        return self[CONDITION].months()

    def check_condition(self, model: Model) -> bool:
        """Judge the condition against ``model``'s follow-up (the form alone cannot); False, with a message on the
        field, when it lies past an endpoint's last event time."""
        months = self.condition_months()
        try:
            scoring.check_condition(model, months)
        except ValueError:
            field = self[CONDITION]
            first = min(ENDPOINTS.values(), key=lambda ep: model.endpoints[ep.name].risk_sets.last_event_time)
            last = model.endpoints[first.name].risk_sets.last_event_time
            field.errors = [
                *field.errors,
                (
                    f"Enter at most {math.floor(10 * last) / 10:.1f} months: in the data behind this model the last "
                    f"{first.event_label} ({first.label.lower()}) was observed at {last:.1f} months, so survival after "
                    f"that cannot be estimated, nor survival given {number_text(months or 0.0)} months already free of "
                    "the event."
                ),
            ]
            return False
        return True

    def query(self) -> dict[str, str]:
        """The inputs as the permalink's query string (after validation); unknowns and no condition are left out."""
        query = {}
        for name, value in self.patient().items():
            if value is not None:
                query[name] = number_text(float(value)) if self[name].covariate.numeric else value
        for cov in COVARIATES:
            field, number = self.alternative_field(cov), self.entered(cov)
            if field is not None and number is not None:
                query[field.name] = number_text(number)
        months = self.condition_months()
        if months is not None:
            query[CONDITION] = number_text(months)
        return query

    def covariate_fields(self, required: bool) -> list[Field]:
        """The required (or the optional) covariates' fields, in the order of the definitions."""
        return [self[cov.name] for cov in COVARIATES if cov.required == required]


# Declared from the definitions so that a covariate added there appears here; creation order is field order.
for _covariate in COVARIATES:
    setattr(PatientForm, _covariate.name, NumberField(_covariate) if _covariate.numeric else LevelField(_covariate))
    if _covariate.alternative is not None:
        setattr(PatientForm, _covariate.alternative.name, AlternativeField(_covariate))
setattr(PatientForm, CONDITION, ConditionField())
