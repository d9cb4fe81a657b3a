# The two set-up commands are `make run` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
WRK := /usr/bin/wrk

.PHONY: install run test bench bench-load fuzz lint-docker image shipped-model clean

install: $(STAMP)

# Reinstall only when the lock or the project description changed.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --requirement requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable ".[test]"
	touch $(STAMP)

$(CHROMIUM):
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "chromium is missing and we are not root: install Debian's chromium package" >&2; exit 1; \
	fi

run: install
	exec $(BIN)/gunicorn --config gunicorn.conf.py 'calculator:create_app()'

test: install $(CHROMIUM)
	$(BIN)/python -m pytest

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
