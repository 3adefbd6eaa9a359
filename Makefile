# The one entry point for people and CI. `make` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build/demo

.DEFAULT_GOAL := help
.PHONY: help demo test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(BIN)/distill: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(BIN)/distill  ## build the sample store and run the whole pipeline on it (no network, no key)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/python samples/build_store.py $(DEMO)/store
	$(BIN)/distill report $(DEMO)/store

test: $(BIN)/distill  ## run the test suite
	$(BIN)/python -m pytest

lint: $(BIN)/distill  ## ruff
	$(BIN)/ruff check distill_cli tests bench samples

bench: $(BIN)/distill  ## run the benchmarks under bench/ (figures go in docs/benchmarks.md)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## remove the environment and build outputs
	rm -rf $(VENV) build
