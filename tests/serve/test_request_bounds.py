"""Bounded work per request, on a real uvicorn process: a decoded-pixel budget refused from the
image headers (413 before any pixel is decoded), images decoded lazily in the model worker (a bad
one still names its instance), and a request past its deadline that frees the model worker."""

from __future__ import annotations

import base64
import io
import re
import struct
import threading
import time
import zlib

import httpx
import pytest
from PIL import Image

from findbox.config import ServerConfig
from findbox.images import encode_jpeg_b64
from findbox.pipeline import PROPOSE_CHUNK
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def bounded_server(tiny_models):
    # default caps (max_image_pixels, max_request_pixels) and a short request timeout
    proc = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--request-timeout-s", str(TIMEOUT_S)])
    yield proc
    proc.stop()


def png_header_only(width: int, height: int) -> str:
    """A PNG whose header claims width x height RGB pixels, with no pixel data: 45 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    return base64.b64encode(data).decode("ascii")


def work_done(server: ServerProcess, counter: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    return float(re.search(rf'findbox_pipeline_work_total{{counter="{counter}"}} (\S+)', text).group(1))


def test_request_over_the_pixel_budget_is_refused_from_the_headers(bounded_server):
    budget = ServerConfig().max_request_pixels
    side = 6000  # 36 MP each: under the per-image cap, so only the request budget refuses them
    n = budget // (side * side) + 1
    before = work_done(bounded_server, "images_detected")
    # header-only images: decoding any of them would fail (400); a 413 proves none was decoded
    instances = [{"caption": CAPTIONS[0], "b64": png_header_only(side, side + i)} for i in range(n)]
    r = httpx.post(bounded_server.url + "/identify", json={"instances": instances}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["index"] == n - 1 and r.json()["field"] == "b64"
    assert "max_request_pixels" in r.json()["detail"] or "request-pixels" in r.json()["detail"]
    assert work_done(bounded_server, "images_detected") == before  # nothing reached the models


def test_budget_counts_each_distinct_image_once(bounded_server):
    # the same header-only image many times is one image's pixels: under the budget, so it is
    # decoded (in the model worker) and refused as undecodable, naming the first instance that sent it
    good = encode_jpeg_b64(make_image(3))
    bad = png_header_only(6000, 6000)
    instances = [{"caption": CAPTIONS[0], "b64": good}] + [{"caption": CAPTIONS[1], "b64": bad}] * 10
    r = httpx.post(bounded_server.url + "/identify", json={"instances": instances}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["index"] == 1 and r.json()["field"] == "b64"


def test_truncated_image_found_at_decode_time_names_its_instance(bounded_server):
    full = base64.b64decode(encode_jpeg_b64(make_image(5, 400, 300)))
    truncated = base64.b64encode(full[: len(full) // 3]).decode("ascii")  # the header reads, the pixels do not
    Image.open(io.BytesIO(full[: len(full) // 3])).size  # noqa: B018 - the probe passes it
    instances = [{"caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(c))} for c in range(3)]
    instances.insert(2, {"caption": CAPTIONS[2], "b64": truncated})
    r = httpx.post(bounded_server.url + "/v1/ground", json={"instances": instances}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["index"] == 2 and r.json()["field"] == "b64"
    ok = httpx.post(bounded_server.url + "/identify", json={"instances": instances[:2]}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2


def test_request_past_its_deadline_frees_the_model_worker(bounded_server):
    # the instance cap of distinct images: 32 chunks, far more than the timeout allows on the tiny models
    cap = ServerConfig().max_instances
    big = {"instances": [{"caption": CAPTIONS[i % 4], "b64": encode_jpeg_b64(make_image(1000 + i, 320, 240))}
                         for i in range(cap)]}
    small = {"instances": [{"caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(7))}]}
    before = work_done(bounded_server, "images_detected")
    answers = {}

    def send_big():
        answers["big"] = httpx.post(bounded_server.url + "/identify", json=big, timeout=120)

    thread = threading.Thread(target=send_big)
    thread.start()
    thread.join(120)
    assert answers["big"].status_code == 504, answers["big"].text
    at_deadline = work_done(bounded_server, "images_detected")
    # the next request is answered once the worker has dropped the rest of the big one; on a
    # loaded machine it may itself time out a few times, so it is retried (each try is bounded)
    for _ in range(20):
        r = httpx.post(bounded_server.url + "/identify", json=small, timeout=60)
        if r.status_code == 200:
            break
        assert r.status_code == 504, r.text
    assert r.status_code == 200, r.text
    # images detected past the deadline (the small request's one aside): at most the chunk under way
    after = work_done(bounded_server, "images_detected") - at_deadline - 1
    assert after <= PROPOSE_CHUNK, f"{after:.0f} images detected after the 504: the worker went on with the request"
    assert at_deadline - before < cap


def cpu_seconds(server: ServerProcess) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    return float(re.search(r"^process_cpu_seconds_total (\S+)", text, re.M).group(1))


def test_work_past_the_deadline_is_at_most_one_scorer_forward(tiny_models):
    """One image with 2048 new captions at --crop-batch 1: 2048 text forwards, one after another.
    The deadline passes among them; the server's CPU time after the 504 is the work done past the
    deadline, which must be about one forward, not the rest of the captions (a chunk)."""
    captions = 2048
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) +
                           ["--request-timeout-s", "0.5", "--crop-batch", "1", "--max-instances", str(captions)])
    try:
        image = encode_jpeg_b64(make_image(11))
        # the cost of one text forward here, from a request that fits its deadline
        start = cpu_seconds(server)
        r = httpx.post(server.url + "/identify", timeout=60, json={"instances": [
            {"caption": f"calibration caption {i}", "b64": image} for i in range(64)]})
        assert r.status_code == 200, r.text
        per_forward = (cpu_seconds(server) - start) / 64
        # what an idle server spends in 3 s and a scrape (its threads, the scrape itself): not work past a deadline
        idle_start = cpu_seconds(server)
        time.sleep(3)
        idle = cpu_seconds(server) - idle_start
        big = {"instances": [{"caption": f"an unseen caption number {i}", "b64": image} for i in range(captions)]}
        r = httpx.post(server.url + "/identify", json=big, timeout=60)
        assert r.status_code == 504, r.text
        at_deadline = cpu_seconds(server)
        time.sleep(3)  # a worker still at the captions shows here
        past = cpu_seconds(server) - at_deadline - idle
        # forwards' worth of CPU past the deadline, less an idle server's; the rest of the chunk would be ~2000
        chunks = past / per_forward
        assert chunks < 16, (f"{chunks:.1f} forwards' worth of work ({past:.3f} s CPU beyond an idle server's "
                             f"{idle:.3f} s) after the deadline")
    finally:
        server.stop()
