"""Sky backgrounds: gradient, sun glow, clouds, haze, and sometimes terrain or sea.

Everything is smooth, so it is computed at 1/LOW_RES of the size and resized once.
"""

from __future__ import annotations

import cv2
import numpy as np

LOW_RES = 4

# kind -> (weight, top colour range, horizon colour range); RGB lows and highs
_SKIES = {
    "clear": (0.35, ((35, 90, 175), (90, 150, 235)), ((160, 195, 225), (215, 230, 250))),
    "pale": (0.2, ((110, 150, 200), (170, 200, 235)), ((200, 210, 220), (240, 242, 245))),
    "overcast": (0.2, ((120, 125, 135), (185, 190, 200)), ((165, 170, 175), (225, 228, 232))),
    "dusk": (0.1, ((40, 50, 110), (90, 100, 170)), ((210, 120, 80), (250, 190, 140))),
    "deep": (0.15, ((10, 40, 120), (40, 80, 170)), ((90, 140, 210), (150, 190, 240))),
}
_LAND = [((60, 95, 45), (95, 130, 70)), ((100, 85, 60), (150, 130, 95)), ((95, 95, 95), (140, 140, 135)),
         ((170, 150, 110), (210, 190, 150)), ((40, 70, 40), (70, 100, 60))]
_SEA = ((20, 50, 80), (50, 100, 140))


def _uniform_rgb(rng: np.random.Generator, lo_hi: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    lo, hi = np.asarray(lo_hi[0], np.float32), np.asarray(lo_hi[1], np.float32)
    return lo + (hi - lo) * rng.random(3, dtype=np.float32)


def fractal(
    rng: np.random.Generator, h: int, w: int, octaves: int = 5, cells: int = 3, stretch: float = 1.0
) -> np.ndarray:
    """(h, w) float32 smooth noise, about zero mean and unit std; `stretch` > 1 draws
    features wider than tall (cirrus streaks). Octaves are summed up a pyramid, each
    step doubling the grid, so the cost is about one resize to (h, w)."""
    ny = cells
    nx = max(2, int(np.ceil(cells * w / h / stretch)))
    out = rng.standard_normal((ny, nx), dtype=np.float32)
    for o in range(1, octaves):
        ny, nx = ny * 2, nx * 2
        out = cv2.resize(out, (nx, ny), interpolation=cv2.INTER_CUBIC)
        out += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(0.55**o)
    out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
    mean, std = cv2.meanStdDev(out)
    return (out - np.float32(mean[0, 0])) * np.float32(1.0 / (std[0, 0] + 1e-6))


def ridge(rng: np.random.Generator, w: int, octaves: int = 5, cells: int = 3) -> np.ndarray:
    """(w,) float32 smooth 1-D noise in about -1..1: a skyline of hills."""
    out = np.zeros((1, w), np.float32)
    for o in range(octaves):
        grid = rng.uniform(-1.0, 1.0, (1, cells * 2**o + 1)).astype(np.float32)
        out += cv2.resize(grid, (w, 1), interpolation=cv2.INTER_CUBIC) * 0.5**o
    return out[0] / 1.5


def sky_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB sky."""
    h, w = max(8, -(-height // LOW_RES)), max(8, -(-width // LOW_RES))
    names = list(_SKIES)
    p = np.array([_SKIES[n][0] for n in names])
    kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    _, top_range, horizon_range = _SKIES[kind]
    top, horizon = _uniform_rgb(rng, top_range), _uniform_rgb(rng, horizon_range)

    yy = np.arange(h, dtype=np.float32)[:, None]  # (h, 1) and (1, w): broadcast, never materialised
    xx = np.arange(w, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.08, 0.08)
    t = np.clip((yy + tilt * (xx - w / 2)) / h, 0.0, 1.0) ** rng.uniform(0.6, 1.6)
    img = top + (horizon - top) * t[..., None]

    if rng.random() < 0.5:  # sun glow
        sx, sy = rng.uniform(0, w), rng.uniform(-0.2 * h, 0.6 * h)
        d2 = ((xx - sx) ** 2 + (yy - sy) ** 2) / (rng.uniform(0.15, 0.4) * w) ** 2
        glow = np.exp(-d2) * rng.uniform(0.2, 0.6)
        img += (np.array([255, 245, 225], np.float32) - img) * glow[..., None]

    cover = {"clear": 0.3, "pale": 0.45, "overcast": 0.8, "dusk": 0.4, "deep": 0.2}[kind]
    if rng.random() < 0.8:  # clouds
        stretch = rng.choice([1.0, 1.0, 2.0, 4.0])
        n = fractal(rng, h, w, cells=int(rng.integers(2, 5)), stretch=stretch)
        threshold = rng.uniform(-0.3, 1.2) - cover
        density = np.clip((n - threshold) / rng.uniform(0.4, 1.2), 0.0, 1.0)
        light = np.array([250, 250, 252], np.float32) * rng.uniform(0.85, 1.0)
        if kind == "dusk":
            light = light * np.array([1.0, 0.85, 0.75], np.float32)
        shade = fractal(rng, h, w, octaves=3, cells=2)
        colour = light * (1.0 - 0.18 * np.clip(shade, 0, 2)[..., None])
        opacity = density * rng.uniform(0.5, 0.95)
        img += (colour - img) * opacity[..., None]

    ground = rng.random()
    if ground < 0.4:
        horizon_y = rng.uniform(0.65, 0.92) * h
        sea = ground < 0.15
        hills = (ridge(rng, w) + 1.0) if not sea else np.zeros(w, np.float32)
        line = horizon_y - hills * rng.uniform(0.02, 0.1) * h
        below = yy >= line[None, :]
        depth = np.clip((yy - line[None, :]) / max(h - horizon_y, 1.0), 0.0, 1.0)
        if sea:
            base = _uniform_rgb(rng, _SEA)
            streaks = fractal(rng, h, w, octaves=3, cells=6, stretch=6.0)
            land = base * (1.0 + 0.06 * streaks[..., None]) * (1.0 - 0.25 * depth[..., None])
        else:
            base = _uniform_rgb(rng, _LAND[int(rng.integers(len(_LAND)))])
            texture = fractal(rng, h, w, octaves=4, cells=4)
            land = base * (1.0 + 0.12 * texture[..., None]) * (1.0 - 0.2 * depth[..., None])
        # distance haze: the far ground fades into the horizon colour
        haze = np.exp(-depth * rng.uniform(4.0, 10.0))[..., None] * rng.uniform(0.3, 0.6)
        land += (horizon - land) * haze
        img = np.where(below[..., None], land, img)

    if rng.random() < 0.3:  # haze over everything
        img = img * (1.0 - (a := rng.uniform(0.1, 0.35))) + np.array([215, 220, 225], np.float32) * a

    small = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
