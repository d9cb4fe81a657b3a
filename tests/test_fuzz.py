"""Fuzzing the API and the form with generated requests, against an oracle written from CONTRACT.md, and the API
with schemathesis from its own OpenAPI document: never a 5xx, and every 4xx names the fields at fault.

A few hundred cases here; benchmarks/fuzz_long.py runs the same checks for tens of thousands.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

# How the form reads a typed percentage is the form's own rule, not the contract's: taken from it.
from calculator.forms import parse_pct

API = "/api/v1/predict"
ENDPOINTS = ("hpfs", "os")
OPTIONS = ("TACE", "SIRT", "TAE")
DEFAULT_HORIZONS = [12, 24, 36, 60]
# The request as CONTRACT.md defines it (and the OpenAPI document's limits on horizons), written out here rather
# than taken from the code under test.
GRADES = (1, 2, 3)
BURDENS = ("<25%", "25-50%", "50-75%", ">75%")
TUMOR_TYPES = ("pancreatic", "gut", "bronchial", "other")
REQUIRED = ("who_grade", "tumor_burden", "prior_resection_ablation")
OPTIONAL_BOOLS = ("extrahepatic_metastases", "octreotide", "biologic", "cytotoxic")
FIELDS = (*REQUIRED, "tumor_type", *OPTIONAL_BOOLS, "horizons_months", "conditional_on_months")
MAX_HORIZONS, MAX_HORIZON = 10, 240.0
# conditional_on_months: a number of months >= 0 (null: none), refused past the model's last event time (CONTRACT).


# --- the API: generated bodies and the oracle ----------------------------------------------------------------------


def valid_value(field: str, value: Any, last_event: float = math.inf) -> bool:
    """Whether CONTRACT.md allows ``value`` for ``field`` (None means unknown, allowed for optional fields);
    ``last_event``: the served model's earliest last event time, which bounds the condition."""
    if field == "who_grade":
        return type(value) is int and value in GRADES
    if field == "tumor_burden":
        return type(value) is str and value in BURDENS
    if field == "prior_resection_ablation":
        return type(value) is bool
    if field == "tumor_type":
        return value is None or (type(value) is str and value in TUMOR_TYPES)
    if field in OPTIONAL_BOOLS:
        return value is None or type(value) is bool
    if field == "horizons_months":
        return (
            type(value) is list
            and 1 <= len(value) <= MAX_HORIZONS
            and all(type(h) in (int, float) and math.isfinite(h) and 0 < h <= MAX_HORIZON for h in value)
        )
    if field == "conditional_on_months":
        return value is None or (type(value) in (int, float) and math.isfinite(value) and 0 <= value <= last_event)
    return False


def expected_error_fields(body: Any, last_event: float = math.inf) -> set[str]:
    """The fields a 400 must name for ``body``; empty when the body is valid."""
    if not isinstance(body, dict):
        return {"body"}
    wrong = {key for key in body if key not in FIELDS}
    wrong |= {f for f in REQUIRED if body.get(f) is None}
    wrong |= {f for f in FIELDS if f in body and body[f] is not None and not valid_value(f, body[f], last_event)}
    if "horizons_months" in body and body["horizons_months"] is None:
        wrong.add("horizons_months")  # optional, but not nullable
    return wrong


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.integers(0, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
horizon = st.one_of(st.integers(-5, 300), st.floats(-10, 300, allow_nan=False), st.booleans(), st.text(max_size=3))
FIELD_VALUES = {
    "who_grade": st.one_of(st.sampled_from(GRADES), st.sampled_from([0, 4, True, "2", 2.0, -1]), junk),
    "tumor_burden": st.one_of(st.sampled_from(BURDENS), st.sampled_from(["<25", "25-50", "unknown", "", 30]), junk),
    "prior_resection_ablation": st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "yes"]), junk),
    "tumor_type": st.one_of(st.none(), st.sampled_from(TUMOR_TYPES), st.sampled_from(["Gut", "liver", 2]), junk),
    **{name: st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "false"]), junk) for name in OPTIONAL_BOOLS},
    "horizons_months": st.one_of(
        st.lists(st.integers(1, 240), min_size=1, max_size=10),
        st.lists(st.floats(0.5, 240), min_size=1, max_size=10),
        st.lists(horizon, max_size=12),
        junk,
    ),
    "conditional_on_months": st.one_of(
        st.none(), st.floats(0, 60), st.integers(-5, 400), st.sampled_from([1e9, -0.1]), junk
    ),
}

