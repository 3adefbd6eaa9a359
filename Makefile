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

# No key and no network: the job's teacher calls are replayed from the sample store, and the
# anthropic SDK only needs *a* key value to start, so the job's step gets the dummy `replay-no-key`.
demo: $(BIN)/distill  ## the whole pipeline on the sample data: build, gate, route a real job, drift, report (no network, no key)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo; echo "== 1/7 The teacher's calls: 13,083 bank support messages claude-sonnet-5-5 classified into 77 intents"
	$(BIN)/python samples/build_store.py $(DEMO)/store
	@echo; echo "== 2/7 Build a student from the teacher's answers: a local classifier (about a minute)"
	$(BIN)/distill build-student $(DEMO)/store -o $(DEMO)/intent.student --task support-intent --kind classifier
	@echo; echo "== 3/7 Gate it on held-out calls it never trained on: only a passing student may serve"
	$(BIN)/distill gate $(DEMO)/intent.student $(DEMO)/store --verdicts $(DEMO)/intent.student.verdicts.parquet
	@echo; echo "== 4/7 Traffic for the job: 300 held-out support messages"
	$(BIN)/python samples/demo_messages.py $(DEMO)/intent.student $(DEMO)/store -n 300 -o $(DEMO)/messages.txt
	@echo; echo "== 5/7 Run the real job (samples/support_job.py, anthropic SDK) under distill record: the student"
	@echo "        answers what it is sure of; the teacher answers the rest, replayed from the store"
	ANTHROPIC_API_KEY=replay-no-key $(BIN)/distill record \
	  --store $(DEMO)/runs --task support-intent --student $(DEMO)/intent.student --replay $(DEMO)/store \
	  --shadow-seed 77 -- $(BIN)/python samples/support_job.py $(DEMO)/messages.txt > $(DEMO)/answers.tsv
	@echo "        the job's own output, $(DEMO)/answers.tsv (intent, message):"; head -n 5 $(DEMO)/answers.tsv
	@echo; echo "== 6/7 Drift: the student's answers against the teacher's (shadow calls), its inputs, declines, answers"
	-$(BIN)/distill drift $(DEMO)/intent.student $(DEMO)/runs $(DEMO)/store --log $(DEMO)/drift.parquet \
	  --verdicts $(DEMO)/intent.student.verdicts.parquet
	@echo; echo "== 7/7 The report: who answered the job's calls, what they cost, what the student saved"
	$(BIN)/distill report $(DEMO)/runs $(DEMO)/intent.student.verdicts.parquet $(DEMO)/drift.parquet

test: $(BIN)/distill  ## run the test suite
	$(BIN)/python -m pytest

lint: $(BIN)/distill  ## ruff, and the import contracts in pyproject.toml (import-linter)
	$(BIN)/ruff check distill_cli tests bench samples
	$(BIN)/lint-imports

bench: $(BIN)/distill  ## run the benchmarks under bench/ (figures go in docs/benchmarks.md)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## remove the environment and build outputs
	rm -rf $(VENV) build
