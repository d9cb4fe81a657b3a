"""Security headers on every response, refused or not: content policy, no sniffing or framing, no caching of inputs."""

from __future__ import annotations

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def init_app(app: Flask) -> None:
    """Add the security headers to every response of ``app``."""
    app.after_request(security_headers)


def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers that predate it
    response.headers["Referrer-Policy"] = "no-referrer"
    # Whatever carries patient inputs (a query string or a body) stays out of caches; the empty form may be
    # cached, so that "back" from a result returns to the filled-in form.
    if request.query_string or request.method != "GET":
        response.headers["Cache-Control"] = "no-store"
    return response
