"""``MAX_CONTENT_LENGTH`` for bodies sent without a length (chunked) too: refused with 413, never truncated."""

from __future__ import annotations

import io

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge


def init_app(app: Flask) -> None:
    """Bound every streamed request body of ``app`` by its ``MAX_CONTENT_LENGTH``."""
    app.before_request(bound_streamed_body)


def bound_streamed_body() -> None:
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
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
