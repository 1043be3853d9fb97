"""Detector ensembles: several detectors' boxes fused by weighted boxes fusion (WBF).

WBF (Solovyev et al., `ensemble_boxes`; `Candidates.fuse_wbf`) clusters boxes of all members by IoU and
averages each cluster's coordinates weighted by confidence. With `conf_type="avg"`
a cluster's fused confidence is the weight-averaged member confidence, a member
that missed the object counting 0: sum_i(w_i * c_i) / sum_i(w_i).

That fused confidence is what the user's `conf` filters. So members propose at
`conf * MEMBER_CONF_FRACTION` (a box below it moves a fused confidence by less
than a tenth of the threshold), the boxes are fused, then the threshold applies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from findbox.boxes import WBF_IOU, Candidates
from findbox.config import DetectorBackend, DetectorConfig
from findbox.detect.ultralytics import Detector

MEMBER_CONF_FRACTION = 0.1
FUSION_IOU = WBF_IOU  # the members' own NMS uses DetectorConfig.iou


class EnsembleDetector:
    """Several detectors run on the same images; their boxes fused per image by WBF.

    Same interface as `Detector`: `detect(images) -> list[Candidates]`, `info`, `config`, `device`.
    `config` holds the user's settings: `conf` filters the fused confidence, `max_det`
    caps the fused boxes; each member runs with the same settings at a lower conf.
    """

    def __init__(self, members: list[Detector], config: DetectorConfig, weights: list[float] | None = None,
                 iou_thr: float = FUSION_IOU):
        if len(members) < 2:
            raise ValueError(f"detector ensemble: expected at least 2 detectors, got {len(members)}")
        if weights is not None and len(weights) != len(members):
            raise ValueError(f"detector ensemble: expected {len(members)} weights, got {len(weights)}")
        self.members = members
        self.config = config
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(members)
        self.iou_thr = iou_thr
        self.device = members[0].device
        self.half = members[0].half

    @classmethod
    def from_files(cls, paths: list[str | Path], config: DetectorConfig | None = None,
                   device: torch.device | str = "cpu", half: bool = False,
                   backend: DetectorBackend = DetectorBackend.TORCH, **kwargs) -> "EnsembleDetector":
        config = config or DetectorConfig()
        member_config = dataclasses.replace(config, conf=config.conf * MEMBER_CONF_FRACTION)
        return cls([Detector.from_file(p, member_config, device, half, backend) for p in paths], config, **kwargs)

    @property
    def info(self) -> dict:
        return {"kind": "ensemble", "fusion": "wbf", "iou_thr": self.iou_thr, "weights": self.weights,
                "members": [m.info for m in self.members]}

    def detect(self, images_rgb: list[np.ndarray]) -> list[Candidates]:
        """Fused proposals per image: xyxy in that image's pixels, sorted by descending fused det_score."""
        if not images_rgb:
            return []
        per_member = [m.detect(images_rgb) for m in self.members]
        out = []
        for k, image in enumerate(images_rgb):
            fused = Candidates.fuse_wbf([p[k] for p in per_member], (image.shape[1], image.shape[0]), self.weights,
                                        self.iou_thr)
            fused = fused[fused.det_score > np.float32(self.config.conf)]  # ultralytics keeps conf > threshold too
            out.append(fused[: self.config.max_det])
        return out
