"""Shared fixtures: a trained model version, the web app serving it, and the browser tests' server and Chromium."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from calculator import create_app
from tests.browser_support import base_url, browser, watched  # noqa: F401  (the browser tests' fixtures)
from tests.model_fixtures import model_dir  # noqa: F401  (a session-scoped fixture)

# A complete, valid submission of the form: the required inputs only.
VALID_FORM = {"who_grade": "2", "tumor_burden": "<25%", "prior_resection_ablation": "0"}
# Settings every test app shares: rate limiting off (tests/test_hardening.py turns it on to test it), and readiness
# re-verifying the model's files on every probe.
TEST_CONFIG = {"TESTING": True, "RATE_LIMIT_PER_MINUTE": 0, "READY_RECHECK_SECONDS": 0}


@pytest.fixture
def app(model_dir) -> Flask:  # noqa: F811
    return create_app({**TEST_CONFIG, "MODEL_DIR": model_dir, "WTF_CSRF_ENABLED": False})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def csrf_app(model_dir) -> Flask:  # noqa: F811
    """The app as served: CSRF protection on."""
    return create_app({**TEST_CONFIG, "MODEL_DIR": model_dir})


@pytest.fixture
def broken_app(tmp_path) -> Flask:
    """An app whose model directory does not exist."""
    return create_app({**TEST_CONFIG, "MODEL_DIR": tmp_path / "missing", "WTF_CSRF_ENABLED": False})
