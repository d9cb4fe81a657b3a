"""Trust ``X-Forwarded-For``/``-Proto`` from as many reverse proxies as ``PROXY_HOPS`` says, and no more."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    """Wrap ``app``'s WSGI callable in werkzeug's ProxyFix when ``PROXY_HOPS`` > 0.

    Rate limiting and the access log then see the client's address rather than the proxy's; with no proxy
    configured the headers are ignored, so a client cannot choose its own address by sending them.
    """
    hops = app.config["PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
