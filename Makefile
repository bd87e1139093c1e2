# Two commands for a newcomer: `make run` and `make test`. Everything else is detail.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8443

.PHONY: venv tools run test lint typecheck unit certs bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

certs/tls.crt: | venv
	$(BIN)/eip-guard certs --out certs --dns eip-guard.eip-guard.svc --dns localhost --ip 127.0.0.1 >/dev/null

certs: certs/tls.crt

run: venv certs
	@echo "Serving the webhook on https://$(HOST):$(PORT) from examples/cluster.yaml"
	@echo "In another terminal, send the two example AdmissionReviews:"
	@echo "  for f in examples/review-bad.json examples/review-good.json; do curl -s --cacert certs/ca.crt -H 'Content-Type: application/json' --data @\$$f https://localhost:$(PORT)/validate-eip; echo; done"
	$(BIN)/eip-guard serve --cluster examples/cluster.yaml --tls-cert-file certs/tls.crt --tls-key-file certs/tls.key --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

# Debian tools the tests drive (command:package): the agent's kernel tests a real bridge,
# the chart's alert tests Prometheus's promtool.
TOOLS := ip:iproute2 arping:iputils-arping ndisc6:ndisc6 promtool:prometheus

# Installed here when missing and root; as another user the kernel tests skip (they need
# root) and the alert tests fail, saying what to install.
tools:
	@need=$$(for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || printf "%s " $${t#*:}; done); \
	if [ -n "$$need" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian packages for the kernel tests: $$need"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $$need >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$need >/dev/null; }; \
	fi

unit: venv tools
	$(BIN)/pytest

test: lint typecheck unit

# The HTTPS section drives the servers with wrk (Debian); installed here when missing and root.
bench: venv
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; } || echo "wrk missing: the HTTPS section will be skipped"
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
