# Two commands: `make run` brings the whole system up offline; `make test` runs every test.
# Both set themselves up first (a .venv with the requirements, the npm test peers) and say plainly what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PEERS  := tests/peers/node_modules/.installed

.PHONY: run test setup clean

run: $(STAMP)
	@$(PY) -m local

test: $(STAMP) $(PEERS)
	@$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP) $(PEERS)

$(STAMP): requirements.txt requirements-dev.txt
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

clean:
	rm -rf $(VENV) tests/peers/node_modules .data .pytest_cache
