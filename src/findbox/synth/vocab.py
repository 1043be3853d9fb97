"""Caption vocabulary: object types, the named colour palette, caption text <-> parts.

A caption is a colour list, an optional "camouflage", then the object type, written
the way the original data set writes them:
"grey missile", "red and white helicopter", "red, white, and blue light aircraft",
"green and brown camouflage fighter jet".
"""

from __future__ import annotations

from collections.abc import Sequence

# The eight types of the original data set, most common first there.
OBJECT_TYPES: tuple[str, ...] = (
    "fighter plane",
    "helicopter",
    "fighter jet",
    "light aircraft",
    "commercial aircraft",
    "missile",
    "drone",
    "cargo aircraft",
)

# Colour name -> RGB (uint8). Values are far apart (nearest-neighbour classification
# stays right under the renderer's +-10% shading) and grey/silver/white are distinct steps.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "grey": (120, 122, 125),
    "silver": (190, 193, 200),
    "white": (246, 246, 244),
    "red": (200, 32, 36),
    "orange": (240, 120, 20),
    "yellow": (242, 206, 32),
    "green": (52, 120, 52),
    "blue": (32, 70, 190),
    "brown": (118, 74, 36),
    "purple": (112, 48, 146),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
CAMOUFLAGE = "camouflage"
MAX_COLOURS = 3


def make_caption(colours: Sequence[str], object_type: str, camouflage: bool = False) -> str:
    """Caption text from its parts: ("red", "white", "blue"), "light aircraft" ->
    "red, white, and blue light aircraft"."""
    if not 1 <= len(colours) <= MAX_COLOURS:
        raise ValueError(f"expected 1 to {MAX_COLOURS} colours, got {list(colours)}")
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"expected object_type in {OBJECT_TYPES}, got {object_type!r}")
    if len(colours) == 1:
        words = colours[0]
    elif len(colours) == 2:
        words = f"{colours[0]} and {colours[1]}"
    else:
        words = ", ".join(colours[:-1]) + f", and {colours[-1]}"
    if camouflage:
        words += f" {CAMOUFLAGE}"
    return f"{words} {object_type}"


def parse_caption(caption: str) -> tuple[list[str], str]:
    """Split a caption into (colour words, object type).

    The type must be one of OBJECT_TYPES (the caption's last words); the colour words
    are what precedes it, split on commas and "and", without "camouflage". Colour words
    outside COLOURS are kept (captions of the original data may use others).
    "red, white, and blue light aircraft" -> (["red", "white", "blue"], "light aircraft").
    """
    if not isinstance(caption, str):
        raise TypeError(f"expected caption as str, got {type(caption).__name__}")
    text = " ".join(caption.lower().split())
    matches = [t for t in OBJECT_TYPES if text == t or text.endswith(" " + t)]
    if not matches:
        raise ValueError(f"expected a caption ending in one of {OBJECT_TYPES}, got {caption!r}")
    object_type = max(matches, key=len)
    head = text[: len(text) - len(object_type)].replace(",", " ")
    colours = [w for w in head.split() if w not in ("and", CAMOUFLAGE)]
    return colours, object_type


def is_camouflage(caption: str) -> bool:
    """Whether the caption describes a camouflage livery."""
    return CAMOUFLAGE in caption.lower().split()
