# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LBPAY := $(VENV)/bin/lbpay
# npm ci's own record in node_modules: reinstalled whenever the kit's lock file changes.
KIT_NPM := clients/vscode/node_modules/.package-lock.json
HOST ?= 127.0.0.1
PORT ?= 5000
export LBPAY_PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
# Python keeps its compiled modules (git-ignored __pycache__ folders) even where the shell says
# not to: every test worker and every server a test starts would otherwise compile the app again
# (measured: collecting the suite took 8.1 CPU-s per worker without them, 3.4 s with them).
unexport PYTHONDONTWRITEBYTECODE
# What to repeat after `make admin` so it names the same address as this `make run`.
ADDRESS_ARGS := $(if $(filter-out 127.0.0.1,$(HOST)), HOST=$(HOST))$(if $(filter-out 5000,$(PORT)), PORT=$(PORT))

.PHONY: run test test-fast system-deps typecheck clean static-vendor
# htmx for the console, from the npm registry at the exact version in package-lock.json, served
# from static/vendor/ (git-ignored; no CDN, so the CSP stays script-src 'self').
VENDOR := static/vendor/htmx.min.js

$(VENDOR): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js $@

static-vendor: $(VENDOR)

# Dependencies come from the lock files, exact versions with hashes (the image installs the same
# requirements.lock); the app itself is installed editable on top, without resolving anything.
$(VENV)/.runtime: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The test, PostgreSQL and benchmark extras, locked together with the runtime's versions.
# python-alipay-sdk, the tests' Alipay peer, goes into a folder of its own: its package is named
# `alipay` like ours, so it must never be importable by that name (tests load it under another).
$(VENV)/.test: $(VENV)/.runtime requirements-test.lock requirements-peers.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements-test.lock
	rm -rf $(VENV)/peers/python-alipay-sdk
	$(PY) -m pip install --quiet --require-hashes --no-deps --no-build-isolation \
	  --target $(VENV)/peers/python-alipay-sdk -r requirements-peers.lock
	touch $@

# Regenerate both lock files from pyproject.toml (pip-tools); commit them with the pyproject change.
.PHONY: lock
lock: $(VENV)/.runtime
	$(PY) -m pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --all-build-deps \
	  -o requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	  --extra test --extra postgres --extra bench -c requirements.lock -o requirements-test.lock pyproject.toml
	echo "python-alipay-sdk" | CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet \
	  --generate-hashes --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --no-header \
	  -P python-alipay-sdk -o - - | sed -n '/^python-alipay-sdk==/,/# via/p' | grep -v '# via' \
	  > requirements-peers.lock.new
	(sed -n '/^#/p' requirements-peers.lock; cat requirements-peers.lock.new) > requirements-peers.lock.tmp
	mv requirements-peers.lock.tmp requirements-peers.lock; rm requirements-peers.lock.new

