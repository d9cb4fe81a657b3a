"""Error pages (HTML) and error bodies (JSON under /api/) that leak nothing: no traceback, no input."""

from __future__ import annotations

import traceback

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

bp = Blueprint("errors", __name__)

# Fixed texts: an exception's own description may echo what the client sent.
MESSAGES = {
    400: "The request could not be understood.",
    404: "There is no page at this address.",
    405: "This address does not accept that method.",
    413: "The request body is too large.",
    415: "The request body must be JSON, sent with Content-Type: application/json.",
    429: "Too many requests from this address. Please wait a moment and try again.",
    500: "Something went wrong on our side. The error has been logged.",
    503: "The prediction model is not available right now. Please try again later.",
}
CSRF_MESSAGE = "The form has expired or was not sent from this site. Go back, reload the page and submit again."
TEMPLATES = {404: "errors/404.html", 500: "errors/500.html", 503: "errors/500.html"}
# What an API client should look at to fix its request.
API_FIELDS = {400: "body", 413: "body", 415: "body", 429: "request", 503: "model"}


def error_response(status: int, message: str | None = None) -> tuple[Response | str, int]:
    """The error page, or for an API path the JSON error body, with ``status``."""
    message = message or MESSAGES.get(status, MESSAGES[400 if status < 500 else 500])
    if request.path.startswith("/api/"):
        body = {"errors": [{"field": API_FIELDS.get(status, "request"), "message": message}]}
        return jsonify(body), status
    template = TEMPLATES.get(status, "errors/500.html" if status >= 500 else "errors/400.html")
    return render_template(template, status=status, message=message), status


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> ResponseReturnValue:
    return error_response(400, CSRF_MESSAGE)


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> ResponseReturnValue:
    if error.code is None or error.code < 400:
        return error
    body, status = error_response(error.code)
    response = current_app.make_response((body, status))
    valid_methods = getattr(error, "valid_methods", None)  # set by MethodNotAllowed
    if error.code == 405 and valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


@bp.app_errorhandler(Exception)
def unhandled_error(error: Exception) -> ResponseReturnValue:
    # Frames only: an exception's message may quote patient inputs, which must not reach the log.
    frames = "".join(traceback.format_tb(error.__traceback__))
    current_app.logger.error("unhandled %s on %s %s\n%s", type(error).__name__, request.method, request.path, frames)
    return error_response(500)
