# migrator: the README's `make demo` and `make test` (both install .venv with the dev tools first); the rest are for
# daily work. The `migrator` command alone installs with `pipx install .` (see the README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit images image-test chart-test smoke bench bench-image clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: migrate, seed, status, rollback and migrate again on an embedded PostgreSQL (the README's first command)
demo: $(STAMP)
	$(BIN)/python -m tests.demo

## test: every check CI runs: ruff, mypy, squawk on migrations/, then the whole pytest suite
# One pytest worker per core, a test file per worker at a time: most tests wait on PostgreSQL, Docker or a
# subprocess, and a file keeps its own servers and images to itself.
test: lint
	$(BIN)/pytest -n auto --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/migrator lint

unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/integration

## images: build migrator:dev and migrator-app:dev (from the local Debian base where python:3.12-slim cannot be pulled)
images:
	image/build.sh all

image-test: $(STAMP)
	$(BIN)/pytest tests/image

chart-test: $(STAMP)
	$(BIN)/pytest tests/chart

## smoke: the kind smoke tests (need a kind cluster named migrator; see .github/workflows/kind-smoke.yml). Their
## cluster-free parts (the scenario's steps emulated with the real images, the workflow, the README's kubectl run)
## run in `make test`, where the cluster tests skip and say what only a cluster proves.
smoke: $(STAMP)
	$(BIN)/pytest tests/smoke -m cluster -v -rs --timeout 3000

## bench: B1-B6 against Alembic on an embedded PostgreSQL; bench-image: image sizes and container start
bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-image: $(STAMP)
	$(BIN)/python -m bench.image

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
