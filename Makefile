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
# Test modules run on this many pytest-xdist workers, the longest first (the
# cost table UNIT_SECONDS); those that deploy the same stack stay on one
# worker, in order (tests/integration/conftest.py).
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS)
INVENTORY ?= inventories/local
# ansible-test sanity needs the collection at .../ansible_collections/pydeploy/stack: it runs on a copy
# of the files git tracks or would track (the work tree's content, new files too), without the
# development tools that are not part of the collection (galaxy.yml's build_ignore); ruff checks those.
SANITY_TREE := $(CURDIR)/.collections/sanity/ansible_collections/pydeploy/stack
SANITY_LEAVE_OUT := bed bench tests .ci
# ansible-test keeps a virtualenv per test under ~/.ansible/test, each in a folder named by a hash of
# the test's pinned requirements: they are kept with the bed's cache, where a fresh clone reuses them
# (not in the user's own ~/.ansible).  Each gets pip from tests/sanity/get_pip.py.
SANITY_HOME ?= $(HOME)/.cache/pydeploy/sanity-home
# One Python version, 3.11: the controller's, and Debian 12's on the hosts.  pslint and shellcheck would
# find no PowerShell or shell script in the collection (and neither tool is installed).
SANITY_ARGS ?= --python 3.11 --skip-test pslint --skip-test shellcheck

.PHONY: help venv bed bed-down bed-clean bed-status demo ee test lint sanity unit integration build clean

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

# The execution environment AWX runs the playbooks in (execution-environment.yml, docs/awx.md), keyed by a
# hash of its inputs: FROM the bed's local base when `make bed` ran here, else the definition's (EE_BASE_IMAGE,
# EE_TAG, EE_CA_BUNDLE, EE_OFFLINE: see bed/ee.py).
ee: venv ## build the execution environment for AWX (tag: EE_TAG, default pydeploy-ee:latest)
	@$(PY) bed/ee.py build

# ansible-test lists the files of the copy's own repository, not those of the checkout (where
# .collections is ignored); tests/output is what it writes.
define sanity_recipe
	@rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE) $(SANITY_HOME)/.ansible/test/cache
	@{ git ls-files -z --cached --others --exclude-standard -- . $(addprefix :!:,$(SANITY_LEAVE_OUT)); \
	   git ls-files -z --cached --others --exclude-standard -- tests/sanity; } \
	   | tar --null --files-from=- --ignore-failed-read -cf - | tar -xf - -C $(SANITY_TREE)
	@git -C $(SANITY_TREE) init -q && echo /tests/output/ >$(SANITY_TREE)/.git/info/exclude
	@pip=$$($(PY) -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as p; \
	   print(p(types.SimpleNamespace(version="3.11"))["pip"])') \
	   && cp tests/sanity/get_pip.py $(SANITY_HOME)/.ansible/test/cache/get_pip_$${pip//./_}.py
	@cd $(SANITY_TREE) && env -u ANSIBLE_CONFIG HOME=$(SANITY_HOME) ansible-test sanity --local $(SANITY_ARGS)
endef

lint: venv ## ruff, yamllint, ansible-lint (production profile), ansible-test sanity
	@ruff check .
	@ruff format --check .
	@yamllint -s .
	@ansible-lint --offline
	$(sanity_recipe)

sanity: venv ## only ansible-test sanity (a part of lint)
	$(sanity_recipe)

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

clean: ## remove build output and caches (the bed is kept: see bed-clean)
	@rm -rf dist .pytest_cache .ruff_cache .collections/sanity
