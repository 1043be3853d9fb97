"""Liveries and the drawing of one object on its own small canvas.

An object is drawn as a label map (which livery colour each pixel takes) at
SUPERSAMPLE times its size, coloured through a lookup table and averaged down: the
result is an antialiased premultiplied RGB patch and its alpha. Rotation and scale are
applied to the polygon vertices, so nothing is resampled twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from findbox.synth.shapes import SHAPES, Part, Role
from findbox.synth.vocab import COLOURS, MAX_COLOURS

SUPERSAMPLE = 3  # 9 samples per pixel: smooth edges at 30 px without a visible cost
DETAIL_SHADE = 0.45  # canopy glass, blades, propellers: a dark shade of the base colour
LIGHTING = (0.03, 0.08)  # amplitude of the shading ramp; nearest-colour naming survives 10%
MIN_PURE_PX = 4  # a livery colour must cover at least this many whole pixels...
MIN_PURE_FRACTION = 0.05  # ...and this share of the object's whole pixels, or the livery is redrawn

_PAINT_ROLES = (Role.BODY, Role.WING, Role.TAIL, Role.NOSE, Role.ENGINE)
_DETAIL_LABEL = 16  # label of the detail shade of slot s: _DETAIL_LABEL + s

# Colour name -> sampling weight, by family. Military types wear greys, greens and
# camouflage; civil ones white and bright trims; helicopters and drones are both.
_MILITARY = {"grey": 3.0, "green": 2.0, "black": 1.5, "white": 1.2, "brown": 1.0, "silver": 1.0,
             "blue": 1.0, "red": 1.0, "yellow": 0.7, "orange": 0.5, "purple": 0.3}
_CIVIL = {"white": 3.0, "red": 2.0, "blue": 2.0, "yellow": 1.5, "silver": 1.0, "grey": 1.0,
          "orange": 1.0, "green": 0.8, "black": 0.7, "purple": 0.5, "brown": 0.3}
_MIXED = {c: (_MILITARY[c] + _CIVIL[c]) / 2 for c in COLOURS}
_CAMO_BASE = {"green": 2.0, "grey": 1.5, "brown": 1.0, "white": 0.5}
_CAMO_SPOTS = {"brown": 2.0, "green": 2.0, "black": 1.5, "grey": 1.0}
_FAMILY = {
    "fighter jet": _MILITARY, "fighter plane": _MILITARY, "missile": _MILITARY, "cargo aircraft": _MILITARY,
    "light aircraft": _CIVIL, "commercial aircraft": _CIVIL, "helicopter": _MIXED, "drone": _MIXED,
}
_CAMO_P = {"fighter jet": 0.35, "fighter plane": 0.35, "cargo aircraft": 0.3, "helicopter": 0.3,
           "drone": 0.2, "missile": 0.15}
N_COLOURS_P = (0.45, 0.4, 0.15)  # probability of 1, 2, 3 colours


@dataclass(frozen=True)
class Livery:
    """The colours of one object: slot 0 is the base; `camouflage` paints slots 1.. as blotches."""

    colours: tuple[str, ...]
    camouflage: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.colours) <= MAX_COLOURS or len(set(self.colours)) != len(self.colours):
            raise ValueError(f"expected 1 to {MAX_COLOURS} distinct colours, got {self.colours}")
        unknown = [c for c in self.colours if c not in COLOURS]
        if unknown:
            raise ValueError(f"expected colours from {tuple(COLOURS)}, got {unknown}")
        if self.camouflage and len(self.colours) < 2:
            raise ValueError(f"expected at least 2 colours for camouflage, got {self.colours}")


def _pick(rng: np.random.Generator, weights: dict[str, float], exclude: tuple[str, ...] = ()) -> str:
    names = [c for c in weights if c not in exclude]
    p = np.array([weights[c] for c in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_livery(rng: np.random.Generator, object_type: str) -> Livery:
    """Draw a plausible livery for the type (colour count, colours, camouflage)."""
    k = int(rng.choice(3, p=N_COLOURS_P)) + 1
    if k >= 2 and rng.random() < _CAMO_P.get(object_type, 0.0):
        colours = (_pick(rng, _CAMO_BASE),)
        while len(colours) < k:
            colours += (_pick(rng, _CAMO_SPOTS, colours),)
        return Livery(colours, camouflage=True)
    colours: tuple[str, ...] = ()
    while len(colours) < k:
        colours += (_pick(rng, _FAMILY[object_type], colours),)
    return Livery(colours)


@dataclass(frozen=True)
class Patch:
    """One drawn object, cropped tight to its pixels.

    premult_rgb: (h, w, 3) float32 in 0-255, colour already multiplied by alpha.
    alpha: (h, w) float32 in 0-1; every row and column has a pixel > 0.
    colour_px: (k,) area in pixels of each livery slot (fractional at edges).
    pure_px: (k,) whole pixels of each slot (all supersamples of that slot).
    """

    premult_rgb: np.ndarray
    alpha: np.ndarray
    colour_px: np.ndarray
    pure_px: np.ndarray

    def colours_visible(self) -> bool:
        """Whether every livery colour covers enough whole pixels to be named from them."""
        need = max(MIN_PURE_PX, MIN_PURE_FRACTION * float(self.pure_px.sum()))
        return bool((self.pure_px >= need).all())


def _role_slots(rng: np.random.Generator, k: int, camouflage: bool) -> tuple[dict[Role, int], str]:
    """Which slot each role takes, and the pattern painted over them."""
    if k == 1 or camouflage:
        return dict.fromkeys(_PAINT_ROLES, 0), "camouflage" if camouflage else "solid"
    trim = int(rng.integers(1, k))  # slot of nose/engines/tail when not otherwise said
    schemes2 = ["two_tone", "trim", "stripe", "bands"]
    schemes3 = ["three_tone", "trim_stripe", "bands"]
    scheme = str(rng.choice(schemes2 if k == 2 else schemes3))
    if scheme == "two_tone":
        return {Role.BODY: 0, Role.WING: 1, Role.TAIL: 1, Role.NOSE: int(rng.integers(2)),
                Role.ENGINE: int(rng.integers(2))}, scheme
    if scheme == "three_tone":
        return {Role.BODY: 0, Role.WING: 1, Role.TAIL: 2, Role.NOSE: 2, Role.ENGINE: 1}, scheme
    if scheme in ("trim", "trim_stripe"):
        return {Role.BODY: 0, Role.WING: 0, Role.TAIL: trim, Role.NOSE: trim, Role.ENGINE: trim}, scheme
    return dict.fromkeys(_PAINT_ROLES, 0), scheme  # stripe, bands: the pattern carries the colours


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    t = np.sort(rng.uniform(0.0, 2.0 * np.pi, 9))
    rr = r * rng.uniform(0.6, 1.3, 9)
    return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], axis=1)


def _patterns(
    rng: np.random.Generator, scheme: str, k: int, lo: np.ndarray, hi: np.ndarray
) -> list[tuple[int, np.ndarray]]:
    """(slot, polygon) pairs in the canonical frame painted over the object's paint."""
    (x0, y0), (x1, y1) = lo, hi
    length = x1 - x0
    out: list[tuple[int, np.ndarray]] = []
    if scheme == "camouflage":
        for slot in range(1, k):
            for _ in range(int(rng.integers(7, 13))):
                cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
                out.append((slot, _blob(rng, cx, cy, rng.uniform(0.06, 0.13) * length)))
    elif scheme == "stripe":  # cheatline along the fuselage, a band across the wings
        w = rng.uniform(0.02, 0.03)
        out.append((1, np.array([[x0, -w], [x1, -w], [x1, w], [x0, w]])))
        xb = rng.uniform(-0.1, 0.15)
        out.append((1, np.array([[xb - 0.05, y0], [xb + 0.05, y0], [xb + 0.05, y1], [xb - 0.05, y1]])))
    elif scheme == "trim_stripe":  # slot 2 along the fuselage and on the wing tips
        w = rng.uniform(0.02, 0.03)
        out.append((2, np.array([[x0, -w], [x1, -w], [x1, w], [x0, w]])))
        tip = 0.7 * max(abs(y0), abs(y1))
        out.append((2, np.array([[x0, tip], [x1, tip], [x1, y1], [x0, y1]])))
        out.append((2, np.array([[x0, -tip], [x1, -tip], [x1, y0], [x0, y0]])))
    elif scheme == "bands":  # nose band, tail band (slot 1, or 1 and 2)
        nose = x1 - rng.uniform(0.15, 0.3) * length
        out.append((1, np.array([[nose, y0], [x1, y0], [x1, y1], [nose, y1]])))
        tail = x0 + rng.uniform(0.12, 0.25) * length
        out.append((k - 1, np.array([[x0, y0], [tail, y0], [tail, y1], [x0, y1]])))
    return out