# Valid values only, drawn directly (filtering the mixed ones would discard most examples).
VALID_VALUES = {
    "who_grade": st.sampled_from(GRADES),
    "tumor_burden": st.sampled_from(BURDENS),
    "prior_resection_ablation": st.booleans(),
    "tumor_type": st.one_of(st.none(), st.sampled_from(TUMOR_TYPES)),
    **{name: st.one_of(st.none(), st.booleans()) for name in OPTIONAL_BOOLS},
    "horizons_months": st.lists(st.one_of(st.integers(1, 240), st.floats(0.01, 240)), min_size=1, max_size=10),
    "conditional_on_months": st.one_of(st.none(), st.floats(0, 60), st.integers(0, 60)),
}


@st.composite
def api_bodies(draw) -> Any:
    """Mostly objects whose every field is drawn from valid and invalid values (or left out), sometimes with
    unknown fields; now and then not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=5), st.integers(), st.none()))
    valid_only = draw(st.booleans())  # half the cases: every present field valid, so that most of them score
    body = {}
    for field in FIELDS:
        if field in REQUIRED and valid_only:
            present = True
        else:
            present = draw(st.integers(0, 3)) > 0
        if not present:
            continue
        body[field] = draw((VALID_VALUES if valid_only else FIELD_VALUES)[field])
    if not valid_only and draw(st.integers(0, 4)) == 0:
        extra = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS))
        body[extra] = draw(junk)
    return body


@functools.cache
def _last_event_months(model_dir: str) -> float:
    card = json.loads((Path(model_dir) / "model_card.json").read_text())
    return min(card["endpoints"][name]["last_event_months"] for name in ENDPOINTS)


def last_event_months(client) -> float:
    """The served model's earliest last event time (its card), past which no condition is accepted."""
    return _last_event_months(str(client.application.config["MODEL_DIR"]))


