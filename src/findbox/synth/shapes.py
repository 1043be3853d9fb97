"""Top-view silhouettes of the object types, as polygons in a canonical frame.

Canonical frame: the nose points to +x, +y is the right wing, one unit is about the
object's length (the renderer rescales so that the longest extent is its size in
pixels). Each builder draws proportions at random so that no two objects are alike.
A part's role tells the livery which colour it takes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Role(enum.Enum):
    BODY = "body"  # fuselage, cabin
    WING = "wing"  # wings, drone arms
    TAIL = "tail"  # stabilisers, fins, rotor blades, prop guards
    NOSE = "nose"  # nose cone, spinner, motor hubs
    ENGINE = "engine"  # nacelles, pods
    DETAIL = "detail"  # canopy glass, propellers, nozzles: a dark shade of the base colour
    CUT = "cut"  # clears what was drawn before (the hole of a ring)


class Part(NamedTuple):
    role: Role
    xy: np.ndarray  # (N, 2) float64 polygon in the canonical frame


Builder = Callable[[np.random.Generator], list[Part]]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _across(right: list[tuple[float, float]]) -> np.ndarray:
    """A polygon across the centreline from its right half: first and last points on
    y = 0, the ones between at y > 0 (a wing or tailplane in one piece)."""
    half = np.asarray(right, dtype=np.float64)
    return np.concatenate([half, half[1:-1][::-1] * [1.0, -1.0]])


def _pair(right: list[tuple[float, float]]) -> list[np.ndarray]:
    """A right-side polygon and its mirror image (two wings, two fins)."""
    half = np.asarray(right, dtype=np.float64)
    return [half, half * [1.0, -1.0]]


def _bar(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    """A rectangle of `width` from p0 to p1 (blades, arms)."""
    a, b = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-12) * (width / 2.0)
    return np.stack([a + n, b + n, b - n, a - n])


def _fuselage(
    x_tail: float,
    x_nose: float,
    half_width: float,
    nose_len: float,
    tail_len: float,
    tail_half_width: float,
    nose_power: float = 2.0,
    n: int = 14,
) -> np.ndarray:
    """A symmetric body: a tube with a nose of `nose_len` (power 1: cone, 2: ogive,
    large: blunt) and a straight taper to `tail_half_width` over `tail_len`."""
    x_nose_start = x_nose - nose_len
    u = np.linspace(0.0, 1.0, n)[:-1]  # nose: from the shoulder to just before the tip
    xs_nose = x_nose_start + u * nose_len
    hw_nose = half_width * (1.0 - u**nose_power) ** (1.0 / nose_power)
    right = [(x_tail, tail_half_width), (x_tail + tail_len, half_width)]
    right += list(zip(xs_nose, hw_nose, strict=True))
    right.append((x_nose, 0.0))
    half = np.asarray(right)
    # mirror without duplicating the tip
    left = half[-2::-1] * [1.0, -1.0]
    return np.concatenate([half, left])


def fighter_jet(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.04, 0.055)
    span = rng.uniform(0.30, 0.38)  # half span
    le_root = rng.uniform(0.02, 0.12)
    sweep = rng.uniform(0.45, 0.85)  # x drop of the leading edge per unit of span
    tip_chord = rng.uniform(0.05, 0.1)
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.5, hw, rng.uniform(0.22, 0.3), 0.08, hw * 0.75, 1.4))]
    tip_le = le_root - sweep * span
    te_root = rng.uniform(-0.3, -0.24)
    wing = [(le_root, hw * 0.8), (tip_le, span), (tip_le - tip_chord, span), (te_root, hw * 0.8)]
    parts += [Part(Role.WING, w) for w in _pair(wing)]
    strake = [(0.22, hw * 0.7), (le_root, hw + 0.04), (le_root - 0.1, hw * 0.8)]
    parts += [Part(Role.WING, w) for w in _pair(strake)]
    tail_span = rng.uniform(0.14, 0.19)
    tail = [(-0.33, hw * 0.7), (-0.45, tail_span), (-0.5, tail_span), (-0.5, hw * 0.7)]
    parts += [Part(Role.TAIL, t) for t in _pair(tail)]
    if rng.random() < 0.5:  # twin fins seen from above
        parts += [Part(Role.TAIL, _bar((-0.22, s * hw * 0.8), (-0.47, s * hw * 1.1), 0.018)) for s in (1, -1)]
    else:
        parts.append(Part(Role.TAIL, _bar((-0.2, 0.0), (-0.48, 0.0), 0.02)))
    parts.append(Part(Role.DETAIL, _ellipse(0.25, 0.0, 0.085, hw * 0.5)))
    return parts


def fighter_plane(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.055, 0.07)
    span = rng.uniform(0.5, 0.6)
    chord = rng.uniform(0.2, 0.26)
    wx = rng.uniform(0.08, 0.16)  # wing centre
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.45, hw, 0.1, 0.45, 0.012, 3.0))]
    if rng.random() < 0.5:  # elliptical wing
        parts.append(Part(Role.WING, _ellipse(wx, 0.0, chord / 2, span, 32)))
    else:  # tapered wing with rounded tips
        tip = chord * 0.45
        wing = [(wx + chord / 2, 0.0), (wx + tip / 2, span - 0.02), (wx, span), (wx - tip / 2, span - 0.02),
                (wx - chord / 2, 0.0)]
        parts.append(Part(Role.WING, _across(wing)))
    parts.append(Part(Role.TAIL, _ellipse(-0.43, 0.0, 0.065, rng.uniform(0.16, 0.2))))
    parts.append(Part(Role.TAIL, _bar((-0.3, 0.0), (-0.5, 0.0), 0.016)))
    parts.append(Part(Role.NOSE, _ellipse(0.46, 0.0, 0.05, hw * 0.75)))
    parts.append(Part(Role.DETAIL, _bar((0.5, -0.19), (0.5, 0.19), 0.022)))
    parts.append(Part(Role.DETAIL, _ellipse(wx - 0.1, 0.0, 0.08, hw * 0.55)))
    return parts


def light_aircraft(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.05, 0.06)
    span = rng.uniform(0.6, 0.7)
    chord = rng.uniform(0.15, 0.19)
    wx = rng.uniform(0.1, 0.16)
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.47, hw, 0.07, 0.55, 0.012, 4.0))]
    taper = rng.uniform(0.7, 1.0)  # tip chord / root chord
    tc = chord * taper
    wing = [(wx + chord / 2, 0.0), (wx + chord / 2 - (chord - tc) * 0.3, span - 0.01),
            (wx + chord / 2 - (chord - tc) * 0.3 - 0.01, span), (wx - chord / 2 + (chord - tc) * 0.7, span),
            (wx - chord / 2, 0.0)]
    parts.append(Part(Role.WING, _across(wing)))
    ts = rng.uniform(0.19, 0.23)
    tail = [(-0.38, 0.0), (-0.41, ts), (-0.47, ts), (-0.5, 0.0)]
    parts.append(Part(Role.TAIL, _across(tail)))
    parts.append(Part(Role.TAIL, _bar((-0.3, 0.0), (-0.5, 0.0), 0.014)))
    parts.append(Part(Role.NOSE, _ellipse(0.47, 0.0, 0.03, hw * 0.6)))
    parts.append(Part(Role.DETAIL, _bar((0.495, -0.15), (0.495, 0.15), 0.018)))
    parts.append(Part(Role.DETAIL, _rect(wx + chord / 2, wx + chord / 2 + 0.06, -hw * 0.7, hw * 0.7)))
    return parts


def helicopter(rng: np.random.Generator) -> list[Part]:
    cabin_w = rng.uniform(0.1, 0.13)
    parts = [
        Part(Role.BODY, _ellipse(0.2, 0.0, rng.uniform(0.24, 0.3), cabin_w, 28)),
        Part(Role.BODY, _ellipse(0.0, 0.0, 0.16, cabin_w * 0.7)),
        Part(Role.BODY, np.array([[0.0, 0.045], [-0.46, 0.02], [-0.46, -0.02], [0.0, -0.045]])),
        Part(Role.TAIL, _rect(-0.4, -0.35, -rng.uniform(0.08, 0.11), rng.uniform(0.08, 0.11))),
        Part(Role.TAIL, _rect(-0.5, -0.42, -0.012, 0.012)),
        Part(Role.DETAIL, _rect(-0.5, -0.41, 0.02, 0.034)),  # tail rotor, edge-on
        Part(Role.DETAIL, _ellipse(0.37, 0.0, 0.09, cabin_w * 0.8)),  # canopy glass
    ]
    hub = (0.12, 0.0)
    radius = rng.uniform(0.45, 0.54)
    n_blades = int(rng.choice([2, 3, 4, 4, 5]))
    phase = rng.uniform(0.0, 2.0 * np.pi)
    for k in range(n_blades):
        a = phase + 2.0 * np.pi * k / n_blades
        tip = (hub[0] + radius * np.cos(a), hub[1] + radius * np.sin(a))
        parts.append(Part(Role.TAIL, _bar(hub, tip, 0.028)))  # blades wear the livery: they are half the pixels
    parts.append(Part(Role.DETAIL, _ellipse(*hub, 0.035, 0.035, 12)))
    return parts


def missile(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.035, 0.048)
    nose_len = rng.uniform(0.12, 0.2)
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.5, hw, nose_len, 0.0, hw, 1.6))]
    nose_start = 0.5 - nose_len
    parts.append(Part(Role.NOSE, _fuselage(nose_start - 0.01, 0.5, hw, nose_len, 0.0, hw, 1.6)))
    fin_span = rng.uniform(0.11, 0.15)
    fin = [(-0.32, hw * 0.9), (-0.46, fin_span), (-0.5, fin_span), (-0.5, hw * 0.9)]
    parts += [Part(Role.TAIL, f) for f in _pair(fin)]
    if rng.random() < 0.6:  # mid-body wings
        x0 = rng.uniform(-0.05, 0.12)
        ws = rng.uniform(0.08, 0.11)
        wing = [(x0 + 0.06, hw * 0.9), (x0 - 0.08, ws), (x0 - 0.12, ws), (x0 - 0.12, hw * 0.9)]
        parts += [Part(Role.WING, w) for w in _pair(wing)]
    parts.append(Part(Role.DETAIL, _rect(-0.51, -0.48, -hw * 0.7, hw * 0.7)))  # nozzle
    return parts


def drone(rng: np.random.Generator) -> list[Part]:
    arm = rng.uniform(0.27, 0.31)  # motor distance along each axis
    rotor = rng.uniform(0.15, 0.19)
    motors = [(sx * arm, sy * arm) for sx in (1, -1) for sy in (1, -1)]
    parts: list[Part] = []
    if rng.random() < 0.5:  # prop guards
        for m in motors:
            parts.append(Part(Role.TAIL, _ellipse(*m, rotor, rotor, 28)))
            parts.append(Part(Role.CUT, _ellipse(*m, rotor * 0.82, rotor * 0.82, 28)))
    for m in motors:
        parts.append(Part(Role.WING, _bar((0.0, 0.0), m, 0.05)))
    body_x, body_y = rng.uniform(0.12, 0.16), rng.uniform(0.09, 0.12)
    parts.append(Part(Role.BODY, _ellipse(0.0, 0.0, body_x, body_y, 20)))
    parts.append(Part(Role.BODY, _rect(-body_x * 0.9, body_x * 0.9, -body_y * 0.8, body_y * 0.8)))
    for m in motors:
        a = rng.uniform(0.0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * rotor * 0.95
        parts.append(Part(Role.DETAIL, _bar(tuple(m - d), tuple(m + d), 0.035)))
        parts.append(Part(Role.NOSE, _ellipse(*m, 0.045, 0.045, 12)))
    parts.append(Part(Role.DETAIL, _ellipse(body_x * 0.85, 0.0, 0.03, 0.03, 12)))  # camera
    return parts


def commercial_aircraft(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.04, 0.05)
    span = rng.uniform(0.45, 0.52)
    sweep = rng.uniform(0.45, 0.6)
    le_root = rng.uniform(0.1, 0.16)
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.5, hw, 0.08, 0.22, 0.008, 2.5))]
    tip_le = le_root - sweep * span
    kink_y = span * 0.35
    wing = [(le_root, hw * 0.8), (tip_le, span), (tip_le - 0.05, span),
            (le_root - sweep * kink_y - 0.12, kink_y), (le_root - 0.3, hw * 0.8)]
    parts += [Part(Role.WING, w) for w in _pair(wing)]
    four = rng.random() < 0.3
    engine_ys = [0.17, 0.31] if four else [rng.uniform(0.15, 0.2)]
    for ey in engine_ys:
        ex = le_root - sweep * ey + 0.03
        parts += [Part(Role.ENGINE, _ellipse(ex, s * ey, 0.065, 0.024, 16)) for s in (1, -1)]
    ts = rng.uniform(0.15, 0.19)
    tail = [(-0.34, hw * 0.3), (-0.45, ts), (-0.49, ts), (-0.47, hw * 0.3)]
    parts += [Part(Role.TAIL, t) for t in _pair(tail)]
    parts.append(Part(Role.TAIL, _bar((-0.3, 0.0), (-0.5, 0.0), 0.014)))
    parts.append(Part(Role.DETAIL, _rect(0.44, 0.47, -hw * 0.6, hw * 0.6)))  # cockpit windows
    return parts


def cargo_aircraft(rng: np.random.Generator) -> list[Part]:
    hw = rng.uniform(0.06, 0.075)
    parts = [Part(Role.BODY, _fuselage(-0.5, 0.48, hw, 0.08, 0.32, 0.018, 3.0))]
    turboprop = rng.random() < 0.6
    if turboprop:  # straight high wing, four propellers (C-130 like)
        span = rng.uniform(0.62, 0.7)
        le, chord = rng.uniform(0.1, 0.16), rng.uniform(0.15, 0.18)
        wing = [(le, 0.0), (le - 0.04, span), (le - chord * 0.7, span), (le - chord, 0.0)]
        sweep = 0.04 / span
    else:  # swept high wing, four jet pods (C-17 like)
        span = rng.uniform(0.48, 0.54)
        le, sweep = rng.uniform(0.12, 0.18), rng.uniform(0.4, 0.5)
        wing = [(le, 0.0), (le - sweep * span, span), (le - sweep * span - 0.06, span), (le - 0.26, 0.0)]
    parts.append(Part(Role.WING, _across(wing)))
    for ey in (span * 0.32, span * 0.62):
        ex = le - sweep * ey
        for s in (1, -1):
            if turboprop:
                parts.append(Part(Role.ENGINE, _rect(ex - 0.08, ex + 0.08, s * ey - 0.025, s * ey + 0.025)))
                parts.append(Part(Role.DETAIL, _bar((ex + 0.09, s * ey - 0.1), (ex + 0.09, s * ey + 0.1), 0.016)))
            else:
                parts.append(Part(Role.ENGINE, _ellipse(ex + 0.01, s * ey, 0.07, 0.027, 16)))
    ts = rng.uniform(0.22, 0.27)
    tail = [(-0.38, 0.0), (-0.42, ts), (-0.48, ts), (-0.5, 0.0)]
    parts.append(Part(Role.TAIL, _across(tail)))
    parts.append(Part(Role.TAIL, _bar((-0.28, 0.0), (-0.48, 0.0), 0.02)))
    parts.append(Part(Role.DETAIL, _rect(0.42, 0.45, -hw * 0.6, hw * 0.6)))
    return parts


# object type -> (builder, relative frequency: the original's order, most common first)
SHAPES: dict[str, tuple[Builder, float]] = {
    "fighter plane": (fighter_plane, 1.6),
    "helicopter": (helicopter, 1.5),
    "fighter jet": (fighter_jet, 1.4),
    "light aircraft": (light_aircraft, 1.2),
    "commercial aircraft": (commercial_aircraft, 1.0),
    "missile": (missile, 0.9),
    "drone": (drone, 0.8),
    "cargo aircraft": (cargo_aircraft, 0.7),
}
