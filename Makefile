# findbox developer commands. Every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are pinned to the builds this project is developed with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser test serve bench bench-gpu demo-models clean

# what `findbox serve` needs; the page test's browser comes with `make test` only
setup: $(STAMP)

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

test: setup browser
	$(PY) -m pytest -q tests

serve: setup
	$(VENV)/bin/findbox serve $(ARGS)

# Rebuild the bundled demo models from nothing (synthetic data, CPU training, evaluation).
demo-models: setup
	$(PY) -m findbox.train.demo --out src/findbox/assets/demo --work runs/demo

# findbox against the original's per-instance loop on this machine's CPU (under 20 min on 2 cores:
# 5 requests per contender and ratio), then precision, small-crop input, sliced detection, detector
# export, FLOPs; results in benchmarks/results/, written up in docs/BENCHMARKS.md.
# BENCH_ARGS go to bench_pipeline.py.
bench: setup
	$(PY) benchmarks/bench_pipeline.py --requests 5 --images-c 2 --captions 1,8 --max-dets 5,20 $(BENCH_ARGS)
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_precision.py --images 4 --tower-batch 16 --tower-reps 3
	$(PY) benchmarks/bench_small_crops.py --demo-images 40 --demo-sides 32,40,48 --base-sides 112 --reps 3
	$(PY) benchmarks/bench_sliced.py
	$(PY) benchmarks/bench_detector_export.py
	$(PY) benchmarks/bench_flops.py
	$(PY) benchmarks/report.py > benchmarks/results/cpu.md
	@echo "tables: benchmarks/results/cpu.md"

# The GPU variant (fp16/bf16, crop batches, GPU memory); under 5 minutes; fails at once without CUDA.
bench-gpu: setup
	$(PY) benchmarks/bench_gpu.py $(BENCH_ARGS)

# The CUDA path the first time a GPU is at hand: the tests marked gpu (fp16/bf16 serving, a bf16
# training step, the bench smoke; on a CPU they skip and say why), then the GPU benchmark
# (benchmarks/results/gpu.json). Write the figures up in docs/BENCHMARKS.md.
.PHONY: test-gpu
test-gpu: setup
	$(PY) -m pytest -q -m gpu tests/gpu
	$(MAKE) --no-print-directory bench-gpu

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# The README's pictures, made with the bundled demo models: docs/page.png, docs/eval_report.png and
# docs/predict_example.png (a synth set, findbox eval, findbox serve in Chromium, findbox predict; ~4 min).
.PHONY: docs-pictures
docs-pictures: setup
	$(PY) benchmarks/docs_pictures.py

# The figures tables of README.md and docs/*.md (between <!-- table:NAME --> markers), rendered from
# benchmarks/results/*.json and the demo bundle's manifest; tests/test_docs_tables.py fails when they differ.
.PHONY: docs-tables
docs-tables: setup
	$(PY) benchmarks/docs_tables.py
