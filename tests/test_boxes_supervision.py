"""Candidates <-> supervision.Detections: the round trip, supervision's own tools on findbox's boxes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import supervision as sv  # the [supervision] extra, part of [test]

from findbox.boxes import Candidates
from findbox.env import MissingExtra

XYXY = [[10, 5, 30, 25], [-3, 40, 120, 60.5], [0.25, 0.5, 0.75, 1.0]]  # as proposed: one partly outside, one tiny


def assert_same(a: Candidates, b: Candidates) -> None:
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.det_score, b.det_score)
    np.testing.assert_array_equal(a.match_score, b.match_score)  # NaN where NaN
    assert a.xyxy.dtype == b.xyxy.dtype == np.float32


@pytest.mark.parametrize("cands", [
    Candidates.empty(),
    Candidates(XYXY[:1], [0.7]),
    Candidates(XYXY, [0.2, 0.9, 0.5]),  # not re-sorted
    Candidates(XYXY, [0.2, 0.9, 0.5], [1.5, np.nan, -3.25]),  # scored, one not
], ids=["empty", "one", "unscored", "scored"])
def test_round_trip(cands):
    detections = cands.to_supervision()
    assert isinstance(detections, sv.Detections) and len(detections) == len(cands)
    np.testing.assert_array_equal(detections.xyxy, cands.xyxy)
    np.testing.assert_array_equal(detections.confidence, cands.det_score)
    np.testing.assert_array_equal(detections.class_id, np.zeros(len(cands)))  # one class
    assert_same(Candidates.from_supervision(detections), cands)


def test_supervision_filtering_matches_candidates_indexing():
    cands = Candidates(XYXY, [0.2, 0.9, 0.5], [1.5, np.nan, -3.25])
    detections = cands.to_supervision()
    kept = detections[detections.confidence > 0.3]  # supervision's boolean indexing carries data along
    assert_same(Candidates.from_supervision(kept), cands[cands.det_score > 0.3])
    merged = sv.Detections.merge([detections[:1], detections[2:]])
    assert_same(Candidates.from_supervision(merged), Candidates.concat([cands[:1], cands[2:]]))


def test_boxes_from_another_tool_are_unscored():
    """supervision's adapter for ultralytics and findbox's own give the same Candidates."""
    import torch
    from ultralytics.engine.results import Results

    rows = torch.tensor([[10, 5, 30, 25, 0.2, 0], [-3, 40, 120, 60, 0.9, 1]], dtype=torch.float32)
    result = Results(np.zeros((50, 100, 3), np.uint8), path="x.jpg", names={0: "a", 1: "b"}, boxes=rows)
    got = Candidates.from_supervision(sv.Detections.from_ultralytics(result))
    assert_same(got, Candidates.from_ultralytics(result))
    assert np.isnan(got.match_score).all()


def test_supervision_draws_findbox_boxes():
    image = np.zeros((64, 96, 3), np.uint8)
    drawn = sv.BoxAnnotator(thickness=2).annotate(image.copy(), Candidates([[10, 10, 40, 30]], [0.8]).to_supervision())
    assert drawn[10, 20].any() and not drawn[20, 25].any()  # on the box's top edge, not inside it


def test_from_supervision_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="expected a supervision.Detections, got dict"):
        Candidates.from_supervision({"xyxy": XYXY})
    labels = sv.Detections(xyxy=np.array(XYXY, np.float32), class_id=np.zeros(3, int))  # no confidence
    with pytest.raises(ValueError, match=r"expected detections.confidence .*got None"):
        Candidates.from_supervision(labels)


def test_missing_extra_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "supervision" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"pip install 'findbox\[supervision\]'"):
        Candidates.empty().to_supervision()
