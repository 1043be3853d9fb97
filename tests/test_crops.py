import numpy as np
import pytest

from findbox.crops import cap_crop, cut_crops, prepare_crops
from findbox.testing.builders import build_compact_upscaler
from findbox.upscaler import Upscaler

SCORER_HW = (32, 48)  # a scorer input that is not square, so rows and columns cannot be swapped unnoticed


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory):
    return Upscaler.from_file(build_compact_upscaler(tmp_path_factory.mktemp("up") / "x4.pth", num_feat=8, num_conv=2))


def noise_image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)


# box xyxy in a 600 x 400 image -> shape of the crop the scorer gets with a 4x upscaler
@pytest.mark.parametrize("box_xyxy, out_hw", [
    ((0, 0, 600, 400), (32 * 4, 48 * 4)),    # whole image: capped on both sides, not 1600 x 2400
    ((0, 0, 600, 10), (10 * 4, 48 * 4)),     # a long thin box: only its long side is capped
    ((0, 0, 20, 300), (32 * 4, 20 * 4)),
    ((5, 5, 53, 37), (32 * 4, 48 * 4)),      # exactly the scorer input: untouched
    ((5, 5, 25, 15), (10 * 4, 20 * 4)),      # small: untouched
])
def test_upscaler_input_is_capped_at_the_scorer_input(upscaler, box_xyxy, out_hw):
    image = noise_image(400, 600)
    crops = prepare_crops(image, np.array([box_xyxy], np.float32), upscaler, scorer_hw=SCORER_HW)
    assert crops[0].shape == (*out_hw, 3) and crops[0].dtype == np.uint8


def test_crops_within_the_scorer_input_are_unchanged(upscaler):
    image = noise_image(400, 600)
    boxes_xyxy = np.array([[0, 0, 1, 1], [10.5, 20.2, 40.7, 50.9], [100, 100, 148, 132], [590, 390, 600, 400]],
                          np.float32)
    before = upscaler.upscale(cut_crops(image, boxes_xyxy))  # what prepare_crops gave before the cap
    after = prepare_crops(image, boxes_xyxy, upscaler, scorer_hw=SCORER_HW)
    assert all(np.array_equal(a, b) for a, b in zip(after, before))


def test_without_an_upscaler_crops_are_the_exact_boxes():
    image = noise_image(400, 600)
    crops = prepare_crops(image, np.array([[0, 0, 600, 400]], np.float32), None, scorer_hw=SCORER_HW)
    assert np.array_equal(crops[0], image)  # the scorer resizes it itself; nothing to bound


def test_no_scorer_size_keeps_the_old_unbounded_rule(upscaler):
    crops = prepare_crops(noise_image(60, 90), np.array([[0, 0, 90, 60]], np.float32), upscaler)
    assert crops[0].shape == (240, 360, 3)


@pytest.mark.parametrize("crop_hw, max_hw, out_hw", [
    ((10, 20), (32, 48), (10, 20)),
    ((100, 20), (32, 48), (32, 20)),
    ((100, 200), (32, 48), (32, 48)),
    ((1, 500), (32, 48), (1, 48)),
])
def test_cap_crop(crop_hw, max_hw, out_hw):
    crop = noise_image(*crop_hw)
    capped = cap_crop(crop, max_hw)
    assert capped.shape == (*out_hw, 3) and capped.dtype == np.uint8
    if out_hw == crop_hw:
        assert capped is crop


@pytest.mark.parametrize("scorer_hw", [(0, 32), (32,), (32.5, 32), "384"])
def test_bad_scorer_size_is_a_clear_error(upscaler, scorer_hw):
    with pytest.raises(ValueError, match="scorer_hw: expected"):
        prepare_crops(noise_image(8, 8), np.array([[0, 0, 8, 8]], np.float32), upscaler, scorer_hw=scorer_hw)
