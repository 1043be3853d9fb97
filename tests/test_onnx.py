"""The ONNX Runtime scorer backend against the PyTorch towers it was exported from."""

import numpy as np
import pytest
import torch

from findbox.pipeline import Pipeline
from findbox.score.transformers import TransformersScorer
from findbox.score.onnx import OnnxScorer
from tests.conftest import CAPTIONS, make_image

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def scorers(tiny_models, tmp_path_factory):
    torch_scorer = TransformersScorer.from_pretrained(tiny_models["scorer"])
    onnx_scorer = OnnxScorer.from_scorer(TransformersScorer.from_pretrained(tiny_models["scorer"]),
                                         cache=tmp_path_factory.mktemp("onnx"))
    return torch_scorer, onnx_scorer


def test_embeddings_and_logits_match_pytorch(scorers):
    ref, onnx = scorers
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(rng.integers(1, 60)), int(rng.integers(1, 60)), 3), dtype=np.uint8)
             for _ in range(7)]  # 7: a batch size never seen at export (2)
    a, b = ref.embed_images(crops), onnx.embed_images(crops)
    assert b.shape == a.shape and b.dtype == torch.float32
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    ta, tb = ref.embed_texts(CAPTIONS), onnx.embed_texts(CAPTIONS)
    torch.testing.assert_close(tb, ta, atol=1e-5, rtol=1e-4)
    assert onnx.logit_scale_bias() == pytest.approx(ref.logit_scale_bias())
    np.testing.assert_allclose(onnx.score(b, tb), ref.score(a, ta), atol=1e-4)
    assert onnx.embed_images([]).shape == (0, ref.embed_dim) and not hasattr(onnx, "model")


def test_export_is_cached(scorers, tiny_models):
    _, onnx = scorers
    again = OnnxScorer.from_scorer(TransformersScorer.from_pretrained(tiny_models["scorer"]),
                                   cache=onnx.paths["image"].parent.parent)
    assert again.paths == onnx.paths


def test_pipeline_on_onnx_picks_the_same_boxes(tiny_pipeline, scorers):
    _, onnx = scorers
    images = [make_image(60), make_image(61)]
    queries = [(i, c) for i in range(2) for c in CAPTIONS[:3]]
    want = Pipeline(tiny_pipeline.detector, tiny_pipeline.scorer).ground(images, queries)
    got = Pipeline(tiny_pipeline.detector, onnx).ground(images, queries)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.candidates.xyxy, w.candidates.xyxy)
        np.testing.assert_allclose(g.candidates.match_score, w.candidates.match_score, atol=1e-4)


def test_onnx_refuses_what_it_cannot_run(tiny_models):
    with pytest.raises(ValueError, match="fp32"):
        OnnxScorer.from_scorer(TransformersScorer.from_pretrained(tiny_models["scorer"], dtype=torch.bfloat16))
