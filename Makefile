# AnyCompany Support: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
UV := .cache/uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Values for the local run command only; production reads real ones from the environment.
RUN_ENV := DEBUG=true CHAT_MODEL=demo

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@python=$$(scripts/find-python) && "$$python" -m venv .cache/uv && .cache/uv/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

# The CDK and cfn-lint (the `infra` group, ~270 MB) are only installed for synth and the tests.
# Once a virtualenv has them, every later sync keeps them, so `make run` after `make test` does
# not uninstall what the next `make test` would install again.
INFRA_STAMP := $(VENV)/.synced-infra
KEEP_INFRA = $(if $(wildcard $(INFRA_STAMP)),--group infra)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@python=$$(scripts/find-python) && $(UV) sync --frozen $(KEEP_INFRA) --python "$$python"
	@touch $@

$(INFRA_STAMP): $(VENV)/.synced
	@python=$$(scripts/find-python) && $(UV) sync --frozen --group infra --python "$$python"
	@touch $@

install: $(VENV)/.synced ## Create the virtualenv and install the locked dependencies (no-op when up to date)

install-infra: $(INFRA_STAMP) ## Also install the CDK and cfn-lint (synth and the infra tests)

run: install ## Set up and serve the app on http://127.0.0.1:8000 (SQLite, demo model, demo data)
	$(RUN_ENV) $(PY) manage.py migrate --no-input
	$(RUN_ENV) $(PY) manage.py reset_demo_data --if-empty
	@echo "Open http://127.0.0.1:8000 and choose 'Sign in as a demo customer'."
	$(RUN_ENV) $(PY) manage.py runserver --noreload 127.0.0.1:8000

test: install-infra ## Set up PostgreSQL, Redis and Chromium, then run lint, types, migrations check and every test
	scripts/with-services $(MAKE) --no-print-directory check

check: install-infra ## Lint, type-check, migrations check and the test suite, against whatever DATABASE_URL/REDIS_URL say
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest $(PYTEST_ARGS)

fmt: install ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: | $(UV) ## Re-resolve dependencies into uv.lock
	@python=$$(scripts/find-python) && $(UV) lock --python "$$python"

synth: install-infra ## Synthesize the CloudFormation templates offline into infra/cdk.out
	cd infra && JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 ../$(PY) app.py

evals: install ## Play the eval cases in evals/ (demo model; EVALS_ARGS="--model bedrock:<id> --junit out.xml")
	$(RUN_ENV) $(PY) manage.py evaluate $(EVALS_ARGS)

bench: install ## Run the benchmarks under bench/ (BENCH_ARGS=--quick for a smoke run; see bench/README.md)
	scripts/with-services sh -c '$(PY) bench/e2e.py $(BENCH_ARGS) && $(PY) bench/stack_floor.py && $(PY) bench/channel_layer.py'

clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache staticfiles db.sqlite3 infra/cdk.out

.PHONY: help install install-infra run test check fmt lock synth evals bench clean
