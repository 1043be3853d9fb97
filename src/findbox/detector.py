"""Stage 1: propose boxes with an ultralytics detection checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from findbox.boxes import Candidates, clip_xyxy
from findbox.config import DetectorConfig


class Detector:
    """Class-agnostic box proposals from any ultralytics detection model.

    A multi-class checkpoint is used class-agnostically: classes are ignored and
    NMS runs across them.
    """

    def __init__(self, yolo, config: DetectorConfig, device: torch.device, half: bool = False):
        task = getattr(yolo, "task", "detect")
        if task != "detect":
            raise ValueError(f"detector: expected an ultralytics detection model, got task {task!r}")
        self.yolo = yolo
        self.config = config
        self.device = device
        self.half = half and device.type == "cuda"

    @classmethod
    def from_file(
        cls, path: str | Path, config: DetectorConfig | None = None, device: torch.device | str = "cpu", half: bool = False
    ) -> "Detector":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"detector: expected an ultralytics .pt file, got {str(path)!r} (not a file)")
        from ultralytics import YOLO

        try:
            yolo = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise ValueError(f"detector: could not load {str(path)!r} as an ultralytics checkpoint: {exc}") from exc
        return cls(yolo, config or DetectorConfig(), torch.device(device), half)

    @property
    def info(self) -> dict:
        names = getattr(self.yolo, "names", {}) or {}
        return {"kind": "ultralytics", "classes": len(names), "ckpt": str(getattr(self.yolo, "ckpt_path", ""))}

    def detect(self, images_rgb: list[np.ndarray]) -> list[Candidates]:
        """Proposals for each image, in one batched predict call.

        images_rgb: list of (H, W, 3) uint8 RGB arrays, any sizes.
        Returns one Candidates per image, xyxy in that image's pixels, clipped to it,
        sorted by descending det_score.
        """
        if not images_rgb:
            return []
        c = self.config
        # ultralytics reads numpy arrays as BGR (OpenCV order)
        sources = [np.ascontiguousarray(im[..., ::-1]) for im in images_rgb]
        results = self.yolo.predict(
            sources,
            imgsz=c.imgsz,
            conf=c.conf,
            iou=c.iou,
            max_det=c.max_det,
            augment=c.augment,
            agnostic_nms=True,
            half=self.half,
            device=str(self.device),
            batch=len(sources),
            verbose=False,
        )
        out = []
        for im, result in zip(images_rgb, results):
            boxes = result.boxes
            xyxy = boxes.xyxy.detach().float().cpu().numpy() if len(boxes) else np.zeros((0, 4), np.float32)
            conf = boxes.conf.detach().float().cpu().numpy() if len(boxes) else np.zeros(0, np.float32)
            order = np.argsort(-conf, kind="stable")
            xyxy = clip_xyxy(xyxy[order], (im.shape[1], im.shape[0]))
            out.append(Candidates(xyxy, conf[order]))
        return out
