import numpy as np
import pytest

from findbox.boxes import Candidates, box_iou, clip_xyxy, crop_window, ltwh_to_xyxy, xyxy_to_ltwh


@pytest.mark.parametrize(
    "ltwh, xyxy",
    [
        ([0, 0, 10, 20], [0, 0, 10, 20]),
        ([5.5, 2.25, 1, 1], [5.5, 2.25, 6.5, 3.25]),
        ([100, 50, 0, 0], [100, 50, 100, 50]),  # zero-size box stays zero-size
        ([-4, -3, 8, 6], [-4, -3, 4, 3]),  # partly outside the image: no silent clipping
    ],
)
def test_ltwh_xyxy_round_trip(ltwh, xyxy):
    np.testing.assert_allclose(ltwh_to_xyxy(np.array(ltwh)), xyxy)
    np.testing.assert_allclose(xyxy_to_ltwh(np.array(xyxy)), ltwh)


def test_conversions_keep_batch_shape():
    boxes = np.array([[0, 0, 1, 1], [2, 3, 4, 5]], dtype=np.float64)
    assert ltwh_to_xyxy(boxes).shape == (2, 4)
    assert ltwh_to_xyxy(boxes).dtype == np.float32


@pytest.mark.parametrize(
    "xyxy, image_wh, expected",
    [
        ([10, 10, 20, 20], (100, 50), [10, 10, 20, 20]),
        ([-5, -5, 20, 20], (100, 50), [0, 0, 20, 20]),
        ([90, 40, 130, 70], (100, 50), [90, 40, 100, 50]),
        ([200, 200, 300, 300], (100, 50), [100, 50, 100, 50]),  # fully outside -> zero area on the edge
    ],
)
def test_clip_xyxy(xyxy, image_wh, expected):
    np.testing.assert_allclose(clip_xyxy(np.array(xyxy), image_wh), expected)


@pytest.mark.parametrize(
    "xyxy, image_wh, window",
    [
        ([10.2, 5.7, 20.1, 9.0], (100, 50), (10, 5, 21, 9)),  # rounded outwards
        ([3, 3, 3, 3], (100, 50), (3, 3, 4, 4)),  # zero-size box -> one pixel
        ([0, 0, 0.4, 0.4], (1, 1), (0, 0, 1, 1)),  # 1-pixel image
        ([120, 60, 130, 70], (100, 50), (99, 49, 100, 50)),  # outside -> last pixel
        ([-10, -10, -5, -5], (100, 50), (0, 0, 1, 1)),
        ([0, 0, 100, 50], (100, 50), (0, 0, 100, 50)),
    ],
)
def test_crop_window_is_valid(xyxy, image_wh, window):
    assert crop_window(np.array(xyxy), image_wh) == window


@pytest.mark.parametrize(
    "a, b, iou",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # zero-size boxes
        ([0, 0, 10, 10], [2, 2, 8, 8], 36 / 100),
    ],
)
def test_box_iou(a, b, iou):
    assert box_iou(np.array(a), np.array(b))[0, 0] == pytest.approx(iou)


def test_box_iou_pairwise_shape():
    assert box_iou(np.zeros((3, 4)), np.zeros((5, 4))).shape == (3, 5)


def test_candidates_validate_and_index():
    c = Candidates(np.arange(12).reshape(3, 4), [0.9, 0.2, 0.5])
    assert len(c) == 3 and np.isnan(c.match_score).all()
    kept = c[c.det_score > 0.3]
    assert len(kept) == 2
    np.testing.assert_allclose(kept.det_score, [0.9, 0.5])
    assert kept.xyxy.shape == (2, 4)
    np.testing.assert_allclose(c.ltwh[1], [4, 5, 2, 2])
    with pytest.raises(ValueError, match="det_score"):
        Candidates(np.zeros((2, 4)), [0.1])
    assert len(Candidates.empty()) == 0
