# sceval: one-command setup, demo and tests on Debian 12.
#   make demo   install everything (apt R packages, .venv, sceval, R package) and run the default benchmark
#   make test   the same setup, then pytest and testthat
# Setup is idempotent: each step leaves a stamp and is skipped while its inputs are unchanged.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
R_PACKAGES := r-base-core r-base-dev r-cran-reticulate r-bioc-singlecellexperiment r-cran-seurat \
  r-cran-testthat r-cran-matrix r-cran-jsonlite r-bioc-scater r-bioc-singler r-cran-roxygen2 \
  r-bioc-org.hs.eg.db r-bioc-sva
R_SOURCES := DESCRIPTION NAMESPACE $(wildcard R/*.R)
DEMO_OUT ?= sceval-out/demo

.PHONY: setup demo test pytest testthat lint clean apt venv rpkg

setup: $(STAMPS)/apt $(STAMPS)/venv $(STAMPS)/rpkg

apt: $(STAMPS)/apt
venv: $(STAMPS)/venv
rpkg: $(STAMPS)/rpkg

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@if dpkg -s $(R_PACKAGES) >/dev/null 2>&1 && $(PYTHON) -m venv --help >/dev/null 2>&1; then \
	  echo "apt: R packages already installed"; \
	else \
	  echo "apt: installing R and Bioconductor packages from Debian"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(R_PACKAGES) python3-venv python3-dev >/dev/null; \
	fi
	@touch $@

# torch first (the CPU wheel pinned in DEVELOPERS.md; an unpinned torch pulls a CUDA build),
# then the locked dependency set, then sceval itself (editable, from pyproject.toml).
$(STAMPS)/venv: requirements/lock.txt pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# The R package records which Python it should use (this repo's .venv).
$(STAMPS)/rpkg: $(R_SOURCES) $(STAMPS)/venv $(STAMPS)/apt $(shell find inst -type f 2>/dev/null)
	@mkdir -p $(STAMPS)
	@echo "$(abspath $(PY))" > inst/sceval_python.txt
	R CMD INSTALL --no-test-load --no-docs . >$(STAMPS)/rpkg.log 2>&1 || (cat $(STAMPS)/rpkg.log; exit 1)
	@touch $@

demo: setup
	$(VENV)/bin/sceval run --out $(DEMO_OUT)

pytest: setup
	$(PY) -m pytest -q tests/python

testthat: setup
	SCEVAL_PYTHON=$(abspath $(PY)) Rscript -e 'res <- testthat::test_dir("tests/testthat", package = "sceval", load_package = "installed", reporter = "summary", stop_on_failure = TRUE)'

test: pytest testthat

lint: setup
	$(VENV)/bin/ruff check python tests/python benchmarks
	$(VENV)/bin/ruff format --check python tests/python benchmarks

clean:
	rm -rf $(STAMPS) sceval-out .pytest_cache
