"""The app factory: ``create_app()`` builds the web app (Flask tutorial layout).

Each concern that touches every request lives in its own module with an ``init_app(app)``: ``json_logging``,
``proxies``, ``request_log``, ``body_limit``, ``rate_limit``, ``security``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from calculator import body_limit, json_logging, proxies, rate_limit, request_log, security
from calculator.config import REPO_ROOT, Config

__all__ = ["create_app", "csrf"]

csrf = CSRFProtect()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``config`` overrides, then extensions, then blueprints."""
    app = Flask("calculator", template_folder=str(REPO_ROOT / "templates"))
    app.config.from_object(Config)
    if config:
        app.config.update(config)
    app.config["MODEL_DIR"] = str(app.config["MODEL_DIR"])

    json_logging.init_app(app)
    proxies.init_app(app)
    # In this order: the request id first (even a refused request gets one), then the checks that may refuse it
    # before a view runs: body size, rate, CSRF token.
    request_log.init_app(app)
    body_limit.init_app(app)
    rate_limit.init_app(app)
    csrf.init_app(app)
    security.init_app(app)

    from calculator import api, errors, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(errors.bp)
    # The API takes JSON without cookies, so there is no session for a cross-site request to ride on.
    csrf.exempt(api.bp)
    return app
