"""Dynamic int8 picks one activation scale per forward: a crop's score must not depend on its batch."""

import importlib.util

import numpy as np
import pytest
import torch

from findbox.score.int8 import quantize_torch_linears
from findbox.score.transformers import TransformersScorer
from tests.conftest import CAPTIONS


def int8_scorer(kind: str, path, cache):
    scorer = TransformersScorer.from_pretrained(path)
    if kind == "torch":
        return quantize_torch_linears(scorer)
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnx extra not installed")
    from findbox.score.onnx import OnnxScorer

    return OnnxScorer.from_scorer(scorer, cache=cache, int8=True)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_a_crop_scores_the_same_whatever_it_is_batched_with(tiny_models, tmp_path, kind):
    scorer = int8_scorer(kind, tiny_models["scorer"], tmp_path)
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    # companions with a far wider pixel range move a per-forward activation scale
    loud = [np.full((25, 25, 3), v, np.uint8) for v in (0, 255)] + [rng.integers(0, 255, (9, 40, 3), np.uint8)]
    alone = scorer.embed_images([crop])
    batched = scorer.embed_images([*loud, crop])
    torch.testing.assert_close(batched[-1:], alone, atol=0, rtol=0)
    text_alone = scorer.embed_texts([CAPTIONS[0]])
    scorer._text_cache.clear()
    text_batched = scorer.embed_texts([*CAPTIONS[1:], CAPTIONS[0]])
    torch.testing.assert_close(text_batched[-1:], text_alone, atol=0, rtol=0)
