"""One synthetic scene: a sky, 3-8 captioned objects that do not overlap, camera noise.

Randomness: a scene is fixed by (seed, index). Its SeedSequence spawns one stream for
the content and one for the noise, so the same (seed, index) gives the same objects at
every noise level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from findbox.images import decode_image
from findbox.synth.background import sky_background
from findbox.synth.noise import NoiseLevel, add_noise, encode_jpeg
from findbox.synth.render import Livery, Patch, render_object, sample_livery
from findbox.synth.shapes import SHAPES
from findbox.synth.vocab import OBJECT_TYPES, make_caption

MIN_OBJECT_PX = 10  # below this no type is recognisable
PLACE_GAP_PX = 2  # free pixels kept between boxes
_PLACE_TRIES = 60  # random positions tried per object before it is drawn smaller
_SHRINK_TRIES = 4
_PACKING = 0.5  # share of the image that worst-case boxes may cover: random placement still succeeds


@dataclass(frozen=True)
class SynthConfig:
    """What a scene looks like. Sizes in pixels; fractions of the image width."""

    width: int = 1520  # the original images' size
    height: int = 870
    noise: NoiseLevel = NoiseLevel.NONE  # a clean render; `findbox synth` defaults to low (see synth/cli.py)
    min_objects: int = 3  # the original has 3-8 objects per image
    max_objects: int = 8
    # long side of an object (before rotation) as a fraction of the width, drawn
    # log-uniform: 30-150 px at 1520 wide, small objects as in the original
    object_size: tuple[float, float] = (0.02, 0.10)
    object_types: tuple[str, ...] = OBJECT_TYPES  # restrict to study one type

    def __post_init__(self) -> None:
        for name in ("width", "height", "min_objects", "max_objects"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"expected {name} as int, got {type(v).__name__}")
        if not (64 <= self.width <= 16384 and 64 <= self.height <= 16384):
            raise ValueError(f"expected width and height in 64..16384, got {self.width}x{self.height}")
        try:
            object.__setattr__(self, "noise", NoiseLevel(self.noise))
        except ValueError:
            raise ValueError(f"expected noise in {[n.value for n in NoiseLevel]}, got {self.noise!r}") from None
        if self.min_objects < 1:
            raise ValueError(f"expected min_objects >= 1, got {self.min_objects}")
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"expected min_objects <= max_objects, got {self.min_objects} > {self.max_objects}"
            )
        try:
            lo, hi = (float(v) for v in self.object_size)
        except (TypeError, ValueError):
            raise ValueError(f"expected object_size as (lo, hi) fractions, got {self.object_size!r}") from None
        object.__setattr__(self, "object_size", (lo, hi))
        object.__setattr__(self, "object_types", tuple(self.object_types))
        if not 0.0 < lo <= hi <= 0.5:
            raise ValueError(f"expected object_size (lo, hi) with 0 < lo <= hi <= 0.5, got {self.object_size}")
        if lo * self.width < MIN_OBJECT_PX:
            raise ValueError(
                f"expected objects of at least {MIN_OBJECT_PX} px, got object_size[0] * width = "
                f"{lo * self.width:.1f} px; raise object_size or width"
            )
        if hi * self.width > min(self.width, self.height) * 0.7:
            raise ValueError(
                f"expected objects to fit the image, got up to {hi * self.width:.0f} px "
                f"in {self.width}x{self.height}"
            )
        unknown = [t for t in self.object_types if t not in SHAPES]
        if not self.object_types or unknown:
            raise ValueError(f"expected object_types from {OBJECT_TYPES}, got {self.object_types}")
        if self.max_objects > self.max_placeable():
            raise ValueError(
                f"cannot place {self.max_objects} objects of up to {hi * self.width:.0f} px in a "
                f"{self.width}x{self.height} image: expected max_objects <= {self.max_placeable()} "
                "(or a smaller object_size or a larger image)"
            )

    def max_placeable(self) -> int:
        """Most objects that placement promises to fit (worst-case boxes, rotated)."""
        side = self.object_size[1] * self.width * math.sqrt(2) + PLACE_GAP_PX
        return max(0, int(_PACKING * self.width * self.height / side**2))


@dataclass(frozen=True)
class SynthObject:
    """One object of a scene.

    bbox_ltwh: tight box of the object's pixels, ints, inside the image.
    alpha: (h, w) float32 coverage in 0-1 in the box frame (h, w = the box's height,
        width); every row and column has a pixel > 0.
    colours: caption colours, largest area first.
    """

    caption: str
    object_type: str
    colours: tuple[str, ...]
    camouflage: bool
    bbox_ltwh: tuple[int, int, int, int]
    alpha: np.ndarray = field(repr=False)

    @property
    def mask(self) -> np.ndarray:
        """(h, w) bool in the box frame: pixels the object touches."""
        return self.alpha > 0

    def full_mask(self, image_wh: tuple[int, int]) -> np.ndarray:
        """(H, W) bool in image pixels."""
        out = np.zeros((image_wh[1], image_wh[0]), bool)
        l, t, w, h = self.bbox_ltwh
        out[t : t + h, l : l + w] = self.mask
        return out

    def annotation(self) -> dict:
        """The vlm.jsonl annotation: {"caption": ..., "bbox": [l, t, w, h]}."""
        return {"caption": self.caption, "bbox": list(self.bbox_ltwh)}


@dataclass(frozen=True)
class CleanScene:
    """image: (H, W, 3) uint8 RGB before noise; objects in drawing order."""

    image: np.ndarray
    objects: list[SynthObject]


def scene_rngs(
    rng_or_index: np.random.Generator | int, seed: int = 0
) -> tuple[np.random.Generator, np.random.Generator]:
    """(content rng, noise rng) of one scene, from an index and a seed, or split from a Generator."""
    if isinstance(rng_or_index, np.random.Generator):
        a, b = rng_or_index.spawn(2)
        return a, b
    if isinstance(rng_or_index, (bool, np.bool_)) or not isinstance(rng_or_index, (int, np.integer)):
        raise TypeError(f"expected rng_or_index as numpy Generator or int, got {type(rng_or_index).__name__}")
    if rng_or_index < 0 or seed < 0:
        raise ValueError(f"expected index >= 0 and seed >= 0, got index={rng_or_index}, seed={seed}")
    a, b = np.random.SeedSequence([int(seed), int(rng_or_index)]).spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def _draw_unique(
    rng: np.random.Generator, config: SynthConfig, size_px: float, taken: set[str]
) -> tuple[str, Livery, Patch, tuple[str, ...]]:
    """An object whose caption is new in the scene and whose colours all show."""
    weights = np.array([SHAPES[t][1] for t in config.object_types])
    for _ in range(50):
        object_type = config.object_types[int(rng.choice(len(weights), p=weights / weights.sum()))]
        livery = sample_livery(rng, object_type)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        squash = rng.uniform(0.7, 1.0) if rng.random() < 0.4 else 1.0
        for _ in range(5):
            patch = render_object(rng, object_type, livery, size_px, angle, squash)
            if patch.colours_visible():
                break
        else:
            continue
        order = np.argsort(-patch.colour_px, kind="stable")  # caption names the largest colour first
        colours = tuple(livery.colours[i] for i in order)
        if make_caption(colours, object_type, livery.camouflage) not in taken:
            return object_type, livery, patch, colours
    raise RuntimeError("could not draw an object with a caption new to its scene; restrict less (object_types)")


def render_clean(config: SynthConfig, rng_or_index: np.random.Generator | int, seed: int = 0) -> CleanScene:
    """The scene before noise: image and objects with their masks."""
    rng, _ = scene_rngs(rng_or_index, seed)
    return _render_clean(config, rng)


def _render_clean(config: SynthConfig, rng: np.random.Generator) -> CleanScene:
    W, H = config.width, config.height
    image = sky_background(rng, W, H)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    lo, hi = (np.log(f * W) for f in config.object_size)
    placed = np.zeros((0, 4), np.int64)  # xyxy, exclusive max, gap included
    objects: list[SynthObject] = []
    taken: set[str] = set()
    for _ in range(n):
        size = float(np.exp(rng.uniform(lo, hi)))
        for _ in range(_SHRINK_TRIES):
            object_type, livery, patch, colours = _draw_unique(rng, config, size, taken)
            ph, pw = patch.alpha.shape
            xs = rng.integers(0, W - pw + 1, _PLACE_TRIES)
            ys = rng.integers(0, H - ph + 1, _PLACE_TRIES)
            free = np.ones(_PLACE_TRIES, bool)
            g = PLACE_GAP_PX
            for x0, y0, x1, y1 in placed:
                free &= (xs + pw + g <= x0) | (xs >= x1 + g) | (ys + ph + g <= y0) | (ys >= y1 + g)
            if free.any():
                break
            size = max(size * 0.75, float(MIN_OBJECT_PX))
        else:
            raise RuntimeError(
                f"could not place object {len(objects) + 1} of {n} in {W}x{H}; "
                "lower max_objects or object_size"
            )
        i = int(np.flatnonzero(free)[0])
        x, y = int(xs[i]), int(ys[i])
        region = image[y : y + ph, x : x + pw].astype(np.float32)
        a = patch.alpha[..., None]
        image[y : y + ph, x : x + pw] = np.clip(region * (1.0 - a) + patch.premult_rgb, 0, 255).astype(np.uint8)
        placed = np.vstack([placed, [x, y, x + pw, y + ph]])
        caption = make_caption(colours, object_type, livery.camouflage)
        taken.add(caption)
        objects.append(SynthObject(caption, object_type, colours, livery.camouflage, (x, y, pw, ph), patch.alpha))
    return CleanScene(image, objects)


def generate_scene_jpeg(
    config: SynthConfig, rng_or_index: np.random.Generator | int, seed: int = 0
) -> tuple[bytes, list[SynthObject]]:
    """The scene as the JPEG file write_dataset writes, and its objects."""
    rng, noise_rng = scene_rngs(rng_or_index, seed)
    clean = _render_clean(config, rng)
    noisy, quality = add_noise(clean.image, config.noise, noise_rng)
    return encode_jpeg(noisy, quality), clean.objects


def generate_scene(
    config: SynthConfig, rng_or_index: np.random.Generator | int, seed: int = 0
) -> tuple[np.ndarray, list[SynthObject]]:
    """(image, objects): the (H, W, 3) uint8 RGB image with noise and JPEG artefacts,
    exactly as findbox.images.decode_image reads the file write_dataset writes for the
    same (seed, index); objects are those of render_clean."""
    data, objects = generate_scene_jpeg(config, rng_or_index, seed)
    return decode_image(data), objects
