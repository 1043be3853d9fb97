"""The speed switches: they parse, load, and keep the answers (bf16-mixed within rounding)."""

import argparse

import numpy as np
import torch

from findbox.cli import add_model_options, serve_config_from_args
from findbox.config import Precision, ScorerBackend
from findbox.device import resolve_autocast, resolve_dtype
from findbox.factory import load_pipeline
from tests.conftest import CAPTIONS, TINY_DETECTION, make_image


def parse(argv):
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    return serve_config_from_args(parser.parse_args(argv)).pipeline


def test_flags_reach_the_config():
    c = parse(["--precision", "bf16-mixed", "--scorer-backend", "onnx", "--compile", "--image-cache", "0",
               "--image-cache-mb", "8", "--slices", "3x2", "--slice-overlap", "0.1"])
    assert c.precision == Precision.BF16_MIXED and c.scorer_backend == ScorerBackend.ONNX and c.compile
    assert (c.image_cache, c.image_cache_mb) == (0, 8)
    assert c.detection.slices == (3, 2) and c.detection.slice_overlap == 0.1
    defaults = parse([])
    assert defaults.scorer_backend == ScorerBackend.TORCH and not defaults.compile and defaults.image_cache > 0


def test_bf16_mixed_keeps_fp32_weights_and_autocasts():
    cpu = torch.device("cpu")
    assert resolve_dtype(Precision.BF16_MIXED, cpu) == torch.float32
    assert resolve_autocast(Precision.BF16_MIXED) == torch.bfloat16 and resolve_autocast(Precision.FP32) is None


def test_bf16_mixed_picks_the_fp32_boxes_in_most_cases(tiny_models, tiny_pipeline):
    mixed = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                          device="cpu", precision="bf16-mixed", detection=dict(TINY_DETECTION), image_cache=0)
    assert mixed.scorer.autocast_dtype == torch.bfloat16 and mixed.image_cache is None
    fp32 = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                         device="cpu", detection=dict(TINY_DETECTION), image_cache=0)
    images = [make_image(70 + i) for i in range(4)]
    queries = [(i, c) for i in range(4) for c in CAPTIONS]
    got, want = mixed.ground(images, queries), fp32.ground(images, queries)
    same = np.mean([np.array_equal(g.xyxy, w.xyxy) for g, w in zip(got, want)])
    assert same >= 0.75, same
    scores = np.concatenate([g.candidates.match_score for g in got])
    ref = np.concatenate([w.candidates.match_score for w in want])
    assert np.isfinite(scores).all() and np.abs(scores - ref).max() < 0.1


def test_image_cache_and_onnx_load_from_options(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("FINDBOX_CACHE", str(tmp_path))  # the export lands in a fresh cache folder
    pipe = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                         device="cpu", detection=dict(TINY_DETECTION), image_cache=3, image_cache_mb=1,
                         scorer_backend="onnx")
    assert pipe.image_cache.max_entries == 3 and pipe.image_cache.max_bytes == 1024 * 1024
    assert pipe.scorer.info["backend"] == "onnxruntime"
    assert any((tmp_path / "onnx").rglob("image.onnx"))
    image = make_image(80)
    first = pipe.ground_one(image, CAPTIONS[0])
    again = pipe.ground_one(image, CAPTIONS[0])
    assert pipe.counters.images_detected == 1 and pipe.counters.image_cache_hits == 1
    np.testing.assert_array_equal(first.xyxy, again.xyxy)


def test_bf16_on_a_cpu_without_it_warns(tiny_models, monkeypatch, caplog):
    import findbox.device

    monkeypatch.setattr(findbox.device, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="findbox"):
        load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                      device="cpu", precision="bf16", detection=dict(TINY_DETECTION))
    assert "emulated" in caplog.text
