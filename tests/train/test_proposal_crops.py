"""Detector proposals as training crops, labelled by the task's IoU rule (issue 16)."""

import json

import numpy as np
import pytest
from PIL import Image

from findbox.boxes import Candidates
from findbox.config import DetectorConfig
from findbox.images import load_image_file
from findbox.train.crops import CropsConfig, label_proposals, make_crops, read_manifest
from findbox.train.scorer_data import load_crop_sets
from tests.train.test_crops import write_dataset

TRUTH_XYXY = np.array([[0, 0, 10, 10], [20, 0, 40, 20]], dtype=np.float32)


@pytest.mark.parametrize("proposal_xyxy, hit, iou", [
    ([0, 0, 10, 10], 0, 1.0),  # the box itself
    ([0, 0, 10, 5], -1, 0.5),  # exactly 0.5: round(0.5) == 0 (half to even), a miss
    ([0, 0, 10, 5.1], 0, 0.51),  # just over: a hit
    ([0, 0, 5, 5], -1, 0.25),  # a part of the object: a negative
    ([-5, -5, 15, 15], -1, 0.25),  # a loose box around it: a negative
    ([22, 2, 38, 18], 1, 0.64),  # the second object, slightly tight
    ([50, 50, 60, 60], -1, 0.0),  # background
    ([5, 0, 30, 15], -1, 0.24),  # between two objects: best of them, still a miss
])
def test_label_proposals_follows_the_task_rule(proposal_xyxy, hit, iou):
    got_hit, got_iou = label_proposals(np.array([proposal_xyxy], dtype=np.float32), TRUTH_XYXY)
    assert got_hit.tolist() == [hit]
    assert got_iou[0] == pytest.approx(iou, abs=1e-6)


def test_label_proposals_without_truth_or_proposals():
    hit, iou = label_proposals(np.array([[0, 0, 5, 5]], dtype=np.float32), np.zeros((0, 4), dtype=np.float32))
    assert hit.tolist() == [-1] and iou.tolist() == [0.0]
    hit, iou = label_proposals(np.zeros((0, 4), dtype=np.float32), TRUTH_XYXY)
    assert hit.shape == (0,) and iou.shape == (0,)


class FakeDetector:
    """Proposals relative to the image: the first annotation's box shifted by +1 px (a hit),
    its left half (a partial box: a miss) and a background box."""

    config = DetectorConfig(imgsz=320, conf=0.2, iou=0.4, max_det=5)
    info = {"kind": "fake"}

    def __init__(self, boxes_by_shape):
        self.boxes_by_shape = boxes_by_shape
        self.calls = 0

    def detect(self, images_rgb):
        self.calls += 1
        return [Candidates(np.asarray(self.boxes_by_shape, dtype=np.float32), np.full(3, 0.9, np.float32))
                for _ in images_rgb]


def test_make_crops_adds_labelled_proposals_on_train_images_only(tmp_path):
    jsonl = write_dataset(tmp_path / "data")
    # every image is 64x48; in a.png (line 1) "red square" is ltwh [2, 3, 10, 6] -> xyxy [2, 3, 12, 9]
    detector = FakeDetector([[3, 3, 13, 9], [2, 3, 7, 9], [40, 30, 50, 40]])
    report = make_crops(jsonl, tmp_path / "out", progress=False, detector=detector)
    assert report.proposals == {"crops": 9, "positive": 1} and "+ 9 proposal crops (1 hit" in report.summary()
    rows = read_manifest(tmp_path / "out")
    proposals = [r for r in rows if r.kind == "proposal"]
    assert {r.split for r in proposals} == {"train"} and detector.calls == 3  # a, b, c; d is val
    line1 = [r for r in proposals if r.line == 1]
    assert [r.caption for r in line1] == ["red square", None, None]
    assert line1[0].iou == pytest.approx(54 / 66, abs=1e-4) and line1[1].iou == pytest.approx(0.5)
    assert line1[0].crop == "crops/train/000001_p00.png" and line1[0].box_ltwh == (3.0, 3.0, 10.0, 6.0)
    image = load_image_file(tmp_path / "data" / "images" / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / line1[0].crop)), image[3:9, 3:13])
    info = json.loads((tmp_path / "out" / "crops.json").read_text())
    assert info["proposals"]["crops"] == 9 and info["proposals"]["settings"]["imgsz"] == 320
    assert info["crops"] == {"train": 4, "val": 2}  # ground-truth crops, as before

    # the trainer: proposals train with caption id -1 when they name nothing; val keeps truth only
    captions, train, val = load_crop_sets(tmp_path / "out")
    assert len(train) == 4 + 9 and len(val) == 2
    none = [i for i, r in enumerate(train.rows) if r.caption is None]
    assert len(none) == 9 - 1 and (train.caption_ids[none] == -1).all()
    named = train.caption_ids[[i for i, r in enumerate(train.rows) if r.kind == "proposal" and r.caption]]
    assert [captions[i] for i in named] == ["red square"]
    groups = train.image_groups()
    assert all(len({train.rows[i].image for i in g}) == 1 for g in groups)
    assert sorted(len(g) for g in groups) == [4, 4, 5]  # every image's proposals ride with its truth crops


def test_manifest_rejects_a_truth_row_without_caption(tmp_path):
    out = tmp_path / "out"
    (out / "crops").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(out / "crops" / "x.png")
    row = {"crop": "crops/x.png", "caption": None, "image": "a.png", "split": "train"}
    (out / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="caption: expected a non-empty caption, got None"):
        read_manifest(out)
    (out / "manifest.jsonl").write_text(json.dumps({**row, "kind": "proposal", "iou": 0.3}) + "\n")
    assert read_manifest(out)[0].caption is None
    (out / "manifest.jsonl").write_text(json.dumps({**row, "kind": "guess"}) + "\n")
    with pytest.raises(ValueError, match="kind: expected one of truth, proposal, got 'guess'"):
        read_manifest(out)


def test_crops_cli_takes_proposal_flags_into_the_detector_config():
    import argparse

    from findbox.cli import add_options, config_from_args

    parser = argparse.ArgumentParser()
    add_options(parser, CropsConfig)
    args = parser.parse_args(["--data", "d.jsonl", "--out", "o", "--proposals", "det.pt", "--imgsz", "1280",
                              "--conf", "0.05", "--iou", "0.3", "--max-det", "12"])
    config = config_from_args(args, CropsConfig)
    assert config.proposals == "det.pt"
    assert (config.detection.imgsz, config.detection.conf, config.detection.iou, config.detection.max_det) == (1280, 0.05, 0.3, 12)
