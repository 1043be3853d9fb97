"""The detector's single-class AP by faster-coco-eval, on cases whose answer can be worked out by hand.

COCOeval interpolates precision at 101 recall points (0, 0.01, ..., 1) and averages them, so
a set whose recall stops at r with precision 1 up to there has AP = (number of points <= r) / 101.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from findbox.boxes import Candidates
from findbox.eval.data import Sample
from findbox.eval.detector_ap import average_precision, detector_ap
from findbox.eval.runner import InstanceResult, Run

TRUTHS = [np.array([[10, 10, 20, 20]]), np.array([[50, 50, 40, 40]])]  # one box per image, ltwh
EXACT = [Candidates([[10, 10, 30, 30]], [0.9]), Candidates([[50, 50, 90, 90]], [0.8])]  # the same boxes, xyxy
FAR = [[200, 200, 220, 220]]  # overlaps nothing


@pytest.mark.parametrize("name, truths, detections, ap50, ap50_95", [
    ("perfect", TRUTHS, EXACT, 1.0, 1.0),
    # recall stops at 1/2 with precision 1: the 51 points 0..0.5 of 101
    ("one image missed", TRUTHS, [EXACT[0], Candidates.empty()], 51 / 101, 51 / 101),
    ("one image never run (bad image)", TRUTHS, [EXACT[0], None], 51 / 101, 51 / 101),
    # one truth, a false positive ranked above the true box: precision 1/2 at recall 1, everywhere after interpolation
    ("false positive first", TRUTHS[:1], [Candidates([FAR[0], [10, 10, 30, 30]], [0.9, 0.8])], 0.5, 0.5),
    # ... and ranked below it: precision 1 up to recall 1, the false positive comes after
    ("false positive last", TRUTHS[:1], [Candidates([FAR[0], [10, 10, 30, 30]], [0.1, 0.8])], 1.0, 1.0),
    # IoU 0.72 (a box 72 of 100 px tall): matched at IoU thresholds 0.50, 0.55, ..., 0.70, i.e. 5 of 10
    ("loose box", [np.array([[0, 0, 100, 100]])], [Candidates([[0, 0, 100, 72]], [0.5])], 1.0, 0.5),
    ("no detections at all", TRUTHS, [Candidates.empty(), Candidates.empty()], 0.0, 0.0),
])
def test_average_precision_hand_checked(name, truths, detections, ap50, ap50_95):
    out = average_precision(truths, detections)
    assert out["ap50"] == pytest.approx(ap50, abs=1e-9)
    assert out["ap50_95"] == pytest.approx(ap50_95, abs=1e-9)
    assert out["n_images"] == len(truths)
    assert out["n_truths"] == sum(len(t) for t in truths)
    assert out["n_detections"] == sum(len(d) for d in detections if d is not None)
    assert out["evaluator"].startswith("faster-coco-eval ")


def test_no_true_box_has_no_ap():
    out = average_precision([np.zeros((0, 4))], [Candidates([[0, 0, 5, 5]], [0.5])])
    assert out["ap50"] is None and out["ap50_95"] is None


def test_more_than_100_proposals_all_count():
    """COCO caps detections at 100 per image; the pipeline may rank more, so the cap grows to fit them."""
    far = np.array([[300 + i, 300, 310 + i, 310] for i in range(120)], dtype=np.float32)
    boxes = np.concatenate([far, [[10, 10, 30, 30]]])  # the true box is the 121st and least confident
    scores = np.concatenate([np.linspace(0.9, 0.5, 120), [0.1]])
    out = average_precision(TRUTHS[:1], [Candidates(boxes, scores)])
    assert out["max_dets"] == 121
    assert out["ap50"] == pytest.approx(1 / 121, abs=1e-9)  # precision 1/121 at recall 1


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="expected one entry per image"):
        average_precision(TRUTHS, EXACT[:1])


def run_of(samples_candidates, run_conf=0.01) -> Run:
    results = [InstanceResult(sample, candidates=cands) for sample, cands in samples_candidates]
    return Run("in-process", results, run_conf=run_conf)


def test_detector_ap_of_a_run_counts_each_true_box_once():
    # two captions of one object (RefCOCO's case) are one true box; a second image was unreadable
    a = Sample("a.jpg", "the left cat", (10.0, 10.0, 20.0, 20.0))
    a2 = Sample("a.jpg", "cat on the left", (10.0, 10.0, 20.0, 20.0))
    b = Sample("b.jpg", "dog", (50.0, 50.0, 40.0, 40.0))
    out = detector_ap(run_of([(a, EXACT[0]), (a2, EXACT[0]), (b, None)]))
    assert out["n_truths"] == 2 and out["n_images"] == 2 and out["n_detections"] == 1
    assert out["ap50"] == pytest.approx(51 / 101, abs=1e-9)
    assert out["conf"] == 0.01
    assert detector_ap(run_of([(a, EXACT[0]), (a2, EXACT[0])]))["ap50"] == pytest.approx(1.0)


def test_detector_ap_needs_an_in_process_run():
    with pytest.raises(ValueError, match="in-process run"):
        detector_ap(Run("server", [InstanceResult(Sample("a.jpg", "cat", (0.0, 0.0, 1.0, 1.0)))]))


def test_missing_package_is_said_not_raised(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faster_coco_eval" else real(name, *a))
    out = detector_ap(run_of([(Sample("a.jpg", "cat", (10.0, 10.0, 20.0, 20.0)), EXACT[0])]))
    assert set(out) == {"error"}
    assert "faster_coco_eval" in out["error"] and "pip install 'findbox[eval]'" in out["error"]
