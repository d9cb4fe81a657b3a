"""The app's log: JSON lines on standard output, with the request id; never a patient's inputs.

gunicorn's own records use the same ``JsonFormatter`` (gunicorn.conf.py), so every line a container writes is one
JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import Flask, g, has_request_context
from flask.logging import default_handler


def init_app(app: Flask) -> None:
    """Send ``app.logger``'s records to standard output as JSON lines, at ``LOG_LEVEL``."""
    # Records carry paths and error types only: patient inputs, query strings and bodies are never logged.
    logger = app.logger
    logger.removeHandler(default_handler)
    if not any(isinstance(handler, StdoutHandler) for handler in logger.handlers):
        handler = StdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(app.config["LOG_LEVEL"])
    logger.propagate = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, the request id, and any ``extra`` fields.

    An exception is written as its type and frames only: its message may quote what a client sent.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass
