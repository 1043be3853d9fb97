"""The published rule on hand-made boxes: IoU on ltwh, hit = round(IoU) == 1 (half to even); the field's Acc@k."""

import pytest

from findbox.eval.metric import accuracy, accuracy_at, iou_ltwh, is_hit, mean_iou, speed_score, task_score

# (truth ltwh, prediction ltwh, expected IoU, hit?)
CASES = [
    ("identical", [10, 20, 30, 40], [10, 20, 30, 40], 1.0, True),
    ("exactly half: pred twice as wide", [0, 0, 10, 10], [0, 0, 20, 10], 0.5, False),
    ("exactly half: pred half as tall", [0, 0, 10, 10], [0, 0, 10, 5], 0.5, False),
    ("just above half", [0, 0, 10, 10], [0, 0, 19.9, 10], 100 / 199, True),
    ("just below half", [0, 0, 10, 10], [0, 0, 20.1, 10], 100 / 201, False),
    ("shifted a third", [0, 0, 30, 30], [10, 0, 30, 30], 600 / 1200, False),
    ("shifted a quarter", [0, 0, 40, 40], [10, 0, 40, 40], 1200 / 2000, True),
    ("no overlap", [0, 0, 10, 10], [50, 50, 10, 10], 0.0, False),
    ("touching edges", [0, 0, 10, 10], [10, 0, 10, 10], 0.0, False),
    ("zero-size prediction inside truth", [0, 0, 10, 10], [5, 5, 0, 0], 0.0, False),
    ("zero-width truth", [5, 5, 0, 10], [0, 0, 10, 20], 0.0, False),
    ("both zero-size, same point", [3, 3, 0, 0], [3, 3, 0, 0], 0.0, False),
    ("negative width counts as empty", [0, 0, 10, 10], [10, 0, -10, 10], 0.0, False),
    ("fallback [0,0,0,0]", [100, 50, 20, 10], [0, 0, 0, 0], 0.0, False),
    ("fractional pixels", [0.5, 0.5, 10, 10], [0.5, 0.5, 10, 10], 1.0, True),
]


@pytest.mark.parametrize("name, truth, pred, expected, hit", CASES, ids=[c[0] for c in CASES])
def test_iou_and_hit(name, truth, pred, expected, hit):
    iou = iou_ltwh(truth, pred)
    assert iou == pytest.approx(expected, abs=1e-12)
    assert iou_ltwh(pred, truth) == pytest.approx(expected, abs=1e-12)  # symmetric
    assert is_hit(iou) is hit


@pytest.mark.parametrize("iou, hit", [(0.5, False), (0.5000001, True), (0.4999999, False), (1.0, True), (0.0, False)])
def test_hit_is_round_half_to_even(iou, hit):
    assert is_hit(iou) is hit


@pytest.mark.parametrize("hits, expected", [([], 0.0), ([True], 1.0), ([True, False, False, True], 0.5),
                                            ([False] * 3, 0.0)])
def test_accuracy_is_mean_of_hits(hits, expected):
    assert accuracy(hits) == expected


@pytest.mark.parametrize("seconds, expected", [(0.0, 1.0), (3.0, 0.9), (15.0, 0.5), (30.0, 0.0), (120.0, 0.0),
                                               (-1.0, 1.0)])
def test_speed_score(seconds, expected):
    assert speed_score(seconds) == pytest.approx(expected)


def test_task_score_weights():
    assert task_score(0.8, 0.5) == pytest.approx(0.9 * 0.8 + 0.1 * 0.5)
    assert task_score(1.0, 1.0) == pytest.approx(1.0)


# truth [0, 0, 10, 10] against predictions of known IoU: 1, 0.9 (9 wide), 0.75 (7.5 wide), 0.5 (5 wide: exactly
# the boundary), 100/199 (just above 0.5), 0.25 (2.5 wide), 0 (elsewhere), and an unanswered instance (IoU 0)
KNOWN = [([0, 0, 10, 10], 1.0), ([0, 0, 9, 10], 0.9), ([0, 0, 7.5, 10], 0.75), ([0, 0, 5, 10], 0.5),
         ([0, 0, 19.9, 10], 100 / 199), ([0, 0, 2.5, 10], 0.25), ([50, 50, 10, 10], 0.0)]


def known_ious() -> list[float]:
    ious = [iou_ltwh([0, 0, 10, 10], pred) for pred, _ in KNOWN]
    assert ious == pytest.approx([iou for _, iou in KNOWN], abs=1e-15)
    return ious + [0.0]  # the unanswered one


@pytest.mark.parametrize("threshold, expected", [(0.5, 5 / 8), (0.75, 3 / 8), (0.9, 2 / 8), (0.0, 1.0),
                                                 (1.0, 1 / 8)])
def test_accuracy_at_is_iou_at_least_k(threshold, expected):
    assert accuracy_at(known_ious(), threshold) == expected


def test_task_accuracy_and_acc50_differ_only_at_exactly_half():
    ious = known_ious()
    assert accuracy(is_hit(iou) for iou in ious) == 4 / 8  # round(0.5) == 0: the 5-wide box is a miss
    assert accuracy_at(ious, 0.5) == 5 / 8  # IoU >= 0.5: a hit
    assert [is_hit(iou) for iou in ious if iou != 0.5] == [iou >= 0.5 for iou in ious if iou != 0.5]


def test_mean_iou():
    assert mean_iou(known_ious()) == pytest.approx((1 + 0.9 + 0.75 + 0.5 + 100 / 199 + 0.25) / 8, abs=1e-15)
    assert mean_iou([]) == 0.0 and accuracy_at([], 0.5) == 0.0
