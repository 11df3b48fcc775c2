# What every project of this family does the same way: an environment built from the lock, a
# `make help` by section, lint and format. The repository's Makefile includes this file from
# templates/common/; each project `make template` writes carries it beside its Makefile.
# Before including it, a Makefile may set HELP_SECTIONS (the order `make help` shows) and
# WARM_IMPORTS (modules whose bytecode set-up compiles once, see below).
SHELL := /bin/bash

VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-$(shell cksum requirements.lock pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
UV_PIN := $(shell grep -E '^uv==' requirements.lock)
SETUP_MK := $(lastword $(MAKEFILE_LIST))

# Keep bytecode out of the source tree: everything generated lives under state/.
export PYTHONPYCACHEPREFIX := $(CURDIR)/state/pycache
# ...and do write it there, even where the shell says not to (PYTHONDONTWRITEBYTECODE=1): without
# a cache every process compiles MLflow, GX, Prefect and scikit-learn from source again, ~10 s each.
unexport PYTHONDONTWRITEBYTECODE
# Hypothesis keeps its example cache under state/ as well.
export HYPOTHESIS_STORAGE_DIRECTORY := $(CURDIR)/state/hypothesis

##@ Set-up

.PHONY: help
help: ## List the targets by section, one line each
	@if [ -t 1 ] && [ -z "$$NO_COLOR" ]; then on='\033[36m'; bold='\033[1m'; off='\033[0m'; fi; \
	awk -v on="$$on" -v bold="$$bold" -v off="$$off" -v order="$(HELP_SECTIONS)" ' \
	  BEGIN { FS = ":.*## "; n = split(order, wanted, "|") } \
	  FNR == 1 { section = "" } \
	  /^##@ / { section = substr($$0, 5); if (!(section in seen)) { seen[section]; found[++m] = section } } \
	  /^[a-zA-Z0-9_-]+:.*## / { lines[section] = lines[section] sprintf("  %s%-18s%s %s\n", on, $$1, off, $$2) } \
	  END { printf "Usage: make <target>\n"; \
	    for (i = 1; i <= n; i++) { shown[wanted[i]]; if (wanted[i] in lines) printf "\n%s%s%s\n%s", bold, wanted[i], off, lines[wanted[i]] } \
	    for (i = 1; i <= m; i++) if (!(found[i] in shown)) printf "\n%s%s%s\n%s", bold, found[i], off, lines[found[i]] }' \
	  $(SETUP_MK) $(filter-out $(SETUP_MK),$(MAKEFILE_LIST))

# The environment, rebuilt whenever the lock or pyproject.toml changes.
$(STAMP): requirements.lock pyproject.toml
	@echo ">> setting up $(VENV) from requirements.lock"
	@python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "setup: needs python3 3.11 or newer with venv and ensurepip; python3 here is $$(python3 --version 2>&1)" \
	  "(on Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }
	@# A .venv left half-made by an interrupted set-up has no working pip: start it again.
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && python3 -m venv $(VENV); }
	@$(PY) -m pip install --quiet --disable-pip-version-check "$(UV_PIN)"
	@$(UV) pip install --quiet --python $(PY) -r requirements.lock
	@$(UV) pip install --quiet --python $(PY) --no-deps --config-settings editable_mode=compat -e .
	@# Compile the bytecode of what the code and its tests import, once, into state/pycache:
	@# otherwise the first `make test` compiles the same libraries in every process it starts.
	@$(if $(WARM_IMPORTS),echo ">> compiling the libraries' bytecode into state/pycache")
	@$(if $(WARM_IMPORTS),$(PY) -c "import $(WARM_IMPORTS)")
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: setup
setup: $(STAMP) ## Create the environment (.venv) from the lock; other targets do it when needed

.PHONY: lock
lock: $(STAMP) ## Re-resolve pyproject.toml into requirements.lock (name==version lines)
	$(UV) pip compile pyproject.toml --all-extras --python-version 3.11 --no-header \
	  --quiet -o requirements.lock

##@ Development

.PHONY: lint
lint: $(STAMP) ## Check lint and formatting with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

.PHONY: format
format: $(STAMP) ## Fix what ruff can fix and format the code
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .
