"""SAHI-style sliced detection: overlapping tiles plus the full image, merged by NMS.

Small objects cover few pixels once a 1520x870 frame is shrunk to the detector's
input size; a tile of a quarter of the frame, predicted at the same input size,
sees them at ~1.8x the resolution. The full-image pass keeps large objects that a
tile would cut. The original found this helped only when batched with a full-image
pass; one tile at a time was too slow.

Frames: `window_xyxy` are integer pixel windows of the image; tile boxes are in
their tile's pixels until `merge_tiles` moves them into image pixels.
"""

from __future__ import annotations

import math

import numpy as np

from findbox.boxes import Candidates


def parse_grid(value) -> tuple[int, int]:
    """'2x2', '3x2', [3, 2] or (3, 2) -> (cols, rows); '1x1' / 'none' / None -> (1, 1), i.e. off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return (1, 1)
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"slices: expected COLSxROWS such as 2x2, got {value!r}")
        cols, rows = int(parts[0]), int(parts[1])
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        cols, rows = value
    else:
        raise ValueError(f"slices: expected COLSxROWS such as 2x2 or [cols, rows], got {value!r}")
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise ValueError(f"slices: expected 1..16 columns and rows, got {cols}x{rows}")
    return (cols, rows)


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """n equal spans of [0, length) that overlap by ~`overlap` of a span and cover it exactly."""
    if n == 1:
        return [(0, length)]
    size = min(length, math.ceil(length / (n - (n - 1) * overlap)))
    stride = (length - size) / (n - 1)
    return [(round(i * stride), round(i * stride) + size) for i in range(n)]


def tile_windows(image_wh: tuple[int, int], grid: tuple[int, int], overlap: float = 0.2) -> np.ndarray:
    """(cols * rows, 4) int64 xyxy windows, row-major, all of one size, covering the image.

    Equal sizes matter: same-shape tiles letterbox alike and run as one batch.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"slice overlap: expected a fraction in [0, 1), got {overlap}")
    w, h = image_wh
    cols, rows = grid
    xs, ys = _spans(w, cols, overlap), _spans(h, rows, overlap)
    return np.array([[x1, y1, x2, y2] for y1, y2 in ys for x1, x2 in xs], dtype=np.int64)


def merge_tiles(
    full: Candidates, tiles: list[Candidates], windows_xyxy: np.ndarray, iou: float, max_det: int
) -> Candidates:
    """One image's full-image pass and its tiles' passes -> one set of boxes in image pixels.

    full: boxes in image pixels; tiles[i]: boxes in the pixels of tile windows_xyxy[i].
    Duplicates across passes go by class-agnostic NMS at `iou`; at most max_det, best first.
    """
    if len(tiles) != len(windows_xyxy):
        raise ValueError(f"merge_tiles: expected one Candidates per window ({len(windows_xyxy)}), got {len(tiles)}")
    moved = [cands.shifted(window[0], window[1]) for cands, window in zip(tiles, windows_xyxy)]
    return Candidates.concat([full, *moved]).nms(iou, max_det)
