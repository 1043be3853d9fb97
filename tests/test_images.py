import base64
import io

import numpy as np
import pytest
from PIL import Image

from findbox.images import ImageTooLarge, decode_b64, decode_image, load_image_file


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


def exif_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def corner_marked(width: int, height: int) -> Image.Image:
    """Grey image with a red top-left and a blue bottom-right 4x4 patch, to tell rotations apart."""
    rgb = np.full((height, width, 3), 128, np.uint8)
    rgb[:4, :4] = (255, 0, 0)
    rgb[-4:, -4:] = (0, 0, 255)
    return Image.fromarray(rgb)


# orientation -> decoded (height, width) of a 30 wide, 20 high stored image, and where its red corner lands
@pytest.mark.parametrize("orientation, hw, red_at", [
    (1, (20, 30), (0, 0)),      # upright: nothing to do
    (3, (20, 30), (-1, -1)),    # rotated 180
    (6, (30, 20), (0, -1)),     # phone held upright: stored sideways, shown rotated 90 clockwise
    (8, (30, 20), (-1, 0)),     # rotated 90 counter-clockwise
])
def test_exif_orientation_is_applied(orientation, hw, red_at):
    rgb = decode_image(exif_jpeg(corner_marked(30, 20), orientation))
    assert rgb.shape == (*hw, 3)
    y = 1 if red_at[0] == 0 else -2  # inside the 4x4 patch, away from JPEG-blurred edges
    x = 1 if red_at[1] == 0 else -2
    r, g, b = rgb[y, x].astype(int)
    assert r > 200 and g < 60 and b < 60, f"red corner expected at {red_at}, got {rgb[y, x]}"


def test_exif_orientation_on_file_load(tmp_path):
    (tmp_path / "phone.jpg").write_bytes(exif_jpeg(corner_marked(30, 20), 6))
    assert load_image_file(tmp_path / "phone.jpg").shape == (30, 20, 3)


def test_pixel_cap_applies_to_the_rotated_image():
    data = exif_jpeg(Image.new("RGB", (200, 100)), 6)  # 20,000 pixels either way round
    assert decode_image(data, max_pixels=20_000).shape == (200, 100, 3)
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, max_pixels=19_999)


def test_decode_b64_in_steps_decodes_as_one_call():
    """A large text is decoded in steps (the GIL is let go between them) with one call's answers:
    the same bytes, and padding or a bad character in any step is refused."""
    from findbox.images import B64_STEP

    raw = np.random.default_rng(0).integers(0, 256, B64_STEP * 3 // 4 * 2 + 5, dtype=np.uint8).tobytes()
    text = base64.b64encode(raw).decode()
    assert len(text) > 2 * B64_STEP
    assert decode_b64(text) == raw
    assert decode_b64(text.rstrip("=")) == raw
    padded_mid = text[:B64_STEP - 2] + "==" + text[B64_STEP:]  # a step that would decode on its own
    bad_char = text[:B64_STEP + 7] + "!" + text[B64_STEP + 8:]
    for broken in (padded_mid, bad_char):
        with pytest.raises(ValueError, match="invalid base64"):
            decode_b64(broken)
