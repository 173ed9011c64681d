# chatconform: two commands for a newcomer, `make check` and `make test`.
# Everything else (virtual environment, dependencies, model preparation) bootstraps itself
# and is cached after the first run.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
TARGET ?=
CHECK_ARGS ?=
BENCH_SERVER_ARGS ?=
SERVE_ARGS ?=

.PHONY: help venv test test-long check serve model peer bench bench-server clean distclean

help:
	@echo "make test              run our own tests (bootstraps .venv on first use)"
	@echo "make test-long         the whole-suite runs on the real model that make test leaves out (CI runs both)"
	@echo "make check             conformance suite vs the embedded mock; TARGET=http://host:port for any server"
	@echo "make serve             run the mock provider on http://127.0.0.1:8080 (SERVE_ARGS=... for more options)"
	@echo "make model             prepare the reference model (fetch, verify, convert; cached)"
	@echo "make peer              build llama.cpp's Python binding into .venv-peer (~10 min, once)"
	@echo "make bench             engine and constrained-decoding benches (llama.cpp ratios need make peer)"
	@echo "make bench-server      our server vs llama.cpp's server end to end over loopback (BENCH_SERVER_ARGS=...)"
	@echo "make clean             remove caches; make distclean also removes .venv"

venv: $(STAMP)

# Re-install when the dependency list changes. The version check fails early and clearly.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "chatconform needs Python >= 3.11, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[mock,dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Tests marked `long` (the suite's whole run against the real model, the real-model breakers, the
# real-model oracle run, and all but one breaker per clause group): deselected by pytest's addopts in
# pyproject.toml, selected here.
test-long: $(STAMP)
	$(PY) -m pytest -m long $(PYTEST_ARGS)

# Without TARGET the suite starts the embedded mock provider (real model) and stops it after.
check: $(STAMP)
	$(VENV)/bin/chatconform check $(TARGET) $(CHECK_ARGS)

serve: $(STAMP)
	$(VENV)/bin/chatconform serve $(SERVE_ARGS)

model: $(STAMP)
	$(VENV)/bin/chatconform model prepare

# The peer is built from source with explicit CPU flags (bench/peer/build.sh): a native build turns on AMX and crashes on this CPU.
peer:
	bash bench/peer/build.sh

bench: $(STAMP)
	$(PY) -m bench.engine
	$(PY) -m bench.generation

# Both servers run as children, one after the other; llama.cpp's side needs `make peer` (it is
# reported as missing, and ours measured anyway, when .venv-peer is absent).
# Example: make bench-server BENCH_SERVER_ARGS="--streams 1,4 --max-tokens 16 --json reports/bench-server.json"
bench-server: $(STAMP)
	$(PY) -m bench.server $(BENCH_SERVER_ARGS)

clean:
	rm -rf .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
