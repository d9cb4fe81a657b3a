"""The API's responses are encoded with orjson (issue 11): the same JSON values as Flask's json encoder gave, keys in
the same (sorted) order, a trailing newline, and never NaN or Infinity (a non-finite number is sent as null and
logged)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from flask import Response

from calculator.api import _all_finite, strict_json
from prognosis import batch, scoring
from prognosis.model import Model
from prognosis.store import load_model
from tests.test_scoring import KINDS, random_patient


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def strict(data: bytes) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def keys_in_order(value: Any) -> Any:
    """Every object's keys in order, recursively (dict equality ignores the order)."""
    if isinstance(value, dict):
        return [(k, keys_in_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [keys_in_order(v) for v in value]
    return None


def encoded(result: dict) -> bytes:
    response = strict_json(result)
    assert isinstance(response, Response)
    return response.get_data()


def varied_results(model: Model) -> list[dict]:
    rng = np.random.default_rng(21)
    out = []
    for k in range(12):
        patient = random_patient(rng, KINDS[k % 3])
        months = (None, 6.0, 30.0)[k % 3]
        horizons = (12.0, 24.0, 36.0, 60.0) if k % 4 else (3.5, 18.0, 1000.0)
        out.append(
            scoring.predict(
                model,
                patient,
                horizons=horizons,
                table_months=(6.0, 48.0) if k % 2 else (),
                conditional_on_months=months,
            )
        )
    rows = {name: [random_patient(rng, "some")[name] for _ in range(20)] for name in random_patient(rng, "some")}
    done = batch.score_patients(model, rows, (12.0, 24.0))
    out.append(
        {
            "columns": {k: [None if v != v else v for v in col.tolist()] for k, col in done.columns.items()},
            "error": done.error.tolist(),
        }
    )
    return out


def test_the_same_json_values_as_flasks_encoder(app, model):
    with app.app_context():
        for result in varied_results(model):
            body = encoded(result)
            before = app.json.dumps(result, allow_nan=False, separators=(",", ":"))
            assert body.endswith(b"\n")
            assert strict(body) == json.loads(before)
            assert keys_in_order(strict(body)) == keys_in_order(json.loads(before))


def test_a_non_finite_number_is_sent_as_null_and_logged(app, model, capsys):
    result = scoring.predict(model, random_patient(np.random.default_rng(3), "unknown"))
    result["predictions"]["os"]["TAE"]["landmarks"][1]["ci_lower"] = -math.inf
    result["contrasts"]["hpfs"][0]["survival_difference"][0]["estimate"] = math.nan
    result["predictions"]["hpfs"]["SIRT"]["survival"][5] = math.inf
    capsys.readouterr()
    with app.app_context():
        sent = strict(encoded(result))
    assert sent["predictions"]["os"]["TAE"]["landmarks"][1]["ci_lower"] is None
    assert sent["contrasts"]["hpfs"][0]["survival_difference"][0]["estimate"] is None
    assert sent["predictions"]["hpfs"]["SIRT"]["survival"][5] is None
    assert "non-finite numbers" in capsys.readouterr().out


@pytest.mark.parametrize(
    "value, finite",
    [
        ({"a": [1.0, 2.0, {"b": None, "c": "x"}], "d": 3}, True),
        ({"a": [1.0, math.nan]}, False),
        ({"a": [[1e308, 1e308]]}, True),  # the sum overflows; every number is finite
        ({"a": [1.0, "x", -math.inf]}, False),
        ({"a": {"b": {"c": math.inf}}}, False),
        ([1, True, None, "nan"], True),
    ],
)
def test_every_float_is_checked(value, finite):
    assert _all_finite(value) is finite
