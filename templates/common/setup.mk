# What every project of this family does the same way: an environment built from the lock, a
# `make help` by section, the lock's upkeep, lint and format. The repository's Makefile includes this file from
# templates/common/; each project `make template` writes carries it beside its Makefile.
# Before including it, a Makefile may set HELP_SECTIONS (the order `make help` shows) and
# WARM_IMPORTS (modules whose bytecode set-up compiles once, see below).
SHELL := /bin/bash

VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-$(shell cksum requirements.lock pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
# The lock: one file for every platform and Python the project supports (environment markers
# where they differ), each pin with the hashes of its files, and no index address. `make lock`
# keeps the pins it has and resolves what changed; `make lock-upgrade` moves every pin.
LOCK_FLAGS := --all-extras --group dev --universal --python-version 3.11 --generate-hashes \
  --no-header --quiet
# What `make lock-check` resolves the lock for: the platforms and Pythons the README claims.
# (Intel macOS is not one: the locked cryptography has no wheel for it.)
LOCK_PLATFORMS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu aarch64-apple-darwin \
  x86_64-pc-windows-msvc
LOCK_PYTHONS := 3.11 3.12 3.13
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
	@# uv installs the lock; pip installs uv itself, from the lock's own pin and hashes.
	@mkdir -p state/setup
	@awk '/^uv==/ { keep = 1 } keep { print } keep && !/\\$$/ { exit }' requirements.lock \
	  > state/setup/uv.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r state/setup/uv.txt
	@$(UV) pip install --quiet --python $(PY) --require-hashes -r requirements.lock
	@$(UV) pip install --quiet --python $(PY) --no-deps --config-settings editable_mode=compat -e .
	@# Compile the bytecode of what the code and its tests import, once, into state/pycache:
	@# otherwise the first `make test` compiles the same libraries in every process it starts.
	@$(if $(WARM_IMPORTS),echo ">> compiling the libraries' bytecode into state/pycache")
	@$(if $(WARM_IMPORTS),$(PY) -c "import $(WARM_IMPORTS)")
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: setup
setup: $(STAMP) ## Create the environment (.venv) from the lock; other targets do it when needed

.PHONY: lock
lock: $(STAMP) ## Re-resolve pyproject.toml into requirements.lock, keeping the pins it has
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock

.PHONY: lock-upgrade
lock-upgrade: $(STAMP) ## Re-resolve requirements.lock to the newest versions pyproject.toml allows
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -o requirements.lock

##@ Development

# pre-commit reads the files to check from git's index. `make lint` gives it a throwaway index
# under state/ that holds every file git would keep (tracked or new, never ignored), so it checks
# the same files in a clone, before `git add`, and in a folder that is no repository (a copy
# `make template` wrote, an unpacked archive). The hooks run from .venv; their cache is in state/.
LINT_GIT := $(CURDIR)/state/lint/git
PRE_COMMIT := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PRE_COMMIT_HOME="$(CURDIR)/state/pre-commit" \
  GIT_DIR="$(LINT_GIT)" GIT_WORK_TREE="$(CURDIR)" $(PY) -m pre_commit run --all-files

.PHONY: lint
lint: $(STAMP) ## Run the checks of .pre-commit-config.yaml (ruff, file hygiene) on every file
	@rm -rf "$(LINT_GIT)" && mkdir -p "$(LINT_GIT)" \
	  && export GIT_DIR="$(LINT_GIT)" GIT_WORK_TREE="$(CURDIR)" && git init --quiet && git add --all
	@$(PRE_COMMIT) --show-diff-on-failure

.PHONY: format
format: $(STAMP) ## Fix what the checks can fix (format, whitespace, end of file), then run them again
	@# The first run fixes and fails on what it fixed; the second shows what is left.
	@$(MAKE) --no-print-directory lint >/dev/null 2>&1 || true
	@$(MAKE) --no-print-directory lint

.PHONY: lock-check
lock-check: $(STAMP) ## Resolve the lock's install on each platform and Python it claims (reaches the index)
	@# A dry run into a throwaway target, wheels only: it fails when a pin has no wheel there,
	@# or when the install would need a package the lock does not pin (every one needs a hash).
	@for platform in $(LOCK_PLATFORMS); do for python in $(LOCK_PYTHONS); do \
	  printf '%s, Python %s: ' $$platform $$python; \
	  $(UV) pip install --dry-run --require-hashes --only-binary :all: --quiet \
	    --python-platform $$platform --python-version $$python --target state/lock-check \
	    -r requirements.lock && echo ok || exit 1; \
	done; done
