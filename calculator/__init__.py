"""The calculator web app: ``create_app()`` builds it (Flask tutorial layout)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from flask.logging import default_handler
from flask_wtf.csrf import CSRFProtect

from calculator.config import REPO_ROOT, Config

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``config`` overrides, then extensions, then blueprints."""
    app = Flask(__name__, template_folder=str(REPO_ROOT / "templates"))
    app.config.from_object(Config)
    if config:
        app.config.update(config)
    app.config["MODEL_DIR"] = str(app.config["MODEL_DIR"])
    _configure_logging(app)

    csrf.init_app(app)

    from calculator import api, errors, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(errors.bp)
    # The API takes JSON without cookies, so there is no session for a cross-site request to ride on.
    csrf.exempt(api.bp)

    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Whatever carries patient inputs (a query string or a body) stays out of caches; the empty form may be
    # cached, so that "back" from a result returns to the filled-in form.
    if request.query_string or request.method != "GET":
        response.headers["Cache-Control"] = "no-store"
    return response


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (test runners swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(app: Flask) -> None:
    # Records carry paths and error types only: patient inputs and query strings are never logged.
    logger = app.logger
    logger.removeHandler(default_handler)
    if not any(isinstance(handler, _StdoutHandler) for handler in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(app.config["LOG_LEVEL"])
    logger.propagate = False
