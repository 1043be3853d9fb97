"""The global bound on request bytes in flight, on a real uvicorn process: concurrent requests over
the budget get 503 with Retry-After at once (their bodies never buffered), /health stays 200 and
fast, and a request is served again once the budget is free."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import numpy as np
from PIL import Image

from tests.conftest import CAPTIONS, ServerProcess, tiny_serve_args

WINDOW_S = 3.0  # the batch window holds each admitted request that long in the queue


def noise_b64(seed: int, side: int = 700) -> str:
    """~1 MB of base64 JPEG: noise does not compress."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)).save(
        buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


def test_requests_over_the_bytes_in_flight_get_503_at_once(tiny_models):
    bodies = [{"instances": [{"caption": CAPTIONS[0], "b64": noise_b64(i)}]} for i in range(8)]
    size = len(str(bodies[0]))
    # room for two such bodies counted 4 times each, not three
    budget = 2 * 4 * size + size
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) +
                           ["--max-inflight-bytes", str(budget), "--batch-window-ms", str(WINDOW_S * 1000)])
    try:
        answers: list[tuple[httpx.Response, float]] = []
        lock = threading.Lock()

        def post(body):
            start = time.monotonic()
            r = httpx.post(server.url + "/identify", json=body, timeout=60)
            with lock:
                answers.append((r, time.monotonic() - start))

        threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        health = []
        while any(t.is_alive() for t in threads):
            start = time.monotonic()
            health.append((httpx.get(server.url + "/health", timeout=30).status_code, time.monotonic() - start))
            time.sleep(0.1)
        for t in threads:
            t.join()

        statuses = sorted(r.status_code for r, _ in answers)
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(200) >= 1 and statuses.count(503) >= len(bodies) - 4, statuses
        for r, seconds in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"].isdigit()
                assert r.json()["field"] == "body" and r.json()["index"] is None
                assert "--max-inflight-bytes" in r.json()["detail"]
                assert seconds < WINDOW_S, "a refused request waited: it was queued, not refused at once"
        assert health and all(status == 200 for status, _ in health), health
        assert max(seconds for _, seconds in health) < 1.0, health
        # the budget is free again: a request is served
        r = httpx.post(server.url + "/identify", json=bodies[0], timeout=60)
        assert r.status_code == 200, r.text
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
        assert 'findbox_requests_total{endpoint="/identify",status="503"}' in metrics
    finally:
        server.stop()
