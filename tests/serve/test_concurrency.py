"""Concurrent requests never mix their answers, with and without gathering them into one model call."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from findbox.images import encode_jpeg_b64
from findbox.serve.runner import ModelRunner
from tests.conftest import CAPTIONS, make_image


def _payloads(n_clients: int, seed: int = 0) -> list[dict]:
    """Each client a different mix of images (several sizes) and captions, keyed so a mix-up shows."""
    rng = random.Random(seed)
    images = [encode_jpeg_b64(make_image(100 + i, 120 + 40 * (i % 3), 90 + 20 * (i % 2))) for i in range(6)]
    payloads = []
    for client in range(n_clients):
        instances = [{"key": f"c{client}-{k}", "caption": rng.choice(CAPTIONS), "b64": rng.choice(images)}
                     for k in range(rng.randint(1, 4))]
        payloads.append({"instances": instances})
    return payloads


def _answer(server, payload) -> list[dict]:
    r = httpx.post(server.url + "/v1/ground", json=payload, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["results"]  # everything but the timings


def test_concurrent_clients_get_their_single_request_answers(live_server):
    payloads = _payloads(12)
    alone = [_answer(live_server, p) for p in payloads]
    barrier = threading.Barrier(len(payloads))

    def client(i: int) -> list[list[dict]]:
        barrier.wait()  # all clients start together
        return [_answer(live_server, payloads[i]) for _ in range(2)]

    with ThreadPoolExecutor(len(payloads)) as pool:
        together = list(pool.map(client, range(len(payloads))))
    for i, answers in enumerate(together):
        for answer in answers:
            assert [r["key"] for r in answer] == [inst["key"] for inst in payloads[i]["instances"]]
            assert answer == alone[i], f"client {i} got an answer that differs from its single request"


def test_batch_window_gathers_requests_and_hands_each_its_own_answers(tiny_pipeline):
    rng = np.random.default_rng(0)
    jobs = []
    for client in range(6):
        images = [make_image(200 + client * 3 + j, 160 + 20 * j, 100) for j in range(1 + client % 2)]
        queries = [(int(rng.integers(len(images))), CAPTIONS[(client + k) % len(CAPTIONS)]) for k in range(3)]
        jobs.append((images, queries))
    alone = [tiny_pipeline.ground(images, queries) for images, queries in jobs]

    calls = []
    runner = ModelRunner(tiny_pipeline, window_s=0.3, max_instances=256, on_call=lambda r, n: calls.append((r, n)))
    barrier = threading.Barrier(len(jobs))

    def submit(i):
        barrier.wait()
        images, queries = jobs[i]
        return runner.ground(images, queries)

    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            done = list(pool.map(submit, range(len(jobs))))
    finally:
        runner.close()
    assert len(calls) < len(jobs) and max(r for r, _ in calls) > 1, f"requests were not gathered: {calls}"
    assert sum(n for _, n in calls) == sum(len(q) for _, q in jobs)
    for job, reference in zip(done, alone):
        assert job.batch_requests > 1 or len(calls) == len(jobs)
        assert len(job.results) == len(reference)
        for got, want in zip(job.results, reference):
            assert got.image_wh == want.image_wh
            np.testing.assert_allclose(got.candidates.xyxy, want.candidates.xyxy, atol=1e-3)
            np.testing.assert_allclose(got.candidates.match_score, want.candidates.match_score, atol=1e-4)
            # the same box wins, up to ties that batching's float rounding may break the other way
            assert got.chosen == want.chosen or np.isclose(want.candidates.match_score[got.chosen],
                                                           want.candidates.match_score[want.chosen], atol=1e-4)
        assert "queue" in job.timings and "detect" in job.timings
