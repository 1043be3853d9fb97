"""Detector ensembles: several detectors' boxes fused by weighted boxes fusion (WBF).

WBF (Solovyev et al., `ensemble_boxes`) clusters boxes of all members by IoU and
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

from findbox.boxes import Candidates, clip_xyxy
from findbox.config import DetectorConfig
from findbox.detect.ultralytics import Detector

MEMBER_CONF_FRACTION = 0.1
FUSION_IOU = 0.55  # ensemble_boxes' default; the members' own NMS uses DetectorConfig.iou


def fuse_boxes(
    xyxy_list: list[np.ndarray],
    scores_list: list[np.ndarray],
    image_wh: tuple[int, int],
    weights: list[float] | None = None,
    iou_thr: float = FUSION_IOU,
    skip_box_thr: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """WBF over one image's boxes from several detectors, class-agnostic.

    xyxy_list: per member an (n_i, 4) array in image pixels; scores_list: per member (n_i,) in [0, 1].
    Returns (xyxy (N, 4) float32 in image pixels, fused confidence (N,) float32), most confident first.
    Coordinates go to WBF normalised by image_wh (it expects [0, 1]); zero-area boxes are dropped.
    """
    from ensemble_boxes import weighted_boxes_fusion

    if len(xyxy_list) != len(scores_list):
        raise ValueError(f"fuse_boxes: expected one score array per box array, got {len(xyxy_list)} and "
                         f"{len(scores_list)}")
    w, h = image_wh
    scale = np.array([w, h, w, h], dtype=np.float64)
    boxes, scores = [], []
    for xyxy, score in zip(xyxy_list, scores_list):
        xyxy = clip_xyxy(np.asarray(xyxy, np.float32).reshape(-1, 4), image_wh).astype(np.float64) / scale
        score = np.asarray(score, np.float64).reshape(-1)
        if len(score) != len(xyxy):
            raise ValueError(f"fuse_boxes: expected {len(xyxy)} scores, got {len(score)}")
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # WBF warns on and skips zero-area boxes
        boxes.append(xyxy[keep])
        scores.append(score[keep])
    if not any(len(b) for b in boxes):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    fused, fused_scores, _ = weighted_boxes_fusion(
        boxes, scores, [np.zeros(len(b)) for b in boxes], weights=weights, iou_thr=iou_thr,
        skip_box_thr=skip_box_thr, conf_type="avg",
    )
    xyxy = clip_xyxy((np.asarray(fused, np.float64).reshape(-1, 4) * scale).astype(np.float32), image_wh)
    order = np.argsort(-np.asarray(fused_scores), kind="stable")
    return xyxy[order], np.asarray(fused_scores, np.float32)[order]


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
                   device: torch.device | str = "cpu", half: bool = False, **kwargs) -> "EnsembleDetector":
        config = config or DetectorConfig()
        member_config = dataclasses.replace(config, conf=config.conf * MEMBER_CONF_FRACTION)
        return cls([Detector.from_file(p, member_config, device, half) for p in paths], config, **kwargs)

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
            xyxy, conf = fuse_boxes([p[k].xyxy for p in per_member], [p[k].det_score for p in per_member],
                                    (image.shape[1], image.shape[0]), self.weights, self.iou_thr)
            keep = conf > np.float32(self.config.conf)  # ultralytics keeps conf > threshold too
            out.append(Candidates(xyxy[keep][: self.config.max_det], conf[keep][: self.config.max_det]))
        return out
