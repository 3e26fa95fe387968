# Fresh machine: `make demo` sets up and runs the offline demo; `make test` sets up and runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all bench-quality bench-speed clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[all,test]'
	touch $@

demo: setup
	$(VENV)/bin/cbir demo --out demo-output

test: setup
	bash scripts/install-chromium.sh
	$(PY) -m pytest -q --timeout=900

clean:
	rm -rf $(VENV) demo-output .pytest_cache
