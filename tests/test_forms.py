"""The patient form: fields derived from covariates.py, server-side validation, values kept."""

from __future__ import annotations

import html
import re

import pytest
from werkzeug.datastructures import MultiDict

from calculator.forms import AlternativeField, NumberField, PatientForm
from prognosis.covariates import COVARIATES, OPTIONAL
from tests.conftest import VALID_FORM
from tests.extension_definitions import KI67


def checked(page: str, name: str, value: str) -> bool:
    """Whether the radio button ``name=value`` is checked in the page."""
    tags = re.findall(rf'<input[^>]*name="{name}"[^>]*>', page)
    return any("checked" in tag and f'value="{value}"' in tag for tag in tags)


def form_for(app, data: dict[str, str]) -> PatientForm:
    with app.test_request_context():
        form = PatientForm(formdata=MultiDict(data))
        form.validate()
        return form


def test_form_renders_every_covariate_with_its_levels(client):
    page = html.unescape(client.get("/").get_data(as_text=True))
    assert 'name="csrf_token"' in page
    assert 'name="tumor_burden_pct"' in page
    for cov in COVARIATES:
        assert cov.label in page and cov.help in page
        for level in cov.levels:
            assert re.search(rf'name="{cov.name}"[^>]*value="{re.escape(level)}"', page), (cov.name, level)


def test_optional_inputs_default_to_unknown_and_required_ones_to_nothing(client):
    page = client.get("/").get_data(as_text=True)
    checked = re.findall(r"<input[^>]*checked[^>]*>", page)
    assert len(checked) == len(OPTIONAL)
    assert all('value=""' in tag for tag in checked)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"tumor_burden": "<25%", "prior_resection_ablation": "0"}, "who_grade", "Required"),
        ({**VALID_FORM, "who_grade": "4"}, "who_grade", "Choose one of the listed options"),
        ({**VALID_FORM, "who_grade": ""}, "who_grade", "Required"),
        ({"who_grade": "1", "prior_resection_ablation": "1"}, "tumor_burden", "choose a category or enter a number"),
        ({**VALID_FORM, "tumor_burden": "huge"}, "tumor_burden", "Choose one of the listed options"),
        ({**VALID_FORM, "tumor_burden_pct": "abc"}, "tumor_burden_pct", "Enter a number from 0 to 100"),
        ({**VALID_FORM, "tumor_burden_pct": "130"}, "tumor_burden_pct", "Enter a number from 0 to 100"),
        ({**VALID_FORM, "tumor_burden_pct": "-1"}, "tumor_burden_pct", "Enter a number from 0 to 100"),
        ({**VALID_FORM, "tumor_burden_pct": "nan"}, "tumor_burden_pct", "Enter a number from 0 to 100"),
        ({**VALID_FORM, "tumor_burden_pct": "60"}, "tumor_burden_pct", "60% falls in 50-75%, not < 25%"),
        ({"who_grade": "1", "tumor_burden": "<25%"}, "prior_resection_ablation", "Required"),
        ({**VALID_FORM, "prior_resection_ablation": "yes"}, "prior_resection_ablation", "Choose one of the listed"),
        ({**VALID_FORM, "tumor_type": "liver"}, "tumor_type", "Choose one of the listed options"),
        ({**VALID_FORM, "octreotide": "2"}, "octreotide", "Choose one of the listed options"),
    ],
)
def test_invalid_input_gets_a_message_on_its_field(app, data, field, message):
    form = form_for(app, data)
    assert message in " ".join(form.errors.get(field, [])), form.errors
    assert set(form.errors) == {field}


@pytest.mark.parametrize(
    ("pct", "category"),
    [
        ("0", "<25%"),
        ("24.9", "<25%"),
        ("25", "25-50%"),
        ("49,5", "25-50%"),
        ("75 %", "50-75%"),
        ("75.1", ">75%"),
        ("100", ">75%"),
    ],
)
def test_a_percentage_is_binned_into_its_category(app, pct, category):
    form = form_for(app, {"who_grade": "3", "prior_resection_ablation": "1", "tumor_burden_pct": pct})
    assert not form.errors
    assert form.patient()["tumor_burden"] == category
    assert form.query()["tumor_burden"] == category