def _to_canvas(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Canonical points -> fixed-point (shift 4) canvas points for cv2.fillPoly."""
    p = xy @ matrix[:, :2].T + matrix[:, 2]
    return np.round(p * 16.0).astype(np.int32)


def render_object(
    rng: np.random.Generator,
    object_type: str,
    livery: Livery,
    size_px: float,
    angle_rad: float,
    squash: float = 1.0,
) -> Patch:
    """Draw one object with its longest extent `size_px` (before rotation), its span
    scaled by `squash` (a banked or pitched view), rotated by `angle_rad`."""
    builder, _ = SHAPES[object_type]
    parts: list[Part] = builder(rng)
    k = len(livery.colours)
    slots, scheme = _role_slots(rng, k, livery.camouflage)

    pts = np.concatenate([p.xy for p in parts])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = size_px * SUPERSAMPLE / float((hi - lo).max())
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    linear = np.array([[c, -s], [s, c]]) @ np.diag([scale, scale * squash])
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]) @ linear.T
    margin = SUPERSAMPLE  # one output pixel all round
    offset = -corners.min(axis=0) + margin
    extent = corners.max(axis=0) - corners.min(axis=0) + 2 * margin
    w, h = (int(np.ceil(v / SUPERSAMPLE)) for v in extent)
    matrix = np.concatenate([linear, offset[:, None]], axis=1)

    label = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
    base = slots[Role.BODY]
    for part in parts:
        if part.role is Role.DETAIL:
            continue
        value = 0 if part.role is Role.CUT else slots[part.role] + 1
        cv2.fillPoly(label, [_to_canvas(part.xy, matrix)], value, cv2.LINE_8, 4)
    patterns = _patterns(rng, scheme, k, lo, hi)
    painted = label > 0
    for slot in sorted({slot for slot, _ in patterns}):
        layer = np.zeros_like(label)
        for xy in (xy for s, xy in patterns if s == slot):  # one call each: overlaps stay filled
            cv2.fillPoly(layer, [_to_canvas(xy, matrix)], 1, cv2.LINE_8, 4)
        label[(layer > 0) & painted] = slot + 1
    for part in parts:
        if part.role is Role.DETAIL:
            cv2.fillPoly(label, [_to_canvas(part.xy, matrix)], _DETAIL_LABEL + base, cv2.LINE_8, 4)

    # average each label's indicator down: coverage per pixel, exact in ninths
    premult = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    colour_px = np.zeros(k, np.float64)
    pure_px = np.zeros(k, np.int64)
    for value in np.flatnonzero(np.bincount(label.ravel(), minlength=256)[1:]) + 1:
        cover = cv2.resize((label == value).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        slot = value - 1 if value < _DETAIL_LABEL else value - _DETAIL_LABEL
        rgb = np.asarray(COLOURS[livery.colours[slot]], np.float32)
        if value >= _DETAIL_LABEL:
            rgb = rgb * DETAIL_SHADE
        premult += cover[..., None] * rgb
        alpha += cover
        if value < _DETAIL_LABEL:
            colour_px[slot] = float(cover.sum())
            pure_px[slot] = int((cover > 0.999).sum())

    # shading: a linear ramp across the object in a random direction
    amp = rng.uniform(*LIGHTING)
    a = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx - w / 2) * np.cos(a) + (yy - h / 2) * np.sin(a)
    ramp *= amp / max(float(np.abs(ramp).max()), 1.0)
    premult *= (1.0 + ramp)[..., None]

    np.minimum(alpha, 1.0, out=alpha)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    crop = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Patch(premult[crop], alpha[crop], colour_px, pure_px)
