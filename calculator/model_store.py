"""The model the app serves: the version in ``MODEL_DIR``, verified and loaded once per process.

Verification and loading are ``prognosis.store`` (arrays and JSON, no pickle); this adds only where the app looks.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app

from prognosis.model import Model
from prognosis.store import ModelLoadError, cached_model

__all__ = ["ModelLoadError", "get_model"]


def get_model(directory: str | Path | None = None) -> Model:
    """The model for ``directory`` (default: the app's ``MODEL_DIR``); a promoted version is served from the next
    request on, while a request already holding the old one finishes on it."""
    return cached_model(directory if directory is not None else current_app.config["MODEL_DIR"])
