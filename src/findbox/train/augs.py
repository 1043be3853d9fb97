"""Augmentation presets of the original recipe ("YOLO Augs V1" / "V2" in the design note).

`build_augs(name)` returns a plain list of albumentations 2.x transforms that work on
uint8 HWC RGB images. The detector trainer hands the list to ultralytics
(`model.train(augmentations=...)`); the scorer trainer can wrap the same list in
`A.Compose` for crops. Augment on uint8, normalise last (FACTS: mixing float tensors
with un-normalised noise silently wrecked the original's training).

The note was written for albumentations 1.x. Translation to 2.0.8, argument by argument:

| design note (1.x)                       | here (2.0.8)                                               |
|-----------------------------------------|------------------------------------------------------------|
| GaussNoise(var_limit=2500)              | GaussNoise(std_range=(0, 50/255)): a scalar var_limit v    |
|                                         | meant variance in (0, v) uint8 units; std = sqrt(v) = 50,  |
|                                         | and 2.x std_range is a fraction of 255 (*)                 |
| GaussNoise(var_limit=(500, 5000),       | GaussNoise(std_range=(sqrt(500)/255, sqrt(5000)/255)       |
|            per_channel=True)            |            = (0.0877, 0.2773), per_channel=True) (*)       |
| Flip(p)                                 | OneOf([HorizontalFlip, VerticalFlip,                       |
|                                         |        Sequential([HorizontalFlip, VerticalFlip])], p):    |
|                                         | 1.x Flip drew cv2.flip's code from {-1, 0, 1} uniformly    |
| ImageCompression(quality_lower=75)      | ImageCompression(quality_range=(75, 100)) (upper default)  |
| ImageCompression(quality_range=(25,75)) | unchanged                                                  |
| ISONoise, MultiplicativeNoise,          | unchanged: the arguments the note sets keep their names,   |
| AdvancedBlur, RandomRotate90, CLAHE,    | and the defaults it relies on are the same in 2.0.8        |
| Blur, MedianBlur, ToGray, RandomGamma,  | (ToGray's 2.x default, weighted_average, uses the same     |
| RandomBrightnessContrast                | 0.299/0.587/0.114 weights as 1.x's cv2 conversion)         |

(*) 1.x drew the variance uniformly and took its square root; 2.x draws the standard
deviation uniformly between the same bounds, so weak noise is a little more frequent
(mean std 25 instead of 33 for V1; 2.x offers no variance-uniform option).

Geometric transforms (the flips, RandomRotate90) are safe in the detector: the installed
ultralytics (8.4) builds its albumentations Compose with `bbox_params` as soon as the list
holds a spatial (DualTransform) transform, so boxes move with the pixels
(tests/train/test_augs.py checks it). They run after ultralytics' mosaic/affine stage, on
its square imgsz x imgsz canvas, so RandomRotate90 keeps the shape. ultralytics' own
augmentations (mosaic, HSV, fliplr=0.5, ...) stay at their defaults, as in the original.
"""

from __future__ import annotations

import enum
import math


class AugPreset(str, enum.Enum):
    V1 = "v1"  # the first set: moderate noise, flips, light photometric changes
    V2 = "v2"  # the later set: strong noise always on, rot90, heavy JPEG; aimed at the noisy test
    NONE = "none"  # no albumentations at all (ultralytics' own augmentations still run)


def _uint8_var_to_std(variance: float) -> float:
    """A 1.x GaussNoise variance in uint8 units -> a 2.x std_range bound (fraction of 255)."""
    return math.sqrt(variance) / 255.0


def _flip_any(p: float):
    """albumentations 1.x `A.Flip`: horizontal, vertical or both, one of three uniformly."""
    from findbox.env import require
    require("albumentations", "train")
    import albumentations as A

    return A.OneOf(
        [
            A.HorizontalFlip(p=1.0),
            A.VerticalFlip(p=1.0),
            A.Sequential([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=1.0),
        ],
        p=p,
    )


def build_augs(name: str | AugPreset) -> list:
    """The preset's albumentations transforms, in the note's order; [] for "none".

    Raises ValueError for an unknown name.
    """
    try:
        preset = AugPreset(name)
    except ValueError:
        allowed = ", ".join(p.value for p in AugPreset)
        raise ValueError(f"augs: expected one of {allowed}, got {name!r}") from None
    if preset is AugPreset.NONE:
        return []

    from findbox.env import require
    require("albumentations", "train")
    import albumentations as A

    if preset is AugPreset.V1:
        return [
            A.GaussNoise(std_range=(0.0, _uint8_var_to_std(2500)), p=0.5),
            _flip_any(p=0.5),
            A.Blur(p=0.1),
            A.MedianBlur(p=0.1),
            A.ToGray(p=0.1),
            A.CLAHE(p=0.1),
            A.RandomBrightnessContrast(p=0.5),
            A.RandomGamma(p=0.2),
            A.ImageCompression(quality_range=(75, 100), p=0.5),
        ]
    return [
        A.GaussNoise(std_range=(_uint8_var_to_std(500), _uint8_var_to_std(5000)), per_channel=True, p=1.0),
        A.ISONoise(color_shift=(0.02, 0.07), p=1.0),
        A.MultiplicativeNoise(p=1.0),
        A.AdvancedBlur(blur_limit=(3, 11), p=0.3),
        _flip_any(p=0.5),
        A.RandomRotate90(p=0.5),
        A.CLAHE(p=0.2),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.5, p=0.5),
        A.RandomGamma(p=0.2),
        A.ImageCompression(quality_range=(25, 75), p=0.8),
    ]


def describe_augs(transforms: list) -> str:
    """One line a transform, for the log at the start of training."""
    if not transforms:
        return "  (none)"
    return "\n".join("  " + " ".join(repr(t).split()) for t in transforms)
