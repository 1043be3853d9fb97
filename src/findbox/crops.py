"""Cutting candidate boxes out of an image: exact box, no padding."""

from __future__ import annotations

import numpy as np

from findbox.boxes import crop_window


def cut_crops(image_rgb: np.ndarray, boxes_xyxy: np.ndarray) -> list[np.ndarray]:
    """(H, W, 3) uint8 image and (N, 4) xyxy boxes in its pixels -> N crops (h, w, 3) uint8.

    Each crop is the box rounded outwards to whole pixels, clipped to the image,
    at least 1x1 (see `crop_window`). Crops are copies, safe to modify.
    """
    h, w = image_rgb.shape[:2]
    crops = []
    for box in np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4):
        x1, y1, x2, y2 = crop_window(box, (w, h))
        crops.append(np.ascontiguousarray(image_rgb[y1:y2, x1:x2]))
    return crops


def prepare_crops(image_rgb: np.ndarray, boxes_xyxy: np.ndarray, upscaler=None) -> list[np.ndarray]:
    """Crops exactly as the scorer sees them at inference: cut, then upscaled if an upscaler is given.

    Scorer training (`findbox crops`) uses this same function.
    """
    crops = cut_crops(image_rgb, boxes_xyxy)
    if upscaler is not None and crops:
        crops = upscaler.upscale(crops)
    return crops
