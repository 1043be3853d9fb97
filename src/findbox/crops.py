"""Cutting candidate boxes out of an image: exact box, no padding; bounding what the upscaler gets."""

from __future__ import annotations

import numpy as np
from PIL import Image

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


def cap_crop(crop: np.ndarray, max_hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 crop -> (min(h, H), min(w, W), 3) uint8 for max_hw = (H, W).

    Each side longer than its bound is shrunk to it (bicubic, antialiased); a crop
    within both bounds is returned as is, the same array. The aspect ratio may change:
    the scorer resizes every crop straight to its input size anyway.
    """
    h, w = crop.shape[:2]
    out_h, out_w = min(h, max_hw[0]), min(w, max_hw[1])
    if (out_h, out_w) == (h, w):
        return crop
    return np.asarray(Image.fromarray(crop).resize((out_w, out_h), resample=Image.Resampling.BICUBIC))


def prepare_crops(
    image_rgb: np.ndarray,
    boxes_xyxy: np.ndarray,
    upscaler=None,
    scorer_hw: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Crops exactly as the scorer sees them at inference: cut, then upscaled if an upscaler is given.

    image_rgb: (H, W, 3) uint8; boxes_xyxy: (N, 4) in its pixels -> N (h, w, 3) uint8 crops.
    scorer_hw: the scorer's input (height, width), e.g. (384, 384). With an upscaler, each side
        of a crop longer than the scorer's is first shrunk to it (`cap_crop`), so the upscaler
        never gets more than the scorer input and returns at most scale x that per side
        (1536 x 1536 for 384 and 4x), instead of a 4x whole-image crop of hundreds of
        megapixels that the scorer would shrink again. Crops within the scorer input on both
        sides (the small objects the upscaler is for) are upscaled exactly as before; the bound
        is the scorer input, not input / scale, so that crops between the two keep the detail the
        scorer trained on. None:
        no cap (the old rule). Without an upscaler, crops are the exact boxes either way.

    Scorer training (`findbox crops`) uses this same function, so it trains on what the server sees.
    """
    if scorer_hw is not None:
        ok = (isinstance(scorer_hw, (tuple, list)) and len(scorer_hw) == 2
              and all(isinstance(v, (int, np.integer)) and v >= 1 for v in scorer_hw))
        if not ok:
            raise ValueError(f"scorer_hw: expected (height, width) of two ints >= 1, got {scorer_hw!r}")
    crops = cut_crops(image_rgb, boxes_xyxy)
    if upscaler is not None and crops:
        if scorer_hw is not None:
            crops = [cap_crop(c, (int(scorer_hw[0]), int(scorer_hw[1]))) for c in crops]
        crops = upscaler.upscale(crops)
    return crops
