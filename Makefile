# The two set-up commands of the README: `make repro` and `make test`.
# Each creates the virtual environment first if it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= cpu,dev

.PHONY: repro test benchmark env clean-env

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

env: $(BIN)/.installed

repro: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: $(BIN)/.installed
	$(BIN)/pytest -m "not gpu" -q

RUN_JSON := benchmarks/results/cpu-$(shell date +%F).json

benchmark: $(BIN)/.installed
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-json=$(RUN_JSON)
	$(BIN)/python benchmarks/report.py $(RUN_JSON) -o docs/PERFORMANCE.md

clean-env:
	rm -rf $(VENV)
