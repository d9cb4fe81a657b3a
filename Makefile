# The two set-up commands are `make run` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Hashed locks (pip-compile): runtime.lock is what the container installs, dev.lock = runtime + training + test.
RUNTIME_LOCK := requirements/runtime.lock
DEV_LOCK := requirements/dev.lock
CHROMIUM := /usr/bin/chromium
WRK := /usr/bin/wrk
# R with survival, rms and mice: the field's reference. The suite checks against values R produced (tests/data/);
# with R present it also reruns the R scripts and compares. A marker file, because R's packages have no one binary.
R_STAMP := /usr/lib/R/site-library/rms/DESCRIPTION
R_PACKAGES := r-base-core r-cran-survival r-cran-rms r-cran-mice

.PHONY: install run test lint lock bench bench-load fuzz lint-docker image shipped-model clean

install: $(STAMP)

# Reinstall only when a lock or the project description changed. Every package, pip and setuptools included,
# comes at the version and with a digest the lock names; then the project itself, editable, without dependencies.
$(STAMP): $(RUNTIME_LOCK) $(DEV_LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --requirement $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

$(CHROMIUM):
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "chromium is missing and we are not root: install Debian's chromium package" >&2; exit 1; \
	fi

run: install
	exec $(BIN)/gunicorn --config gunicorn.conf.py 'calculator:create_app()'

$(R_STAMP):
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(R_PACKAGES); \
	else \
		echo "R is missing and we are not root: the tests that rerun the R scripts will be skipped" >&2; \
	fi

test: install $(CHROMIUM) $(R_STAMP)
	$(BIN)/python -m pytest

# Every checker runs, even after one has failed, so that one run shows all the findings.
lint: install
	status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

# Regenerates both locks from pyproject.toml, keeping every pin that still fits; pass LOCK_ARGS="--upgrade-package
# NAME" (or "--upgrade") to move versions. dev.lock is constrained by runtime.lock, so the two never disagree.
# Only PyPI is asked (no local mirror or wheel folder), so the digests are PyPI's own.
# --unsafe-package names the project itself: the test extra includes the training extra through it, which pip-compile
# would otherwise write out as a file:// line (pip-tools issue 2002). It replaces pip-compile's default unsafe list,
# so pip and setuptools are pinned with their digests, as --allow-unsafe would pin them.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --build-deps-for editable \
	--unsafe-package net-embolotherapy-calculator --no-emit-index-url --no-emit-find-links
lock: install
	mkdir -p requirements
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) \
		--output-file $(RUNTIME_LOCK) pyproject.toml
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) \
		--extra test --constraint $(RUNTIME_LOCK) --output-file $(DEV_LOCK) pyproject.toml

# The load benchmark's generator. Without it (not root) that benchmark runs a Python load generator instead.
$(WRK):
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; \
	else \
		echo "wrk is missing and we are not root: the load benchmark will use its Python load generator" >&2; \
	fi

bench: install $(WRK)
	$(BIN)/python -m benchmarks

# Deployment proof alone (docs/testing-report.md): load at saturation, API latency, the long fuzzing run.
bench-load: install $(WRK)
	$(BIN)/python -m benchmarks load api

fuzz: install
	$(BIN)/python -m benchmarks fuzz

lint-docker: install
	$(BIN)/hadolint Dockerfile

# Needs a Docker engine (docs/deployment.md); the tests replay the image's steps without one.
image: lint-docker
	docker build -t net-calculator:$$(git describe --always --dirty 2>/dev/null || echo dev) -t net-calculator:latest .

# Reproduces the shipped model from the synthetic registry (see README, "The shipped model").
shipped-model: install
	$(BIN)/python -m training ship

clean:
	rm -rf $(VENV) .pytest_cache
