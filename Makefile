# Every target installs what it needs, so a fresh machine needs nothing but `make`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test` runs the suite against govsoc installed from its wheel, in a venv of its own:
# a file missing from the package data then fails a test instead of hiding behind the
# editable install's view of the source tree. `make run` stays on the editable .venv.
WHEEL_DIR := build/wheel
WHEEL_VENV := build/wheel-venv
WBIN := $(WHEEL_VENV)/bin
# Debian packages the suite uses: tshark (reference dissector), openssh-server and
# iproute2/nftables (the namespace test fleet), sqlite3, unzip/curl (local Elasticsearch),
# openssl (crypto interop tests), python3 (what Ansible runs on the fleet hosts),
# maven and a JDK 17 (fetch and run the local Elasticsearch), wrk (load for bench/api.py),
# the Pango/HarfBuzz libraries WeasyPrint renders report PDFs with, the Noto CJK fonts it
# embeds (and the console's zh-CN pages are drawn with), poppler-utils (pdftotext/pdftoppm:
# the report tests read the PDFs back), and chromium (the console's browser tests and
# bench/console.py: Playwright drives Debian's Chromium).
DEBS := tshark wrk openssh-server openssh-client iproute2 nftables sqlite3 unzip curl \
        dpkg-dev util-linux procps psmisc openssl python3 tar maven openjdk-17-jre-headless \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk poppler-utils \
        chromium
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# cargo (rustup's) builds the hunt's native EVTX filter into the package (native/evtx_filter)
export PATH := $(HOME)/.cargo/bin:$(PATH)
NATIVE_SRC := $(wildcard native/*/Cargo.toml native/*/Cargo.lock native/*/src/*.rs)

.PHONY: run test bench fuzz venv wheel-venv sysdeps es lint clean vendor-console

run: venv
	mkdir -p data
	$(BIN)/govsoc up

# The venv's `pytest` script (not `python -m pytest`, which puts the source tree on sys.path):
# tests import govsoc from the wheel; GOVSOC_TEST_INSTALL makes tests/test_packaging.py
# insist on it.
# The suite mostly waits (Elasticsearch, SSH to the fleet, subprocesses), so it runs on
# more xdist workers than cores; loadgroup keeps the fleet tests on one worker (tests/conftest.py).
PYTEST_XDIST ?= -n 3 --dist loadgroup
# the slowest tests in every run's output, so the suite's time can be kept in view
PYTEST_DURATIONS ?= --durations=25
test: sysdeps es wheel-venv
	GOVSOC_TEST_INSTALL=wheel $(WBIN)/pytest -q $(PYTEST_XDIST) $(PYTEST_DURATIONS) $(PYTEST_ARGS)

bench: sysdeps venv es
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ingest.py --shipper
	for b in bench/*.py; do [ "$$b" = bench/ingest.py ] || $(BIN)/python $$b || exit 1; done

# Coverage-guided fuzzing (atheris): each target for FUZZ_SECONDS; findings go to
# tests/fuzz/regressions/<target>/ and make the target fail
FUZZ_SECONDS ?= 60
fuzz: venv
	@for t in $$($(BIN)/python tests/fuzz/run_fuzz.py --list | cut -d' ' -f1); do \
	  echo "fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(BIN)/python tests/fuzz/run_fuzz.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=0 2>&1 | grep -E "^(#[0-9]+[[:space:]]+DONE|==|.*Error)" \
	    ; test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

venv: $(STAMP)

$(STAMP): pyproject.toml $(NATIVE_SRC)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Rebuilt every time (a few seconds): the wheel must be today's tree. build/lib and the
# egg-info go first: setuptools would carry what they hold (files since deleted, or no longer
# named by the package data) into the wheel.
wheel-venv:
	test -x $(WBIN)/python || $(PY) -m venv $(WHEEL_VENV)
	rm -rf build/lib build/bdist.* $(WHEEL_DIR) *.egg-info
	$(WBIN)/pip install -q --upgrade pip
	$(WBIN)/pip wheel -q --no-deps -w $(WHEEL_DIR) .
	whl=$$(ls $(WHEEL_DIR)/govsoc-*.whl) && \
	  $(WBIN)/pip install -q "$$whl[dev]" && \
	  $(WBIN)/pip install -q --force-reinstall --no-deps "$$whl"

sysdeps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

es:
	ES_PORT=$${GOVSOC_TEST_ES_PORT:-9250} scripts/es-local fetch   # the port the test fixture uses

# Re-fetch the console's browser libraries (htmx, ECharts; axe-core for the tests) from npm
# at the versions pinned in the script; the files are committed, so `make run` needs no Node.
vendor-console:
	scripts/vendor-console

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache native/*/target