# The browser tests drive Debian's Chromium, its headless-shell build; nothing downloads a browser of its own.
system-deps:
	@dpkg -s chromium-headless-shell fonts-noto-cjk nodejs zbar-tools >/dev/null 2>&1 || { \
	  echo "installing chromium-headless-shell, fonts, node and zbar from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell fonts-noto-cjk nodejs zbar-tools >/dev/null; }

run: $(VENV)/.runtime $(VENDOR)
	$(LBPAY) init
	@$(LBPAY) courses list | grep -q '^cpp-primer-5th' || \
	  $(LBPAY) courses add cpp-primer-5th --title "C++ Primer 第5版 · 全部章节" --price-fen 9900
	@echo
	@echo "  Learning Buddy Pay (sandbox mode: no merchant account needed)"
	@echo "  Buy the demo course:   $(LBPAY_PUBLIC_BASE_URL)/buy/cpp-primer-5th"
	@echo "  All courses:           $(LBPAY_PUBLIC_BASE_URL)/"
	@echo "  Creator's console:     $(LBPAY_PUBLIC_BASE_URL)/admin"
	@echo "  Extension API:         $(LBPAY_PUBLIC_BASE_URL)/api/v1/courses"
	@echo "  WeChat Pay sandbox:    $(LBPAY_PUBLIC_BASE_URL)/sandbox/"
	@echo "  Alipay sandbox:        $(LBPAY_PUBLIC_BASE_URL)/sandbox/alipay/"
	@echo
	@echo "  A console account, in another terminal:  make admin EMAIL=you@example.com$(ADDRESS_ARGS)"
	@echo "    (or: $(if $(ADDRESS_ARGS),LBPAY_PUBLIC_BASE_URL=$(LBPAY_PUBLIC_BASE_URL) )$(LBPAY) admin create you@example.com)"
	@echo "  Every tool lives in $(VENV)/, nothing is installed system-wide: $(LBPAY) --help lists the"
	@echo "  commands; . $(VENV)/bin/activate puts lbpay on your PATH for this shell."
	@echo "  One log line per request below; Ctrl-C stops the server."
	@echo
	$(VENV)/bin/gunicorn "app:create_app()" --bind $(HOST):$(PORT) --workers 1 --threads 8 \
	  --graceful-timeout 20

# A console account for /admin: asks for the password (or PASSWORD_FILE=…); the printed sign-in
# address is this Makefile's LBPAY_PUBLIC_BASE_URL, the same one `make run` serves (same HOST/PORT).
.PHONY: admin
admin: $(VENV)/.runtime
	@test -n "$(EMAIL)" || { echo "usage: make admin EMAIL=you@example.com$(ADDRESS_ARGS)"; exit 2; }
	@$(LBPAY) init >/dev/null
	$(LBPAY) admin create "$(EMAIL)" $(if $(PASSWORD_FILE),--password-file "$(PASSWORD_FILE)")


# Whole test files go to TEST_WORKERS processes (pytest-xdist), the longest first; a file's
# module fixtures (the kit's build, Chromium) stay within one worker. `make test` leaves out the seven
# whole-toolchain files marked `long` (tests/conftest.py's LONG_RUNNING); `make test-long` runs
# them, and `.ci/run` runs both.
TEST_WORKERS ?= 4
PYTEST_PARALLEL := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: $(VENV)/.test system-deps $(KIT_NPM) $(VENDOR)
	$(PY) -m mypy
	$(PYTEST_PARALLEL) -m "not long"

.PHONY: test-long
test-long: $(VENV)/.test system-deps $(KIT_NPM) $(VENDOR)
	$(PYTEST_PARALLEL) -m long

# The whole suite, long files included, with two CPU hogs beside it, as on a developer's busy
# machine: nothing may race a timer of its own. The hogs stop when this recipe ends, or by themselves after an hour at most.
.PHONY: test-under-load
test-under-load: $(VENV)/.test system-deps $(KIT_NPM) $(VENDOR)
	@$(PY) tests/cpu_hogs.py --hogs 2 --seconds 3600 & hogs=$$!; \
	$(PYTEST_PARALLEL); status=$$?; \
	kill $$hogs 2>/dev/null; wait $$hogs 2>/dev/null; exit $$status

# Refresh the screenshots in docs/screenshots from the browser tests.
.PHONY: screenshots
screenshots: $(VENV)/.test system-deps $(VENDOR)
	LBPAY_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q -m browser

# The extension client (clients/extension) under `node --test`, against the real server in sandbox
# mode that tests/test_learner_client.py starts; `make test` runs the same file with everything else.
# The VS Code kit (clients/vscode): its pinned TypeScript toolchain from package-lock.json, then tsc,
# its Node tests in a fake VS Code against a live sandbox server, and its panel page in Chromium.
$(KIT_NPM): clients/vscode/package-lock.json clients/vscode/package.json
	cd clients/vscode && npm ci --no-audit --no-fund --silent
	touch $@

.PHONY: test-vscode
test-vscode: $(VENV)/.test system-deps $(KIT_NPM)
	$(PY) -m pytest -q tests/test_vscode_kit.py

# The kit on the real extension (terminail/learning-buddy, learning-primer-buddy/): its jest suite before and
# after, apply.sh and the printed patch, npm ci, its tsc twice, vsce ls, and a headless drive of the compiled
# extension against our server in sandbox mode (tests/real_extension/run.py). EXT: a git directory or checkout
# of it, or the folder; without EXT it prints how to get one (CI has no copy of it).
.PHONY: test-real-extension
test-real-extension: $(VENV)/.test $(KIT_NPM)
	@if [ -z "$(EXT)" ]; then $(PY) tests/real_extension/run.py; else $(PY) tests/real_extension/run.py "$(EXT)"; fi

.PHONY: test-client
test-client: $(VENV)/.test system-deps
	$(PY) -m pytest -q tests/test_learner_client.py

test-fast: $(VENV)/.test
	$(PY) -m pytest -q -m "not browser"

# The full reliability suite (issue 3): real buyers, gunicorn and the sandbox under faults, ~6 min.
# Prints one table and exits non-zero when a goal is missed; `make test-long` runs the short form.
.PHONY: reliability
reliability: $(VENV)/.test
	PYTHONPATH=.:tests $(PY) -m reliability

# The suite against a real PostgreSQL: Debian's package on loopback, or the server that
# LBPAY_TEST_DATABASE_URL names (CI's service container); separate from `make test`.
.PHONY: test-postgres
test-postgres: $(VENV)/.test system-deps $(KIT_NPM) $(VENDOR)
	PY=$(PY) TEST_WORKERS=$(TEST_WORKERS) sh deploy/test-postgres.sh

# Two app servers (gunicorn, scheduler on in both) on one PostgreSQL, a crowd of buyers through both:
# one license per payment, jobs never run twice at once, nothing lost. `make test-postgres` runs it too.
.PHONY: test-two-servers
test-two-servers: $(VENV)/.test
	$(PY) -m pip install --quiet -e '.[postgres]'
	PY=$(PY) TEST_WORKERS=2 sh deploy/test-postgres.sh tests/test_two_servers.py tests/test_postgres.py

# The clients' copy of the server's contract: the generated part of clients/vscode/src/errors.ts from
# billing/errors.py and openapi.yaml (tests/test_contract.py fails in `make test` when it is stale).
.PHONY: contract
contract: $(VENV)/.runtime
	$(PY) clients/contract.py

typecheck: $(VENV)/.test
	$(PY) -m mypy

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache

# A performance benchmark of the hot paths (a few minutes; sizes via BENCH_* variables, see
# docs/performance.md). The first run also generates a 1,000,000-order database, kept for later runs.
.PHONY: bench
bench: $(VENV)/.test
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) bench/run.py
