"""`--small-crop-input`: small crops scored at a smaller input with interpolated position embeddings."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from findbox.score.transformers import TransformersScorer
from tests.conftest import CAPTIONS

# tiny SigLIP: input 32x32, patch 8, so 16 and 24 are the smaller sides it can run


def crops_of(sides: list[tuple[int, int]]) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sides]


@pytest.fixture
def scorer(tiny_models):
    return TransformersScorer.from_pretrained(tiny_models["scorer"])


def test_small_crops_take_the_small_input_and_keep_their_rows(scorer):
    crops = crops_of([(40, 30), (10, 12), (24, 9), (25, 3), (60, 70), (8, 8)])  # small: rows 1, 2, 5
    full = scorer.embed_images(crops)
    scorer.set_small_input(24)
    mixed = scorer.embed_images(crops)
    big = [0, 3, 4]
    torch.testing.assert_close(mixed[big], full[big])  # crops larger than 24 px are untouched
    small = [1, 2, 5]
    assert not torch.allclose(mixed[small], full[small], atol=1e-4)
    # each small row is that crop alone at 24x24 through the interpolated position embeddings
    for row in small:
        pixels = scorer.preprocess.normalize(np.stack([np.asarray(Image.fromarray(crops[row]).resize((24, 24),
                                                                                          resample=3))]))
        with torch.inference_mode():
            want = scorer.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
        want = torch.nn.functional.normalize(getattr(want, "pooler_output", want), dim=-1)
        torch.testing.assert_close(mixed[row], want[0], atol=1e-5, rtol=1e-4)


def test_order_holds_across_chunks(scorer):
    crops = crops_of([(10, 10), (50, 50)] * 5)
    scorer.set_small_input(16)
    scorer.max_batch = 2
    chunked = scorer.embed_images(crops)
    one_by_one = torch.cat([scorer.embed_images([c]) for c in crops])
    torch.testing.assert_close(chunked, one_by_one, atol=1e-5, rtol=1e-4)


def test_off_is_the_plain_path(scorer):
    crops = crops_of([(10, 10), (50, 50)])
    plain = scorer.embed_images(crops)
    scorer.set_small_input(16)
    scorer.set_small_input(0)
    assert scorer.small_input is None
    torch.testing.assert_close(scorer.embed_images(crops), plain)


@pytest.mark.parametrize("side", [12, 32, 40, 8])
def test_sizes_it_cannot_run_are_refused_naming_the_option(scorer, side):
    # 12: not a multiple of the patch (8); 32: the model's own input; 40: larger; 8: one patch
    with pytest.raises(ValueError, match=r"small_crop_input: .*\[16, 24\].*got " + str(side)):
        scorer.set_small_input(side)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnx extra not installed")
@pytest.mark.parametrize("int8", [False, True])
def test_onnx_towers_export_the_small_tower(tiny_models, tmp_path, int8):
    from findbox.score.onnx import OnnxScorer

    source = TransformersScorer.from_pretrained(tiny_models["scorer"])
    source.set_small_input(16)
    crops = crops_of([(40, 30), (10, 12), (14, 9), (60, 70)])
    want = source.embed_images(crops)
    onnx = OnnxScorer.from_scorer(source, cache=tmp_path, int8=int8)
    assert onnx.small_input == 16 and onnx.input_sizes() == (16,)
    got = onnx.embed_images(crops)
    if int8:  # int8 linear layers: close, not equal
        assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98
    else:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="small_crop_input"):
        onnx.set_small_input(24)  # no tower exported at 24


def test_load_pipeline_and_the_flag(tiny_models):
    from findbox.cli import build_parser
    from findbox.factory import load_pipeline

    pipe = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                         device="cpu", precision="fp32", small_crop_input=24)
    assert pipe.scorer.small_input == 24
    assert pipe.scorer.embed_texts(CAPTIONS[:2]).shape[0] == 2
    with pytest.raises(ValueError, match="small_crop_input"):
        load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                      device="cpu", precision="fp32", small_crop_input=20)
    argv = ["serve", "--small-crop-input", "24"]
    args = build_parser(argv).parse_args(argv)
    assert args.small_crop_input == 24
