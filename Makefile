# pydeploy.stack — developer entry points.  `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
export PATH := $(BIN):$(PATH)
# The collection is used from this checkout: ansible.cfg maps
# ansible_collections/pydeploy/stack to the repository root.
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

PYTEST_ARGS ?=
# Test modules run on this many pytest-xdist workers; those that deploy the
# same stack stay on one worker, in order (tests/integration/conftest.py).
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS)
INVENTORY ?= inventories/local

.PHONY: help venv bed bed-down bed-clean bed-status demo test lint unit integration build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: ## install Debian packages and .venv when missing or changed
	@bash bed/bootstrap.sh

bed: venv ## start (or reuse) the loopback test bed: dockerd, images, registry, S3
	@$(PY) bed/bedctl.py up

bed-down: ## stop the registry and S3 the bed started (data kept)
	@$(PY) bed/bedctl.py down

bed-clean: ## stop the bed and remove its data and credentials
	@$(PY) bed/bedctl.py clean

bed-status: ## show what the bed runs
	@$(PY) bed/bedctl.py status

demo: bed ## deploy the sample app on this machine and print its URL
	@ansible-playbook deploy.yml -i $(INVENTORY)

lint: venv ## ruff, yamllint, ansible-lint (production profile)
	@ruff check .
	@ruff format --check .
	@yamllint -s .
	@ansible-lint --offline

unit: venv ## unit tests of pure logic
	@pytest tests/unit $(PYTEST_ARGS)

integration: bed ## integration tests against the bed
	@pytest tests/integration $(PARALLEL) $(PYTEST_ARGS)

# The slowest tests are listed at the end of a run: what to look at when the run grows.
test: bed lint ## everything CI checks: lint, unit and integration tests
	@pytest tests/unit tests/integration $(PARALLEL) --durations=25 $(PYTEST_ARGS) || { rc=$$?; \
		[ $$rc -ne 5 ] || echo "make test: pytest collected no test, and a run of no test is a failure" >&2; exit $$rc; }

build: venv ## build the collection tarball into dist/
	@mkdir -p dist
	@ansible-galaxy collection build --force --output-path dist .

clean: ## remove build output (the bed is kept: see bed-clean)
	@rm -rf dist .pytest_cache .ruff_cache
