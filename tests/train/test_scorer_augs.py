"""The scorer's share of an augmentation preset: pixel-level and colour-preserving."""

import numpy as np
import pytest

from findbox.train.augs import build_augs
from findbox.train.scorer_data import pixel_level


@pytest.mark.parametrize("preset", ["v1", "v2"])
def test_scorer_augs_keep_geometry_and_colour(preset):
    kept, dropped = pixel_level(build_augs(preset))
    names = {type(t).__name__ for t in kept}
    assert "ToGray" not in names and not names & {"HorizontalFlip", "RandomRotate90", "OneOf"}
    if preset == "v1":
        assert "ToGray" in dropped
    import albumentations as A

    crop = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    out = A.Compose(kept, seed=0)(image=crop)["image"]
    assert out.shape == crop.shape and out.dtype == np.uint8
