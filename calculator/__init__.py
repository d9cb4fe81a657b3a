"""The calculator web app: ``create_app()`` builds it (Flask tutorial layout)."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from flask.logging import default_handler
from flask_wtf.csrf import CSRFProtect

from calculator.config import REPO_ROOT, Config

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
REQUEST_ID_HEADER = "X-Request-ID"
# What proxies and tracing systems put in X-Request-ID (UUIDs, hex, base64 ids); anything else is replaced, so a
# client cannot inject line breaks or JSON into the logs through it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
RATE_LIMITED_PREFIX = "/api/"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``config`` overrides, then extensions, then blueprints."""
    app = Flask(__name__, template_folder=str(REPO_ROOT / "templates"))
    app.config.from_object(Config)
    if config:
        app.config.update(config)
    app.config["MODEL_DIR"] = str(app.config["MODEL_DIR"])
    _configure_logging(app)

    if app.config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    # Registered before CSRFProtect's check so that every response, even a refused one, carries a request id.
    app.before_request(_begin_request)
    app.before_request(_bound_streamed_body)
    if app.config["RATE_LIMIT_PER_MINUTE"] > 0:
        app.extensions["calculator_rate_limit"] = TokenBuckets(app.config["RATE_LIMIT_PER_MINUTE"],
                                                               app.config["RATE_LIMIT_BURST"])
        app.before_request(_rate_limit)
    csrf.init_app(app)

    from calculator import api, errors, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(errors.bp)
    # The API takes JSON without cookies, so there is no session for a cross-site request to ride on.
    csrf.exempt(api.bp)

    app.after_request(_security_headers)
    app.after_request(_finish_request)
    return app


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers that predate it
    response.headers["Referrer-Policy"] = "no-referrer"
    # Whatever carries patient inputs (a query string or a body) stays out of caches; the empty form may be
    # cached, so that "back" from a result returns to the filled-in form.
    if request.query_string or request.method != "GET":
        response.headers["Cache-Control"] = "no-store"
    return response


# --- request ids and the access log ---------------------------------------------------------------------------

def _begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _bound_streamed_body() -> None:
    """Read a body sent without a length (chunked) here, refusing it with 413 past MAX_CONTENT_LENGTH.

    werkzeug would cut such a stream at the limit without an error, and the request would then be judged on a
    truncated body; a body with a Content-Length over the limit is refused by werkzeug itself.
    """
    environ = request.environ
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is None or environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", ""):
        return
    stream, data = environ["wsgi.input"], b""
    while len(data) <= limit:
        block = stream.read(limit + 1 - len(data))
        if not block:
            break
        data += block
    if len(data) > limit:
        from werkzeug.exceptions import RequestEntityTooLarge

        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _finish_request(response: Response) -> Response:
    """Echo the request id and write one access-log record: method, path and status, never the query or body."""
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    current_app.logger.info("request", extra={"fields": {
        "method": request.method,
        "path": request.path[:200],
        "status": response.status_code,
        "duration_ms": round(1000 * (time.perf_counter() - started), 2) if started else None,
        "bytes": response.content_length,
        "client": request.remote_addr,
    }})
    return response


# --- rate limiting ---------------------------------------------------------------------------------------------

class TokenBuckets:
    """One token bucket per client address, in this process only.

    Each gunicorn worker keeps its own buckets, so a client whose requests are spread over W workers (or over
    several containers) gets up to W times the configured rate; the limit is a guard against a runaway script,
    not an exact quota.
    """

    MAX_KEYS = 10_000  # memory bound: buckets that refilled completely are forgotten first

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, burst or per_minute))
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time they were counted)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until the next token."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_KEYS:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [key for key, (tokens, last) in self._buckets.items()
                if tokens + (now - last) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.MAX_KEYS:  # a flood of distinct clients: keep the most recent half
            recent = sorted(self._buckets.items(), key=lambda item: item[1][1])[-(self.MAX_KEYS // 2):]
            self._buckets = dict(recent)


def _rate_limit():
    if not request.path.startswith(RATE_LIMITED_PREFIX):
        return None
    from calculator.errors import error_response

    buckets: TokenBuckets = current_app.extensions["calculator_rate_limit"]
    wait = buckets.take(request.remote_addr or "unknown")
    if not wait:
        return None
    per_minute = current_app.config["RATE_LIMIT_PER_MINUTE"]
    retry = max(1, math.ceil(wait))
    body, status = error_response(429, f"too many requests: at most {per_minute} per minute from one address; "
                                       f"retry after {retry} s")
    response = current_app.make_response((body, status))
    response.headers["Retry-After"] = str(retry)
    return response


# --- logging ---------------------------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, the request id, and any ``extra`` fields.

    An exception is written as its type and frames only: its message may quote what a client sent.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["frames"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (test runners swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(app: Flask) -> None:
    # Records carry paths and error types only: patient inputs, query strings and bodies are never logged.
    logger = app.logger
    logger.removeHandler(default_handler)
    if not any(isinstance(handler, _StdoutHandler) for handler in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(app.config["LOG_LEVEL"])
    logger.propagate = False
