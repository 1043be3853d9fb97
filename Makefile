# findbox developer commands. Every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are pinned to the builds that lie on this machine's disk (see shared/OFFLINE.md).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test serve bench bench-gpu demo-models clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[test]' $(TORCH_PINS)
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

serve: setup
	$(VENV)/bin/findbox serve $(ARGS)

# Rebuild the bundled demo models from nothing (synthetic data, CPU training, evaluation).
demo-models: setup
	$(PY) -m findbox.train.demo --out src/findbox/assets/demo --work runs/demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
