"""Decoding user images safely: any PIL format, any mode, any EXIF orientation -> (H, W, 3) uint8 RGB, upright."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


def _pil_open(fp) -> Image.Image:
    """PIL's own Image.open. ultralytics replaces Image.open with a wrapper that, on an
    unidentified file, tries to install and import a HEIF plugin; user bytes that are
    not an image must simply fail here."""
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(fp)


EXIF_ORIENTATION = 0x0112
TURNING_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that turn the image by 90 degrees


def upright_wh(stored_wh: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """(W, H) that decoding returns for a file stored as `stored_wh` with this EXIF orientation:
    swapped for the orientations that turn the image by 90 degrees (`decode_image` applies them)."""
    w, h = stored_wh
    return (h, w) if orientation in TURNING_ORIENTATIONS else (w, h)


class ImageTooLarge(ValueError):
    """The image's pixel count exceeds the configured cap (decompression-bomb guard)."""


# Characters of base64 decoded per call (a multiple of 4): each call holds the GIL, and a 40 MB
# image in one call held it for ~110 ms, stalling the event loop (/health) that long per request.
B64_STEP = 1 << 22


def decode_b64(text: str) -> bytes:
    """Standard base64 (padding optional, whitespace ignored, data: URL prefix accepted).

    Decoded in steps of `B64_STEP` characters, so that other threads (the server's event loop)
    get the GIL between them; padding anywhere but the end is refused as a one-call decode would.
    """
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        if len(text) <= B64_STEP or text.find("=", 0, len(text) - 2) != -1:
            return base64.b64decode(text, validate=True)
        return b"".join(base64.b64decode(text[i:i + B64_STEP], validate=True) for i in range(0, len(text), B64_STEP))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None


@contextmanager
def _image_errors() -> Iterator[None]:
    """Inside: PIL decompression-bomb warnings are errors. Out: ImageTooLarge for a bomb,
    ValueError naming the cause for anything else a decoder raises on bad bytes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from None
    except UnidentifiedImageError:
        # PIL's message names only the BytesIO object the bytes were wrapped in
        raise ValueError("not a decodable image: no image format recognised in its bytes") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a decodable image: {_without_reprs(exc)}") from None
    except Exception as exc:  # a decoder plugin failing in its own way is still a bad image
        raise ValueError(f"not a decodable image ({type(exc).__name__}: {_without_reprs(exc)})") from None


def _without_reprs(exc: Exception) -> str:
    """A decoder's message with Python object reprs (`<_io.BytesIO object at 0x...>`) said as "the image"."""
    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the image", str(exc))


def _check_size(image_wh: tuple[int, int], max_pixels: int) -> None:
    w, h = image_wh
    if w * h > max_pixels:
        raise ImageTooLarge(f"image has {w}x{h} = {w * h} pixels, above the cap of {max_pixels}")
    if w < 1 or h < 1:
        raise ValueError(f"image has no pixels ({w}x{h})")


def probe_image(data: bytes, max_pixels: int = 40_000_000) -> tuple[int, int]:
    """(W, H) of an image file as stored, read from its header: no pixel is decoded.

    Raises ImageTooLarge past `max_pixels`, ValueError for bytes that are no image. An EXIF
    rotation (orientations 5-8) swaps W and H on decode but keeps W*H, so W*H is what the
    decoded image will hold.
    """
    if not data:
        raise ValueError("empty image data")
    with _image_errors(), _pil_open(io.BytesIO(data)) as image:
        _check_size(image.size, max_pixels)
        return image.size


@dataclass(frozen=True)
class EncodedImage:
    """An image file not decoded yet: what a request holds until the model worker needs the pixels.

    data: the file's bytes. stored_wh: (W, H) from its header (before any EXIF rotation), so
    `pixels` is what decoding will allocate. key: 16-byte BLAKE2b of `data`, the image cache's key,
    so a cache hit never decodes. Build with `EncodedImage.probe`.
    """

    data: bytes = field(repr=False)
    stored_wh: tuple[int, int]
    max_pixels: int
    key: bytes

    @classmethod
    def probe(cls, data: bytes, max_pixels: int = 40_000_000) -> EncodedImage:
        """Reads the header only; raises as `probe_image` does."""
        stored_wh = probe_image(data, max_pixels)
        return cls(data, stored_wh, max_pixels, hashlib.blake2b(data, digest_size=16).digest())

    @property
    def pixels(self) -> int:
        return self.stored_wh[0] * self.stored_wh[1]

    def decode(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, upright (`decode_image`); ValueError when the pixels do not decode."""
        return decode_image(self.data, self.max_pixels)


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    """Image file bytes -> (H, W, 3) uint8 RGB, upright.

    The pixel count is checked from the header before any pixel is decoded.
    The EXIF orientation is applied (phones store photos sideways and tag them), so
    H and W are those of the image as a browser shows it and boxes are in that frame;
    a rotation keeps w*h, so the cap reads the same either way round.
    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit inputs are converted.
    """
    if not data:
        raise ValueError("empty image data")
    with _image_errors():
        image = _pil_open(io.BytesIO(data))
        _check_size(image.size, max_pixels)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an untagged image
    return to_rgb(image)


def to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        arr = (arr / hi * 255.0) if hi > 255 else arr
        image = Image.fromarray(arr.clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def load_image_file(path, max_pixels: int = 40_000_000) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB, upright, exactly as `decode_image` reads its bytes."""
    with open(path, "rb") as f:
        return decode_image(f.read(), max_pixels)


def encode_jpeg_b64(image_rgb: np.ndarray, quality: int = 95) -> str:
    """(H, W, 3) uint8 RGB -> base64 JPEG, as protocol clients send images."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")