def test_a_percentage_agreeing_with_the_category_is_accepted(app):
    form = form_for(app, {**VALID_FORM, "tumor_burden_pct": "10"})
    assert not form.errors
    assert form.query() == {**VALID_FORM, "tumor_burden_pct": "10"}


def test_patient_maps_unknown_optional_inputs_to_none(app):
    form = form_for(app, {**VALID_FORM, "tumor_type": "gut", "cytotoxic": "1", "octreotide": ""})
    assert not form.errors
    patient = form.patient()
    assert patient == {
        "who_grade": "2",
        "tumor_burden": "<25%",
        "prior_resection_ablation": "0",
        "tumor_type": "gut",
        "extrahepatic_metastases": None,
        "octreotide": None,
        "biologic": None,
        "cytotoxic": "1",
    }
    assert "octreotide" not in form.query()


def test_invalid_post_rerenders_with_the_message_by_the_field_and_the_values_kept(client):
    response = client.post(
        "/", data={"who_grade": "3", "tumor_burden_pct": "130", "tumor_type": "gut", "prior_resection_ablation": "1"}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    fieldset = page[page.index('id="tumor_burden"') : page.index('id="prior_resection_ablation"')]
    assert 'id="tumor_burden_pct-error"' in fieldset and "Enter a number from 0 to 100" in fieldset
    assert 'aria-describedby="tumor_burden_pct-help tumor_burden_pct-error"' in fieldset
    assert 'value="130"' in fieldset
    for name, value in (("who_grade", "3"), ("tumor_type", "gut"), ("prior_resection_ablation", "1")):
        assert checked(page, name, value), name
    assert 'class="error-summary"' in page and 'href="#tumor_burden_pct"' in page


def test_inputs_in_the_query_string_prefill_the_form(client):
    page = client.get("/?who_grade=3&tumor_type=bronchial").get_data(as_text=True)
    assert checked(page, "who_grade", "3") and checked(page, "tumor_type", "bronchial")
    assert "field-error" not in page


# --- fields built from the definitions, whatever their kind (issue 10.3) ----------------------------------------


@pytest.fixture
def with_ki67(monkeypatch):
    """The form as it would be built if the definitions had a numeric covariate, Ki-67 index (0-100%)."""
    from calculator import forms

    monkeypatch.setattr(forms, "COVARIATES", (*COVARIATES, KI67))
    monkeypatch.setattr(PatientForm, KI67.name, NumberField(KI67), raising=False)
    return KI67


def test_every_alternative_entry_gets_its_own_field():
    alternatives = [cov for cov in COVARIATES if cov.alternative is not None]
    assert alternatives  # tumor burden as a percentage
    for cov in alternatives:
        field = getattr(PatientForm, cov.alternative.name)  # declared after its covariate's field
        assert field.field_class is AlternativeField and field.args[0] is cov


def test_a_numeric_covariate_gets_a_number_input_on_the_page(client, with_ki67):
    page = client.get("/").get_data(as_text=True)
    tag = re.search(r'<input[^>]*name="ki67_index"[^>]*>', page).group(0)
    for attribute in (
        'type="number"',
        'min="0"',
        'max="100"',
        'step="any"',
        'id="ki67_index"',
        'aria-describedby="ki67_index-help"',
    ):
        assert attribute in tag, attribute
    assert '<label class="number-label" for="ki67_index">Ki-67 index' in page and KI67.help in page
    assert page.index('name="ki67_index"') < page.index('id="optional-heading"')  # a required input


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("12.5", None),
        ("0", None),
        ("100 %", None),
        ("12,5", None),
        ("", "Required: enter a number."),
        ("abc", "Enter a number from 0 to 100%."),
        ("101", "Enter a number from 0 to 100%."),
        ("-1", "Enter a number from 0 to 100%."),
        ("nan", "Enter a number from 0 to 100%."),
        ("inf", "Enter a number from 0 to 100%."),
    ],
)
def test_a_numeric_covariate_is_validated_within_its_range(app, with_ki67, value, error):
    form = form_for(app, {**VALID_FORM, "ki67_index": value})
    if error is None:
        assert not form.errors
        assert float(form.patient()["ki67_index"]) == float(value.rstrip(" %").replace(",", "."))
        assert form.query()["ki67_index"] == f"{float(value.rstrip(' %').replace(',', '.')):g}"
    else:
        assert form.errors == {"ki67_index": [error]}
