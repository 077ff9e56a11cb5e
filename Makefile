# Two entry points (see README): `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/jpegfx: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,tools]'
	touch $@

.PHONY: setup demo test
setup: $(BIN)/jpegfx

demo: setup
	$(BIN)/jpegfx demo

test: setup
	$(BIN)/python -m pytest -q
