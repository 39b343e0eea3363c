# pytcp: the two commands a user needs are `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it (pip, from PyPI).
# `make bench` runs the benchmarks (benchmarks/, README "Benchmarks"); never part of make test.
# `make test` also installs the Debian tools the interop tests use when they are missing
# (apt-get: iproute2 curl netcat-openbsd socat tcpdump), and says so before it does.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEBIAN_TOOLS := ip:iproute2 curl:curl nc:netcat-openbsd socat:socat tcpdump:tcpdump
BENCH_TOOLS  := ip:iproute2 ss:iproute2 iperf3:iperf3 ncat:ncat nc:netcat-openbsd

.PHONY: demo test lint unit debian-tools generate clean fuzz bench

$(BIN)/python:
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	@echo "make: installing pytcp into $(VENV)"
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	@echo "make: installing pytcp's test tools into $(VENV)"
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# Installs, with apt-get, each Debian tool the tests use that this machine lacks.
debian-tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian packages the tests use:$$missing (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "make: missing Debian packages:$$missing (not root or no apt-get; tests that need them will skip)"; \
	  fi; \
	fi

demo: $(VENV)/.installed
	@command -v ip >/dev/null 2>&1 || $(MAKE) --no-print-directory debian-tools DEBIAN_TOOLS=ip:iproute2
	$(BIN)/python scripts/demo.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check stack pytcpcli tests scripts benchmarks
	$(BIN)/mypy

test: $(VENV)/.installed-test debian-tools lint
	$(BIN)/python -m pytest -q

# Benchmarks: the installed pytcp against the kernel, ncat and nc, in namespaces of its own.
# BENCH_QUICK=1 for a fast pass, BENCH_RUNS, BENCH_OUT (JSON path), BENCH_FIGURES="bulk rr",
# BENCH_PROFILE=1 a py-spy profile of pytcp listen (installs py-spy into the venv).
bench: $(VENV)/.installed
	@$(MAKE) --no-print-directory debian-tools DEBIAN_TOOLS="$(BENCH_TOOLS)"
	@if [ -n "$(BENCH_PROFILE)" ] && [ ! -x $(BIN)/py-spy ]; then \
	  echo "make: installing py-spy into $(VENV) (BENCH_PROFILE)"; \
	  $(BIN)/python -m pip install -q py-spy || echo "make: no py-spy; no profile"; \
	fi
	PATH="$(abspath $(BIN)):$$PATH" timeout 1800 $(BIN)/python -m benchmarks

# Coverage-guided fuzzing (atheris) of Host input and of the control protocol, over the
# seed corpus in tests/fuzz_corpus/ (copied: the fuzzer adds what it finds); FUZZ_TIME
# seconds per target. A crash is saved as crash-* in the current directory.
FUZZ_TIME ?= 60
fuzz: $(VENV)/.installed-test
	@for t in host control; do \
	  d=$$(mktemp -d); cp -r tests/fuzz_corpus/$$t/. $$d; \
	  $(BIN)/python scripts/fuzz.py $$t -max_total_time=$(FUZZ_TIME) $$d || exit 1; \
	  rm -rf $$d; \
	done

# Regenerates the man pages and shell completions from the click definitions.
generate: $(VENV)/.installed
	$(BIN)/python scripts/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
