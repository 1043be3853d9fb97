"""/health and /metrics stay responsive whatever the load, and /health tells a dead model worker.

The requests waiting on the model worker each hold a thread of the pool (40 by default);
/health and /metrics must never wait for one, and request bodies are parsed off the event loop.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import model_validator

from findbox.boxes import Candidates
from findbox.config import ServeConfig, ServerConfig
from findbox.images import encode_jpeg_b64
from findbox.pipeline import Counters, Grounding
from findbox.serve import app as app_module
from findbox.serve.app import create_app
from findbox.serve.protocol import IdentifyRequest
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args

PENDING = 60  # above the thread pool's 40


def test_health_and_metrics_answer_while_many_requests_wait_for_the_models(tiny_models):
    # a long batch window holds every request in the model queue for seconds, on any machine
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--batch-window-ms", "8000"])
    try:
        payload = {"instances": [{"caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(3, 64, 48))}]}
        done_at: list[float] = []
        statuses: list[int] = []
        pool = httpx.Client(base_url=server.url, timeout=120, limits=httpx.Limits(max_connections=PENDING + 10))

        def slow_request():
            r = pool.post("/identify", json=payload)
            statuses.append(r.status_code)
            done_at.append(time.monotonic())

        clients = [threading.Thread(target=slow_request) for _ in range(PENDING)]
        for thread in clients:
            thread.start()
        # wait until they are all in: /metrics counts them while they wait
        in_flight = 0.0
        deadline = time.monotonic() + 6
        while in_flight < PENDING and time.monotonic() < deadline:
            text = httpx.get(server.url + "/metrics", timeout=60).text
            in_flight = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                            if line.startswith('findbox_requests_in_flight{endpoint="/identify"}'))
        health = [httpx.get(server.url + "/health", timeout=60) for _ in range(10)]
        health_done = time.monotonic()
        for thread in clients:
            thread.join(120)
        pool.close()

        assert in_flight > 40, f"only {in_flight} requests were waiting: the test did not load the server"
        assert [r.status_code for r in health] == [200] * 10
        assert done_at and health_done < min(done_at), "/health waited for the requests queued on the models"
        assert statuses == [200] * PENDING
    finally:
        server.stop()


class FakePipeline:
    """Stands in for the models: one box per query, at once."""

    counters = Counters()

    def stats(self) -> dict:
        return {"counters": {}, "stage_seconds": {}, "caches": {}}

    def ground(self, images, queries, timings=None, **kw):
        box = np.array([1, 2, 11, 22], np.float32)
        cands = Candidates(box[None], np.array([0.9], np.float32), np.array([1.5], np.float32))
        return [Grounding(box, cands, 0, (40, 30)) for i, _ in queries]


def ready_client(app) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False).__enter__()
    while client.get("/health").status_code != 200:
        time.sleep(0.01)
    return client


def test_health_is_503_when_the_model_worker_is_dead():
    app = create_app(ServeConfig(server=ServerConfig(warmup=False, request_timeout_s=5)), load=lambda c: FakePipeline())
    client = ready_client(app)
    try:
        app.state.findbox.runner.close()  # the worker thread ends, as it would on a fatal error
        r = client.get("/health")
        assert r.status_code == 503 and "model worker" in r.json()["message"]
        # a request is refused at once instead of waiting for its timeout
        body = {"instances": [{"caption": "x", "b64": encode_jpeg_b64(make_image(0, 40, 30))}]}
        start = time.monotonic()
        r = client.post("/identify", json=body)
        assert r.status_code == 503 and time.monotonic() - start < 5
    finally:
        client.__exit__(None, None, None)


def test_the_body_is_parsed_off_the_event_loop(monkeypatch):
    """A body whose validation blocks (as a huge one takes seconds) leaves /health answering."""
    release = threading.Event()

    class BlockingRequest(IdentifyRequest):
        @model_validator(mode="before")
        @classmethod
        def wait(cls, data):
            if isinstance(data, dict) and data.get("block"):
                release.wait(30)
            return data

    monkeypatch.setattr(app_module, "IdentifyRequest", BlockingRequest)
    app = create_app(ServeConfig(server=ServerConfig(warmup=False)), load=lambda c: FakePipeline())
    client = ready_client(app)
    try:
        answers = {}

        def post():
            answers["post"] = client.post("/identify", json={"block": True, "instances": []})

        poster = threading.Thread(target=post)
        poster.start()
        time.sleep(0.3)  # the body is being validated now
        health = threading.Thread(target=lambda: answers.setdefault("health", client.get("/health")))
        health.start()
        health.join(10)
        answered_while_parsing = "health" in answers
        release.set()
        poster.join(30)
        health.join(30)
        assert answered_while_parsing, "/health waited for a request body to be parsed"
        assert answers["health"].status_code == 200
        assert answers["post"].status_code == 200 and answers["post"].json() == {"predictions": []}
    finally:
        release.set()
        client.__exit__(None, None, None)


@pytest.mark.parametrize("body, content_type, status, detail", [
    (b"", "application/json", 400, "body: Field required"),
    (b"{", "application/json", 400, "body: not valid JSON (Expecting property name enclosed in double quotes)"),
    # JSON without a JSON Content-Type is read (tests/serve/test_published_clients.py); a body that is not JSON is not
    (b"caption=x", "application/x-www-form-urlencoded", 415, "body: expected JSON, got a body that is not JSON"),
    (b"\xff\xd8\xff", None, 400, "body: expected JSON, got a body that is not JSON (no Content-Type)"),
    (b'{"instances": [{"caption": "x", "b64": "\xff"}]}', "application/json", 400, "body: not valid JSON"),
    (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, "body: not valid JSON"),
    (b'{"instances": [{"key": 1.5, "caption": "x", "b64": "x"}]}', "application/json", 422,
     "instances[0].key.int: Input should be a valid integer, got a number with a fractional part"),
])
def test_bodies_parsed_in_a_thread_get_the_usual_errors(body, content_type, status, detail):
    app = create_app(ServeConfig(server=ServerConfig(warmup=False)), load=lambda c: FakePipeline())
    client = ready_client(app)
    try:
        headers = {"content-type": content_type} if content_type else {}
        for path in ("/identify", "/v1/ground"):
            r = client.post(path, content=body, headers=headers)
            assert r.status_code == status, r.text
            assert r.json()["detail"].startswith(detail) and r.json()["field"] in ("body", "int")
    finally:
        client.__exit__(None, None, None)
