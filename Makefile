# The README's two commands live here: `make studio` and `make test`. Each sets up everything it
# needs on a fresh machine (virtualenv from the lock, Debian packages when missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hwm-installed
PORT ?= 5006
ADDRESS ?= 127.0.0.1
# An upload travels as one base64 websocket message: room for the workspace's 100 MB cap
# (hwm_studio/workspace.py MAX_UPLOAD_BYTES); Bokeh's default of 20 MB would drop the session.
WS_MAX_MESSAGE ?= 150000000

.PHONY: setup studio test lint format bench lock assets clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hwm_studio needs Python 3.11 (panel 1.9 / bokeh 3.9); found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

studio: setup
	@scripts/install-system-deps.sh egl
	$(VENV)/bin/panel serve apps/studio.py --address $(ADDRESS) --port $(PORT) --allow-websocket-origin $(ADDRESS):$(PORT) --allow-websocket-origin localhost:$(PORT) --websocket-max-message-size $(WS_MAX_MESSAGE)

test: setup
	@scripts/install-system-deps.sh egl browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -n auto --dist loadfile  # one worker per core, a test file per worker

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/protocols.py

assets: setup
	$(PY) scripts/train_assets.py

# Regenerate the lock from the current environment (torch kept at 2.13.0, not the local +cpu tag).
lock:
	{ echo "# Exact versions for Python 3.11 (regenerate with: make lock). torch is pinned to 2.13.0:"; \
	  echo "# here that installs the CPU wheel from local disk; elsewhere PyPI's normal build."; \
	  $(VENV)/bin/pip freeze --exclude-editable | sed -E 's/^torch==2\.13\.0\+.*/torch==2.13.0/'; \
	  echo "setuptools==$$($(PY) -c 'import setuptools; print(setuptools.__version__)')"; } > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
