# ablate: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
EXTRAS ?=
# Offline machines with the shared datasets beside the checkout use them; DATA_DIR=... overrides.
export DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)
export NO_ALBUMENTATIONS_UPDATE := 1
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export MPLBACKEND := Agg

.PHONY: help install lock train sweep study studies report tensorboard mlflow test test-all lint format bench speedrun clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## create .venv and install the project with its dev tools (pinned by requirements.lock); EXTRAS=mlflow,wandb adds loggers
	EXTRAS="$(EXTRAS)" bash scripts/install.sh $(VENV)

lock:  ## regenerate requirements.lock from pyproject.toml (the optional extras pinned too)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra mlflow --extra wandb \
	  --python-platform x86_64-manylinux_2_28 \
	  --python-version 3.11 --no-header --no-annotate -o requirements.lock

train:  ## train (default: CNN on MNIST); pass overrides with ARGS="norm=group reg=dropout ..."
	$(PY) -m ablate.train $(ARGS)

sweep:  ## run a study preset: make sweep EXP=bn_lr [SCALE=quick] [ARGS="..."]; re-running skips finished runs
	@test -n "$(EXP)" || { echo "usage: make sweep EXP=<$$(ls conf/experiment | grep -v _quick | sed 's/.yaml//' | paste -sd'|')> [SCALE=quick]" >&2; exit 2; }
	$(PY) -m ablate.train -m experiment=$(EXP)$(if $(filter quick,$(SCALE)),_quick) $(ARGS)

study:  ## a preset as a sequential study: seeds added only where claims are undecided, then its report: make study EXP=bn_mlp [SCALE=quick] [ARGS="--max-seeds 10"]
	@test -n "$(EXP)" || { echo "usage: make study EXP=<preset> [SCALE=quick] [ARGS=\"--max-seeds N --add K\"]" >&2; exit 2; }
	$(PY) -m ablate.study experiment=$(EXP)$(if $(filter quick,$(SCALE)),_quick) $(ARGS)

studies:  ## run every quick preset, report each into docs/results/ (SCALE=full for the GPU-sized ones; ARGS: more study options)
	mkdir -p logs docs/results
	PY=$(PY) ARGS="$(ARGS)" bash scripts/run_studies.sh $(or $(SCALE),quick) $(EXP)

report:  ## tables, plots and verdicts for a sweep: make report SWEEP=logs/multiruns/<dir>
	@test -n "$(SWEEP)" || { echo "usage: make report SWEEP=<sweep directory>" >&2; exit 2; }
	$(PY) -m ablate.report $(SWEEP)

tensorboard:  ## serve ./logs on http://localhost:6006
	$(VENV)/bin/tensorboard --logdir logs --port 6006

mlflow:  ## serve the logger=mlflow store logs/mlruns on http://localhost:5000 (make install EXTRAS=mlflow)
	MLFLOW_ALLOW_FILE_STORE=true $(VENV)/bin/mlflow ui --backend-store-uri logs/mlruns --port 5000

test:  ## the test suite (what CI runs): ~12.5-13.5 minutes on 2 CPU cores (goal: 12)
	$(PY) -m pytest -m "not slow" -q -n auto --dist worksteal

test-all:  ## every test, including the slow ones
	$(PY) -m pytest -q -n auto --dist worksteal

lint:  ## ruff format check + lint
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

format:  ## apply ruff formatting and fixes
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

BENCH ?= $(wildcard benchmarks/*.py)
bench:  ## every benchmark at its real size, one `figure:` line per result (ARGS=--quick: seconds each; BENCH=benchmarks/x.py: one; full output in logs/bench/)
	@mkdir -p logs/bench
	@for b in $(BENCH); do \
	  out=logs/bench/$$(basename $$b .py).txt; \
	  $(PY) $$b $(ARGS) > $$out 2>&1 || { tail -n 20 $$out >&2; echo "$$b failed: $$out" >&2; exit 1; }; \
	  grep '^figure: ' $$out || { echo "$$b printed no figure: $$out" >&2; exit 1; }; \
	done

PRESET ?= speedrun_mnist
speedrun:  ## time a speedrun preset over 3 seeds (PRESET=speedrun_cifar10 on a GPU)
	$(PY) benchmarks/time_to_accuracy.py --preset $(PRESET) --seeds 0 1 2

clean:  ## remove caches (not logs, not data)
	rm -rf .pytest_cache .ruff_cache
