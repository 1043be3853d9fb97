"""`--detector-precision`: the detector's convolutions in bf16 (torch.autocast), its boxes decoded in fp32,
taken by auto only where the scorer's calibration record measured it keeping this detector's answers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from findbox.bundle import bundled_paths
from findbox.calibration import (DETECTOR_BF16, Calibration, Measured, detector_sha256, weights_hashes,
                                 write_calibration)
from findbox.config import DetectorConfig, PipelineConfig
from findbox.detect.ultralytics import Detector
from findbox.device import BF16_FLAGS, cpu_flags

needs_bf16 = pytest.mark.skipif(not cpu_flags() & BF16_FLAGS, reason="bf16 runs fast only with avx512_bf16/AMX")


@pytest.fixture(scope="module")
def demo_frames() -> list[np.ndarray]:
    from findbox.synth import SynthConfig, generate_scene

    return [generate_scene(SynthConfig(noise="low"), index, seed=777_021)[0] for index in range(3)]


@needs_bf16
def test_bf16_keeps_the_demo_detectors_boxes_to_a_pixel(demo_frames):
    """Decoded in bf16, a coordinate near 1000 px rounds to a multiple of 4-8 px: the demo detector's boxes moved
    by 8-14 px at imgsz 1280. Decoded in fp32 (`decode_in_fp32`), every confident fp32 box has a bf16 box
    within a pixel."""
    settings = DetectorConfig(imgsz=1280, conf=0.05, iou=0.3, max_det=12)
    fp32 = Detector.from_file(bundled_paths()["detector"], settings, backend="torch")
    bf16 = Detector.from_file(bundled_paths()["detector"], settings, backend="torch", bf16=True)
    worst = 0.0
    for a, b in zip(fp32.detect(demo_frames), bf16.detect(demo_frames)):
        assert len(a) and len(b)
        for box in a.xyxy[a.det_score > 0.25]:
            worst = max(worst, float(np.abs(b.xyxy - box).max(axis=1).min()))
    assert worst < 1.0, worst
    assert (fp32.info["precision"], bf16.info["precision"]) == ("fp32", "bf16")


def test_bf16_runs_the_convolutions_in_bf16(tiny_models):
    settings = DetectorConfig(imgsz=160, conf=0.001, iou=0.5, max_det=10)
    detector = Detector.from_file(tiny_models["detector"], settings, backend="torch", bf16=True)
    seen = []
    first_conv = next(m for m in detector.yolo.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    found = detector.detect([np.full((120, 200, 3), 128, np.uint8)])
    assert seen and set(seen) == {torch.bfloat16}
    assert found[0].xyxy.dtype == np.float32  # the boxes come out fp32 whatever ran inside


def test_bf16_refuses_onnx_and_ensembles_naming_the_option(tiny_models):
    with pytest.raises(ValueError, match="detector_precision: bf16 runs on the torch backend"):
        PipelineConfig(detector_precision="bf16", detector_backend="onnx")
    with pytest.raises(ValueError, match="detector_precision: bf16 runs on the torch backend"):
        Detector.from_file(tiny_models["detector"], backend="onnx", bf16=True)
    with pytest.raises(ValueError, match="detector_precision"):
        PipelineConfig(detector_precision="fp16")


@needs_bf16
def test_auto_runs_bf16_where_the_record_measured_it_keeping_the_answers(tiny_models, tmp_path):
    """The rule itself is tests/test_precision.py's; here the plumbing: a scorer folder whose record has a kept,
    faster bf16 row for this detector loads the detector in bf16 and says so in the ready line's model part;
    the same record for another detector, or none, keeps fp32 and says why."""
    from findbox.factory import load_detector
    from findbox.serve.app import describe_models

    scorer = tmp_path / "scorer"
    shutil.copytree(tiny_models["scorer"], scorer)
    config = PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(scorer), device="cpu",
                            no_upscaler=True, detection=DetectorConfig(imgsz=160, conf=0.001, iou=0.5, max_det=10))
    assert "; precision fp32 (auto; uncalibrated: `findbox calibrate` can unlock bf16)" in describe_models(config)
    assert load_detector(config).info["precision"] == "fp32"

    def record(detector: str) -> Calibration:
        rows = (Measured("fp32", "torch", 1.0, 0.9, 20.0), Measured("bf16", DETECTOR_BF16, 1.0, 0.9, 30.0, detector))
        return Calibration(weights_hashes(scorer), rows, frozenset(), 40)

    write_calibration(scorer, record(detector_sha256(tiny_models["detector"])))
    line = describe_models(config)
    assert ("; precision bf16 (auto; calibrated: 100.0% of fp32's boxes on 40 instances, 1.50x fp32's speed)"
            in line), line
    detector = load_detector(config)
    assert detector.info["precision"] == "bf16" and detector.info["backend"] == "torch"

    write_calibration(scorer, record("0" * 64))
    assert "precision fp32 (auto; calibrated on another detector (sha256 000000000000)" in describe_models(config)
    assert load_detector(config).info["precision"] == "fp32"
