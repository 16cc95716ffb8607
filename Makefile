# scimlet: every target is one command on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The third-party conformance checkers get their own environment: their dependencies never shape ours.
CONFORMANCE_VENV := .venv-conformance
CONFORMANCE_STAMP := $(CONFORMANCE_VENV)/.installed

.PHONY: install run test lint bench conformance clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(PY) app.py serve

test: install
	$(PY) -m pytest -q

$(CONFORMANCE_STAMP): conformance/requirements.txt
	$(PYTHON) -m venv $(CONFORMANCE_VENV)
	$(CONFORMANCE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CONFORMANCE_VENV)/bin/python -m pip install --quiet -r conformance/requirements.txt
	touch $(CONFORMANCE_STAMP)

conformance: install $(CONFORMANCE_STAMP)
	$(CONFORMANCE_VENV)/bin/python conformance/run.py --server-python $(PY)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(CONFORMANCE_VENV) .pytest_cache .ruff_cache
