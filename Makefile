# Set-up and the project's main jobs. Each target creates/reuses .venv and installs what it needs.
#   make train   meta-train MAML-TRPO on 2D navigation, then evaluate and plot the result
#   make test    lint, typecheck, then the test suite (what CI runs, through .ci/run)
#   make bench   run the benchmarks and write benchmarks/results/
#   make typecheck  mypy on metarl/ and envs/
#   make lint    ruff (style, imports, line length 120) and the import-graph check

PYTHON ?= python3
VENV ?= .venv
# On CPU-only machines torch comes from the CPU wheel; GPU users: make TORCH_SPEC="torch" (or pre-install torch).
TORCH_SPEC ?= torch==2.13.0
METAWORLD_SPEC ?= metaworld==3.1.1
RUN_DIR ?= runs/navigation2d
TRAIN_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv train test test-all lint bench typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,test]"
	# Meta-World without its mujoco==3.3.0 pin (see the metaworld extra in pyproject.toml)
	$(PY) -m pip install -q --no-deps "$(METAWORLD_SPEC)"
	touch $(STAMP)

# Trains into RUN_DIR; if RUN_DIR already holds a run, continues it (a finished run is just evaluated).
train: $(STAMP)
	if [ -f $(RUN_DIR)/checkpoints/last.pt ]; then $(VENV)/bin/metarl train --resume $(RUN_DIR); \
	else $(VENV)/bin/metarl train --config 2d-navigation --run-dir $(RUN_DIR) $(TRAIN_ARGS); fi
	$(VENV)/bin/metarl evaluate $(RUN_DIR)

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/import_graph.py --check > /dev/null

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_meta_iteration.py
	$(PY) benchmarks/bench_reproducibility.py
	$(PY) benchmarks/bench_subsample_learning.py
	$(PY) benchmarks/bench_sinusoid.py

typecheck: $(STAMP)
	$(PY) -m mypy metarl envs --ignore-missing-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
