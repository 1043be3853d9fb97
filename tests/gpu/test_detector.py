"""The detector in fp16 on CUDA (what --precision fp16 and auto give on a GPU) proposes boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def test_bundled_detector_in_fp16_on_cuda_finds_the_synth_objects():
    from findbox.bundle import bundle_manifest, bundled_paths
    from findbox.config import DetectorConfig, from_dict
    from findbox.detect.ultralytics import Detector
    from findbox.eval.metric import iou_ltwh
    from findbox.synth import SynthConfig, generate_scene

    image, objects = generate_scene(SynthConfig(noise="low"), 0, seed=777_016)
    config = from_dict(DetectorConfig, bundle_manifest()["serve"]["detection"], "detection")
    detector = Detector.from_file(bundled_paths()["detector"], config, "cuda", half=True)
    [found] = detector.detect([image])

    # the half path really ran: ultralytics' backend holds fp16 weights on the GPU
    backend = detector.yolo.predictor.model
    assert backend.fp16 is True and torch.device(backend.device).type == "cuda"
    h, w = image.shape[:2]
    assert len(found) > 0 and np.isfinite(found.xyxy).all()
    assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= w).all() and (found.xyxy[:, [1, 3]] <= h).all()
    # a trained detector in fp16 still covers most objects (the demo's recall is near 1 on low noise)
    covered = [max(iou_ltwh(box, obj.bbox_ltwh) for box in found.ltwh) > 0.5 for obj in objects]
    assert np.mean(covered) >= 0.5, (covered, found)


def test_bundled_detector_in_bf16_on_cuda_keeps_the_fp32_boxes_to_a_pixel():
    """`--detector-precision bf16` on a GPU: the convolutions under a CUDA bf16 autocast, the boxes decoded in
    fp32 (as on the CPU, tests/test_detector_precision.py): every confident fp32 box has a bf16 box within 1 px."""
    from findbox.bundle import bundle_manifest, bundled_paths
    from findbox.config import DetectorConfig, from_dict
    from findbox.detect.ultralytics import Detector
    from findbox.synth import SynthConfig, generate_scene

    frames = [generate_scene(SynthConfig(noise="low"), index, seed=777_021)[0] for index in range(3)]
    config = from_dict(DetectorConfig, bundle_manifest()["serve"]["detection"], "detection")
    fp32 = Detector.from_file(bundled_paths()["detector"], config, "cuda")
    bf16 = Detector.from_file(bundled_paths()["detector"], config, "cuda", half=True, bf16=True)
    assert (bf16.half, bf16.info["precision"]) == (False, "bf16")  # bf16 replaces half
    worst = 0.0
    for a, b in zip(fp32.detect(frames), bf16.detect(frames)):
        assert len(a) and len(b)
        for box in a.xyxy[a.det_score > 0.25]:
            worst = max(worst, float(np.abs(b.xyxy - box).max(axis=1).min()))
    assert worst < 1.0, worst
