# The project's user interface. Every target is a thin wrapper over a Python entry point, so
# the same thing runs without make: the README lists each command. `make help` lists them by
# section, in this file's order.
.DEFAULT_GOAL := help
HELP_SECTIONS := Set-up|Level 0|Level 1|Level 2|Workshop|Team|Development
# Set-up compiles the bytecode of what the levels and their tests import once (~25 s), so the
# first `make test` does not compile MLflow, GX and Prefect in both of its workers at once.
WARM_IMPORTS := level1_devops.serve, level1_devops.train, level2_pipelines.pipeline, \
  level2_pipelines.serve, level2_pipelines.ops.warm, prefect.testing.utilities, nbclient, \
  nbconvert, ipykernel, schemathesis, xdist
# The environment, `help`, `setup`, `lock`, `lint` and `format`: written once for this repository
# and for every project `make template` writes.
include templates/common/setup.mk

# Level 2's tools keep their state under state/ too, and stay offline.
export PREFECT_HOME := $(CURDIR)/state/level2/prefect
# Prefect's telemetry heartbeat makes the ephemeral server log "database is locked".
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# The ephemeral Prefect server takes 13-23 s to start here; its default limit is 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := 1

# Prefect creates its home folder but not the folders above it.
$(PREFECT_HOME):
	@mkdir -p $@


##@ Set-up

.PHONY: clean
clean: ## Remove everything generated (state/ and .venv/): the tree as cloned
	@# What level2-up and team-up started would run on without its folder: stopped first. Team
	@# mode's databases live in PostgreSQL, not in state/: dropped if this checkout made them.
	-@[ -x $(PY) ] && $(PY) -m level2_pipelines.ops.local_servers down >/dev/null 2>&1 || true
	-@[ -x $(PY) ] && [ -d state/team ] && $(PY) -m level2_pipelines.ops.team down --drop-databases || true
	rm -rf state $(VENV) *.egg-info .hypothesis

##@ Level 0

.PHONY: level0
level0: $(STAMP) ## Level 0: execute the notebook headless; keep the executed copy, HTML and model
	$(PY) -m level0_notebook.run

.PHONY: level0-serve
level0-serve: $(STAMP) ## Level 0: serve the hand-copied pickle at 127.0.0.1:8000
	$(PY) -m level0_notebook.serve

##@ Level 1

.PHONY: level1
level1: level1-lint level1-test level1-train level1-handoff ## Level 1: lint, test, train + card, then hand the model off

.PHONY: level1-lint
level1-lint: $(STAMP) ## Level 1: ruff over the level's code
	$(PY) -m ruff check level1_devops
	$(PY) -m ruff format --check level1_devops

.PHONY: level1-test
level1-test: $(STAMP) ## Level 1: the level's own tests (unit, model, API)
	$(PY) -m pytest level1_devops/tests

.PHONY: level1-train
level1-train: $(STAMP) ## Level 1: train the model, write model.skops and card.json
	$(PY) -m level1_devops.train

.PHONY: level1-handoff
level1-handoff: $(STAMP) ## Level 1: copy the trained model to where the service reads it
	$(PY) -m level1_devops.handoff

.PHONY: level1-undo
level1-undo: $(STAMP) ## Level 1: put the previously handed-off model back (swaps it with the current one)
	$(PY) -m level1_devops.handoff --undo

.PHONY: level1-serve
level1-serve: $(STAMP) ## Level 1: serve the handed-off model at 127.0.0.1:8001
	$(PY) -m level1_devops.serve

.PHONY: level1-image
level1-image: $(STAMP) ## Level 1: build the container image (needs a Docker engine; air-gapped too)
	$(PY) -m tools.images build 1

##@ Level 2

.PHONY: level2
level2: $(STAMP) | $(PREFECT_HOME) ## Level 2: run the pipeline once (BATCH=file.csv or SIMULATE=rows; default: the 2009 birds; FORCE=1 retrains on seen data)
	$(PY) -m level2_pipelines.pipeline_cli $(if $(BATCH),--batch $(BATCH)) $(if $(SIMULATE),--simulate $(SIMULATE)) $(if $(FORCE),--force)

