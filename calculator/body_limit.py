"""``MAX_CONTENT_LENGTH`` for bodies sent without a length (chunked) too: refused with 413, never truncated; a route may
take a larger limit of its own (:func:`limit`, the batch API)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

LIMIT_ATTRIBUTE = "body_limit_setting"
View = TypeVar("View", bound=Callable)


def init_app(app: Flask) -> None:
    """Bound every request body of ``app`` by its ``MAX_CONTENT_LENGTH`` (or its route's own limit), streamed or not."""
    app.before_request(apply_route_limit)
    app.before_request(bound_streamed_body)


def limit(setting: str) -> Callable[[View], View]:
    """Give a view the body limit of the config ``setting`` instead of ``MAX_CONTENT_LENGTH``."""

    def mark(view: View) -> View:
        setattr(view, LIMIT_ATTRIBUTE, setting)
        return view

    return mark


def apply_route_limit() -> None:
    """Set this request's limit (werkzeug checks a Content-Length against it) from its view's setting, if any."""
    view = current_app.view_functions.get(request.endpoint or "")
    setting = getattr(view, LIMIT_ATTRIBUTE, None)
    if setting is not None:
        request.max_content_length = current_app.config[setting]


def bound_streamed_body() -> None:
    """Read a body sent without a length (chunked) here, refusing it with 413 past the request's limit.

    werkzeug would cut such a stream at the limit without an error, and the request would then be judged on a
    truncated body; a body with a Content-Length over the limit is refused by werkzeug itself.
    """
    environ = request.environ
    most = request.max_content_length
    if most is None or environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", ""):
        return
    stream, data = environ["wsgi.input"], b""
    while len(data) <= most:
        block = stream.read(most + 1 - len(data))
        if not block:
            break
        data += block
    if len(data) > most:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
