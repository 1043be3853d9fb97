"""The Python API where a user looks for it: `from findbox import load_pipeline, Pipeline, Grounding`,
imported lazily, and `load_pipeline` taking the CLI's flat option names as well as the nested config."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest

import findbox
from tests.conftest import TINY_DETECTION, make_image

ROOT = Path(__file__).resolve().parents[1]


def test_import_findbox_is_light_and_side_effect_free():
    """`import findbox` (and a look at its names) imports no model library and leaves the environment alone;
    the first use of a public name imports it."""
    code = """
import json, os, sys
before = dict(os.environ)
import findbox
names = dir(findbox)
light = not any(m in sys.modules for m in ("torch", "transformers", "ultralytics", "findbox.factory"))
same_env = dict(os.environ) == before
from findbox import load_pipeline, Pipeline, Grounding, PipelineConfig
print(json.dumps({"light": light, "env": same_env, "names": names, "loaded": "findbox.factory" in sys.modules,
                  "fn": load_pipeline.__module__, "cls": [Pipeline.__name__, Grounding.__name__]}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    timeout=300).stdout)
    assert out["light"] and out["env"]
    assert {"load_pipeline", "Pipeline", "Grounding", "__version__"} <= set(out["names"])
    assert out["loaded"] and out["fn"] == "findbox.factory" and out["cls"] == ["Pipeline", "Grounding"]
    with pytest.raises(AttributeError, match="no attribute 'load_pipelin'"):
        findbox.load_pipelin  # noqa: B018


def test_load_pipeline_takes_the_clis_flat_names(tiny_models):
    from findbox import load_pipeline

    models = dict(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                  device="cpu", precision="fp32")
    flat = load_pipeline(**models, **TINY_DETECTION)
    nested = load_pipeline(**models, detection=dict(TINY_DETECTION))
    assert flat.detector.config == nested.detector.config
    assert (flat.detector.config.conf, flat.detector.config.imgsz) == (TINY_DETECTION["conf"], TINY_DETECTION["imgsz"])
    image = make_image(3)
    assert list(flat.ground_one(image, "yellow drone").ltwh) == list(nested.ground_one(image, "yellow drone").ltwh)
    mixed = load_pipeline(**models, conf=0.2, detection=dict(imgsz=160))  # a flat name and a nested table together
    assert (mixed.detector.config.conf, mixed.detector.config.imgsz) == (0.2, 160)
    with pytest.raises(ValueError, match="did you mean 'conf'"):
        load_pipeline(**models, cnof=0.2)


def test_load_pipeline_docstring_runs(monkeypatch):
    """The docstring's example, on the bundled demo and the shipped sample, from the repository root."""
    from findbox import factory

    monkeypatch.chdir(ROOT)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(factory.load_pipeline, "load_pipeline", globs={}):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=5)
