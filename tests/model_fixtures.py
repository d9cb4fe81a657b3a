"""Session-scoped trained artifacts for tests: small, fast, made by the real pipeline."""

from __future__ import annotations

import pytest

from training.pipeline import fit_registry
from training.registry import load_registry
from training.synthetic import synthesize


def build_model(directory, n: int, seed: int, version: str):
    """Fit a synthetic registry of ``n`` patients through the real loader and pipeline into ``directory``."""
    csv = directory.parent / f"{version}.csv"
    synthesize(n, seed).to_csv(csv, index=False)
    return fit_registry(load_registry(str(csv)), directory, version=version)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A synthetic-trained model version (2,000 patients), as the app would serve it."""
    root = tmp_path_factory.mktemp("models")
    return build_model(root / "test-model", 2000, 11, "test-synthetic-2000")
