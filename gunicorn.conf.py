"""gunicorn settings for the calculator (`make run`); each can be overridden from the environment."""

import os
import secrets

# Set once here in the master, so every worker signs CSRF tokens with the same key (calculator/config.py).
os.environ.setdefault("CALCULATOR_SECRET_KEY", secrets.token_hex(32))

# One BLAS thread per worker: scoring multiplies small matrices, where threads only contend (workers = cores).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

bind = os.environ.get("CALCULATOR_BIND", "127.0.0.1:5000")
# Scoring is CPU-bound numpy: one worker per core, at least two so one slow request never blocks the rest.
workers = int(os.environ.get("CALCULATOR_WORKERS", max(2, os.cpu_count() or 1)))
timeout = int(os.environ.get("CALCULATOR_TIMEOUT", 30))
graceful_timeout = 10
# Each worker loads and verifies the model itself; the app is not imported in the master.
preload_app = False

# Everything to stdout. The access log names the path only: a query string would carry the patient's inputs.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
logconfig_dict = {
    "loggers": {
        "gunicorn.error": {"level": os.environ.get("CALCULATOR_LOG_LEVEL", "INFO"), "handlers": ["console"],
                           "propagate": False, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False,
                            "qualname": "gunicorn.access"},
    },
}
