import numpy as np
import pytest
import torch

from findbox.testing.builders import build_compact_upscaler
from findbox.upscaler import Upscaler, pre_pad_for


@pytest.mark.parametrize("hw, pad", [((64, 64), 10), ((11, 200), 10), ((10, 200), 1), ((2, 2), 1), ((1, 50), 0), ((1, 1), 0)])
def test_pre_pad_rule(hw, pad):
    assert pre_pad_for(*hw) == pad


@pytest.mark.parametrize("key", ["params", "params_ema"])
def test_loads_released_formats_and_scales_by_4(tmp_path, key):
    path = build_compact_upscaler(tmp_path / "x4.pth", num_feat=8, num_conv=2, key=key)
    up = Upscaler.from_file(path)
    assert up.scale == 4 and up.descriptor.architecture.name == "RealESRGAN Compact"
    crops = [np.full((h, w, 3), 100, np.uint8) for h, w in [(12, 20), (1, 1), (2, 7), (12, 20), (30, 5)]]
    out = up.upscale(crops)
    assert [o.shape for o in out] == [(h * 4, w * 4, 3) for h, w, _ in (c.shape for c in crops)]
    assert all(o.dtype == np.uint8 for o in out)


def test_batched_equals_one_at_a_time(tmp_path):
    up = Upscaler.from_file(build_compact_upscaler(tmp_path / "x4.pth", num_feat=8, num_conv=2))
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (16, 24, 3), dtype=np.uint8) for _ in range(5)]
    batched = up.upscale(crops)
    for crop, b in zip(crops, batched):
        np.testing.assert_allclose(up.upscale([crop])[0].astype(int), b.astype(int), atol=1)


def test_realesrgan_sizes_by_default(tmp_path):
    sd = torch.load(build_compact_upscaler(tmp_path / "full.pth"), weights_only=True)["params"]
    assert sd["body.0.weight"].shape[0] == 64  # realesr-general-x4v3: 64 features
    assert len([k for k in sd if k.endswith(".weight")]) == 1 + 32 * 2 + 1 + 1  # conv+prelu per block


def test_bad_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        Upscaler.from_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="spandrel could not load"):
        Upscaler.from_file(tmp_path / "junk.pth")
