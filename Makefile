# Fresh machine: `make demo` installs what the demo needs and runs it; `make test` installs everything and runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --progress-bar on
# PyTorch's default wheels bundle CUDA (several GB). For CPU-only wheels, PyTorch's own index:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_INDEX_OPTION := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: setup setup-demo demo test clean

setup: $(VENV)/.installed-all
setup-demo: $(VENV)/.installed-core

$(PY):
	@echo "==> creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip

$(VENV)/.installed-torch: | $(PY)
	@echo "==> installing PyTorch$(if $(TORCH_INDEX), from $(TORCH_INDEX)) (the largest part; see README 'Installing')"
	$(PIP) torch==2.14.1 torchvision==0.29.1 $(TORCH_INDEX_OPTION)
	touch $@

$(VENV)/.installed-core: pyproject.toml $(VENV)/.installed-torch
	@echo "==> installing cbir and what the demo needs (no extras)"
	$(PIP) -e .
	touch $@

$(VENV)/.installed-all: pyproject.toml $(VENV)/.installed-torch
	@echo "==> installing cbir with every extra (faces, video, medical, server, training) and the test tools"
	$(PIP) -e '.[all,test]'
	touch $@

demo: $(VENV)/.installed-core
	@echo "==> running the demo: cbir demo --out demo-output"
	$(VENV)/bin/cbir demo --out demo-output

test: $(VENV)/.installed-all
	@echo "==> chromium for the browser test"
	bash scripts/install-chromium.sh
	@echo "==> running the test suite"
	$(PY) -m pytest -q --timeout=900

clean:
	rm -rf $(VENV) demo-output .pytest_cache
