"""The benchmark's baseline: a whole request served the original's way equals the per-instance loop."""

import numpy as np
import pytest

from findbox.testing.reference import reference_ground, reference_request
from tests.conftest import CAPTIONS, make_image


def test_reference_request_equals_reference_ground(tiny_pipeline):
    a, b = make_image(90), make_image(91)
    images, captions = [a, a, b, a], [CAPTIONS[0], CAPTIONS[1], CAPTIONS[2], CAPTIONS[3]]
    got = reference_request(tiny_pipeline, images, captions)
    for image, caption, g in zip(images, captions, got):
        want = reference_ground(tiny_pipeline, image, caption)
        np.testing.assert_allclose(g.candidates.xyxy, want.candidates.xyxy, atol=1e-3)
        np.testing.assert_allclose(g.candidates.match_score, want.candidates.match_score, atol=1e-4)


def test_reference_request_needs_one_caption_per_image(tiny_pipeline):
    with pytest.raises(ValueError, match="one caption per image"):
        reference_request(tiny_pipeline, [make_image(0)], ["a", "b"])
