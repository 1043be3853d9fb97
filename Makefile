# findbox developer commands. Every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are pinned to the builds that lie on this machine's disk (see shared/OFFLINE.md).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser test serve bench bench-gpu demo-models clean

setup: $(STAMP) browser

# The page test drives Debian's chromium (never a browser build downloaded by a test tool).
# Installed once, as root; where that cannot be done the page test skips and says why.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || { \
	  echo "installing Debian's chromium for the page test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: tests/serve/test_page.py will skip"; }

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
