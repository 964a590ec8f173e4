# The two commands of the README:  `make quickstart`  and  `make test`.
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup quickstart test test-fast lint ci

setup:
	@bash scripts/setup_env.sh

quickstart: setup
	@bash scripts/quickstart.sh

# pytest-xdist: one worker a core; a test module's tests stay on one worker (they share module fixtures)
TEST_WORKERS ?= auto
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow and not dist"

lint: setup
	$(PY) -m ruff check .

ci:
	@bash .ci/run
