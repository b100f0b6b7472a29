# The newcomer's two commands: `make demo` and `make test`. Both create the environment on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Flower, for bench/bench_aggregation.py only, in an environment of its own: no flwr release installs beside
# constraints.txt (bench/flower-constraints.txt says which pins clash).
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed

export DVC_NO_ANALYTICS := 1

.PHONY: demo walkthrough test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# constraints.txt locks every transitive version, so pip resolves without backtracking.
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $(STAMP)

$(FLOWER_STAMP): bench/flower-requirements.txt bench/flower-constraints.txt
	$(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/pip install --quiet --constraint bench/flower-constraints.txt \
		--requirement bench/flower-requirements.txt
	touch $(FLOWER_STAMP)

DEMO_DIR := .demo

# The federated demo: wallets, data, repositories, Prefect and MLflow state all go under $(DEMO_DIR)/.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/federity demo --dir $(DEMO_DIR)

# A walk-through of one repository's life: commits by two wallets, log, diff, revert, verify, tampering caught.
walkthrough: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash docs/walkthrough.sh

# ruff, then the layer contracts of pyproject.toml [tool.importlinter] (docs/architecture.md)
lint: $(STAMP)
	$(BIN)/ruff check federity flows tasks agents infra tests bench
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/pytest -q

bench: $(STAMP) $(FLOWER_STAMP)
	$(BIN)/python bench/bench_repository.py
	$(BIN)/python bench/bench_demo.py
	$(BIN)/python bench/bench_proofs.py
	$(BIN)/python bench/bench_nft.py
	$(BIN)/python bench/bench_aggregation.py --flower-python $(FLOWER_VENV)/bin/python
	$(BIN)/python bench/bench_strategies.py
	$(BIN)/python bench/bench_aggregate_e2e.py
	$(BIN)/python bench/bench_robustness.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_rounds.py
	$(BIN)/python bench/bench_flower_rounds.py --flower-python $(FLOWER_VENV)/bin/python

clean:
	rm -rf $(VENV) $(FLOWER_VENV) $(DEMO_DIR)
