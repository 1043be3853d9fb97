"""Several servers may share one ONNX cache folder: exports and int8 quantisations must not collide."""

import importlib.util
import threading

import numpy as np
import pytest
import torch

from findbox.score.transformers import TransformersScorer
from tests.conftest import CAPTIONS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnx extra not installed")


@pytest.fixture()
def towers(tiny_models, tmp_path):
    from findbox.score.onnx import export_towers

    scorer = TransformersScorer.from_pretrained(tiny_models["scorer"])
    return scorer, export_towers(scorer, tmp_path / "cache")


def test_concurrent_quantisations_into_one_cache_both_succeed(towers):
    from findbox.score.int8 import quantize_onnx_towers
    from findbox.score.onnx import OnnxScorer

    scorer, paths = towers
    start = threading.Barrier(4)
    results, errors = [], []

    def quantise() -> None:
        start.wait()  # all four write the same outputs at once, as servers starting together on one cache
        try:
            results.append(quantize_onnx_towers(paths))
        except Exception as exc:  # noqa: BLE001 - the test reports what a racing writer raised
            errors.append(exc)

    threads = [threading.Thread(target=quantise) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    out = results[0]
    assert all(r == out for r in results) and all(p.is_file() for p in out.values())
    assert sorted(p.name for p in out["image"].parent.iterdir()) == [
        "image.int8.onnx", "image.onnx", "text.int8.onnx", "text.onnx"]  # no temp file left behind
    int8 = OnnxScorer(out, scorer.tokenizer, scorer.preprocess, scorer.prompt, scorer.max_text_length, "siglip",
                      scorer.embed_dim, scorer.logit_scale_bias(), int8=True)
    emb = int8.embed_texts(CAPTIONS[:2])
    assert emb.shape == (2, scorer.embed_dim) and torch.isfinite(emb).all()
    crops = [np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)]
    assert torch.isfinite(int8.embed_images(crops)).all()


def test_another_writers_temp_file_is_left_alone(towers):
    """A writer in progress holds its temp file; a second writer must use a name of its own."""
    from findbox.score.int8 import quantize_onnx_towers

    _, paths = towers
    target = paths["text"].with_name("text.int8.onnx")
    busy = target.with_name(target.name + ".tmp")  # the name every writer used to share
    busy.mkdir()
    (busy / "half-written").write_bytes(b"x")
    out = quantize_onnx_towers(paths)
    assert out["text"] == target and target.is_file() and (busy / "half-written").read_bytes() == b"x"
