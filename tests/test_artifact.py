"""Artifacts: arrays and JSON verified against the manifest, never unpickled; atomic writes, conversion, promotion."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from prognosis.store import MANIFEST, ModelLoadError, load_model, served_model_dir
from registry import load_registry
from tests.model_fixtures import FIXTURE_REPLICATES
from training import artifact, promote
from training.card import render_markdown
from training.pipeline import fit_registry
from training.validate import validate_directory


class Harmful:
    """Unpickling this writes a file: proof that a tampered artifact was (or was not) unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


@pytest.fixture(scope="module")
def exported_dir(model_dir, tmp_path_factory):
    """``model_dir``'s registry fitted with ``fit --export-sksurv`` (and validated): the scikit-survival estimators
    sit beside the served files, pickles the app must never open."""
    registry = load_registry(str(Path(model_dir).parent / "test-synthetic-2000.csv"))
    path = fit_registry(
        registry, tmp_path_factory.mktemp("exported") / "test-model", version="test-synthetic-2000", export_sksurv=True
    )
    validate_directory(path, registry, replicates=FIXTURE_REPLICATES, seed=11, n_jobs=1, show_progress=False)
    return path


@pytest.fixture
def version_dir(exported_dir, tmp_path):
    copy = tmp_path / "v1"
    shutil.copytree(exported_dir, copy)
    return copy


def test_layout(model_dir, exported_dir):
    served = [MANIFEST, "hpfs.npz", "model.json", "model_card.json", "model_card.md", "os.npz"]
    assert sorted(p.name for p in Path(model_dir).iterdir()) == served
    assert sorted(p.name for p in Path(exported_dir).iterdir()) == sorted(
        served + ["hpfs.sksurv.joblib", "os.sksurv.joblib"]
    )
    model = load_model(model_dir)
    assert model.version == "test-synthetic-2000" and model.data_source == "synthetic"
    assert len(model.sha256) == 64
    np.testing.assert_array_equal(load_model(exported_dir).endpoints["os"].coef, model.endpoints["os"].coef)


def _harmful(marker: Path) -> bytes:
    harmful = Harmful()
    harmful.marker = marker
    return pickle.dumps(harmful)


def test_tampered_file_is_refused(version_dir, tmp_path):
    marker = tmp_path / "pwned"
    (version_dir / "hpfs.sksurv.joblib").write_bytes(_harmful(marker))
    with pytest.raises(ModelLoadError, match="hpfs.sksurv.joblib does not match its SHA-256"):
        load_model(version_dir)
    assert not marker.exists()
    # The same file, unpickled, does harm: the test would catch a loader that opened it.
    pickle.loads((version_dir / "hpfs.sksurv.joblib").read_bytes())
    assert marker.exists()


def test_harmful_pickles_with_a_matching_manifest_never_run(version_dir, tmp_path):
    """Whoever can write the model directory can rewrite its manifest too: serving must not unpickle at all."""
    from calculator import create_app
    from tests.conftest import TEST_CONFIG, VALID_FORM

    marker = tmp_path / "pwned"
    for pickled in version_dir.glob("*.joblib"):
        pickled.write_bytes(_harmful(marker))
    artifact.write_manifest(version_dir)
    model = load_model(version_dir)
    app = create_app({**TEST_CONFIG, "MODEL_DIR": version_dir, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    response = client.post(
        "/api/v1/predict", json={"who_grade": 2, "tumor_burden": "<25%", "prior_resection_ablation": False}
    )
    assert response.status_code == 200 and response.json["model"]["model_version"] == model.version
    assert client.get("/result", query_string=VALID_FORM).status_code == 200
    assert client.get("/model").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert not marker.exists()


def test_object_arrays_are_not_unpickled(version_dir, tmp_path):
    import numpy as np

    marker = tmp_path / "pwned"
    harmful = Harmful()
    harmful.marker = marker
    with np.load(version_dir / "os.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["coef"] = np.array([harmful], dtype=object)
    np.savez(version_dir / "os.npz", **arrays)
    artifact.write_manifest(version_dir)
    with pytest.raises(ModelLoadError, match="os.npz is unreadable"):
        load_model(version_dir)
    assert not marker.exists()


def test_old_pickled_format_is_refused_with_the_way_out(version_dir):
    for path in version_dir.glob("*.npz"):
        path.rename(path.with_suffix(".joblib"))
    (version_dir / "model.json").unlink()
    artifact.write_manifest(version_dir)
    with pytest.raises(ModelLoadError, match="old pickled format.*python -m training convert"):
        load_model(version_dir)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: (d / "extra.npz").write_bytes(b"x"), "not in the manifest"),
        (lambda d: (d / "os.npz").unlink(), "listed in the manifest but missing"),
        (lambda d: (d / MANIFEST).unlink(), "no readable manifest"),
        (lambda d: (d / MANIFEST).write_text("nonsense\n"), "malformed manifest"),
        (lambda d: (d / "model_card.json").write_text("{}"), "model_card.json does not match"),
    ],
)
def test_incomplete_or_altered_directories_are_refused(version_dir, change, message):
    change(version_dir)
    with pytest.raises(ModelLoadError, match=message):
        load_model(version_dir)


