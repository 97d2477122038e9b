# The two commands in README.rst: `make demo` and `make test`.
# Both build a local virtual environment in .venv; `make test` also installs the
# Debian packages the interoperability tests drive (tpm2-tools, swtpm, tshark, node)
# and, with npm, the pinned Mermaid that reads the sequence diagrams (tests/interop/mermaid).
# In CI (CI set) a missing tool fails the interop tests instead of skipping them.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCENARIO ?= scenarios/boot-attest.toml

MERMAID := tests/interop/mermaid

.PHONY: demo test venv system-tools js-tools bench clean

$(BIN)/simxen: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/simxen

demo: venv
	$(BIN)/simxen run $(SCENARIO)

system-tools:
	bash scripts/setup-system.sh

# Mermaid's own parser, at the version package-lock.json pins (npm ci: exactly the lock)
$(MERMAID)/node_modules/.package-lock.json: $(MERMAID)/package.json $(MERMAID)/package-lock.json
	cd $(MERMAID) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js-tools: system-tools
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(MERMAID)/node_modules/.package-lock.json; \
	else echo "js-tools: npm is not installed: the Mermaid checks will be skipped" >&2; fi

# The suite on every CPU (pytest-xdist): one worker process per CPU this process may use,
# whole test files to a worker (module fixtures such as a running server are then made
# once). PYTEST_WORKERS=0 runs it in one process; docs/testing.rst has the rest.
PYTEST_WORKERS ?= auto

test: venv system-tools js-tools
	SIMXEN_REQUIRE_TOOLS=$${SIMXEN_REQUIRE_TOOLS:-$${CI:+1}} $(BIN)/python -m pytest -q \
		-n $(PYTEST_WORKERS) --dist loadfile

bench: venv
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis $(MERMAID)/node_modules
