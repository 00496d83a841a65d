# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MARC_PROJECT_DIR ?= $(CURDIR)
# Everything runs offline: never let a library reach for a hub or phone home.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test test-slow test-all test-ui browser ui repro status push pull bench gpu-check lint clean-assets tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: configs/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp configs/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## demo: materialize every asset on the active profile (params.yaml; embedded default = tiny)
demo: install
	$(BIN)/python -m pipelines.demo
	@echo
	$(BIN)/marc where
	@echo
	@echo "Open the asset graph: make ui  (then http://$(UI_HOST):$(UI_PORT))"

# strace: the declared-reads test traces every stage's file opens (tests/integration/test_declared_reads.py).
tools:
	@command -v strace >/dev/null || (apt-get update -qq && apt-get install -y -qq strace >/dev/null)

## test: the default tiers (unit + integration); the slow tier is `make test-slow`
test: install tools
	$(BIN)/pytest

test-slow: install tools
	$(BIN)/pytest -m slow

test-all: install tools browser
	$(BIN)/pytest -m ''

# The browser tier drives `dagster dev` with Playwright through Debian's chromium (Playwright's own browser
# builds are downloads, which this setup does without); the `ui` extra adds Playwright.
UI_STAMP := $(VENV)/.ui-installed-stamp
$(UI_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ui]'
	@touch $(UI_STAMP)

browser: install $(UI_STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## test-ui: the browser tier (tests/ui): materialize from the asset's page, read its checks, stop `make ui`
test-ui: browser
	$(BIN)/pytest -m ui

## ui: the Dagster UI on http://$(UI_HOST):$(UI_PORT); UI_HOST=0.0.0.0 serves other machines too
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
# `dagster dev` stops on SIGTERM only when SIGINT is not ignored (it handles SIGTERM as it handles SIGINT), and a
# shell starts a background job with SIGINT ignored: restore SIGINT's default so that `kill` stops it there too.
ui: install
	env --default-signal=INT $(BIN)/dagster dev -h $(UI_HOST) -p $(UI_PORT) -m pipelines.definitions

repro: install
	$(BIN)/dvc repro

status: install
	$(BIN)/dvc status

# The DVC remote: `local` (.dvc/config: ../marc-dvc-remote, beside the clone); DVC_REMOTE=<path or URL>
# points this clone elsewhere (written to .dvc/config.local, not committed).
DVC_REMOTE ?=
push: install
	@if [ -n "$(DVC_REMOTE)" ]; then $(BIN)/dvc remote add --local --force local "$(DVC_REMOTE)"; fi
	$(BIN)/dvc push

pull: install
	@if [ -n "$(DVC_REMOTE)" ]; then $(BIN)/dvc remote add --local --force local "$(DVC_REMOTE)"; fi
	$(BIN)/dvc pull

bench: install
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

## gpu-check: the real Qwen2.5-VL-3B architecture on the first CUDA GPU: logits, compression, efficiency at
## batch 15, ZeRO-3 training steps (docs/gpu.md); writes gpu_check/gpu_check.json and gpu_check.md
gpu-check: install
	$(BIN)/marc gpu-check --device cuda --out gpu_check

## lint: ruff (lint and format) and the import contracts of pyproject.toml (the library's layers)
lint: install
	$(BIN)/ruff check marc_ops pipelines tests benchmarks
	$(BIN)/ruff format --check marc_ops pipelines tests benchmarks
	$(BIN)/lint-imports --no-cache

clean-assets:
	rm -rf assets/*/
