# scimlet: every target is one command on a fresh machine.
# The interpreter the venvs are built with: the distribution's own /usr/bin/python3 when it is 3.11
# or newer and can make venvs, else python3 on PATH; `make PYTHON=...` picks another. Debian builds
# its python3 with profile-guided optimisation and LTO; the pyenv python3 on PATH here is built
# without them and runs scimlet 13-16% slower (server CPU per request, paired, both servers on one core at once).
ifndef PYTHON
PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1 && echo /usr/bin/python3 || echo python3)
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The third-party conformance checkers get their own environment: their dependencies never shape ours.
CONFORMANCE_VENV := .venv-conformance
CONFORMANCE_STAMP := $(CONFORMANCE_VENV)/.installed
# schemathesis too: it brings its own hypothesis and a pytest plugin.
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed

.PHONY: install run test test-fast coverage stress lint bench bench-quick bench-scale conformance schemathesis screenshots postgres clean

install: $(STAMP)

# A venv with pinned requirements: $(call make_venv,VENV,REQUIREMENTS,STAMP).
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -r $(2)
	touch $(3)
endef

# requirements-dev.txt includes requirements.txt.
$(STAMP): requirements.txt requirements-dev.txt
	$(call make_venv,$(VENV),requirements-dev.txt,$@)

run: install
	$(PY) app.py serve

# The suite on every core (pytest-xdist), then the tests marked `serial` (they measure latency or memory,
# or load every core themselves) alone; -rs lists each skipped test with its reason. The PostgreSQL tests
# start a throwaway PostgreSQL 15 server of their own (tests/pg_server.py), one per pass, and remove it after.
# `make test COVERAGE=1` (CI; `make coverage`) measures coverage in the parallel pass and in every server it
# starts, prints the report and fails when a module of scim/ or storage/ is covered 90% or less.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -rs
ifeq ($(COVERAGE),1)
COVERAGE_FLAGS := --cov --cov-report=
endif

# The serial pass is never traced: coverage slows Python several times over, and those tests hold
# the server's latency and memory to budgets.
test: install
	$(PYTEST) $(COVERAGE_FLAGS) -n $(TEST_WORKERS) -m "not serial"
	$(PYTEST) -m serial
	$(if $(COVERAGE_FLAGS),$(VENV)/bin/coverage report)
	$(if $(COVERAGE_FLAGS),$(PY) tests/coverage_floor.py)

# Unit, storage and property tests only: no server process, no network; seconds.
test-fast: install
	$(PYTEST) -n $(TEST_WORKERS) tests/unit tests/storage tests/property

coverage:
	$(MAKE) test COVERAGE=1

# The hardening classes at full size, well past every limit, printing the figures docs/security.md quotes.
stress: install
	$(PY) -m pytest -q -s -p no:cacheprovider hardening/stress

$(CONFORMANCE_STAMP): conformance/requirements.txt
	$(call make_venv,$(CONFORMANCE_VENV),$<,$@)

# `make conformance DATABASE_URL=postgresql://...` (and the same for schemathesis): the server on that
# empty database instead of a temporary SQLite file (.ci/run makes one with tests/pg_server.py). Taken from
# make's command line only: a DATABASE_URL in the environment may name a database that matters.
DATABASE_FLAG := $(if $(filter command line,$(origin DATABASE_URL)),--database-url '$(DATABASE_URL)')

conformance: install $(CONFORMANCE_STAMP)
	$(CONFORMANCE_VENV)/bin/python conformance/run.py --server-python $(PY) $(DATABASE_FLAG)

$(FUZZ_STAMP): hardening/requirements.txt
	$(call make_venv,$(FUZZ_VENV),$<,$@)

# Fuzz a fresh server from its /openapi.json; fails on any 5xx. SCHEMATHESIS_EXAMPLES=N for more;
# DATABASE_URL=... as for conformance.
schemathesis: install $(FUZZ_STAMP)
	$(PY) hardening/schemathesis_run.py --server-python $(PY) $(DATABASE_FLAG)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# scimlet beside scim2-server (installed into bench/.venv-baseline), both pinned to CPU 0, taking their
# phases in turn; where PostgreSQL 15 is installed, scimlet on a throwaway PostgreSQL server (pinned to
# CPU 0 too) takes the same phases, then one instance against two on one database; about 10 minutes.
# Writes bench/results/<date>.md. bench-quick: a one-minute smoke run of the same phases.
bench: install
	$(PY) bench/run.py

bench-quick: install
	$(PY) bench/run.py --quick

# scimlet with 10,000, 100,000 and 1,000,000 users in one IdP (10,000 groups, one of 100,000 members, a chain
# nested 5 levels deep), bulk-loaded, on SQLite and (where PostgreSQL 15 is installed) on a throwaway
# PostgreSQL server; every operation timed for a few seconds at each size, pinned as `make bench` is; under
# 10 minutes. Writes bench/results/<date>-scale.md, .json and .png. `make bench-scale SCALE_SIZES=10000,100000`
# for fewer sizes. Not in CI (too slow): tests/bench/test_bench_scale.py runs it at tiny sizes.
SCALE_SIZES ?= 10000,100000,1000000
bench-scale: install
	$(PY) bench/scale.py --sizes $(SCALE_SIZES)

# The admin console's README pictures: the browser test, with a fuller directory, saving PNGs.
screenshots: install
	SCIMLET_SCREENSHOTS=1 $(PY) -m pytest -q tests/admin/test_admin_browser.py tests/admin/test_browser_idp_care.py \
		tests/admin/test_browser_live_log.py tests/admin/test_browser_events.py tests/admin/test_browser_log_changes.py

# A throwaway PostgreSQL 15 server (as the tests use) until Ctrl-C: prints its URL; its data is removed after.
# `python tests/pg_server.py createdb URL` prints the URL of a new empty database on it.
postgres: install
	$(PY) tests/pg_server.py

clean:
	rm -rf $(VENV) $(CONFORMANCE_VENV) $(FUZZ_VENV) .pytest_cache .ruff_cache .mypy_cache
