# Two entry points (see README): `make demo` and `make test`. Each builds .venv on first use.
# `make test-thirdparty` runs tests/test_thirdparty.py (torchvision and timm models) in a second
# environment, .venv-thirdparty, built on first use (see constraints-thirdparty.txt for why).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TP_VENV := .venv-thirdparty
TP_BIN := $(TP_VENV)/bin

$(BIN)/jpegfx: pyproject.toml constraints.txt setup.py jpegfx/_jpegread.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,tools]'
	touch $@

# torch, torchvision and timm take their versions from constraints-thirdparty.txt (the one place
# they are pinned); torch 2.14.1 + torchvision 0.29.1 is a CUDA build (~5.5 GB) that runs on CPU.
$(TP_BIN)/jpegfx: pyproject.toml constraints-thirdparty.txt setup.py jpegfx/_jpegread.c
	$(PYTHON) -m venv $(TP_VENV)
	$(TP_BIN)/python -m pip install -q --upgrade pip
	$(TP_BIN)/python -m pip install -q -c constraints-thirdparty.txt torch torchvision timm
	$(TP_BIN)/python -m pip install -q -c constraints-thirdparty.txt -e '.[test]'
	touch $@

.PHONY: setup setup-thirdparty demo test test-thirdparty
setup: $(BIN)/jpegfx

setup-thirdparty: $(TP_BIN)/jpegfx

demo: setup
	$(BIN)/jpegfx demo

test: setup
	$(BIN)/python -m pytest -q

test-thirdparty: setup-thirdparty
	$(TP_BIN)/python -m pytest -q tests/test_thirdparty.py