.PHONY: level2-serve
level2-serve: $(STAMP) | $(PREFECT_HOME) ## Level 2: serve the registry's champion at 127.0.0.1:8002, following promotions
	$(PY) -m level2_pipelines.serve

.PHONY: level2-registry
level2-registry: $(STAMP) | $(PREFECT_HOME) ## Level 2: list registry versions, aliases and gate outcomes
	$(PY) -m level2_pipelines.registry show

.PHONY: level2-rollback
level2-rollback: $(STAMP) | $(PREFECT_HOME) ## Level 2: move `champion` back to the previous version; the service follows
	$(PY) -m level2_pipelines.registry rollback

.PHONY: level2-approve
level2-approve: $(STAMP) | $(PREFECT_HOME) ## Level 2: promote the waiting `challenger` (after a manual-approval run)
	$(PY) -m level2_pipelines.registry approve

.PHONY: level2-rollout
level2-rollout: $(STAMP) | $(PREFECT_HOME) ## Level 2: serve a version beside the champion on trial (MODE=shadow|canary, SHARE=0.1, VERSION=newest passed)
	$(PY) -m level2_pipelines.rollout start $(or $(MODE),canary) $(if $(SHARE),--share $(SHARE)) $(if $(VERSION),--version $(VERSION))

.PHONY: level2-judge
level2-judge: $(STAMP) | $(PREFECT_HOME) ## Level 2: promote or withdraw the challenger on live evidence, or say why it waits
	$(PY) -m level2_pipelines.rollout judge

.PHONY: level2-withdraw
level2-withdraw: $(STAMP) | $(PREFECT_HOME) ## Level 2: take the challenger out of service (REASON="...")
	$(PY) -m level2_pipelines.rollout withdraw --reason "$(or $(REASON),withdrawn by hand)"

.PHONY: level2-monitor
level2-monitor: $(STAMP) | $(PREFECT_HOME) ## Level 2: compare the last 200 served answers with the reference; on drift, ask for a retraining
	$(PY) -m level2_pipelines.monitor

.PHONY: level2-prune
level2-prune: $(STAMP) | $(PREFECT_HOME) ## Level 2: prune the prediction log and drift reports by the LEVEL2_RETAIN_* settings
	$(PY) -m level2_pipelines.retention

.PHONY: level2-score
level2-score: $(STAMP) | $(PREFECT_HOME) ## Level 2: score FILE=path.csv (or .parquet) with the champion; predictions beside it (FORCE=1 replaces them)
	$(PY) -m level2_pipelines.scoring_cli $(FILE) $(if $(FORCE),--force)

.PHONY: level2-up
level2-up: $(STAMP) | $(PREFECT_HOME) ## Level 2: start the Prefect server+UI (:4200), MLflow UI (:5000), the warm worker and the deployments
	$(PY) -m level2_pipelines.ops.local_servers up

.PHONY: level2-status
level2-status: $(STAMP) ## Level 2: show what level2-up started and whether the warm worker is ready
	$(PY) -m level2_pipelines.ops.local_servers status

.PHONY: level2-down
level2-down: $(STAMP) ## Level 2: stop what level2-up started
	$(PY) -m level2_pipelines.ops.local_servers down

.PHONY: level2-deploy
level2-deploy: $(STAMP) | $(PREFECT_HOME) ## Level 2: serve the deployments in the foreground (cron + new-data trigger)
	$(PY) -m level2_pipelines.triggers

.PHONY: level2-publish
level2-publish: $(STAMP) | $(PREFECT_HOME) ## Level 2: register the deployments on PREFECT_API_URL (CD; no serving)
	$(PY) -m level2_pipelines.triggers --publish

.PHONY: level2-lint
level2-lint: $(STAMP) ## Level 2: ruff over the level's code
	$(PY) -m ruff check level2_pipelines
	$(PY) -m ruff format --check level2_pipelines

