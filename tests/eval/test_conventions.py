"""The field's conventions in eval's numbers: Acc@k and mean IoU in the headline, breakdowns by COCO size,
caption length and data split, on hand-made runs whose answers are known."""

from __future__ import annotations

import json

import pytest

from findbox.eval import analysis
from findbox.eval.data import Sample, samples_of
from findbox.data.vlm import read_vlm_jsonl
from findbox.eval.runner import InstanceResult, Run


def sample(w: float, h: float, caption: str = "grey missile", split: str | None = None) -> Sample:
    return Sample("a.jpg", caption, (0.0, 0.0, float(w), float(h)), split)


def run_with_predictions(samples: list[Sample], preds: list[tuple | None]) -> Run:
    results = [InstanceResult(s, pred_ltwh=p, seconds=0.1 if p is not None else None) for s, p in zip(samples, preds)]
    return Run("server", results, latencies_s=[0.1] * sum(p is not None for p in preds))


def test_headline_has_acc_at_k_and_mean_iou():
    # truth 10x10 at the origin; predictions of IoU 1, 0.75, 0.5 exactly, 0.25; one unanswered
    samples = [sample(10, 10) for _ in range(5)]
    preds = [(0, 0, 10, 10), (0, 0, 7.5, 10), (0, 0, 5, 10), (0, 0, 2.5, 10), None]
    run = run_with_predictions(samples, preds)
    m = analysis.headline(run, analysis.score_at(run))
    assert m["accuracy"] == 2 / 5  # the task's rule: IoU 0.5 is a miss
    assert (m["acc_50"], m["acc_75"], m["acc_90"]) == (3 / 5, 2 / 5, 1 / 5)
    assert m["mean_iou"] == pytest.approx((1 + 0.75 + 0.5 + 0.25) / 5)


@pytest.mark.parametrize("w, h, size", [
    (0, 0, "small"), (31, 33, "small"),  # 1023 px²
    (32, 32, "medium"),  # exactly 32²: COCO's small is area < 32²
    (95, 97, "medium"),  # 9215 px²
    (96, 96, "large"), (10, 1000, "large"),
    (-40, 40, "small"),  # a negative side is an empty box
])
def test_coco_size_by_true_box_area(w, h, size):
    assert analysis.coco_size_groups([sample(w, h)]) == [size]


@pytest.mark.parametrize("caption, bucket", [
    ("", "0"), ("drone", "1-2"), ("grey  missile", "1-2"), ("dark red small drone", "3-4"),
    ("the man on the left", "5-8"), (" ".join(["w"] * 8), "5-8"), (" ".join(["w"] * 9), "9-16"),
    (" ".join(["w"] * 16), "9-16"), (" ".join(["w"] * 17), "17+"),
])
def test_caption_length_buckets(caption, bucket):
    assert analysis.caption_length_groups([caption]) == [bucket]


def test_breakdowns_by_coco_size_caption_length_and_split():
    samples = [sample(10, 10, "drone", "testA"), sample(10, 10, "grey missile", "testA"),
               sample(50, 50, "dark red small drone", "testB"), sample(100, 100, "the man on the left", None)]
    # a hit, a miss (IoU 0.5 exactly: an Acc@0.5 hit), a hit, unanswered
    preds = [(0, 0, 10, 10), (0, 0, 5, 10), (0, 0, 50, 50), None]
    run = run_with_predictions(samples, preds)
    b = analysis.breakdowns(samples, analysis.score_at(run))
    assert list(b["coco_size"]) == ["small", "medium", "large"]
    assert b["coco_size"]["small"] == {"n": 2, "accuracy": 0.5, "acc_50": 1.0, "mean_iou": 0.75}
    assert b["coco_size"]["medium"]["accuracy"] == 1.0 and b["coco_size"]["large"]["accuracy"] == 0.0
    assert {k: v["n"] for k, v in b["caption_length"].items()} == {"1-2": 2, "3-4": 1, "5-8": 1}
    assert list(b["data_split"]) == ["testA", "testB", analysis.NO_SPLIT]
    assert b["data_split"]["testA"] == {"n": 2, "accuracy": 0.5, "acc_50": 1.0, "mean_iou": 0.75}
    assert b["data_split"][analysis.NO_SPLIT]["n"] == 1


def test_no_split_breakdown_without_splits():
    samples = [sample(10, 10), sample(20, 20)]
    run = run_with_predictions(samples, [(0, 0, 10, 10), None])
    assert "data_split" not in analysis.breakdowns(samples, analysis.score_at(run))


def test_split_reaches_the_samples_from_vlm_jsonl(tmp_path):
    lines = [{"image": "a.jpg", "split": "val", "annotations": [{"caption": "x", "bbox": [0, 0, 1, 1]},
                                                                 {"caption": "y", "bbox": [0, 0, 2, 2], "split": "testB"}]},
             {"image": "b.jpg", "annotations": [{"caption": "z", "bbox": [0, 0, 1, 1]}]}]
    path = tmp_path / "vlm.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [s.split for s in samples_of(read_vlm_jsonl(path, captions_required=True))] == ["val", "testB", None]
