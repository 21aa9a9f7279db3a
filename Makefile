# The README's two commands are `make run` and `make test`; everything else serves them.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: install debian-packages run test unit check lint types bench quality costs lock clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages: chromium, which the browser tests (tests/processing/test_pages.py)
# drive, and libturbojpeg0, for the fast JPEG path (imaging/encode.py; without it JPEGs
# go through Pillow). Installed with apt-get when dpkg does not have them.
DEBIAN_PACKAGES := chromium libturbojpeg0
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
debian-packages:
	@dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); }

install: $(BIN)/.installed node_modules/.installed debian-packages

# The service on the embedded default (SQLite, filesystem broker, ./storage): the web
# server, a Celery worker, the webhooks' worker and beat (the sweep), stopped together by
# Ctrl-C.
run: $(BIN)/.installed
	@# A service already running on this VAR_DIR holds its web server's lock (config/gunicorn.py):
	@# stop before anything below, which would delete its counters and start a second worker and beat.
	@lock="$${VAR_DIR:-var}/gunicorn.ctl.lock"; \
	if [ -e "$$lock" ] && command -v flock >/dev/null && ! flock -n "$$lock" true; then \
	  echo "A service is already running on $${VAR_DIR:-var} (web server pid $$(cat "$$lock")):" \
	    "stop it first (Ctrl-C where it runs), or give this one a VAR_DIR and a PORT of its own." >&2; \
	  exit 1; \
	fi
	$(BIN)/python manage.py migrate --noinput
	# The account, user and API key `local` on the first start; a login link every time.
	PORT=$(PORT) $(BIN)/python manage.py local_setup
	# Prometheus counters of the processes that ran here before (config/settings.py).
	rm -rf "$${PROMETHEUS_MULTIPROC_DIR:-$${VAR_DIR:-var}/metrics}"
	@echo "Service at http://127.0.0.1:$(PORT)/  (Ctrl-C stops it)"
	HOST=127.0.0.1 PORT=$(PORT) $(BIN)/honcho --no-prefix start web worker webhooks beat

# Lint, types, the architecture's import contracts (pyproject.toml), migrations in step
# with the models, and the whole test suite. The tests need nothing running beforehand;
# with DATABASE_URL and CELERY_BROKER_URL set they also run against PostgreSQL and Redis.
# mypy's Django plugin loads the settings too, so the key is set for the whole target.
test: export SECRET_KEY ?= tests-only-not-secret
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-logo
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

# The edit-test loop: the tests that start no process (tests/conftest.py says which),
# in seconds. `make test` stays the gate.
unit: export SECRET_KEY ?= tests-only-not-secret
unit: $(BIN)/.installed
	$(BIN)/pytest -m "not e2e" -q

check: test

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]'
	touch $@

# The benchmark (bench/run.py): needs PostgreSQL and Redis, as described there, and
# libturbojpeg0 (debian-packages), without which JPEGs would take the slower Pillow path.
bench: $(BIN)/.bench-installed debian-packages
	SECRET_KEY=$${SECRET_KEY:-bench-only-not-secret} $(BIN)/python -m bench.run $(BENCH_ARGS)

# The perceptual quality report (bench/quality.py): 25 photographs, 12 from Debian's
# mate-backgrounds package and 13 of scikit-image's samples, through each quality mode,
# target and format: scores, bytes and speed, for BENCHMARKS.md. Needs no service.
QUALITY_PACKAGES := mate-backgrounds
quality: $(BIN)/.bench-installed debian-packages
	@dpkg -s $(QUALITY_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(QUALITY_PACKAGES); }
	$(BIN)/python -m bench.quality $(QUALITY_ARGS)

# SQL statements and broker messages per image (bench/costs.py), for the capacity guide.
costs: $(BIN)/.installed
	$(BIN)/python -m bench.costs

# Refresh requirements.lock from what pyproject.toml asks for.
lock:
	rm -rf /tmp/imgsvc-lock && $(PYTHON) -m venv /tmp/imgsvc-lock
	/tmp/imgsvc-lock/bin/pip install --quiet --upgrade pip==26.3
	/tmp/imgsvc-lock/bin/pip install --quiet -e '.[dev,bench]'
	/tmp/imgsvc-lock/bin/pip freeze --exclude-editable | sort > requirements.lock

clean:
	rm -rf $(VENV) node_modules var .mypy_cache .ruff_cache .pytest_cache
