"""The calculator: the web app (``create_app()``, in ``calculator.app``) and the batch-scoring command line
(``python -m calculator score``).

Flask is imported only when the app is built, so that the command line and anything importing ``calculator.*``
modules without the web stack stays light (``create_app`` is resolved on first use, PEP 562).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from calculator.app import create_app

        return create_app
    raise AttributeError(f"module 'calculator' has no attribute {name!r}")