.PHONY: level2-test
level2-test: $(STAMP) | $(PREFECT_HOME) ## Level 2: the level's own tests (unit, pipeline scenarios, hot swap)
	$(PY) -m pytest level2_pipelines/tests

.PHONY: level2-bench
level2-bench: $(STAMP) | $(PREFECT_HOME) ## Level 2: serving speed with the prediction log on and off, c=1/8/32
	$(PY) -m level2_pipelines.bench

.PHONY: level2-image
level2-image: $(STAMP) ## Level 2: build the image of the service and the worker (needs a Docker engine)
	$(PY) -m tools.images build 2

##@ Workshop

.PHONY: demo
demo: $(STAMP) | $(PREFECT_HOME) ## Run every level side by side and show what each one gives (NEW_DATA=1: and a retraining, a rollback)
	$(PY) -m workshop.demo $(if $(NEW_DATA),--new-data)

.PHONY: scorecard
scorecard: $(STAMP) | $(PREFECT_HOME) ## Probe every level the same way; print and write the scorecard (a few minutes; DOCS=1: and docs/scorecard.md)
	$(PY) -m workshop.scorecard $(if $(DOCS),--docs)

.PHONY: drill-bad-data drill-regression drill-bad-request drill-rollback drill-drift drill-canary
drill-bad-data: $(STAMP) | $(PREFECT_HOME) ## Drill: a corrupted batch arrives at every level
	$(PY) -m workshop.drills bad-data
drill-regression: $(STAMP) | $(PREFECT_HOME) ## Drill: a worse model is trained at every level
	$(PY) -m workshop.drills regression
drill-bad-request: $(STAMP) | $(PREFECT_HOME) ## Drill: malformed requests hit every service
	$(PY) -m workshop.drills bad-request
drill-rollback: $(STAMP) | $(PREFECT_HOME) ## Drill: the latest model must be withdrawn
	$(PY) -m workshop.drills rollback
drill-drift: $(STAMP) | $(PREFECT_HOME) ## Drill: the birds change; which level notices, and which learns the new world
	$(PY) -m workshop.drills drift
drill-canary: $(STAMP) | $(PREFECT_HOME) ## Drill: a worse model meets callers; which level tries it on a share first
	$(PY) -m workshop.drills canary

.PHONY: template
template: $(STAMP) ## Copy one level out as a standalone project: LEVEL=0|1|2 DEST=folder [NAME=package]
	@test -n "$(LEVEL)" -a -n "$(DEST)" || { echo "usage: make template LEVEL=0|1|2 DEST=folder [NAME=package]"; exit 2; }
	$(PY) -m tools.template --level $(LEVEL) --dest $(DEST) $(if $(NAME),--name $(NAME))

##@ Team

.PHONY: team-up
team-up: $(STAMP) | $(PREFECT_HOME) ## Team mode: MLflow and Prefect servers on PostgreSQL, 2 workers, the service, Prometheus
	$(PY) -m level2_pipelines.ops.team up

.PHONY: team-run
team-run: $(STAMP) | $(PREFECT_HOME) ## Team mode: start a pipeline run on the pool, wait for a worker to finish it and the service to serve it
	$(PY) -m level2_pipelines.ops.team run

.PHONY: team-status
team-status: $(STAMP) ## Team mode: what runs, the pool's workers, the champion and what the service serves
	$(PY) -m level2_pipelines.ops.team status

.PHONY: team-down
team-down: $(STAMP) ## Team mode: stop everything team-up started (DROP=1: and drop its databases)
	$(PY) -m level2_pipelines.ops.team down $(if $(DROP),--drop-databases)

.PHONY: compose-up
compose-up: $(STAMP) ## Team mode in containers (infra/compose.yaml): build the images here, start and wait for all
	$(PY) -m tools.compose up

.PHONY: compose-land
compose-land: $(STAMP) ## Team mode in containers: land a batch (FILE=path.csv) in the watcher's incoming folder
	$(PY) -m tools.compose land $(FILE)

