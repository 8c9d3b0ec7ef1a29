# The two set-up commands of the README: `make repro` and `make test`.
# Each creates the virtual environment first if it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= cpu,dev

.PHONY: repro test benchmark plots env clean-env

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

# `dvc plots show` with vega from the npm registry beside the page (DVC's own page loads it from a CDN: blank offline).
VEGA := vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
plots: $(BIN)/.installed
	mkdir -p $(VENV)/vega && cd $(VENV)/vega && for p in $(VEGA); do n=$${p%@*}; test -f $$n.min.js || \
	  { npm pack --silent $$p >/dev/null && tar xzf $$n-$${p#*@}.tgz package/build/$$n.min.js && mv package/build/$$n.min.js . && rm -rf package $$n-*.tgz; }; done
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc plots show --html-template docs/plots_template.html -o dvc_plots
	cp $(VENV)/vega/*.min.js dvc_plots/
	@echo "open dvc_plots/index.html (works offline)"

RUN_JSON := benchmarks/results/cpu-$(shell date +%F).json

benchmark: $(BIN)/.installed
	$(BIN)/pytest benchmarks --benchmark-only --benchmark-json=$(RUN_JSON)
	$(BIN)/python benchmarks/report.py $(RUN_JSON) -o docs/PERFORMANCE.md

clean-env:
	rm -rf $(VENV)
