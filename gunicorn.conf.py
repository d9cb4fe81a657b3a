"""gunicorn settings for the calculator (`make run`, the container); each can be overridden from the environment."""

import os
import secrets

# Set once here in the master, so every worker signs CSRF tokens with the same key (calculator/config.py).
# Several containers behind a load balancer need one key set for all of them (docs/deployment.md).
os.environ.setdefault("CALCULATOR_SECRET_KEY", secrets.token_hex(32))

# One BLAS thread per worker: scoring multiplies small matrices, where threads only contend (workers = cores).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

bind = os.environ.get("CALCULATOR_BIND", "127.0.0.1:5000")
# Scoring is CPU-bound numpy: one worker per core, at least two so one slow request never blocks the rest.
workers = int(os.environ.get("CALCULATOR_WORKERS", max(2, os.cpu_count() or 1)))
timeout = int(os.environ.get("CALCULATOR_TIMEOUT", 30))
graceful_timeout = 10
# Each worker loads and verifies the model itself (post_worker_init below); the app is not imported in the master.
preload_app = False
# The workers' heartbeat files: on tmpfs when there is one, since a container's /tmp may sit on a slow overlay.
worker_tmp_dir = os.environ.get("CALCULATOR_WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
# No runtime control socket (gunicornc): nothing uses it, and its default path in $HOME is shared by every instance
# on the machine, and missing for a container's user without a home.
control_socket_disable = True


def post_worker_init(worker):
    """Load and verify the model when the worker starts, so that no request waits for it.

    A model that does not load must not stop the worker (it would be restarted in a loop): /readyz says why it is
    not ready, and loading is tried again on the next request.
    """
    from calculator.model_store import get_model

    app = worker.wsgi
    try:
        with app.app_context():
            model = get_model()
        app.logger.info("model loaded", extra={"fields": {"model_version": model.version}})
    except Exception as exc:  # noqa: BLE001 (reported, and retried on the next request)
        app.logger.error("model not loaded at start: %s: %s", type(exc).__name__, exc)


# JSON lines on stdout (calculator.json_logging.JsonFormatter), like the app's own records. The app writes one
# access record per request, with its request id and the path only (a query string would carry the patient's
# inputs), so gunicorn's access log is discarded rather than repeating it.
_level = os.environ.get("CALCULATOR_LOG_LEVEL", "INFO")
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "calculator.json_logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "discard": {"class": "logging.NullHandler"},
    },
    "root": {"level": "WARNING", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": _level, "handlers": ["console"], "propagate": False, "qualname": "gunicorn.error"},
        "gunicorn.access": {
            "level": "WARNING",
            "handlers": ["discard"],
            "propagate": False,
            "qualname": "gunicorn.access",
        },
    },
}
