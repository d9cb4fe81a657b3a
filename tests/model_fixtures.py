"""Session-scoped trained artifacts for tests: small, fast, made by the real pipeline."""

from __future__ import annotations

import pytest

from registry import load_registry
from training.pipeline import fit_registry
from training.synthetic import synthesize
from training.validate import validate_directory

# Enough for a card with every validation section; the bootstrap itself is tested in tests/test_validate.py.
FIXTURE_REPLICATES = 20


def build_model(directory, n: int, seed: int, version: str, validate: bool = True):
    """Fit (and validate, as the retraining workflow does) a synthetic registry of ``n`` patients into ``directory``.

    Validated models can be promoted without ``--force``; ``validate=False`` gives a model as ``fit`` alone leaves it.
    """
    csv = directory.parent / f"{version}.csv"
    synthesize(n, seed).to_csv(csv, index=False)
    registry = load_registry(str(csv))
    path = fit_registry(registry, directory, version=version)
    if validate:
        validate_directory(path, registry, replicates=FIXTURE_REPLICATES, seed=seed, n_jobs=1, show_progress=False)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A synthetic-trained, validated model version (2,000 patients), as the app would serve it."""
    root = tmp_path_factory.mktemp("models")
    return build_model(root / "test-model", 2000, 11, "test-synthetic-2000")