def check_api_case(client, body: Any, last_event: float | None = None) -> int:
    """Post ``body``; assert the answer is the contract's 200 or a 400 naming exactly the fields at fault."""
    last_event = last_event_months(client) if last_event is None else last_event
    response = client.post(API, data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500, response.data
    assert response.is_json and "Traceback" not in response.get_data(as_text=True)
    strict_json(response.data)
    expected = expected_error_fields(body, last_event)
    if not expected:
        assert response.status_code == 200, (body, response.json)
        check_prediction(response.json, body.get("horizons_months") or DEFAULT_HORIZONS)
    else:
        assert response.status_code == 400, (body, response.status_code)
        errors = response.json["errors"]
        assert all(isinstance(e["message"], str) and e["message"] for e in errors)
        assert {e["field"] for e in errors} == expected, (body, errors)
    return response.status_code


def strict_json(data: bytes) -> Any:
    """Parse as JSON proper: NaN and Infinity are not JSON, and strict clients reject the whole document."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a response")

    return json.loads(data, parse_constant=refuse)


def check_prediction(result: dict, horizons: list[float]) -> None:
    assert set(result) >= {"model", "predictions", "warnings"}
    for endpoint in ENDPOINTS:
        for option in OPTIONS:
            curve = result["predictions"][endpoint][option]
            assert [p["months"] for p in curve["landmarks"]] == [float(h) for h in horizons]
            s, low, high = curve["survival"], curve["ci_lower"], curve["ci_upper"]
            assert len(curve["times_months"]) == len(s) == len(low) == len(high) > 0
            assert all(0 <= lo <= x <= hi <= 1 for lo, x, hi in zip(low, s, high, strict=True))
            assert all(a >= b for a, b in zip(s, s[1:], strict=False))


def test_a_non_finite_number_from_scoring_is_sent_as_null_and_logged(client, monkeypatch, capsys):
    from prognosis import scoring

    real = scoring.predict

    def with_nan(*args, **kwargs):
        result = real(*args, **kwargs)
        result["predictions"]["hpfs"]["SIRT"]["ci_lower"][-1] = math.nan
        result["predictions"]["os"]["TAE"]["median_months"]["ci_upper"] = math.inf
        return result

    monkeypatch.setattr(scoring, "predict", with_nan)
    capsys.readouterr()
    response = client.post(API, json={"who_grade": 2, "tumor_burden": "<25%", "prior_resection_ablation": False})
    assert response.status_code == 200
    result = strict_json(response.data)
    assert result["predictions"]["hpfs"]["SIRT"]["ci_lower"][-1] is None
    assert result["predictions"]["os"]["TAE"]["median_months"]["ci_upper"] is None
    assert "non-finite numbers" in capsys.readouterr().out


SHIPPED = Path(__file__).resolve().parent.parent / "model_artifacts" / "current"


def scores_finitely(model, patient: dict) -> bool:
    """Scoring raises no warning and returns no NaN or Infinity for ``patient``."""
    import warnings

    from prognosis import scoring

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = json.dumps(scoring.predict(model, patient))
    return not caught and "NaN" not in text and "Infinity" not in text


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.exists():
        pytest.skip("no shipped model")
    from prognosis.store import load_model

    return load_model(SHIPPED)


def test_every_fully_specified_patient_scores_to_finite_numbers_with_the_shipped_model(shipped):
    """All 1,536 patients without an unknown input (the long fuzzing run found survivals underflowing to 0)."""
    import itertools

    levels = {
        "who_grade": "123",
        "tumor_burden": BURDENS,
        "prior_resection_ablation": "01",
        "tumor_type": TUMOR_TYPES,
        **dict.fromkeys(OPTIONAL_BOOLS, "01"),
    }
    patients = [dict(zip(levels, combination, strict=True)) for combination in itertools.product(*levels.values())]
    failures = [p for p in patients if not scores_finitely(shipped, p)]
    assert not failures, f"{len(failures)} patients, e.g. {failures[0]}"


def test_a_patient_with_an_unknown_input_scores_to_finite_numbers_where_survival_underflows(shipped):
    patient = {
        "who_grade": "3",
        "tumor_burden": ">75%",
        "prior_resection_ablation": "1",
        "tumor_type": "gut",
        "extrahepatic_metastases": "0",
        "octreotide": "0",
        "biologic": "1",
        "cytotoxic": None,
    }
    assert scores_finitely(shipped, patient)


def test_the_oracle_agrees_with_the_openapi_document(client):
    request = client.get("/api/v1/openapi.json").json["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == set(FIELDS) and set(request["required"]) == set(REQUIRED)
    horizons = request["properties"]["horizons_months"]
    assert (horizons["maxItems"], horizons["items"]["maximum"]) == (MAX_HORIZONS, MAX_HORIZON)


def test_generated_api_requests_get_200_or_a_400_naming_each_wrong_field(client):
    seen: Counter[int] = Counter()
    last_event = last_event_months(client)
    assert 60 < last_event < 400  # the generated conditions fall on both sides of it

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=api_bodies())
    def check(body):
        seen[check_api_case(client, body, last_event)] += 1

    check()
    print(dict(seen))
    assert seen[200] >= 30 and seen[400] >= 30, seen  # both kinds were really exercised


# --- the form: generated submissions -------------------------------------------------------------------------------

FORM_LEVELS = {
    "who_grade": ("1", "2", "3"),
    "tumor_burden": BURDENS,
    "prior_resection_ablation": ("0", "1"),
    "tumor_type": TUMOR_TYPES,
    **dict.fromkeys(OPTIONAL_BOOLS, ("0", "1")),
}
FORM_REQUIRED = ("who_grade", "prior_resection_ablation")  # tumor burden: a category or a percentage


def burden_category(pct: float) -> str | None:
    """The burden category of a percentage (CONTRACT: bins <25, 25-50, 50-75, >75), None outside 0-100."""
    if not (math.isfinite(pct) and 0 <= pct <= 100):
        return None
    return "<25%" if pct < 25 else "25-50%" if pct < 50 else "50-75%" if pct <= 75 else ">75%"


def form_is_valid(data: dict[str, str]) -> bool:
    for field, levels in FORM_LEVELS.items():
        value = data.get(field, "")
        if value == "" and field in FORM_REQUIRED:
            return False
        if value not in ("", *levels) or (value == "" and field in FORM_REQUIRED):
            return False
    pct = parse_pct(data.get("tumor_burden_pct", ""))
    chosen = data.get("tumor_burden", "")
    if pct is None:
        return chosen != ""
    category = burden_category(pct)
    return category is not None and chosen in ("", category)


pct_text = st.one_of(
    st.just(""),
    st.integers(-20, 130).map(str),
    st.floats(0, 100).map(lambda x: f"{x:.2f}".replace(".", ",")),
    st.floats(0, 100).map(lambda x: f"{x:g} %"),
    st.sampled_from(["abc", "nan", "inf", "1e400", "25", "50", "75", "75.0001", " 12 ", "%", "-0"]),
    st.text(max_size=6),
)


@st.composite
def form_submissions(draw) -> dict[str, str]:
    """Half the cases as a clinician would fill the form in (any choice, burden as a category or a percentage),
    half with fields left out, blank, or holding arbitrary text."""
    data = {}
    if draw(st.booleans()):
        for field, levels in FORM_LEVELS.items():
            optional = field not in (*FORM_REQUIRED, "tumor_burden")
            data[field] = draw(st.sampled_from(("", *levels) if optional else levels))
        if draw(st.booleans()):
            pct = draw(st.floats(0, 100))
            typed = [f"{pct:g}", f"{pct:.1f} %", f"{pct:.2f}".replace(".", ",")]
            data["tumor_burden_pct"] = draw(st.sampled_from(typed))
            data["tumor_burden"] = draw(
                st.sampled_from(["", burden_category(float(data["tumor_burden_pct"].rstrip(" %").replace(",", ".")))])
            )
        return data
    for field, levels in FORM_LEVELS.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # field not sent
        if choice == 1:
            data[field] = draw(st.text(max_size=8))
        elif choice == 2:
            data[field] = ""
        else:
            data[field] = draw(st.sampled_from(levels))
    if draw(st.booleans()):
        data["tumor_burden_pct"] = draw(pct_text)
    if draw(st.integers(0, 5)) == 0:
        data[draw(st.text(min_size=1, max_size=10))] = draw(st.text(max_size=10))
    return data


def check_form_case(client, data: dict[str, str]) -> int:
    """Submit ``data``: a valid form redirects to a result that renders, an invalid one shows messages; the same
    inputs as a permalink give the result or a 400 with the form."""
    response = client.post("/", data=data)
    assert response.status_code < 500
    page = response.get_data(as_text=True)
    assert "Traceback" not in page
    permalink = client.get("/result?" + urlencode(data))
    assert permalink.status_code < 500
    if form_is_valid(data):
        assert response.status_code == 303, (data, page[:500])
        result = client.get(response.headers["Location"])
        assert result.status_code == 200 and result.get_data(as_text=True).count('<svg class="chart"') == 2
        assert permalink.status_code == 200
    else:
        assert response.status_code == 200, data
        assert '-error"' in page, data  # a message next to a field
        assert permalink.status_code == 400, data
    return response.status_code


def test_generated_form_submissions_redirect_or_show_messages_never_fail(client):
    seen: Counter[int] = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=form_submissions())
    def check(data):
        seen[check_form_case(client, data)] += 1

    check()
    print(dict(seen))
    assert seen[303] >= 10 and seen[200] >= 10, seen


# --- schemathesis, from the API's own OpenAPI document ----------------------------------------------------------------


def _names_a_field(error: dict) -> bool:
    field, message = error.get("field"), error.get("message")
    if not (isinstance(field, str) and isinstance(message, str) and message):
        return False
    return bool(field) or message.startswith("unknown field")  # an unknown key is echoed as sent, even ""


def field_level_errors(ctx, response, case) -> None:
    """Every 4xx answer lists errors, each naming a field and saying what is wrong with it."""
    if 400 <= response.status_code < 500:
        errors = json.loads(response.content)["errors"]
        if not errors or not all(_names_a_field(e) for e in errors):
            raise AssertionError(f"{response.status_code} without field-level messages: {response.content[:300]!r}")


# Driven through hypothesis directly: schemathesis's pytest integration (from_fixture) does not work with pytest 9.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(app, mode):
    operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)["/api/v1/predict"]["POST"]
    seen: Counter[int] = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def check(case):
        # schemathesis's checks (no 5xx, documented statuses, content types and bodies, invalid data rejected,
        # valid data accepted), plus field-level messages on every 4xx.
        seen[case.call_and_validate(additional_checks=[field_level_errors]).status_code] += 1

    check()
    print(dict(seen))
    assert seen[200 if mode is GenerationMode.POSITIVE else 400] >= 50, seen
