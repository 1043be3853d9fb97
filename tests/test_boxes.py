import numpy as np
import pytest
import torch

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


def _cands(xyxy, det, match=None) -> Candidates:
    return Candidates(np.array(xyxy, np.float32).reshape(-1, 4), np.array(det, np.float32),
                      None if match is None else np.array(match, np.float32))


@pytest.mark.parametrize("xyxy, det, n", [
    (np.zeros((0, 4)), np.zeros(0), 0),
    ([], [], 0),  # empty lists are no boxes
    ([1, 2, 3, 4], 0.5, 1),  # one box, e.g. from an integer index
    ([[1, 2, 3, 4]], [0.5], 1),
    (np.arange(12).reshape(3, 4), [0.9, 0.2, 0.5], 3),
])
def test_candidates_accept_shapes(xyxy, det, n):
    c = Candidates(xyxy, det)
    assert len(c) == n and c.xyxy.shape == (n, 4) and c.det_score.shape == (n,) and c.match_score.shape == (n,)
    assert c.xyxy.dtype == c.det_score.dtype == c.match_score.dtype == np.float32


@pytest.mark.parametrize("xyxy, det, match, field", [
    (np.zeros(8), np.zeros(2), None, "xyxy"),  # a flat array is not silently read as boxes
    (np.zeros((2, 5)), np.zeros(2), None, "xyxy"),
    (np.zeros((1, 2, 4)), np.zeros(2), None, "xyxy"),
    (np.zeros((2, 4)), np.zeros(3), None, "det_score"),
    (np.zeros((2, 4)), np.zeros((2, 1)), None, "det_score"),
    (np.zeros((2, 4)), np.zeros(2), np.zeros(1), "match_score"),
])
def test_candidates_reject_shapes(xyxy, det, match, field):
    with pytest.raises(ValueError, match=f"Candidates.{field}: expected"):
        Candidates(xyxy, det, match)


def test_candidates_integer_index_and_slice():
    c = _cands([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], [0.1, 0.2, 0.3], [1, 2, 3])
    one = c[1]
    assert len(one) == 1 and one.xyxy.tolist() == [[2, 2, 3, 3]] and one.match_score.tolist() == [2]
    assert c[:2].det_score.tolist() == pytest.approx([0.1, 0.2]) and len(c[np.array([2, 0])]) == 2
    assert len(c[np.zeros(3, bool)]) == 0


@pytest.mark.parametrize("parts, expected_det", [
    ([], []),
    ([Candidates.empty(), Candidates.empty()], []),
    ([Candidates.empty(), _cands([1, 1, 2, 2], [0.4])], [0.4]),
    ([_cands([[1, 1, 2, 2], [3, 3, 4, 4]], [0.4, 0.9]), _cands([5, 5, 6, 6], [0.7])], [0.4, 0.9, 0.7]),  # order kept
])
def test_concat(parts, expected_det):
    got = Candidates.concat(parts)
    np.testing.assert_array_equal(got.det_score, np.array(expected_det, np.float32))
    assert got.xyxy.shape == (len(expected_det), 4)
    if parts:
        np.testing.assert_array_equal(got.xyxy, np.concatenate([p.xyxy for p in parts]))


def test_concat_keeps_match_scores_and_rejects_other_types():
    got = Candidates.concat([_cands([1, 1, 2, 2], [0.4], [2.5]), _cands([1, 1, 2, 2], [0.4])])
    assert got.match_score[0] == 2.5 and np.isnan(got.match_score[1])
    with pytest.raises(TypeError, match="index 1"):
        Candidates.concat([Candidates.empty(), (np.zeros((1, 4)), np.zeros(1))])


@pytest.mark.parametrize("xyxy, det, iou, max_det, expected_det", [
    ([], [], 0.5, 10, []),
    ([[0, 0, 10, 10]], [0.3], 0.5, 10, [0.3]),
    ([[0, 0, 10, 10], [1, 0, 11, 10]], [0.3, 0.8], 0.5, 10, [0.8]),  # overlapping: the best is kept
    ([[0, 0, 10, 10], [1, 0, 11, 10]], [0.3, 0.8], 0.9, 10, [0.8, 0.3]),  # IoU 0.82 < 0.9: both, best first
    ([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.2, 0.9, 0.5], 0.5, 2, [0.9, 0.5]),  # capped
    ([[0, 0, 10, 10], [20, 0, 30, 10]], [0.2, 0.9], 0.5, 0, []),
])
def test_nms(xyxy, det, iou, max_det, expected_det):
    c = _cands(xyxy, det, np.arange(len(det)))  # match_score tags each box with its input row
    got = c.nms(iou, max_det)
    np.testing.assert_array_equal(got.det_score, np.array(expected_det, np.float32))
    rows = got.match_score.astype(int)
    np.testing.assert_array_equal(got.xyxy, c.xyxy[rows])  # each box keeps its own score
    np.testing.assert_array_equal(got.det_score, c.det_score[rows])


