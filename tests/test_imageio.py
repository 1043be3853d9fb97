import base64
import io

import numpy as np
import pytest
from PIL import Image

from findbox.images import ImageTooLarge, decode_b64, decode_image


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode, fmt",
    [("RGB", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG"),
     ("1", "PNG")],
)
def test_any_mode_becomes_rgb_uint8(mode, fmt):
    image = Image.new(mode, (7, 5))
    rgb = decode_image(encode(image, fmt))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8


def test_one_pixel_image():
    assert decode_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")).tolist() == [[[10, 20, 30]]]


def test_pixel_cap_checked_from_header():
    big = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(big, max_pixels=1_000_000)


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_not_an_image(data):
    with pytest.raises(ValueError):
        decode_image(data)


def test_b64_variants():
    raw = b"\x00\x01binary\xff"
    text = base64.b64encode(raw).decode()
    assert decode_b64(text) == raw
    assert decode_b64(text.rstrip("=")) == raw  # padding optional
    assert decode_b64("data:image/jpeg;base64," + text) == raw
    with pytest.raises(ValueError, match="base64"):
        decode_b64("not base64 !!")