.PHONY: compose-status
compose-status: $(STAMP) ## Team mode in containers: each container's state and health
	$(PY) -m tools.compose status

.PHONY: compose-down
compose-down: $(STAMP) ## Team mode in containers: stop and remove them (VOLUMES=1: and their data)
	$(PY) -m tools.compose down $(if $(VOLUMES),--volumes)

.PHONY: test-team
test-team: $(STAMP) | $(PREFECT_HOME) ## Team mode against real PostgreSQL, MLflow and Prefect servers, workers, Prometheus (minutes)
	$(PY) -m pytest -m team -rsP --durations=0 level2_pipelines/tests/team

##@ Development

.PHONY: test
test: $(STAMP) | $(PREFECT_HOME) ## Run the core suite on both cores (the command CI runs first)
	$(PY) -m pytest -n 2 --dist loadgroup

.PHONY: test-templates
test-templates: $(STAMP) ## Generate each level, build its own environment, run its make lint and test (minutes)
	$(PY) -m pytest -m templates --durations=0 tests/test_templates.py

.PHONY: test-lab
test-lab: $(STAMP) | $(PREFECT_HOME) ## The lab with the real level 2: its warm worker, the scorecard's probes (a minute)
	$(PY) -m pytest -m lab -rP --durations=0 tests

.PHONY: test-readme
test-readme: $(STAMP) | $(PREFECT_HOME) ## Run every README's console commands in a scratch copy; check their output (minutes)
	$(PY) -m pytest -m walkthrough -rP --durations=0 tests/test_readme_walkthrough.py

.PHONY: test-compose
test-compose: $(STAMP) ## Walk team mode's whole loop in containers: up, train, land, drift, retrain, rollback, down (minutes)
	$(PY) -m pytest -m compose -rsP --durations=0 tests/test_compose.py

.PHONY: test-images
test-images: $(STAMP) ## Build each level's image from a tree with planted secrets: none inside (minutes)
	$(PY) -m pytest -m images -rsP --durations=0 tests/test_images.py

.PHONY: test-alerts
test-alerts: $(STAMP) ## Check level 2's alert rules with promtool: syntax, unit tests firing each alert, configs (fetches Debian's prometheus into state/ if missing)
	$(PY) -m level2_pipelines.ops.prometheus check

.PHONY: test-devcontainer
test-devcontainer: $(STAMP) ## Build the dev container, run its set-up in it on a copy of the repository (minutes)
	$(PY) -m pytest -m images -rsP --durations=0 tests/test_devcontainer.py

.PHONY: k8s-validate
k8s-validate: $(STAMP) ## Check every level's Kubernetes manifests offline (schemas of 1.30 and 1.37, strict)
	$(PY) -m shared.k8s_validate

.PHONY: bench
bench: $(STAMP) | $(PREFECT_HOME) ## Serving speed: level 1 vs mlflow models serve vs in-process; level 2 with its prediction log on and off
	$(PY) -m level1_devops.bench
	$(PY) -m level2_pipelines.bench

.PHONY: bench-capacity
bench-capacity: $(STAMP) | $(PREFECT_HOME) ## Level 2 with 1 and 2 uvicorn workers vs mlflow models serve: req/s, p50/p99 at c=1-64, memory, start, hot swap (~5 min)
	$(PY) -m bench.capacity $(if $(DOCS),--docs)

.PHONY: bench-workshop
bench-workshop: $(STAMP) ## Time the workshop path (demo, test, scorecard, level 2 runs) against its targets (tens of minutes)
	$(PY) -m bench.workshop $(if $(ROWS),--rows $(ROWS)) $(if $(DOCS),--docs)

.PHONY: bench-drift
bench-drift: $(STAMP) ## Time the drift loop with level 2's servers up: drifted traffic -> detected -> retrained -> served (~4 min)
	$(PY) -m bench.drift

.PHONY: bench-simulator
bench-simulator: $(STAMP) ## Benchmark the batch simulator (rows per second, 1,000,000 rows)
	$(PY) -m bench.simulator
