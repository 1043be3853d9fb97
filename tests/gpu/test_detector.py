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
