"""Artifacts: manifest verified before unpickling, versions checked, atomic writes and promotion."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from calculator.model_store import MANIFEST, ModelLoadError, load_model
from training import artifact
from training.card import render_markdown


class Harmful:
    """Unpickling this writes a file: proof that a tampered artifact was (or was not) unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


@pytest.fixture
def version_dir(model_dir, tmp_path):
    copy = tmp_path / "v1"
    shutil.copytree(model_dir, copy)
    return copy


def test_shipped_layout(model_dir):
    names = sorted(p.name for p in Path(model_dir).iterdir())
    assert names == [MANIFEST, "hpfs.joblib", "model_card.json", "model_card.md", "os.joblib"]
    model = load_model(model_dir)
    assert model.version == "test-synthetic-2000" and model.data_source == "synthetic"
    assert len(model.sha256) == 64


def test_tampered_pickle_is_refused_before_unpickling(version_dir, tmp_path):
    marker = tmp_path / "pwned"
    harmful = Harmful()
    harmful.marker = marker
    (version_dir / "hpfs.joblib").write_bytes(pickle.dumps(harmful))
    with pytest.raises(ModelLoadError, match="hpfs.joblib does not match its SHA-256"):
        load_model(version_dir)
    assert not marker.exists()
    # The same file, unpickled without the check, does harm: the test would catch a loader that skipped it.
    pickle.loads((version_dir / "hpfs.joblib").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("change,message", [
    (lambda d: (d / "extra.joblib").write_bytes(b"x"), "not in the manifest"),
    (lambda d: (d / "os.joblib").unlink(), "listed in the manifest but missing"),
    (lambda d: (d / MANIFEST).unlink(), "no readable manifest"),
    (lambda d: (d / MANIFEST).write_text("nonsense\n"), "malformed manifest"),
    (lambda d: (d / "model_card.json").write_text("{}"), "model_card.json does not match"),
])
def test_incomplete_or_altered_directories_are_refused(version_dir, change, message):
    change(version_dir)
    with pytest.raises(ModelLoadError, match=message):
        load_model(version_dir)


def test_other_library_versions_are_refused(version_dir):
    card = json.loads((version_dir / "model_card.json").read_text())
    card["software"]["scikit-survival"] = "0.1.0"
    artifact.update_card(version_dir, card, render_markdown(card))  # digests valid again: only versions differ
    with pytest.raises(ModelLoadError, match="made with scikit-survival 0.1.0 but .* is installed"):
        load_model(version_dir)


def test_write_refuses_an_existing_directory_and_leaves_no_partial(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(artifact.ArtifactError, match="exists already"):
        artifact.write_artifact(tmp_path / "taken", {}, {}, "")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifact.write_artifact(tmp_path / "new", {"hpfs": {"x": Boom()}}, {}, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_promote_switches_current_and_rolls_back(model_dir, tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    v1, v2 = root / "v1", root / "v2"
    shutil.copytree(model_dir, v1)
    shutil.copytree(model_dir, v2)
    artifact.promote(v1, root)
    assert os.readlink(root / "current") == "v1"
    artifact.promote(v2, root)
    assert os.readlink(root / "current") == "v2"
    assert load_model(root / "current").directory == v2.resolve()
    artifact.promote(v1, root)  # rollback
    assert os.readlink(root / "current") == "v1"
    (v2 / "os.joblib").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError):
        artifact.promote(v2, root)
    assert os.readlink(root / "current") == "v1"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
