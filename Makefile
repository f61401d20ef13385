# The two commands: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench fuzz model-check sim soak clean

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

# Every benchmark, then BENCHMARKS.md from bench/results/*.json (meant to take under 15
# minutes on 2 cores; each bench's time is printed). One or some: `make bench
# ONLY=failover`, `ONLY="sync failback"`; ARGS go to each (`make bench ONLY=failover
# ARGS="--runs 5"`, `make bench ARGS=--smoke`). A bench that fails does not stop the
# others; the report is written either way, and make fails. BLAZE_BENCH_RESULTS=dir
# puts the results, and the page made from them, in dir instead.
BENCHES := failover detection sync failback ha planner scale
ONLY ?= $(BENCHES)

bench: $(STAMP)
	@failed=""; for b in $(ONLY); do \
		echo "== bench.$$b"; started=$$(date +%s); \
		$(BIN)/python -m bench.$$b $(ARGS) || failed="$$failed $$b"; \
		echo "== bench.$$b: $$(( $$(date +%s) - started )) s"; \
	done; \
	$(BIN)/python -m bench.report; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

fuzz: $(STAMP)
	BLAZE_FUZZ_MESSAGES=100000 $(BIN)/python -m pytest tests/integration/test_fuzz.py -s $(PYTEST_ARGS)

# Issue 9: the protocol's Promela model, exhaustively at small bounds, and its mutant
# (docs/protocol.md). Needs spin (Debian: apt-get install spin) and a C compiler.
model-check:
	sh model/check.sh

# Issue 9: the deterministic simulation of the pure core (docs/simulation.md). SEEDS seeds
# from SEED (about 15 minutes on one core); `make sim SEED=24 SEEDS=1` replays one,
# ARGS="--servers 1000 --cameras 50000 ..." changes the world, ARGS=--lenient counts known
# findings instead of failing on them.
SEED ?= 0
SEEDS ?= 2000
sim: $(STAMP)
	$(BIN)/python -m sim --seed $(SEED) --seeds $(SEEDS) -q $(ARGS)

# Issue 10: the chaos soak (docs/soak.md). `blaze up --ha` under a seeded mixture of faults
# for DURATION seconds, one every FAULT_EVERY seconds, then convergence; writes
# soak/results/<SEED>.json and exits 1 on any violation. 50 servers with 1 s segments do not
# fit 2 cores (docs/soak.md, sizing): SEGMENT_SECONDS=5 by default. ARGS go to python -m soak.
DURATION ?= 1800
SERVERS ?= 50
CAMERAS ?= 2000
FAULT_EVERY ?= 5
SEGMENT_SECONDS ?= 5
soak: $(STAMP)
	$(BIN)/python -m soak --duration $(DURATION) --servers $(SERVERS) --cameras $(CAMERAS) \
		--fault-every $(FAULT_EVERY) --segment-seconds $(SEGMENT_SECONDS) --seed $(SEED) $(ARGS)

clean:
	rm -rf $(VENV) .blaze .pytest_cache .mypy_cache .ruff_cache
