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

# The dependencies get their own layer, rebuilt only when the lock or the project's requirements change: the
# project's runtime requirements (from pyproject.toml), each at the exact version requirements.lock pins. The test
# tools in the lock stay out of the image; tests/test_deploy.py checks that nothing unpinned comes in.
COPY pyproject.toml requirements.lock ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps + ['setuptools']))" > /tmp/runtime-requirements.txt \
    && pip install --no-cache-dir --constraint requirements.lock --requirement /tmp/runtime-requirements.txt \
    && rm /tmp/runtime-requirements.txt

# Only what the service needs. The app never imports training/, but the package build lists it, and it lets IT run
# `python -m training promote` (rollback) inside the container.
COPY calculator/ calculator/
COPY training/ training/
COPY templates/ templates/
COPY model_artifacts/ model_artifacts/
COPY gunicorn.conf.py ./
# Editable, so that the app finds templates/ and model_artifacts/ beside its package in /app.
RUN pip install --no-cache-dir --no-deps --no-build-isolation --editable . \
    && python -m compileall -q calculator training \
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
