# Two commands: `make run` and `make test`. Both create .venv when missing and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

# Editable installs in strict mode, so mypy and editors can resolve kernos.* (FIELD-NOTES).
INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt \
	--config-settings editable_mode=strict -e ./edge -e '.[dev]'

.PHONY: run test check install lint typecheck contracts pytest format bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip

STAMP := $(VENV)/.kernos-installed

# Strict editable installs link modules that exist at install time, so `make run` re-installs
# when dependencies change or a package folder gains or loses a file (its mtime moves).
PACKAGE_DIRS := $(shell find kernel policy memory tools agents plugins api tui edge -type d \
	-not -name __pycache__ -not -path '*/build*' -not -path '*.egg-info*' 2>/dev/null)

$(STAMP): pyproject.toml setup.py constraints.txt edge/pyproject.toml edge/setup.py \
		$(PACKAGE_DIRS) | $(BIN)/python
	$(INSTALL)
	@touch $(STAMP)

# `make test` always re-installs: strict editable mode links new modules only on install.
install: $(BIN)/python
	$(INSTALL)
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kernos up $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p kernos.kernel -p kernos.policy -p kernos.memory -p kernos.tools \
		-p kernos.agents -p kernos.plugins -p kernos.api -p kernos.tui -p kernos.edge

contracts: install
	$(BIN)/lint-imports

# .venv-llm: torch (CPU) + transformers serve, the real LLM server of the backend tests;
# created once (under a minute), then a no-op until scripts/llm-requirements.txt changes.
# .venv-kserve: MLServer + onnxruntime, the real KServe v2 server of the triton tests (same).
pytest: install
	scripts/llm_server.sh setup
	scripts/kserve_server.sh setup
	scripts/services.sh run -- $(BIN)/pytest $(PYTEST_ARGS)

check: lint typecheck contracts pytest

test: check

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# wrk drives bench/api_load.py; the real LLM server (.venv-llm) serves bench/scheduler.py.
bench: install
	command -v wrk >/dev/null || { apt-get install -y wrk || sudo apt-get install -y wrk; }
	scripts/llm_server.sh setup
	$(BIN)/python bench/run.py

# Re-pin after a dependency change: resolve without the old pins, then freeze.
lock: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade \
		--config-settings editable_mode=strict -e ./edge -e '.[dev]'
	{ echo "# Pinned versions a fresh machine installs (pip install -c constraints.txt ...)."; \
	  echo "# Regenerate after changing dependencies: make lock. Local packages stay out."; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^kernos'; } > constraints.txt

clean:
	rm -rf $(VENV) build dist *.egg-info edge/build edge/*.egg-info