def test_other_library_versions_do_not_matter_to_serving(version_dir):
    card = json.loads((version_dir / "model_card.json").read_text())
    card["software"]["scikit-survival"] = "0.1.0"
    artifact.update_card(version_dir, card, render_markdown(card))
    assert load_model(version_dir).card["software"]["scikit-survival"] == "0.1.0"


def test_write_refuses_an_existing_directory_and_leaves_no_partial(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(artifact.ArtifactError, match="exists already"):
        artifact.write_artifact(tmp_path / "taken", {}, {}, "")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifact.write_artifact(tmp_path / "new", {}, {}, "", estimators={"hpfs": Boom()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_promote_switches_current_and_rolls_back(model_dir, tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    v1, v2 = root / "v1", root / "v2"
    shutil.copytree(model_dir, v1)
    shutil.copytree(model_dir, v2)
    promote.promote(v1, root)
    assert os.readlink(root / "current") == "v1"
    promote.promote(v2, root)
    assert os.readlink(root / "current") == "v2"
    assert load_model(root / "current").directory == v2.resolve()
    promote.promote(v1, root)  # rollback
    assert os.readlink(root / "current") == "v1"
    (v2 / "os.npz").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError):
        promote.promote(v2, root)
    assert os.readlink(root / "current") == "v1"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_promote_copies_a_version_fitted_elsewhere_into_the_served_folder(model_dir, tmp_path):
    root = tmp_path / "artifacts"
    elsewhere = tmp_path / "work" / "v7"
    shutil.copytree(model_dir, elsewhere)
    lines = []
    link = promote.promote(elsewhere, root, report=lines.append)
    assert os.readlink(link) == "v7" and (root / "v7").is_dir()
    assert load_model(link).sha256 == load_model(elsewhere).sha256
    assert any("copied" in line for line in lines)
    assert promote.promote(elsewhere, root) == link  # again: the copy is already there
    other = tmp_path / "other" / "v7"
    shutil.copytree(model_dir, other)
    card = json.loads((other / "model_card.json").read_text())
    card["model_version"] = "something else"
    artifact.update_card(other, card, render_markdown(card))
    with pytest.raises(artifact.ArtifactError, match="already has a different version named v7"):
        promote.promote(other, root)


def test_promote_switches_the_link_the_calculator_reads(model_dir, tmp_path, monkeypatch):
    # CALCULATOR_MODEL_DIR may name a link other than "current": promote switches that one, which the app loads.
    served = tmp_path / "models" / "served"
    monkeypatch.setenv("CALCULATOR_MODEL_DIR", str(served))
    shutil.copytree(model_dir, tmp_path / "work" / "v3")
    link = promote.promote(tmp_path / "work" / "v3")
    assert link == served.parent.resolve() / "served" and os.readlink(served) == "v3"
    assert not (served.parent / "current").exists()
    assert load_model(served_model_dir()).sha256 == load_model(model_dir).sha256
    monkeypatch.setenv("CALCULATOR_MODEL_DIR", str(tmp_path / "work" / "v3"))  # a directory, not a link
    with pytest.raises(artifact.ArtifactError, match="a directory, not a link"):
        promote.promote(tmp_path / "work" / "v3")


def _patterns(training_csv: Path) -> dict:
    """Format 1's cohort patterns: the optional covariates' combinations with their counts."""
    import pandas as pd

    from prognosis import covariates

    frame = pd.read_csv(training_csv, dtype=str)
    names = list(covariates.OPTIONAL)
    counts = frame[names].value_counts(sort=False).reset_index(name="count")
    return {"names": names, "values": counts[names].to_numpy(dtype=str), "counts": counts["count"].to_numpy(float)}


def _as_old_format(version_dir: Path, patterns: dict) -> None:
    """Rewrite a version as the pickled format 1 wrote it (dicts of arrays, an estimator, joblib)."""
    import joblib

    model = load_model(version_dir)
    for name, ep in model.endpoints.items():
        rs = ep.risk_sets
        payload = {
            "estimator": joblib.load(version_dir / f"{name}.sksurv.joblib"),
            "terms": list(ep.terms),
            "coef": ep.coef,
            "covariance": ep.covariance,
            "risk_sets": {
                k: getattr(rs, k)
                for k in ("event_times", "events", "at_risk", "cum_hazard", "cum_var_hazard", "cum_xbar_hazard")
            },
            "cohort": {"grade_modality": ep.cohort.grade_modality, "patterns": patterns},
        }
        joblib.dump(payload, version_dir / f"{name}.joblib", compress=3)
        (version_dir / f"{name}.npz").unlink()
        (version_dir / f"{name}.sksurv.joblib").unlink()
    (version_dir / "model.json").unlink()
    artifact.write_manifest(version_dir)


def test_convert_turns_the_old_format_into_arrays_with_the_same_numbers(model_dir, version_dir):
    import numpy as np

    from prognosis import scoring
    from training import convert, validate

    before = load_model(version_dir)
    known = {
        "who_grade": "3",
        "tumor_burden": "50-75%",
        "prior_resection_ablation": "1",
        "tumor_type": "gut",
        "extrahepatic_metastases": "0",
        "octreotide": "1",
        "biologic": "0",
        "cytotoxic": "1",
    }
    expected = scoring.predict(before, known)["predictions"]
    patterns = _patterns(Path(model_dir).parent / "test-synthetic-2000.csv")
    _as_old_format(version_dir, patterns)
    with pytest.raises(ModelLoadError, match="old pickled format"):
        load_model(version_dir)
    assert convert.convert(version_dir) == ["hpfs", "os"]
    after = load_model(version_dir)
    assert scoring.predict(after, known)["predictions"] == expected
    # Unknown inputs: format 1 averaged over the cohort's patterns by their counts; the converted model still does.
    required = {k: known[k] for k in ("who_grade", "tumor_burden", "prior_resection_ablation")}
    averaged = scoring.predict(after, required)["predictions"]["os"]["SIRT"]["landmarks"][1]["survival"]
    brute = (
        sum(
            count
            * scoring.predict(after, {**required, **dict(zip(patterns["names"], values, strict=True))})["predictions"][
                "os"
            ]["SIRT"]["landmarks"][1]["survival"]
            for values, count in zip(patterns["values"], patterns["counts"], strict=True)
        )
        / patterns["counts"].sum()
    )
    assert averaged == pytest.approx(brute, abs=0.003)
    assert np.isfinite(averaged)
    assert not list(version_dir.glob("hpfs.joblib")) and (version_dir / "hpfs.sksurv.joblib").is_file()
    assert validate.validation_failures(after) == []  # the validation follows the numbers to their new files
    assert "Converted" in after.card["changelog"][0]["change"]
    with pytest.raises(artifact.ArtifactError, match="nothing to convert"):
        convert.convert(version_dir)
