"""A token bucket per client address on the API: past ``RATE_LIMIT_PER_MINUTE``, 429 with ``Retry-After``.

Every API request takes one token on arrival; a request that counts as more (a batch of patients) takes the rest
with :func:`charge` once it knows how many, never more than the bucket holds (so that it can always pass when the
client has been idle).
"""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, Response, current_app, request

from calculator.errors import error_response

RATE_LIMITED_PREFIX = "/api/"
EXTENSION_KEY = "calculator_rate_limit"


def init_app(app: Flask) -> None:
    """Limit each client's API requests to ``app``; ``RATE_LIMIT_PER_MINUTE`` 0 turns the limit off."""
    if app.config["RATE_LIMIT_PER_MINUTE"] > 0:
        app.extensions[EXTENSION_KEY] = TokenBuckets(
            app.config["RATE_LIMIT_PER_MINUTE"], app.config["RATE_LIMIT_BURST"]
        )
        app.before_request(rate_limit)


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

    def take(self, key: str, now: float | None = None, count: float = 1.0) -> float:
        """Take ``count`` tokens (at most the capacity) for ``key``: 0.0 when granted, else the seconds until there
        are enough."""
        now = time.monotonic() if now is None else now
        count = min(count, self.capacity)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= count:
                self._buckets[key] = (tokens - count, now)
                if len(self._buckets) > self.MAX_KEYS:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (count - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            key for key, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.MAX_KEYS:  # a flood of distinct clients: keep the most recent half
            recent = sorted(self._buckets.items(), key=lambda item: item[1][1])[-(self.MAX_KEYS // 2) :]
            self._buckets = dict(recent)


def rate_limit() -> Response | None:
    """Refuse an API request over its client's limit with 429 and ``Retry-After``; let anything else through."""
    if not request.path.startswith(RATE_LIMITED_PREFIX):
        return None
    buckets: TokenBuckets = current_app.extensions[EXTENSION_KEY]
    wait = buckets.take(request.remote_addr or "unknown")
    return _refused(wait) if wait else None


def charge(count: float, why: str = "") -> Response | None:
    """Take ``count`` more tokens for this API request (one was taken on arrival), at most as many as leave the
    request within the bucket's capacity; the 429 response when they are not there (``why`` says why it costs
    more), else None. Nothing when rate limiting is off."""
    buckets: TokenBuckets | None = current_app.extensions.get(EXTENSION_KEY)
    if buckets is None or count <= 0:
        return None
    wait = buckets.take(request.remote_addr or "unknown", count=min(count, buckets.capacity - 1.0))
    return _refused(wait, why) if wait else None


def _refused(wait: float, why: str = "") -> Response:
    per_minute = current_app.config["RATE_LIMIT_PER_MINUTE"]
    retry = max(1, math.ceil(wait))
    because = f" ({why})" if why else ""
    message = f"too many requests: at most {per_minute} per minute from one address{because}; retry after {retry} s"
    response = current_app.make_response(error_response(429, message))
    response.headers["Retry-After"] = str(retry)
    return response
