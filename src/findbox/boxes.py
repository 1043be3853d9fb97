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


@dataclass
class Candidates:
    """The boxes proposed for one image, and what later stages learned about them.

    xyxy: (N, 4) float32, original-image pixels.
    det_score: (N,) float32 detector confidence in [0, 1].
    match_score: (N,) float32 scorer logit for one caption, NaN until scored.
    """

    xyxy: np.ndarray
    det_score: np.ndarray
    match_score: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.det_score = np.asarray(self.det_score, dtype=np.float32).reshape(-1)
        if self.match_score is None:
            self.match_score = np.full(n, np.nan, dtype=np.float32)
        self.match_score = np.asarray(self.match_score, dtype=np.float32).reshape(-1)
        for name in ("det_score", "match_score"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Candidates.{name}: expected {n} values, got {len(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Candidates":
        """Boolean mask, integer array or slice -> a new Candidates."""
        return Candidates(self.xyxy[index], self.det_score[index], self.match_score[index])

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def with_match_score(self, match_score: np.ndarray) -> "Candidates":
        return Candidates(self.xyxy, self.det_score, match_score)

    @property
    def ltwh(self) -> np.ndarray:
        return xyxy_to_ltwh(self.xyxy)
