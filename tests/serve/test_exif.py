"""EXIF orientation through a real uvicorn process: boxes come back in the frame a browser shows."""

import base64
import io

import httpx
import numpy as np
from PIL import Image, ImageOps

from tests.conftest import CAPTIONS, make_image


def phone_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG stored sideways with the EXIF tag that tells viewers how to turn it, as phones write them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def upright_png(jpeg: bytes) -> bytes:
    """The same pixels as a viewer shows them, turned by hand, saved without EXIF (lossless)."""
    buf = io.BytesIO()
    ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg))).save(buf, format="PNG")
    return buf.getvalue()


def ground(server, data: bytes, caption: str) -> dict:
    body = {"instances": [{"caption": caption, "b64": base64.b64encode(data).decode()}]}
    r = httpx.post(server.url + "/v1/ground", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_exif_rotated_jpeg_is_answered_in_the_upright_frame(live_server):
    stored = make_image(5, width=240, height=80)  # stored 240 wide, 80 high; shown 80 wide, 240 high
    jpeg = phone_jpeg(stored, 6)
    for caption in CAPTIONS[:2]:
        rotated = ground(live_server, jpeg, caption)
        assert rotated["image_wh"] == [80, 240]
        l, t, w, h = rotated["box"]
        assert 0 <= l and 0 <= t and l + w <= 80 + 1e-3 and t + h <= 240 + 1e-3
        # the server saw exactly the upright pixels: same candidates and box as the hand-turned image
        upright = ground(live_server, upright_png(jpeg), caption)
        assert rotated["box"] == upright["box"] and rotated["candidates"] == upright["candidates"]
        r = httpx.post(live_server.url + "/identify", timeout=120,
                       json={"instances": [{"caption": caption, "b64": base64.b64encode(jpeg).decode()}]})
        assert r.status_code == 200 and r.json()["predictions"] == [rotated["box"]]
