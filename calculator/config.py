"""Settings, each read from the environment with a default; ``create_app(config)`` overrides them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Defaults for the app; tests pass a dict of overrides to the factory instead of subclassing."""

    MODEL_DIR = os.environ.get("CALCULATOR_MODEL_DIR", str(REPO_ROOT / "model_artifacts" / "current"))
    # A per-process random key would break CSRF tokens across workers: gunicorn.conf.py sets the variable once
    # in the master so every worker inherits the same one.
    SECRET_KEY = os.environ.get("CALCULATOR_SECRET_KEY") or secrets.token_hex(32)
    MAX_CONTENT_LENGTH = int(os.environ.get("CALCULATOR_MAX_CONTENT_LENGTH", 16 * 1024))
    # POST /api/v1/predict/batch: at most this many patients per request, scored in about 1.3 ms each (all
    # different) on one core, so a full batch answers in under 2 s, well inside gunicorn's timeout, with a response
    # of about 3 MB (4 horizons). Its own body limit (every other route keeps MAX_CONTENT_LENGTH): a patient with
    # every field takes about 200 bytes of JSON, 350 pretty-printed; 512 KiB leaves 500 bytes per patient.
    BATCH_MAX_PATIENTS = int(os.environ.get("CALCULATOR_BATCH_MAX_PATIENTS", 1000))
    BATCH_MAX_CONTENT_LENGTH = int(os.environ.get("CALCULATOR_BATCH_MAX_CONTENT_LENGTH", 512 * 1024))
    # Rate limiting counts a batch as one request per this many patients (rounded up): scoring a patient's landmarks
    # costs a fraction of a single prediction's full curves and response.
    BATCH_PATIENTS_PER_REQUEST = int(os.environ.get("CALCULATOR_BATCH_PATIENTS_PER_REQUEST", 10))
    LOG_LEVEL = os.environ.get("CALCULATOR_LOG_LEVEL", "INFO")
    # The only cookie is Flask's session, which holds the CSRF token. Secure is off by default because an intranet
    # served over plain HTTP would then never get the cookie back and every form post would fail; turn it on
    # behind HTTPS.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _flag("CALCULATOR_SECURE_COOKIES", False)
    # Token bucket per client address on the API, per worker process (0 turns it off). Behind a reverse proxy set
    # CALCULATOR_PROXY_HOPS so that the client's address, not the proxy's, is the key.
    RATE_LIMIT_PER_MINUTE = int(os.environ.get("CALCULATOR_RATE_LIMIT_PER_MINUTE", 120))
    RATE_LIMIT_BURST = int(os.environ.get("CALCULATOR_RATE_LIMIT_BURST", 0)) or None  # None: one minute's worth
    # Number of proxies in front whose X-Forwarded-For/-Proto are trusted (werkzeug ProxyFix); 0 trusts none.
    PROXY_HOPS = int(os.environ.get("CALCULATOR_PROXY_HOPS", 0))
    # /readyz re-hashes the served model's files at most this often per worker (seconds); 0: on every probe.
    READY_RECHECK_SECONDS = float(os.environ.get("CALCULATOR_READY_RECHECK_SECONDS", 2))
    # A clinician may leave the form open through a clinic session before submitting.
    WTF_CSRF_TIME_LIMIT = int(os.environ.get("CALCULATOR_CSRF_TIME_LIMIT", 8 * 3600))
