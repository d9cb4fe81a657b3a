"""The API page for people (/api, issue 12.4): the OpenAPI document rendered as HTML by the app, derived from it and
from the definitions, with an example taken from a real prediction."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from calculator import api_docs
from calculator.api import json_levels, json_type
from prognosis.covariates import COVARIATES, ENDPOINTS, OPTIONS, REQUIRED

REPO = Path(__file__).resolve().parent.parent


def page_text(client) -> str:
    """The page's HTML, as sent (entities not decoded)."""
    response = client.get("/api")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def rows(page: str, caption: str) -> dict[str, list[str]]:
    """A fields table of the page: field name -> its cells (type, allowed values, required, description), as text."""
    start = page.index(f">{html.escape(caption, quote=False)}</caption>")
    table = page[start : page.index("</table>", start)]
    out = {}
    for name, cells in re.findall(r'<th scope="row"><code>([^<]+)</code></th>(.*?)</tr>', table, re.S):
        out[html.unescape(name)] = [
            html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip())
            for cell in re.findall(r"<td>(.*?)</td>", cells, re.S)
        ]
    return out


def test_every_request_field_with_its_type_allowed_values_and_whether_required(client):
    page = page_text(client)
    document = client.get("/api/v1/openapi.json").json
    request = document["components"]["schemas"]["PredictRequest"]
    table = rows(page, "Request body (PredictRequest)")
    assert set(table) == set(request["properties"])  # every field of the document
    # in the definitions' order, then the options of the request
    assert list(table) == [cov.name for cov in COVARIATES] + ["horizons_months", "conditional_on_months"]
    for cov in COVARIATES:
        kind, allowed, required, description = table[cov.name]
        assert required == ("yes" if cov.name in REQUIRED else "no")
        assert kind.split(" or ")[0] == json_type(cov) and ("null" in kind) == (not cov.required)
        if not cov.numeric:
            for value in json_levels(cov):
                assert json.dumps(value) in allowed, (cov.name, value)
        assert cov.label in description and cov.help in description
    horizons = table["horizons_months"]
    assert horizons[0] == "array of number" and "1 to 10 items" in horizons[1] and "default [12.0" in horizons[1]


def test_every_response_field_and_the_keys_of_its_maps(client):
    page = page_text(client)
    table = rows(page, "Fields of PredictResponse")
    for name in (
        "model.model_version",
        "predictions",
        "predictions.<endpoint>",
        "predictions.<endpoint>.<option>",
        "predictions.<endpoint>.<option>.survival",
        "predictions.<endpoint>.<option>.landmarks[].months",
        "predictions.<endpoint>.<option>.median_months.ci_upper",
        "contrasts.<endpoint>[].rmst_difference",
        "similar_patients",
        "warnings",
    ):
        assert name in table, name
    assert table["predictions"][1] == "one key per endpoint: " + ", ".join(ENDPOINTS)
    assert table["predictions.<endpoint>"][1] == "one key per option: " + ", ".join(OPTIONS)
    assert table["predictions.<endpoint>.<option>.landmarks[].survival"][0] == "number or null"
    keys = html.unescape(page[page.index('id="keys"') :])
    for name, endpoint in ENDPOINTS.items():
        assert f"<code>{name}</code> ({endpoint.label})" in keys
    assert rows(page, "Fields of Errors")["errors[].message"][0] == "string"


def test_every_status_code_of_the_document(client):
    page = page_text(client)
    document = client.get("/api/v1/openapi.json").json
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert f"<code>{method.upper()} {path}</code>" in page
            for status, response in operation["responses"].items():
                assert f'<tr><th scope="row">{status}</th><td>{html.escape(response["description"])}</td>' in page


def test_the_example_is_what_the_api_answers(client, app):
    from calculator import views

    with app.app_context():
        model = views.get_model()
    example = api_docs.example_for(model)
    assert set(example.request) >= set(REQUIRED)
    answered = client.post("/api/v1/predict", json=example.request)
    assert answered.status_code == 200
    assert answered.json == example.response
    page = html.unescape(page_text(client))
    assert api_docs.abridged_json(example.request) in page
    assert example.response_text in page
    assert f"({example.response['model']['model_version']})" in page
    # the refused request, with what the API says about it
    refused = client.post("/api/v1/predict", json=example.error_request)
    assert refused.status_code == 400 and refused.json == example.error_response
    assert api_docs.abridged_json(example.error_response) in page


def test_the_abridged_json_cuts_long_arrays_and_rounds():
    text = api_docs.abridged_json({"a": [0.123456, 1, 2, 3, 4, 5], "b": [{"x": None}], "c": "é", "d": [1, 2, 3, 4]})
    assert text == (
        '{\n  "a": [0.1235, 1, 2, … 3 more],\n  "b": [\n    {\n      "x": null\n    }\n  ],\n'
        '  "c": "é",\n  "d": [1, 2, 3, 4]\n}'
    )


def test_the_page_links_the_json_and_works_without_a_model(broken_app):
    page = html.unescape(broken_app.test_client().get("/api").get_data(as_text=True))
    assert 'href="/api/v1/openapi.json"' in page
    assert "no example can be shown" in page and "who_grade" in page


@pytest.mark.slow
def test_a_field_added_to_the_definitions_appears_with_no_edit(tmp_path):
    """With the extended definitions (a numeric covariate, a fourth option, a third endpoint), the page shows them."""
    code = textwrap.dedent(f"""
        import html
        from calculator import create_app
        app = create_app({{"TESTING": True, "MODEL_DIR": {str(tmp_path / "none")!r}, "RATE_LIMIT_PER_MINUTE": 0}})
        page = html.unescape(app.test_client().get("/api").get_data(as_text=True))
        assert '<code>ki67_index</code>' in page, "field"
        assert "Ki-67 index" in page and "at least 0 and at most 100" in page
        assert "one key per option: TACE, SIRT, TAE, PRRT" in page
        assert "one key per endpoint: hpfs, os, pfs" in page and "(Progression-free survival)" in page
        print("ok")
    """)
    env = {**os.environ, "PROGNOSIS_DEFINITIONS": "tests.extension_definitions"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
