# Every target installs what it needs, so a fresh machine needs nothing but `make`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the suite uses: tshark (reference dissector), openssh-server and
# iproute2/nftables (the namespace test fleet), sqlite3, unzip/curl (local Elasticsearch),
# openssl (crypto interop tests), python3 (what Ansible runs on the fleet hosts),
# maven and a JDK 17 (fetch and run the local Elasticsearch), wrk (load for bench/api.py).
DEBS := tshark wrk openssh-server openssh-client iproute2 nftables sqlite3 unzip curl \
        dpkg-dev util-linux procps psmisc openssl python3 tar maven openjdk-17-jre-headless
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test bench fuzz venv sysdeps es lint clean

run: venv
	mkdir -p data
	$(BIN)/govsoc up

test: sysdeps venv es
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: sysdeps venv es
	$(BIN)/python bench/ingest.py
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

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

sysdeps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

es:
	ES_PORT=9250 scripts/es-local fetch   # the port the test fixture uses

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
