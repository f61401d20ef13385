# The two commands: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/blaze up $(ARGS)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.failover $(ARGS)
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.failback
	$(BIN)/python -m bench.ha

fuzz: $(STAMP)
	BLAZE_FUZZ_MESSAGES=100000 $(BIN)/python -m pytest tests/integration/test_fuzz.py -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .blaze .pytest_cache .mypy_cache .ruff_cache
