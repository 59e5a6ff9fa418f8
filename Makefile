# Everything a user types. Variables flow to the `wit` CLI:
#   make shards OUT=out/run1 CONFIG=configs/demo.yaml RUNNER=local WORKERS=2 ARGS="--cap 500"
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
CONFIG ?= configs/demo.yaml
TRAIN_CONFIG ?= configs/train_demo.yaml
RUNNER ?= local
WORKERS ?= 2
ARGS ?=
PYTEST_ARGS ?=
# CPU wheel from this machine's disk here; the same pin takes the CUDA wheel on a GPU box.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed-stamp
WIT := $(BIN)/wit
COMMON := --config $(CONFIG) --out $(OUT) --runner $(RUNNER) --workers $(WORKERS)

.PHONY: install test shards train eval report bench lint clean demo-world queries select download

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[train,dev]" "$(TORCH_PIN)"
	bash scripts/install_system_deps.sh
	$(BIN)/python -m queries.wordnet_data
	touch $(STAMP)

test: install
	bash scripts/run_tests.sh $(BIN)/python $(PYTEST_ARGS)

shards: install
	$(WIT) shards $(COMMON) $(ARGS)

demo-world queries select download: install
	$(WIT) $@ $(COMMON) $(ARGS)

report: install
	$(WIT) report $(COMMON) $(ARGS)

train: install
	$(WIT) train --config $(TRAIN_CONFIG) --out $(OUT) $(ARGS)

# Score the trained checkpoint on the demo's held-out labelled folder (written by make train).
eval: install
	$(WIT) eval --config $(TRAIN_CONFIG) --out $(OUT) --image-folder $(OUT)/eval_images $(ARGS)

bench: install
	$(BIN)/python -m bench.run_all --out $(OUT)/bench $(ARGS)

lint: install
	$(BIN)/ruff check pipeline queries clip_model tests bench
	$(BIN)/ruff format --check pipeline queries clip_model tests bench

clean:
	rm -rf out .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
