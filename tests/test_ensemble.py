"""Detector ensembles: WBF on hand-made boxes (exact), then two real tiny ultralytics models."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from findbox.boxes import Candidates, box_iou
from findbox.cli import add_model_options, serve_config_from_args
from findbox.config import DetectorConfig, PipelineConfig
from findbox.detect.ensemble import MEMBER_CONF_FRACTION, EnsembleDetector
from tests.conftest import TINY_DETECTION, make_image

WH = (100, 50)


def fuse_boxes(xyxy_list, scores_list, image_wh, **kwargs):
    """Hand-made arrays -> Candidates.fuse_wbf -> (xyxy, conf), to read the tables below."""
    fused = Candidates.fuse_wbf([Candidates(b, s) for b, s in zip(xyxy_list, scores_list)], image_wh, **kwargs)
    assert np.isnan(fused.match_score).all()
    return fused.xyxy, fused.det_score


def test_fuse_matching_boxes_averages_by_confidence():
    xyxy, conf = fuse_boxes([np.array([[10, 10, 50, 40]]), np.array([[12, 10, 52, 40]])],
                            [np.array([0.8]), np.array([0.6])], WH)
    np.testing.assert_allclose(xyxy, [[(10 * 0.8 + 12 * 0.6) / 1.4, 10, (50 * 0.8 + 52 * 0.6) / 1.4, 40]], atol=1e-3)
    np.testing.assert_allclose(conf, [0.7], atol=1e-6)  # mean over both members


def test_fuse_box_one_member_missed_counts_zero_for_it():
    xyxy, conf = fuse_boxes([np.array([[10, 10, 50, 40], [60, 5, 90, 45]]), np.array([[10, 10, 50, 40]])],
                            [np.array([0.8, 0.9]), np.array([0.6])], WH)
    np.testing.assert_allclose(conf, [0.7, 0.45], atol=1e-6)  # 0.9 seen by one of two members -> 0.45
    np.testing.assert_allclose(xyxy[1], [60, 5, 90, 45], atol=1e-3)
    assert conf.dtype == np.float32 and xyxy.dtype == np.float32


def test_fuse_weights():
    _, conf = fuse_boxes([np.array([[10, 10, 50, 40]]), np.array([[10, 10, 50, 40]])],
                         [np.array([0.8]), np.array([0.6])], WH, weights=[2, 1])
    np.testing.assert_allclose(conf, [(2 * 0.8 + 0.6) / 3], atol=1e-6)


@pytest.mark.parametrize("name, boxes, scores, expected_n", [
    ("no boxes", [np.zeros((0, 4)), np.zeros((0, 4))], [np.zeros(0), np.zeros(0)], 0),
    ("no members", [], [], 0),
    ("one member empty", [np.array([[1, 1, 9, 9]]), np.zeros((0, 4))], [np.array([0.5]), np.zeros(0)], 1),
    ("zero-area dropped", [np.array([[5, 5, 5, 9]]), np.array([[1, 1, 9, 9]])], [np.array([0.9]), np.array([0.5])], 1),
    ("outside clipped away", [np.array([[120, 60, 130, 70]]), np.zeros((0, 4))], [np.array([0.9]), np.zeros(0)], 0),
    ("one pixel", [np.array([[3, 3, 4, 4]]), np.array([[3, 3, 4, 4]])], [np.array([0.9]), np.array([0.5])], 1),
])
def test_fuse_edge_cases(name, boxes, scores, expected_n):
    xyxy, conf = fuse_boxes(boxes, scores, WH)
    assert xyxy.shape == (expected_n, 4) and conf.shape == (expected_n,)
    assert (xyxy[:, [0, 2]] <= WH[0]).all() and (xyxy[:, [1, 3]] <= WH[1]).all()


def test_fuse_mismatched_lengths_raise():
    # a member's boxes and scores are checked once, where its Candidates is made
    with pytest.raises(ValueError, match="expected 2 values"):
        fuse_boxes([np.array([[1, 1, 9, 9], [2, 2, 8, 8]])], [np.array([0.5])], WH)
    with pytest.raises(TypeError, match="expected Candidates at index 0"):
        Candidates.fuse_wbf([(np.array([[1, 1, 9, 9]]), np.array([0.5]))], WH)


class FixedDetector:
    """A detector-shaped object answering hand-made boxes, to test the ensemble's own logic."""

    def __init__(self, xyxy, conf):
        self.candidates = Candidates(np.array(xyxy, np.float32), np.array(conf, np.float32))
        self.device, self.half, self.info = torch.device("cpu"), False, {"kind": "fixed"}

    def detect(self, images):
        return [self.candidates for _ in images]


