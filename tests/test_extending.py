"""Everything follows the definitions (issue 10; docs/extending.md): with a numeric covariate (Ki-67), a fourth option
(PRRT) and a third endpoint (progression-free survival) added in one definitions module, a registry is loaded and
fitted, the card written, and the app, the API, the card page and the batch scorer serve them — with no other edit.

The definitions are chosen when ``prognosis.covariates`` is first imported, so each step runs in a fresh process
with ``PROGNOSIS_DEFINITIONS=tests.extension_definitions``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXTENDED = "tests.extension_definitions"


def run_python(code: str, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROGNOSIS_DEFINITIONS": EXTENDED, "CALCULATOR_MODEL_DIR": str(tmp_path / "served")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_module(args: list[str], tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROGNOSIS_DEFINITIONS": EXTENDED, "CALCULATOR_MODEL_DIR": str(tmp_path / "served")}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


# A registry drawn from the definitions alone: every covariate, option and endpoint they name, proportional hazards
# with random truths, each endpoint's time bounded by the one it cannot come after.
REGISTRY = """
import numpy as np, pandas as pd
from prognosis import covariates as cv
rng = np.random.default_rng(4)
n = 1500
frame = pd.DataFrame({"patient_id": [f"X{i:05d}" for i in range(n)]})
for cov in (*cv.COVARIATES, cv.MODALITY):
    if cov.numeric:
        frame[cov.name] = np.round(rng.uniform(cov.minimum, min(cov.maximum, 60.0), n), 1)
    else:
        frame[cov.name] = rng.choice(np.array(cov.levels, dtype=object), size=n)
terms = cv.term_ids(cv.OPTIONAL)
x = cv.design_matrix(frame.astype({c.name: str for c in cv.COVARIATES if not c.numeric}), terms)
x[:, [cv.BY_NAME.get(t) is not None and cv.BY_NAME[t].numeric for t in terms]] /= 30.0
times = {}
for k, ep in enumerate(cv.ENDPOINTS.values()):
    beta = rng.normal(0, 0.4, len(terms))
    t = rng.exponential(1 / (0.03 * (k + 1) * np.exp(x @ beta)))
    times[ep.name] = (t, rng.uniform(6, 120, n))
for ep in sorted(cv.ENDPOINTS.values(), key=lambda e: e.not_after is not None):
    t, c = times[ep.name]
    observed, event = np.minimum(t, c), (t <= c).astype(int)
    if ep.not_after:
        bound = frame[cv.ENDPOINTS[ep.not_after].time].to_numpy()
        late = observed > bound
        observed, event = np.where(late, bound, observed), np.where(late, 0, event)
    frame[ep.time], frame[ep.event] = np.maximum(np.round(observed, 2), 0.01), event
frame.to_csv(OUT, index=False)
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extended")
    done = run_python(f"OUT = {str(tmp / 'registry.csv')!r}\n" + REGISTRY, tmp)
    assert done.returncode == 0, done.stderr
    done = run_module(["training", "fit", "--data", str(tmp / "registry.csv"), "--out", str(tmp / "model")], tmp)
    assert done.returncode == 0, done.stderr
    return tmp


def test_the_registry_and_the_fit_follow_the_definitions(fitted):
    card = json.loads((fitted / "model" / "model_card.json").read_text())
    assert set(card["endpoints"]) == {"hpfs", "os", "pfs"}
    terms = [row["term"] for row in card["endpoints"]["pfs"]["multivariate"]]
    assert "ki67_index" in terms and "modality[PRRT]:who_grade[3]" in terms
    labels = {row["term"]: row["label"] for row in card["endpoints"]["os"]["multivariate"]}
    assert (
        labels["ki67_index"] == "Ki-67 index (per %)"
        and labels["modality[PRRT]:who_grade[2]"] == "PRRT vs TACE, grade 2"
    )
    univariate = {row["term"] for row in card["endpoints"]["hpfs"]["univariate"]}
    assert {"ki67_index", "modality[PRRT]:who_grade[1]"} <= univariate


def test_scoring_and_the_api_follow_the_definitions(fitted):
    done = run_python(
        f"""
        import json
        from calculator import create_app
        app = create_app({{"TESTING": True, "MODEL_DIR": {str(fitted / "model")!r}, "WTF_CSRF_ENABLED": False,
                           "RATE_LIMIT_PER_MINUTE": 0}})
        client = app.test_client()
        body = {{"who_grade": 3, "tumor_burden": "25-50%", "prior_resection_ablation": False, "ki67_index": 35.5}}
        r = client.post("/api/v1/predict", json=body)
        assert r.status_code == 200, r.get_data(as_text=True)
        out = r.get_json()
        assert set(out["predictions"]) == {{"hpfs", "os", "pfs"}}
        assert set(out["predictions"]["pfs"]) == {{"TACE", "SIRT", "TAE", "PRRT"}}
        assert {{c["comparison"] for c in out["contrasts"]["os"]}} >= {{"PRRT vs TACE", "TAE vs PRRT"}}
        bad = client.post("/api/v1/predict", json={{**body, "ki67_index": 140}})
        assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "ki67_index"
        missing = client.post("/api/v1/predict", json={{k: v for k, v in body.items() if k != "ki67_index"}})
        assert missing.status_code == 400
        schema = client.get("/api/v1/openapi.json").get_json()
        text = json.dumps(schema)
        assert "PRRT" in text and "pfs" in text and "ki67_index" in text
        page = client.get("/result", query_string={{"who_grade": "3", "tumor_burden": "25-50%",
                                                    "prior_resection_ablation": "0", "ki67_index": "35.5"}})
        html = page.get_data(as_text=True)
        assert page.status_code == 200, html[:2000]
        assert "Progression-free survival" in html and "PRRT" in html
        form = client.get("/").get_data(as_text=True)
        assert 'name="ki67_index"' in form
        card = client.get("/model").get_data(as_text=True)
        assert "PRRT" in card and "Progression-free survival" in card
        print("ok")
    """,
        fitted,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_model_with_terms_the_definitions_lack_is_refused(fitted):
    """The extended model under the project's own definitions (no PRRT, no pfs): refused at load, clearly."""
    env = {k: v for k, v in os.environ.items() if k != "PROGNOSIS_DEFINITIONS"}
    code = (
        f"from prognosis.store import load_model, ModelLoadError\ntry:\n    load_model({str(fitted / 'model')!r})\n"
        "except ModelLoadError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "uses terms the definitions (prognosis.definitions) do not have" in done.stdout, done.stderr
