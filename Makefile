# scimlet: every target is one command on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The third-party conformance checkers get their own environment: their dependencies never shape ours.
CONFORMANCE_VENV := .venv-conformance
CONFORMANCE_STAMP := $(CONFORMANCE_VENV)/.installed
# schemathesis too: it brings its own hypothesis and a pytest plugin.
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed

.PHONY: install run test lint bench bench-quick conformance schemathesis screenshots clean

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

$(FUZZ_STAMP): hardening/requirements.txt
	$(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FUZZ_VENV)/bin/python -m pip install --quiet -r hardening/requirements.txt
	touch $(FUZZ_STAMP)

# Fuzz a fresh server from its /openapi.json; fails on any 5xx. SCHEMATHESIS_EXAMPLES=N for more.
schemathesis: install $(FUZZ_STAMP)
	$(PY) hardening/schemathesis_run.py --server-python $(PY)

lint: install
	$(VENV)/bin/ruff check .

# scimlet beside scim2-server (installed into bench/.venv-baseline), both pinned to CPU 0; about 7 minutes.
# Writes bench/results/<date>.md. bench-quick: a 30-second smoke run of the same phases.
bench: install
	$(PY) bench/run.py

bench-quick: install
	$(PY) bench/run.py --quick

# The admin console's README pictures: the browser test, with a fuller directory, saving PNGs.
screenshots: install
	SCIMLET_SCREENSHOTS=1 $(PY) -m pytest -q tests/admin/test_admin_browser.py

clean:
	rm -rf $(VENV) $(CONFORMANCE_VENV) $(FUZZ_VENV) .pytest_cache .ruff_cache
