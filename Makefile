# The two commands: `make run` and `make test`. Everything installs into .venv from the package registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-nab bench-scaling bench-scaling-choose bench-research bench-abtest bench-selfmod bench-hosts lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/autarky up

# pytest on PYTEST_WORKERS processes (pytest-xdist), each with its own Temporal dev server; most tests wait
# on the server and on timers, so more workers than cores pay. No test collected is exit 5: a failure.
# The 20 slowest are listed at the end: the 5-minute goal is missed there first.
PYTEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=20

bench: bench-nab bench-scaling bench-research bench-abtest bench-selfmod bench-hosts
	$(BIN)/python bench/footprint.py

# Anomaly detection scored on NAB (../shared/data/nab), with the cross-validated, long-run, alert-budget
# and cost tables; other data: bench/nab.py --data DIR --windows FILE --tables
bench-nab: $(STAMP)
	$(BIN)/python bench/nab.py --by-category --tables

# The scaling policy replayed on the load-like NAB series at start-up delays of 1 and 3 min next to HPA-like
# (a cost/violation curve over 6 targets), fixed and oracle, with approvals that wait 30 min, and the goals
# judged per delay (about a minute); any other load: bench/scaling.py --trace FILE (repeatable; --help)
bench-scaling: $(STAMP)
	$(BIN)/python bench/scaling.py

# Leave-one-trace-out choice of ScalingPolicy's defaults over an 18-config grid (slow: 15-20 min on 2 cores;
# not part of `make bench`); prints the choice and whether it equals the shipped defaults
bench-scaling-choose: $(STAMP)
	$(BIN)/python bench/scaling_choose.py

# The research cycle's analysis stage through Temporal against a local LLM server (300 ms a call) at
# concurrency 1, 4 and 8, beside the limit (concurrency / latency); other runs: python -m bench.research --help
# Then the offline analyser's precision at the experiment threshold and its learning curve (10, 50, 200
# decisions) on bench/data/research_labels.json: python -m bench.research_quality --help
bench-research: $(STAMP)
	$(BIN)/python -m bench.research
	$(BIN)/python -m bench.research_quality

# Both A/B designs (always-valid mixture, group-sequential) beside a fixed-horizon test with the same promotion
# rule: 10,000 simulated runs per cell, binary and lognormal (log-sd 0.8, 1.2) metrics at 50 % and 10 %
# challenger shares, effects 0/5/10/20 % (about a minute); options: python -m bench.abtest --help
bench-abtest: $(STAMP)
	$(BIN)/python -m bench.abtest

# Offline self-modification through the real workflow on a local dev server (relevance scorer: es, archive, cma,
# 2 runs each; detector: es, archive), each generation's best judged on the decision part; the A/A
# false-promotion rate on the real unit structure; the sandbox's overhead per run (bubblewrap; about 6
# minutes); python -m bench.selfmod --help
bench-selfmod: $(STAMP)
	$(BIN)/python -m bench.selfmod

# The autopilot with 200 simulated hosts (fake probes, one process, one dev server): largest payload and history
# per workflow, and finding → action time; fails if a continue-as-new payload reaches 512 KiB (--help)
bench-hosts: $(STAMP)
	$(BIN)/python bench/autopilot_hosts.py

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
