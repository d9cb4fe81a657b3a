"""Settings, each read from the environment with a default; ``create_app(config)`` overrides them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Defaults for the app; tests pass a dict of overrides to the factory instead of subclassing."""

    MODEL_DIR = os.environ.get("CALCULATOR_MODEL_DIR", str(REPO_ROOT / "model_artifacts" / "current"))
    # A per-process random key would break CSRF tokens across workers: gunicorn.conf.py sets the variable once
    # in the master so every worker inherits the same one.
    SECRET_KEY = os.environ.get("CALCULATOR_SECRET_KEY") or secrets.token_hex(32)
    MAX_CONTENT_LENGTH = int(os.environ.get("CALCULATOR_MAX_CONTENT_LENGTH", 16 * 1024))
    LOG_LEVEL = os.environ.get("CALCULATOR_LOG_LEVEL", "INFO")
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _flag("CALCULATOR_SECURE_COOKIES", False)
    # A clinician may leave the form open through a clinic session before submitting.
    WTF_CSRF_TIME_LIMIT = int(os.environ.get("CALCULATOR_CSRF_TIME_LIMIT", 8 * 3600))
