# postoffice — the two front-door commands and the developer targets.
#   make run    create .venv, install, start `postoffice serve` on the embedded defaults
#   make test   create .venv, install with the test extra, lint, types, contracts, tests
#   make bench  SMTP, relay, routing, TLS/AUTH, POP3 and IMAP (Postfix/Dovecot side by side: docs/benchmarks.md)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test check bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/postoffice serve

test: $(VENV)/.installed-test
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/check

docs: $(VENV)/.installed
	$(BIN)/python -m postoffice.config.docs > docs/config.md

bench: $(VENV)/.installed-test
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/smtp_bench.py
	$(BIN)/python bench/relay_bench.py
	$(BIN)/python bench/routing_bench.py
	$(BIN)/python bench/auth_bench.py
	$(BIN)/python bench/pop3_bench.py
	$(BIN)/python bench/imap_bench.py

clean:
	rm -rf $(VENV) postoffice-data .mypy_cache .pytest_cache .ruff_cache
