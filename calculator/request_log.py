"""Request ids and the access log: one record per request with its id, method, path and status, never its inputs."""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

REQUEST_ID_HEADER = "X-Request-ID"
# What proxies and tracing systems put in X-Request-ID (UUIDs, hex, base64 ids); anything else is replaced, so a
# client cannot inject line breaks or JSON into the logs through it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")


def init_app(app: Flask) -> None:
    """Give each request of ``app`` an id (echoed in the response) and log it once it is answered.

    Call this before any other extension adds a ``before_request`` hook (CSRFProtect's included), so that every
    response, even a refused one, carries a request id.
    """
    app.before_request(begin_request)
    app.after_request(finish_request)


def begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def finish_request(response: Response) -> Response:
    """Echo the request id and write one access-log record: method, path and status, never the query or body."""
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    current_app.logger.info(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "path": request.path[:200],
                "status": response.status_code,
                "duration_ms": round(1000 * (time.perf_counter() - started), 2) if started else None,
                "bytes": response.content_length,
                "client": request.remote_addr,
            }
        },
    )
    return response
