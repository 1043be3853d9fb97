"""The protocol against a real uvicorn process on 127.0.0.1."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from findbox.images import encode_jpeg_b64
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args


@pytest.fixture(scope="module")
def server(tiny_models):
    # small caps so the limit tests stay cheap
    proc = ServerProcess(tiny_serve_args(tiny_models) + ["--max-body-bytes", "2000000", "--max-instances", "100",
                                                         "--max-image-pixels", "1000000"])
    yield proc
    proc.stop()


def post(server, body, path="/identify", **kw):
    if isinstance(body, (dict, list)):
        return httpx.post(server.url + path, json=body, timeout=120, **kw)
    return httpx.post(server.url + path, content=body, headers={"content-type": "application/json"}, timeout=120, **kw)


def b64_of(image: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def assert_good_request_works(server):
    assert httpx.get(server.url + "/health").json() == {"message": "health ok"}
    r = post(server, {"instances": [{"key": 0, "caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(0))}]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_health(server):
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json() == {"message": "health ok"}


@pytest.mark.parametrize("batch", [1, 4, 64])
@pytest.mark.parametrize("with_key", [True, False])
def test_identify_batch_sizes(server, batch, with_key):
    images = [encode_jpeg_b64(make_image(seed)) for seed in range(max(1, batch // 4))]
    instances = []
    for i in range(batch):  # the published client's order: each image once per caption
        inst = {"caption": CAPTIONS[i % 4], "b64": images[(i // 4) % len(images)]}
        if with_key:
            inst = {"key": i, **inst}
        instances.append(inst)
    r = post(server, {"instances": instances})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == batch
    for box in predictions:
        assert len(box) == 4 and all(isinstance(v, float) for v in box)
        l, t, w, h = box
        assert 0 <= l and 0 <= t and l + w <= 200 + 1e-3 and t + h <= 120 + 1e-3


def test_identify_matches_ground_and_keeps_order(server):
    a, b = encode_jpeg_b64(make_image(1)), encode_jpeg_b64(make_image(2, 160, 90))
    instances = [{"key": 7, "caption": CAPTIONS[0], "b64": b}, {"key": 3, "caption": CAPTIONS[1], "b64": a}]
    boxes = post(server, {"instances": instances}).json()["predictions"]
    rich = post(server, {"instances": instances}, "/v1/ground").json()
    assert [r["key"] for r in rich["results"]] == [7, 3]
    assert [r["box"] for r in rich["results"]] == boxes
    assert [r["image_wh"] for r in rich["results"]] == [[160, 90], [200, 120]]
    for r in rich["results"]:
        assert r["candidates"], "tiny detector at conf 0.001 proposes boxes"
        assert r["candidates"][r["chosen"]]["box"] == r["box"]
        assert max(c["score"] for c in r["candidates"]) == r["candidates"][r["chosen"]]["score"]
    assert {"detect", "embed_images", "total"} <= set(rich["timings_ms"])


@pytest.mark.parametrize(
    "name, make_image_b64",
    [
        ("one pixel", lambda: b64_of(Image.new("RGB", (1, 1), (200, 10, 10)), "JPEG")),
        ("grayscale", lambda: b64_of(Image.new("L", (64, 40), 90), "JPEG")),
        ("rgba png", lambda: b64_of(Image.new("RGBA", (64, 40), (10, 200, 10, 128)), "PNG")),
        ("palette png", lambda: b64_of(Image.new("P", (33, 17)), "PNG")),
    ],
)
def test_unusual_images_get_a_box(server, name, make_image_b64):
    r = post(server, {"instances": [{"caption": CAPTIONS[2], "b64": make_image_b64()}]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"][0]) == 4


@pytest.mark.parametrize("caption", ["", "   ", "red " * 500 + "aircraft", "ünïcödé ✈ 飞机"])
def test_empty_long_and_unicode_captions_get_a_box(server, caption):
    r = post(server, {"instances": [{"caption": caption, "b64": encode_jpeg_b64(make_image(5))}]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"][0]) == 4


def test_empty_instance_list(server):
    r = post(server, {"instances": []})
    assert r.status_code == 200 and r.json() == {"predictions": []}



def _bad_bodies():
    good = encode_jpeg_b64(make_image(0))
    bomb = b64_of(Image.new("L", (1500, 1000)), "PNG")  # 1.5 MP against a 1 MP cap, tiny on the wire
    return [
        ("not json", b"this is not json", 400, None, "body"),
        ("json array", [1, 2], 400, None, "body"),
        ("missing instances", {}, 400, None, "instances"),
        ("instances not a list", {"instances": {"a": 1}}, 400, None, "instances"),
        ("missing caption", {"instances": [{"b64": good}, {"b64": good}]}, 400, 0, "caption"),
        ("caption not a string", {"instances": [{"caption": "ok", "b64": good}, {"caption": 5, "b64": good}]}, 400, 1,
         "caption"),
        ("missing b64", {"instances": [{"caption": "x", "b64": good}, {"caption": "x"}]}, 400, 1, "b64"),
        ("b64 not a string", {"instances": [{"caption": "x", "b64": None}]}, 400, 0, "b64"),
        ("invalid base64", {"instances": [{"caption": "x", "b64": good}, {"caption": "x", "b64": "%%%not-b64%%%"}]},
         400, 1, "b64"),
        ("not an image", {"instances": [{"caption": "x", "b64": base64.b64encode(b"GIF89a garbage").decode()}]}, 400,
         0, "b64"),
        ("decompression bomb", {"instances": [{"caption": "x", "b64": bomb}]}, 413, 0, "b64"),
        ("too many instances", {"instances": [{"caption": "x", "b64": good}] * 101}, 413, None, "instances"),
        ("oversized body", {"instances": [{"caption": "x", "b64": "A" * 2_100_000}]}, 413, None, "body"),
    ]


@pytest.mark.parametrize("name, body, status, index, field", _bad_bodies(), ids=[b[0] for b in _bad_bodies()])
def test_bad_input_gets_4xx_naming_index_and_field(server, name, body, status, index, field):
    r = post(server, body)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["index"] == index and error["field"] == field
    assert field in error["detail"]
    if index is not None:
        assert f"instances[{index}]" in error["detail"]
    assert_good_request_works(server)


def test_oversized_chunked_body_is_refused(server):
    def chunks():
        for _ in range(30):
            yield b"x" * 100_000

    r = httpx.post(server.url + "/identify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert_good_request_works(server)


def test_openapi_documents_both_endpoints(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/identify", "/v1/ground", "/health"} <= set(spec["paths"])


def test_health_is_503_until_models_load(tiny_models, tmp_path):
    """A server whose model fails to load reports why on /health, then exits non-zero."""
    import subprocess
    import sys
    import time

    from tests.conftest import free_port

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--detector", str(junk), "--scorer", str(tiny_models["scorer"]), "--no-upscaler"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = set()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seen.add(httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 1 and "detector" in out
    assert 200 not in seen


def test_missing_model_path_fails_before_binding(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "findbox.cli", "serve", "--detector", str(tmp_path / "nope.pt"),
                        "--scorer", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and ("detector" in r.stderr or "scorer" in r.stderr)