@pytest.mark.parametrize("xyxy, image_wh, expected", [
    ([], (100, 50), np.zeros((0, 4))),
    ([[10, 10, 20, 20]], (100, 50), [[10, 10, 20, 20]]),
    ([[-5, -5, 120, 60]], (100, 50), [[0, 0, 100, 50]]),
    ([[200, 200, 300, 300]], (100, 50), [[100, 50, 100, 50]]),  # fully outside: kept, zero-area on the edge
])
def test_clip(xyxy, image_wh, expected):
    c = _cands(xyxy, np.linspace(0.9, 0.1, len(xyxy)))
    got = c.clip(image_wh)
    np.testing.assert_array_equal(got.xyxy, np.array(expected, np.float32).reshape(-1, 4))
    np.testing.assert_array_equal(got.det_score, c.det_score)
    np.testing.assert_array_equal(c.xyxy, np.array(xyxy, np.float32).reshape(-1, 4))  # the original is untouched


@pytest.mark.parametrize("det, order", [
    ([], []),
    ([0.5], [0]),
    ([0.1, 0.9, 0.5], [1, 2, 0]),
    ([0.5, 0.9, 0.5, 0.5], [1, 0, 2, 3]),  # equal scores keep their order
])
def test_sorted_is_stable_descending(det, order):
    xyxy = np.arange(4 * len(det)).reshape(-1, 4)
    got = _cands(xyxy, det, np.arange(len(det))).sorted()
    assert got.match_score.tolist() == order
    np.testing.assert_array_equal(got.xyxy, np.asarray(xyxy, np.float32)[order].reshape(-1, 4))


@pytest.mark.parametrize("xyxy, dx, dy, expected", [
    ([], 5, 5, np.zeros((0, 4))),
    ([[1, 2, 3, 4], [0, 0, 10, 10]], 44, 26, [[45, 28, 47, 30], [44, 26, 54, 36]]),
    ([[1.5, 2, 3, 4]], np.int64(-1), 0.25, [[0.5, 2.25, 2, 4.25]]),
])
def test_shifted(xyxy, dx, dy, expected):
    got = _cands(xyxy, np.ones(len(xyxy))).shifted(dx, dy)
    np.testing.assert_array_equal(got.xyxy, np.array(expected, np.float32).reshape(-1, 4))
    assert got.xyxy.dtype == np.float32


def _results(xyxy_conf_cls: list[list[float]]):
    from ultralytics.engine.results import Results

    data = torch.tensor(xyxy_conf_cls, dtype=torch.float32).reshape(-1, 6)
    return Results(np.zeros((50, 100, 3), np.uint8), path="x.jpg", names={0: "a", 1: "b"}, boxes=data)


@pytest.mark.parametrize("rows", [
    [],
    [[10, 5, 30, 25, 0.7, 0]],
    [[10, 5, 30, 25, 0.2, 0], [-3, 40, 120, 60, 0.9, 1]],  # as predicted: not clipped, not re-sorted, classes dropped
])
def test_from_ultralytics_results(rows):
    got = Candidates.from_ultralytics(_results(rows))
    expected = np.array(rows, np.float32).reshape(-1, 6)
    np.testing.assert_array_equal(got.xyxy, expected[:, :4])
    np.testing.assert_array_equal(got.det_score, expected[:, 4])
    assert got.xyxy.dtype == np.float32 and np.isnan(got.match_score).all()


def test_from_ultralytics_rejects_results_without_boxes():
    from ultralytics.engine.results import Results

    probs = Results(np.zeros((8, 8, 3), np.uint8), path="x.jpg", names={0: "a"}, probs=torch.tensor([1.0]))
    with pytest.raises(TypeError, match="from_ultralytics: expected a detection Results"):
        Candidates.from_ultralytics(probs)


def test_from_ultralytics_on_a_real_model(tiny_models):
    from ultralytics import YOLO

    from tests.conftest import make_image

    yolo = YOLO(str(tiny_models["detector"]), task="detect")
    threads = torch.get_num_threads()
    try:
        (result,) = yolo.predict([make_image(3)[..., ::-1].copy()], imgsz=160, conf=0.001, max_det=10, verbose=False)
    finally:
        torch.set_num_threads(threads)  # ultralytics changes it process-wide (see Detector._predict)
    got = Candidates.from_ultralytics(result)
    assert 0 < len(got) <= 10
    np.testing.assert_array_equal(got.xyxy, result.boxes.xyxy.numpy())
    np.testing.assert_array_equal(got.det_score, result.boxes.conf.numpy())
