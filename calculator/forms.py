"""The patient form, derived field by field from :mod:`prognosis.covariates`."""

from __future__ import annotations

import math

from flask_wtf import FlaskForm
from wtforms import Field, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import StopValidation, ValidationError

from prognosis.covariates import COVARIATES, TUMOR_BURDEN, Covariate, bin_tumor_burden

UNKNOWN = ""  # the form value of an optional covariate left unknown
PCT_FIELD = "tumor_burden_pct"


class LevelField(RadioField):
    """Radio buttons over one covariate's levels; optional covariates get "Unknown" first, and as default."""

    def __init__(self, covariate: Covariate, **kwargs) -> None:
        choices = [SelectChoice(level, covariate.label_of(level)) for level in covariate.levels]
        if not covariate.required:
            choices.insert(0, SelectChoice(UNKNOWN, "Unknown"))
            kwargs.setdefault("default", UNKNOWN)
        super().__init__(covariate.label, choices=choices, description=covariate.help, **kwargs)
        self.covariate = covariate

    def pre_validate(self, form) -> None:
        if self.data in (None, UNKNOWN) and self.covariate.required:
            # Burden may come as a percentage instead: PatientForm.validate_tumor_burden decides.
            if self.covariate is TUMOR_BURDEN:
                return
            raise StopValidation("Required: choose one option.")
        if not any(choice.selected for choice in self.iter_choices()):
            raise ValidationError("Choose one of the listed options.")


def parse_pct(raw: str | None) -> float | None:
    """A percentage as typed ("30", "30 %", "30,5"); None when empty; NaN when not a number."""
    text = (raw or "").strip().rstrip("%").strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return math.nan


class PatientForm(FlaskForm):
    """One patient: the model's covariates, plus tumor burden as a percentage, an alternative to its category."""

    class Meta:
        # CSRFProtect checks every POST before a view runs (the template adds the token), so one form class
        # serves both the POST and the permalink's GET.
        csrf = False

    def validate_tumor_burden(self, field: Field) -> None:
        if field.data in (None, UNKNOWN) and parse_pct(self.tumor_burden_pct.data) is None:
            raise ValidationError("Required: choose a category or enter a percentage below.")

    def validate_tumor_burden_pct(self, field: Field) -> None:
        pct = parse_pct(field.data)
        if pct is None:
            return
        category = bin_tumor_burden(pct) if math.isfinite(pct) else None
        if category is None:
            raise ValidationError("Enter a number from 0 to 100, or choose a category instead.")
        chosen = self.tumor_burden.data
        if chosen not in (None, UNKNOWN, category):
            raise ValidationError(
                f"{pct:g}% falls in {TUMOR_BURDEN.label_of(category)}, not {TUMOR_BURDEN.label_of(chosen)}: "
                "change one of them or clear the percentage."
            )

    def burden_pct(self) -> float | None:
        """The percentage entered, if any (after validation)."""
        return parse_pct(self.tumor_burden_pct.data)

    def binned_burden(self) -> str | None:
        """The label of the category the entered percentage falls in, if it is a valid percentage."""
        pct = self.burden_pct()
        category = bin_tumor_burden(pct) if pct is not None and math.isfinite(pct) else None
        return TUMOR_BURDEN.label_of(category) if category else None

    def patient(self) -> dict[str, str | None]:
        """The canonical patient for scoring (after validation); unknown optional covariates are None."""
        patient = {cov.name: (self[cov.name].data or None) for cov in COVARIATES}
        pct = self.burden_pct()
        if pct is not None:
            patient[TUMOR_BURDEN.name] = bin_tumor_burden(pct)
        return patient

    def query(self) -> dict[str, str]:
        """The inputs as the permalink's query string (after validation); unknowns are left out."""
        query = {name: value for name, value in self.patient().items() if value is not None}
        pct = self.burden_pct()
        if pct is not None:
            query[PCT_FIELD] = f"{pct:g}"
        return query

    def covariate_fields(self, required: bool) -> list[Field]:
        """The required (or the optional) covariates' fields, in the order of covariates.py."""
        return [self[cov.name] for cov in COVARIATES if cov.required == required]


# Declared from covariates.py so that a covariate added there appears here; creation order is field order.
for _covariate in COVARIATES:
    setattr(PatientForm, _covariate.name, LevelField(_covariate))
    if _covariate is TUMOR_BURDEN:
        setattr(PatientForm, PCT_FIELD, StringField(
            "Or as a percentage of liver volume",
            description="If you know the percentage, enter it: it is binned into the categories above.",
            render_kw={"inputmode": "decimal", "autocomplete": "off", "size": 6},
        ))
