"""EncodedImage: the header probe (size without decoding), its cache key, and lazy decoding."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from findbox.images import EncodedImage, ImageTooLarge, decode_image, probe_image
from tests.conftest import make_image


def encode(image_rgb: np.ndarray, fmt: str = "PNG", exif=None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(image_rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b"")


def test_probe_reads_the_size_without_decoding():
    # 40 MP claimed, no pixel data: the probe answers from the header; decoding fails
    assert probe_image(png_header_only(8000, 5000), 40_000_000) == (8000, 5000)
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_image(png_header_only(8000, 5000), 40_000_000)


@pytest.mark.parametrize("data, error", [
    (png_header_only(8000, 5001), ImageTooLarge),
    (b"", ValueError),
    (b"not an image at all", ValueError),
])
def test_probe_refuses(data, error):
    with pytest.raises(error):
        probe_image(data, 40_000_000)


def test_pixels_are_those_decoding_allocates_even_when_exif_rotates():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 200x120, shown 120x200
    image = EncodedImage.probe(encode(make_image(1), "JPEG", exif))
    decoded = image.decode()
    assert image.stored_wh == (200, 120) and decoded.shape == (200, 120, 3)
    assert image.pixels == decoded.shape[0] * decoded.shape[1]


def test_key_follows_the_bytes():
    data = encode(make_image(2))
    assert EncodedImage.probe(data).key == EncodedImage.probe(bytes(data)).key
    assert EncodedImage.probe(data).key != EncodedImage.probe(encode(make_image(3))).key
    assert len(EncodedImage.probe(data).key) == 16


def test_decode_equals_decode_image():
    data = encode(make_image(4))
    np.testing.assert_array_equal(EncodedImage.probe(data).decode(), decode_image(data))
