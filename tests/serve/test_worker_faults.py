"""A model worker that raises or hangs, not one closed cleanly: /health must say so (503).

In-process app (`create_app`) over the real tiny pipeline, with one of its real parts made to
raise or block: a scorer forward that raises (every call fails), a detector call that never
returns (the heartbeat stops), an error that ends the worker thread itself.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from findbox.config import ServeConfig, ServerConfig
from findbox.images import encode_jpeg_b64
from findbox.serve.app import create_app
from findbox.serve.runner import FAILING_CALLS
from tests.conftest import CAPTIONS, TINY_DETECTION, make_image

TIMEOUT_S = 1.0


@pytest.fixture
def served(tiny_models):
    """(client, pipeline): a fresh app over a fresh real tiny pipeline, request timeout 1 s."""
    from findbox.factory import load_pipeline

    pipeline = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]),
                             upscaler=None, device="cpu", precision="fp32", detection=dict(TINY_DETECTION))
    config = ServeConfig(server=ServerConfig(warmup=False, request_timeout_s=TIMEOUT_S))
    app = create_app(config, load=lambda c: pipeline)
    client = TestClient(app, raise_server_exceptions=False).__enter__()
    while client.get("/health").status_code != 200:
        time.sleep(0.01)
    yield client, pipeline
    client.__exit__(None, None, None)


def body(seed: int, caption: str = CAPTIONS[0]) -> dict:
    return {"instances": [{"caption": caption, "b64": encode_jpeg_b64(make_image(seed))}]}


def wait_health(client: TestClient, status: int, within_s: float):
    deadline = time.monotonic() + within_s
    while True:
        r = client.get("/health")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_models_that_fail_every_call_make_health_503_until_a_call_succeeds(served, monkeypatch):
    client, pipeline = served
    original = pipeline.scorer.text_features

    def broken(captions):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(pipeline.scorer, "text_features", broken)
    for i in range(FAILING_CALLS):
        assert client.get("/health").status_code == 200  # one failure, or two, is not yet a broken model
        r = client.post("/identify", json=body(i, f"never seen caption {i}"))
        assert r.status_code == 500 and "illegal memory access" in r.json()["detail"]
    r = client.get("/health")
    assert r.status_code == 503 and f"failed their last {FAILING_CALLS} calls" in r.json()["message"]
    monkeypatch.setattr(pipeline.scorer, "text_features", original)
    assert client.post("/identify", json=body(9)).status_code == 200  # requests still reach the models
    assert client.get("/health").status_code == 200


def test_a_hung_model_call_makes_health_503(served, monkeypatch):
    client, pipeline = served
    release = threading.Event()
    detect = pipeline.detector.detect

    def hang(images):
        release.wait(60)
        return detect(images)

    monkeypatch.setattr(pipeline.detector, "detect", hang)
    answers = {}
    sender = threading.Thread(target=lambda: answers.update(r=client.post("/identify", json=body(1))))
    sender.start()
    try:
        r = wait_health(client, 503, within_s=10 * TIMEOUT_S)
        assert r.status_code == 503 and "hangs" in r.json()["message"], r.text
        sender.join(10)
        assert answers["r"].status_code == 504
        # a hung worker refuses requests at once rather than queueing them behind it
        start = time.monotonic()
        assert client.post("/identify", json=body(2)).status_code == 503
        assert time.monotonic() - start < TIMEOUT_S
    finally:
        release.set()
        sender.join(10)
    # the call goes on (its deadline has passed: dropped at the next checkpoint): healthy again
    assert wait_health(client, 200, within_s=10).status_code == 200


def test_an_error_that_ends_the_worker_thread_makes_health_503_and_answers_its_requests(served, monkeypatch):
    client, pipeline = served

    def fatal(images):
        raise SystemExit("a library called exit()")

    monkeypatch.setattr(pipeline.detector, "detect", fatal)
    start = time.monotonic()
    r = client.post("/identify", json=body(3))
    assert r.status_code == 500 and "model worker thread stopped" in r.json()["detail"], r.text
    assert time.monotonic() - start < TIMEOUT_S  # answered when the thread died, not at its timeout
    r = client.get("/health")
    assert r.status_code == 503 and "SystemExit" in r.json()["message"], r.text
