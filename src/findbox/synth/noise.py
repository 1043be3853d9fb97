"""Camera-like degradations, modelled on the noisy test set of the original.

Optical blur (like A.GaussianBlur), Gaussian noise per pixel and channel (like
A.GaussNoise per_channel), blotchy colour-only noise (the chroma part of A.ISONoise),
a per-channel gain (a colour cast, like A.MultiplicativeNoise), then JPEG compression
(like A.ImageCompression) when the file is written.
`high` spans the original's strongest augmentation: GaussNoise var 500-5000 (std
22-71 on 0-255) and JPEG quality 25-75.

Written with numpy and OpenCV rather than albumentations for speed (benchmarks/bench_synth.py
times the equivalent albumentations chain beside this one: docs/SYNTH.md, "Speed") and so
that one numpy Generator decides everything.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np


class NoiseLevel(str, enum.Enum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class NoiseSpec:
    """Ranges drawn per image (uniform). Pixel units are 0-255."""

    read_std: tuple[float, float]  # Gaussian std, independent per pixel and channel
    chroma_std: tuple[float, float]  # std of the colour-only noise at half resolution
    gain: tuple[float, float]  # per-channel multiplier (a colour cast)
    blur_p: float  # probability of a blur
    blur_sigma: tuple[float, float]  # Gaussian sigma per axis, px
    jpeg_quality: tuple[int, int]  # inclusive


NOISE_SPECS: dict[NoiseLevel, NoiseSpec] = {
    NoiseLevel.NONE: NoiseSpec((0, 0), (0, 0), (1, 1), 0.0, (0, 0), (95, 95)),
    NoiseLevel.LOW: NoiseSpec((3, 8), (0, 0), (0.97, 1.03), 0.15, (0.3, 0.7), (70, 95)),
    NoiseLevel.MEDIUM: NoiseSpec((10, 25), (3, 8), (0.92, 1.08), 0.3, (0.4, 1.0), (45, 85)),
    NoiseLevel.HIGH: NoiseSpec((22, 71), (6, 14), (0.9, 1.1), 0.3, (0.5, 1.5), (25, 75)),
}

# colour-only projection: removes the mean over channels
_CHROMA = (np.eye(3) - 1.0 / 3.0).astype(np.float32)


@functools.cache
def _normal_lut() -> np.ndarray:
    """(256,) float32: N(0, 1) quantiles at (i + 0.5) / 256, rescaled to unit std.

    Mapping random bytes through it draws Gaussian noise at a fraction of the cost of
    Generator.standard_normal; the tails are cut at 2.9 std, which no eye can tell."""
    nd = NormalDist()
    q = np.array([nd.inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
    return q / q.std()


def _random_bytes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)


def add_noise(image: np.ndarray, level: NoiseLevel, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Degrade an (H, W, 3) uint8 RGB image; returns (image, JPEG quality to write it with).

    The input is not modified. Geometry is untouched: boxes stay valid."""
    spec = NOISE_SPECS[NoiseLevel(level)]
    quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
    if level == NoiseLevel.NONE:
        return image, quality
    h, w, _ = image.shape
    out = image
    if rng.random() < spec.blur_p:
        sx, sy = rng.uniform(*spec.blur_sigma, size=2)
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(sx), sigmaY=float(sy))
    # integer noise (int16) halves the memory traffic of float32; pixels are integers anyway
    read = rng.uniform(*spec.read_std)
    noise = cv2.LUT(_random_bytes(rng, (h, w, 3)), np.round(_normal_lut() * read).astype(np.int16))
    chroma = rng.uniform(*spec.chroma_std)
    if chroma > 0:
        # half resolution: JPEG keeps chroma at half resolution anyway, and ISO colour noise is blotchy
        small = cv2.LUT(_random_bytes(rng, ((h + 1) // 2, (w + 1) // 2, 3)), _normal_lut())
        small = np.round(cv2.transform(small, _CHROMA * np.float32(chroma))).astype(np.int16)
        cv2.add(noise, cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), dst=noise)
    out = cv2.add(out, noise, dtype=cv2.CV_8U)  # saturating
    gain = rng.uniform(*spec.gain, size=3)
    lut = np.clip(np.round(np.arange(256)[:, None] * gain), 0, 255).astype(np.uint8)
    return cv2.LUT(out, lut.reshape(256, 1, 3)), quality


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()
