"""Box formats and the `Candidates` container every stage exchanges.

Frames: unless a name says otherwise, boxes are in pixels of the original image.
Formats are in the names: `xyxy` = (x1, y1, x2, y2), `ltwh` = (left, top, width, height).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def ltwh_to_xyxy(ltwh: np.ndarray) -> np.ndarray:
    """(N, 4) or (4,) ltwh -> xyxy, float32."""
    b = np.asarray(ltwh, dtype=np.float32)
    out = b.copy()
    out[..., 2] = b[..., 0] + b[..., 2]
    out[..., 3] = b[..., 1] + b[..., 3]
    return out


def xyxy_to_ltwh(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) or (4,) xyxy -> ltwh, float32."""
    b = np.asarray(xyxy, dtype=np.float32)
    out = b.copy()
    out[..., 2] = b[..., 2] - b[..., 0]
    out[..., 3] = b[..., 3] - b[..., 1]
    return out


def clip_xyxy(xyxy: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Clip xyxy boxes to the image [0, W] x [0, H]; a box may become zero-area."""
    w, h = image_wh
    b = np.asarray(xyxy, dtype=np.float32).copy()
    b[..., [0, 2]] = b[..., [0, 2]].clip(0, w)
    b[..., [1, 3]] = b[..., [1, 3]].clip(0, h)
    return b


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M) float64; 0 when no overlap."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (ix2 - ix1).clip(0) * (iy2 - iy1).clip(0)
    area_a = ((a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0))[None, :]
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def crop_window(xyxy: np.ndarray, image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel window (x1, y1, x2, y2) that covers a float box, inside the image.

    The window is the exact box rounded outwards (no padding) and always at least
    1x1 pixel, so a degenerate or out-of-image box still yields a valid crop.
    """
    w, h = image_wh
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    cx1 = int(np.clip(np.floor(x1), 0, w - 1))
    cy1 = int(np.clip(np.floor(y1), 0, h - 1))
    cx2 = int(np.clip(np.ceil(x2), cx1 + 1, w))
    cy2 = int(np.clip(np.ceil(y2), cy1 + 1, h))
    return cx1, cy1, cx2, cy2


# the key of `supervision.Detections.data` that carries match_score across to_supervision / from_supervision
SV_MATCH_SCORE = "match_score"

# ensemble_boxes' default IoU for joining boxes of different detectors into one cluster
WBF_IOU = 0.55


@dataclass
class Candidates:
    """The boxes proposed for one image, and what later stages learned about them.

    Parallel arrays, validated once here; every stage passes this and nothing else.
    xyxy: (N, 4) float32, original-image pixels (a tile's pixels only inside sliced detection).
    det_score: (N,) float32 detector confidence in [0, 1].
    match_score: (N,) float32 scorer logit for one caption, NaN until scored.
    """

    xyxy: np.ndarray
    det_score: np.ndarray
    match_score: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.shape == (4,):  # one box, e.g. from an integer index
            xyxy = xyxy[None]
        elif xyxy.size == 0:  # an empty list or array of any shape is no boxes
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Candidates.xyxy: expected shape (N, 4), got {xyxy.shape}")
        self.xyxy = xyxy
        n = len(xyxy)
        if self.match_score is None:
            self.match_score = np.full(n, np.nan, dtype=np.float32)
        for name in ("det_score", "match_score"):
            values = np.asarray(getattr(self, name), dtype=np.float32)
            if values.ndim > 1:
                raise ValueError(f"Candidates.{name}: expected shape ({n},), got {values.shape}")
            values = values.reshape(-1)
            if len(values) != n:
                raise ValueError(f"Candidates.{name}: expected {n} values, got {len(values)}")
            setattr(self, name, values)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Candidates":
        """Boolean mask, integer array or slice -> a new Candidates."""
        return Candidates(self.xyxy[index], self.det_score[index], self.match_score[index])

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    @classmethod
    def from_ultralytics(cls, result) -> "Candidates":
        """One ultralytics detection `Results` -> its boxes, in the pixels of the image it was run on.

        Reads `result.boxes.xyxy` and `.conf` (tensors on any device), as predicted: not clipped, not
        re-sorted. Classes are dropped: findbox proposes class-agnostically.
        """
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            raise TypeError(f"Candidates.from_ultralytics: expected a detection Results with .boxes, "
                            f"got {type(result).__name__} without boxes")
        if not len(boxes):
            return cls.empty()
        return cls(boxes.xyxy.detach().float().cpu().numpy(), boxes.conf.detach().float().cpu().numpy())

    def to_supervision(self):
        """These boxes as a `supervision.Detections`, to draw, track or filter with supervision's tools.

        xyxy (float32, the same pixels) and confidence = det_score; class_id all 0, since findbox proposes
        one class and supervision's annotators colour by class; match_score in `data["match_score"]`
        (NaN until scored). `Candidates.from_supervision` reads all three back.
        Needs the [supervision] extra.
        """
        from findbox.env import require
        require("supervision", "supervision")
        import supervision as sv

        return sv.Detections(xyxy=self.xyxy.copy(), confidence=self.det_score.copy(),
                             class_id=np.zeros(len(self), dtype=np.int64),
                             data={SV_MATCH_SCORE: self.match_score.copy()})

    @classmethod
    def from_supervision(cls, detections) -> "Candidates":
        """A `supervision.Detections` -> Candidates: xyxy, det_score = confidence, match_score = data["match_score"].

        Boxes are taken as they are (same pixels, not clipped, not re-sorted). match_score is NaN when
        `data` has no "match_score" (boxes from another tool). Class ids, masks and tracker ids are
        dropped: findbox proposes class-agnostically. Detections without confidence (e.g. labels) raise
        ValueError: det_score has no default. Needs the [supervision] extra.
        """
        from findbox.env import require
        require("supervision", "supervision")
        import supervision as sv

        if not isinstance(detections, sv.Detections):
            raise TypeError(f"Candidates.from_supervision: expected a supervision.Detections, "
                            f"got {type(detections).__name__}")
        if detections.confidence is None:
            raise ValueError("Candidates.from_supervision: expected detections.confidence (the det_score of each "
                             "box), got None")
        match_score = detections.data.get(SV_MATCH_SCORE)
        return cls(detections.xyxy, detections.confidence, match_score)

    @classmethod
    def concat(cls, parts: list["Candidates"]) -> "Candidates":
        """Several Candidates of one image (same frame) -> one, in the order given."""
        for i, part in enumerate(parts):
            if not isinstance(part, Candidates):
                raise TypeError(f"Candidates.concat: expected Candidates at index {i}, got {type(part).__name__}")
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.det_score for p in parts]),
            np.concatenate([p.match_score for p in parts]),
        )

    @classmethod
    def fuse_wbf(
        cls,
        members: list["Candidates"],
        image_wh: tuple[int, int],
        weights: list[float] | None = None,
        iou_thr: float = WBF_IOU,
        skip_box_thr: float = 0.0,
    ) -> "Candidates":
        """Weighted boxes fusion of one image's boxes from several detectors, class-agnostic.

        members: one Candidates per detector, xyxy in the image's pixels, det_score in [0, 1].
        Returns the fused boxes clipped to the image, det_score = fused confidence (`conf_type="avg"`:
        a member that missed a cluster counts 0), most confident first; match_score NaN.
        Coordinates go to WBF normalised by image_wh (it expects [0, 1]); zero-area boxes are dropped
        (WBF warns on and skips them).
        """
        from findbox.env import require
        require("ensemble_boxes", "zoo")
        from ensemble_boxes import weighted_boxes_fusion

        for i, member in enumerate(members):
            if not isinstance(member, Candidates):
                raise TypeError(f"Candidates.fuse_wbf: expected Candidates at index {i}, got {type(member).__name__}")
        w, h = image_wh
        scale = np.array([w, h, w, h], dtype=np.float64)
        boxes, scores = [], []
        for member in members:
            member = member.clip(image_wh)
            member = member[(member.xyxy[:, 2] > member.xyxy[:, 0]) & (member.xyxy[:, 3] > member.xyxy[:, 1])]
            boxes.append(member.xyxy.astype(np.float64) / scale)
            scores.append(member.det_score.astype(np.float64))
        if not any(len(b) for b in boxes):
            return cls.empty()
        fused, fused_scores, _ = weighted_boxes_fusion(
            boxes, scores, [np.zeros(len(b)) for b in boxes], weights=weights, iou_thr=iou_thr,
            skip_box_thr=skip_box_thr, conf_type="avg",
        )
        # sorted on WBF's float64 confidences, before they are rounded to float32
        order = np.argsort(-np.asarray(fused_scores), kind="stable")
        xyxy = (np.asarray(fused, np.float64).reshape(-1, 4) * scale).astype(np.float32)
        return cls(xyxy[order], np.asarray(fused_scores, np.float32)[order]).clip(image_wh)

    def nms(self, iou: float, max_det: int) -> "Candidates":
        """Class-agnostic non-maximum suppression by det_score (torchvision): at most max_det, best first."""
        if not len(self):
            return self
        import torch
        from torchvision.ops import nms

        keep = nms(torch.from_numpy(np.ascontiguousarray(self.xyxy)),
                   torch.from_numpy(np.ascontiguousarray(self.det_score)), float(iou)).numpy()
        return self[keep[:max_det]]

    def clip(self, image_wh: tuple[int, int]) -> "Candidates":
        """Boxes clipped to the image [0, W] x [0, H]; a box outside becomes zero-area, none is dropped."""
        return Candidates(clip_xyxy(self.xyxy, image_wh), self.det_score, self.match_score)

    def sorted(self) -> "Candidates":
        """By descending det_score; equal scores keep their order (stable)."""
        return self[np.argsort(-self.det_score, kind="stable")]

    def shifted(self, dx: float, dy: float) -> "Candidates":
        """Boxes moved by (dx, dy) pixels, e.g. from a tile's pixels to the image's (dx, dy = the tile's origin)."""
        offset = np.array([dx, dy, dx, dy], dtype=np.float32)
        return Candidates(self.xyxy + offset, self.det_score, self.match_score)

    def with_match_score(self, match_score: np.ndarray) -> "Candidates":
        return Candidates(self.xyxy, self.det_score, match_score)

    @property
    def ltwh(self) -> np.ndarray:
        return xyxy_to_ltwh(self.xyxy)
