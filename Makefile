# Two commands: `make run` brings the whole system up offline; `make test` runs every test.
# Both set themselves up first (a .venv with the requirements, the npm test peers) and say plainly what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PEERS  := tests/peers/node_modules/.installed
# checkov (the infra/ scan in `make test`) pins dozens of packages, so it lives in its own venv, apart from the app's.
TOOLS       := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
CHECKOV     := checkov==3.3.30

.PHONY: run test setup clean

run: $(STAMP)
	@$(PY) -m local

test: $(STAMP) $(PEERS) $(TOOLS_STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP) $(PEERS) $(TOOLS_STAMP)

$(STAMP): requirements.txt requirements-dev.txt media_gateway/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Switchboard needs Python 3.11 or newer; '$(PYTHON)' is missing or older."; \
	  echo "Install Python 3.11+ and run again, or point at it: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing Python requirements into $(VENV) ..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

# The Cosmos DB emulator used by the CustomerStore contract tests comes from npm.
$(PEERS): tests/peers/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "Installing the npm test peers (Cosmos DB emulator) ..."; \
	  npm install --prefix tests/peers --no-audit --no-fund --loglevel=error && touch $(PEERS); \
	else \
	  echo "npm is missing: the Cosmos DB contract tests will be skipped (CI=true makes them fail)."; \
	  echo "Install Node.js 18+ with npm to run them."; \
	fi

# A failed install does not stop `make test`: tests/infra/test_checkov.py then skips with the reason (fails in CI).
$(TOOLS_STAMP): Makefile
	@echo "Installing $(CHECKOV) into $(TOOLS) ..."
	@{ test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS); } && \
	  $(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "$(CHECKOV)" && touch $(TOOLS_STAMP) || \
	  echo "Could not install $(CHECKOV) into $(TOOLS): the infra/ scan will be skipped (CI=true makes it fail)."

clean:
	rm -rf $(VENV) $(TOOLS) tests/peers/node_modules .data .pytest_cache
