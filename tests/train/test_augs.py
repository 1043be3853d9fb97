"""Augmentation presets: the note's V1/V2 translated to albumentations 2.x."""

from __future__ import annotations

import math

import numpy as np
import pytest

from findbox.train.augs import AugPreset, _flip_any, build_augs, describe_augs


def _uint8_image(h: int = 48, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["v1", "v2", AugPreset.V1, AugPreset.V2])
@pytest.mark.parametrize("hw", [(48, 80), (37, 23), (8, 8)])  # crops of any shape, tiny ones included
def test_presets_run_on_uint8(name, hw):
    import albumentations as A

    compose = A.Compose(build_augs(name), seed=1)
    for seed in range(5):
        image = _uint8_image(*hw, seed=seed)
        out = compose(image=image)["image"]
        assert out.dtype == np.uint8
        assert sorted(out.shape[:2]) == sorted(hw) and out.shape[2] == 3  # RandomRotate90 may swap H and W


def test_none_and_unknown():
    assert build_augs("none") == []
    assert describe_augs([]) == "  (none)"
    with pytest.raises(ValueError, match="expected one of v1, v2, none, got 'v3'"):
        build_augs("v3")


def test_v1_matches_the_note():
    t = build_augs("v1")
    names = [type(x).__name__ for x in t]
    assert names == ["GaussNoise", "OneOf", "Blur", "MedianBlur", "ToGray", "CLAHE",
                     "RandomBrightnessContrast", "RandomGamma", "ImageCompression"]
    assert [x.p for x in t] == [0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.5, 0.2, 0.5]
    np.testing.assert_allclose(t[0].std_range, (0.0, math.sqrt(2500) / 255))  # var_limit=2500 (uint8 variance)
    assert tuple(t[8].quality_range) == (75, 100)  # quality_lower=75


def test_v2_matches_the_note():
    t = build_augs("v2")
    names = [type(x).__name__ for x in t]
    assert names == ["GaussNoise", "ISONoise", "MultiplicativeNoise", "AdvancedBlur", "OneOf", "RandomRotate90",
                     "CLAHE", "RandomBrightnessContrast", "RandomGamma", "ImageCompression"]
    assert [x.p for x in t] == [1.0, 1.0, 1.0, 0.3, 0.5, 0.5, 0.2, 0.5, 0.2, 0.8]
    np.testing.assert_allclose(t[0].std_range, (math.sqrt(500) / 255, math.sqrt(5000) / 255))
    assert t[0].per_channel is True
    assert tuple(t[1].color_shift) == (0.02, 0.07)
    assert tuple(t[3].blur_limit) == (3, 11)
    assert tuple(t[7].brightness_limit) == (-0.2, 0.2) and tuple(t[7].contrast_limit) == (-0.5, 0.5)
    assert tuple(t[9].quality_range) == (25, 75)


def test_noise_strength_is_in_uint8_units():
    """V1's noise std must stay within 50 grey levels (the note's var_limit=2500)."""
    import albumentations as A

    noise = A.Compose([A.GaussNoise(std_range=build_augs("v1")[0].std_range, p=1.0)], seed=3)
    flat = np.full((64, 64, 3), 128, np.uint8)
    stds = [float(noise(image=flat)["image"].astype(np.float32).std()) for _ in range(20)]
    assert max(stds) <= 52 and max(stds) > 10


def test_flip_any_is_albumentations_1x_flip():
    """Horizontal, vertical or both, never the identity when applied, each about a third of the time."""
    import albumentations as A

    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    outcomes = {"h": image[:, ::-1], "v": image[::-1], "hv": image[::-1, ::-1]}
    flip = A.Compose([_flip_any(p=1.0)], seed=0)
    counts = dict.fromkeys(outcomes, 0)
    for _ in range(300):
        out = flip(image=image)["image"]
        (kind,) = [k for k, v in outcomes.items() if np.array_equal(out, v)]
        counts[kind] += 1
    assert all(60 < c < 140 for c in counts.values()), counts


def test_presets_survive_ultralytics_serialisation():
    """ultralytics stores the list in checkpoints with A.to_dict and rebuilds it with A.from_dict (resume, DDP)."""
    import albumentations as A

    for name in ("v1", "v2"):
        t = build_augs(name)
        assert [repr(A.from_dict(A.to_dict(x))) for x in t] == [repr(x) for x in t]


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_boxes_follow_pixels_inside_ultralytics(name):
    """ultralytics applies spatial transforms of the list bbox-aware: the label box moves with the object."""
    from ultralytics.data.augment import Albumentations
    from ultralytics.utils.instance import Instances

    spatial = [t for t in build_augs(name) if type(t).__name__ in ("OneOf", "RandomRotate90")]
    for t in spatial:
        t.p = 1.0
    augment = Albumentations(p=1.0, transforms=spatial)
    assert augment.contains_spatial
    image = np.zeros((64, 96, 3), np.uint8)
    image[10:20, 5:35] = 255  # the object, at xyxy (5, 10, 35, 20)
    for _ in range(12):
        labels = {
            "img": image.copy(),
            "cls": np.zeros((1, 1), np.float32),
            "instances": Instances(np.array([[5, 10, 35, 20]], np.float32), np.zeros((0, 1000, 2), np.float32),
                                   bbox_format="xyxy", normalized=False),
        }
        out = augment(labels)
        h, w = out["img"].shape[:2]
        boxes = out["instances"]
        boxes.convert_bbox("xyxy")
        boxes.denormalize(w, h)
        ys, xs = np.nonzero(out["img"][..., 0] > 128)
        np.testing.assert_allclose(boxes.bboxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=0.5)
