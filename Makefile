# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
RUN_DIR ?= var/run

.PHONY: run test lint install clean readme-figures

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip
	# torch first, from the pinned CPU wheel, so nothing later pulls a CUDA build
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m stream_app.demo --dir $(RUN_DIR)

# README's `make run` example, rewritten from what this run printed (tests/stream_app/demo checks it)
readme-figures: run
	$(BIN)/python -m stream_app.demo.readme --summary $(RUN_DIR)/live-summary.txt

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var
