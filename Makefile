# SyncTV: `make run` serves a single node on :8080; `make test` installs what the tests
# need and runs lint and the whole suite (what CI runs).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Debian packages the tests use; installed with apt-get only when missing. chromium and
# ffmpeg are for the browser end-to-end tests (tests/e2e/): Playwright drives Debian's
# chromium, ffmpeg makes the test media; prometheus (with promtool) and nginx are run by
# the monitoring and load-balancer tests against deploy/.
APT_PACKAGES := redis-server redis-sentinel redis-tools postgresql-client chromium ffmpeg \
  prometheus nginx
# Stamp of the last `npm ci` (hls.js, served from node_modules): redone when the lock changes.
NODE_STAMP := node_modules/.synctv-npm-ci
PG_URL ?= postgresql://postgres@127.0.0.1:5432/synctv

.PHONY: run test lint format deps services clean bench bench-smoke e2e soak

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.runtime $(NODE_STAMP)
	$(PY) manage.py migrate --no-input -v 0
	$(PY) manage.py serve

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

services: deps
	@pg_isready -h 127.0.0.1 -p 5432 -q || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && exit 0; sleep 1; done; \
	  echo "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: services lint $(NODE_STAMP)
	test ! -d tests/js || node --test tests/js/
	$(PY) -m pytest

e2e: $(VENV)/.dev services $(NODE_STAMP)
	$(PY) -m pytest -m e2e tests/e2e

# The benchmark harness (bench/README.md): server on CPU 0, load generator on CPU 1; tables
# on stdout, JSON and a PNG in bench/results/. `bench` runs all five scenarios (under 15
# minutes), `bench-smoke` a small scenario (a) (under 3 minutes).
bench: $(VENV)/.dev services
	$(PY) bench/harness.py

bench-smoke: $(VENV)/.dev services
	$(PY) bench/harness.py --smoke

# The soak with faults (docs/soak.md): three nodes, a worker, Redis and PostgreSQL (database
# synctv_soak, created and migrated), 300 clients over 30 rooms for 10 minutes while Redis is
# killed, frozen and cut off and nodes are killed and drained; exits 1 if an invariant failed.
# SOAK_ARGS passes options, e.g. `make soak SOAK_ARGS="--duration 120 --clients 60 --rooms 6"`.
soak: $(VENV)/.dev services
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules
