# The two commands in README.rst: `make demo` and `make test`.
# Both build a local virtual environment in .venv; `make test` also installs the
# Debian packages the interoperability tests drive (tpm2-tools, swtpm, tshark).
# In CI (CI set) a missing tool fails the interop tests instead of skipping them.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCENARIO ?= scenarios/boot-attest.toml

.PHONY: demo test venv system-tools bench clean

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

test: venv system-tools
	SIMXEN_REQUIRE_TOOLS=$${SIMXEN_REQUIRE_TOOLS:-$${CI:+1}} $(BIN)/python -m pytest -q

bench: venv
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
