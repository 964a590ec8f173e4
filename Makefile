# The two commands of the README:  `make quickstart`  and  `make test`.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup quickstart test test-fast lint ci

setup:
	@bash scripts/setup_env.sh

quickstart: setup
	@bash scripts/quickstart.sh

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not dist"

lint: setup
	$(PY) -m ruff check .

ci:
	@bash .ci/run
