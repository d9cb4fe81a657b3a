# The two set-up commands are `make run` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: install run test bench shipped-model clean

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

bench: install
	$(BIN)/python -m benchmarks

# Reproduces the shipped model from the synthetic registry (see README, "The shipped model").
shipped-model: install
	$(BIN)/python -m training ship

clean:
	rm -rf $(VENV) .pytest_cache
