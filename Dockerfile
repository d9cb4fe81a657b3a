# The calculator as one container: gunicorn serving calculator:create_app() with the model in model_artifacts/current.
#   docker build -t net-calculator .
#   docker run --rm -p 5000:5000 -e CALCULATOR_SECRET_KEY=... net-calculator
# See docs/deployment.md. The base is pinned to an exact patch release; pin its digest too where your registry
# policy asks for it (FROM python:3.11.14-slim-trixie@sha256:...).
FROM python:3.11.14-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# The dependencies get their own layer, rebuilt only when the runtime lock changes: each package at the version and
# with the SHA-256 requirements/runtime.lock names (pip refuses anything else). Runtime only: no training or test
# tools, nothing that unpickles a model; tests/test_deploy.py checks what comes in.
COPY requirements/runtime.lock requirements/
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --require-hashes --requirement requirements/runtime.lock

# Only what the service needs: the scoring core, the reader of patient files (for `python -m calculator score`), the
# app, its pages, the model, gunicorn's settings (no training/, no tests). Roll back by promoting an older version
# where the models live (docs/deployment.md).
COPY pyproject.toml gunicorn.conf.py ./
COPY prognosis/ prognosis/
COPY registry/ registry/
COPY calculator/ calculator/
COPY templates/ templates/
COPY model_artifacts/ model_artifacts/
# Editable, so that the app finds templates/ and model_artifacts/ beside its package in /app.
RUN pip install --no-cache-dir --no-deps --no-build-isolation --editable . \
    && python -m compileall -q prognosis registry calculator \
    && groupadd --system --gid 10001 calculator \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin calculator

# Everything above belongs to root and is read-only for the service's user (numeric, as hosts see it).
USER 10001:10001

ENV CALCULATOR_BIND=0.0.0.0:5000 \
    CALCULATOR_MODEL_DIR=/app/model_artifacts/current
EXPOSE 5000

# Liveness through the app itself, with the image's Python (no curl in a slim image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CALCULATOR_BIND', ':5000').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "calculator:create_app()"]