def test_ensemble_filters_the_fused_confidence():
    a = FixedDetector([[10, 10, 50, 40], [60, 5, 90, 45], [0, 0, 5, 5]], [0.8, 0.3, 0.02])
    b = FixedDetector([[12, 10, 52, 40], [60, 5, 90, 45]], [0.6, 0.2])
    image = np.zeros((WH[1], WH[0], 3), np.uint8)
    (cands,) = EnsembleDetector([a, b], DetectorConfig(conf=0.2)).detect([image])
    np.testing.assert_allclose(cands.det_score, [0.7, 0.25], atol=1e-6)  # 0.01 fused < 0.2: dropped
    (cands,) = EnsembleDetector([a, b], DetectorConfig(conf=0.25)).detect([image])
    np.testing.assert_allclose(cands.det_score, [0.7], atol=1e-6)  # kept only above conf, like ultralytics
    (cands,) = EnsembleDetector([a, b], DetectorConfig(conf=0.001, max_det=1)).detect([image])
    assert len(cands) == 1
    assert EnsembleDetector([a, b], DetectorConfig()).detect([]) == []
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleDetector([a], DetectorConfig())


@pytest.fixture(scope="module")
def two_detectors(tiny_models, tmp_path_factory):
    from findbox.testing.builders import build_yolo

    second = build_yolo(tmp_path_factory.mktemp("ensemble") / "second.pt", "yolov8n.yaml", seed=1)
    return [str(tiny_models["detector"]), str(second)]


def test_ensemble_of_two_ultralytics_models(two_detectors):
    from findbox.detect.ultralytics import Detector

    config = DetectorConfig(**TINY_DETECTION)
    ensemble = EnsembleDetector.from_files(two_detectors, config)
    assert [m.config.conf for m in ensemble.members] == [pytest.approx(config.conf * MEMBER_CONF_FRACTION)] * 2
    assert ensemble.info["kind"] == "ensemble" and len(ensemble.info["members"]) == 2
    images = [make_image(0), make_image(1, 160, 90)]
    fused = ensemble.detect(images)
    members = [Detector.from_file(p, ensemble.members[0].config).detect(images) for p in two_detectors]
    for k, (image, cands) in enumerate(zip(images, fused)):
        expected = Candidates.fuse_wbf([m[k] for m in members], (image.shape[1], image.shape[0]))
        keep = expected.det_score > np.float32(config.conf)
        np.testing.assert_allclose(cands.xyxy, expected.xyxy[keep][: config.max_det], atol=1e-3)
        assert len(cands) > 0 and (np.diff(cands.det_score) <= 0).all() and (cands.det_score > config.conf).all()
        # every fused box comes from member boxes: it overlaps one of them
        member_boxes = np.concatenate([m[k].xyxy for m in members])
        assert (box_iou(cands.xyxy, member_boxes).max(axis=1) > 0.3).all()


@pytest.mark.parametrize("value, expected", [
    ("a.pt", "a.pt"),
    (["a.pt"], "a.pt"),
    (["a.pt", "b.pt"], ["a.pt", "b.pt"]),
    (None, None),
])
def test_serve_config_detector_forms(value, expected):
    assert PipelineConfig(detector=value).detector == expected


@pytest.mark.parametrize("value", [[], [1, 2], 3])
def test_serve_config_detector_bad_forms(value):
    with pytest.raises(TypeError, match="detector"):
        PipelineConfig(detector=value)


def test_detector_option_repeats_and_toml_list(tmp_path):
    parser = argparse.ArgumentParser()
    add_model_options(parser)

    def config_from_args(args):
        return serve_config_from_args(args).pipeline

    assert config_from_args(parser.parse_args(["--detector", "a.pt"])).detector == "a.pt"
    two = parser.parse_args(["--detector", "a.pt", "--detector", "b.pt"])
    assert config_from_args(two).detector == ["a.pt", "b.pt"]
    toml = tmp_path / "serve.toml"
    toml.write_text('detector = ["a.pt", "b.pt"]\nscore_fusion = "product"\nfusion_weight = 0.5\n')
    config = config_from_args(parser.parse_args(["--config", str(toml)]))
    assert config.detector == ["a.pt", "b.pt"]
    assert config.score_fusion.value == "product" and config.fusion_weight == 0.5
    assert config_from_args(parser.parse_args(["--config", str(toml), "--detector", "c.pt"])).detector == "c.pt"
