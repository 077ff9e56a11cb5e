# Two entry points (see README): `make demo` and `make test`. Each builds .venv on first use.
# `make test-thirdparty` runs tests/test_thirdparty.py (torchvision and timm models) in a second
# environment, .venv-thirdparty, built on first use (see constraints-thirdparty.txt for why).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TP_VENV := .venv-thirdparty
TP_BIN := $(TP_VENV)/bin
# torch comes from the PyTorch CPU index when it answers (PyPI's torch is a CUDA build of several
# GB); otherwise from pip's configured sources (a machine with a local CPU wheel, or PyPI).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE = $(shell $(PYTHON) -c "import urllib.request; urllib.request.urlopen('$(TORCH_INDEX)/torch/', timeout=10)" \
	2>/dev/null && echo "--index-url $(TORCH_INDEX)")

$(BIN)/jpegfx: pyproject.toml constraints.txt setup.py jpegfx/_jpegread.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt $(TORCH_SOURCE) torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[torch,test,tools]'
	touch $@

# torch, torchvision and timm take their versions from constraints-thirdparty.txt (the one place
# they are pinned); from PyPI, torch 2.14.1 + torchvision 0.29.1 is a CUDA build (~5.5 GB) that runs on CPU.
$(TP_BIN)/jpegfx: pyproject.toml constraints-thirdparty.txt setup.py jpegfx/_jpegread.c
	$(PYTHON) -m venv $(TP_VENV)
	$(TP_BIN)/python -m pip install -q --upgrade pip
	$(TP_BIN)/python -m pip install -q -c constraints-thirdparty.txt $(TORCH_SOURCE) torch torchvision
	$(TP_BIN)/python -m pip install -q -c constraints-thirdparty.txt timm
	$(TP_BIN)/python -m pip install -q -c constraints-thirdparty.txt -e '.[torch,test]'
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
