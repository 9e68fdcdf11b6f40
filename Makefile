# Two commands do all set-up on a fresh machine (Python 3.11, Go >= 1.26):
#   make run   - the demo on the embedded default (local control plane + local Golem network)
#   make test  - the whole test suite (lint, types, unit, integration, contract)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test realnet-test lint crd bench clean

setup:
	bash scripts/setup.sh

run: setup
	source .env.tools && $(VENV)/bin/golem-operator demo

test: setup
	bash scripts/test.sh

# The operator and the client against the real provider software (yagna, ya-provider, exe-unit
# built from the yagna source: YAGNA_SRC=<checkout or git dir>, optional YAGNA_GIT_MIRRORS).
# Not part of `make test`: a fresh machine cannot obtain that source. Fails if it is missing.
realnet-test: setup
	bash scripts/realnet-test.sh

lint: setup
	$(VENV)/bin/ruff check operator tests scripts
	$(VENV)/bin/ruff format --check operator tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

crd: setup
	$(VENV)/bin/golem-operator crd -o crds/
	cp crds/golemservices.yaml crds/golemserviceinstances.yaml charts/golem-operator/crds/

bench: setup
	source .env.tools && $(PY) scripts/bench_localnet.py && $(PY) scripts/bench_operator.py
