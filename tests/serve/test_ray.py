"""`findbox serve --engine ray`: the same service on Ray Serve, against the in-process one.

One local Ray cluster for the module (the server process starts it, with `--ray-num-cpus` set so
fractional stages fit on 2 cores), the tiny models of `live_server`, the same flags.
"""

from __future__ import annotations

import json
import signal
import threading

import httpx
import numpy as np
import psutil
import pytest
import requests

from findbox.images import encode_jpeg_b64
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args

pytest.importorskip("ray")

RAY_ARGS = ["--engine", "ray", "--ray-num-cpus", "4", "--detector-num-cpus", "0.5", "--scorer-num-cpus", "0.5",
            "--scorer-replicas", "2", "--detector-threads", "1", "--scorer-threads", "1"]
# what both servers get: live_server's flags (tests/serve/conftest.py)
SHARED_ARGS = ["--max-image-pixels", "4000000"]


KEY = {"Authorization": "Bearer ray-test-key"}  # the key file guards the Ray ingress as it guards in-process


@pytest.fixture(scope="module")
def ray_server(tiny_models, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text("ray-test-key\n")
    proc = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + SHARED_ARGS + RAY_ARGS
                         + ["--api-key-file", str(keys)], timeout=300)
    yield proc
    proc.stop()


def instances(count: int, seed: int = 0) -> list[dict]:
    """The published client's order: each image once per caption, int keys."""
    images = [encode_jpeg_b64(make_image(seed + k, 200 + 8 * k, 120)) for k in range(count // 4 + 1)]
    return [{"key": i, "caption": CAPTIONS[i % len(CAPTIONS)], "b64": images[i // 4]} for i in range(count)]


def test_the_published_client_gets_the_in_process_boxes(ray_server, live_server):
    body = json.dumps({"instances": instances(44)})
    on_ray = requests.post(ray_server.url + "/identify", data=body, headers=KEY, timeout=300)  # no Content-Type
    in_process = requests.post(live_server.url + "/identify", data=body, timeout=300)
    assert on_ray.status_code == 200, on_ray.text
    assert on_ray.json() == in_process.json()  # exactly: the same code and arithmetic, the stages elsewhere


def test_concurrent_mixed_traffic_gets_the_in_process_boxes(ray_server, live_server):
    """Requests of several clients at once are batched together in the detector deployment; each
    answer is still its own. Boxes agree within 0.01 px (a batched detector call may round apart)."""
    bodies = [{"instances": instances(n, seed=100 + 10 * n)} for n in (1, 4, 8, 12, 3, 6)]
    answers: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        answers[i] = httpx.post(ray_server.url + "/v1/ground", json=bodies[i], headers=KEY, timeout=300)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, body in enumerate(bodies):
        assert answers[i].status_code == 200, answers[i].text
        expected = httpx.post(live_server.url + "/v1/ground", json=body, timeout=300).json()["results"]
        got = answers[i].json()["results"]
        assert [g["key"] for g in got] == [e["key"] for e in expected]
        np.testing.assert_allclose([g["box"] for g in got], [e["box"] for e in expected], atol=0.01)


def test_errors_answer_as_in_process(ray_server, live_server):
    cases = [
        dict(files={"file": ("a.jpg", b"\xff\xd8 not really", "image/jpeg")}),  # a form upload
        dict(data=json.dumps({"instances": [{"caption": "x", "b64": "%%%"}]})),  # bad base64, no header
        dict(data=json.dumps({"instances": [{"b64": encode_jpeg_b64(make_image(0))}]})),  # no caption
    ]
    for case in cases:
        on_ray = requests.post(ray_server.url + "/identify", timeout=60, headers=KEY, **case)
        in_process = requests.post(live_server.url + "/identify", timeout=60, **case)
        assert (on_ray.status_code, on_ray.json()) == (in_process.status_code, in_process.json())
    assert requests.get(ray_server.url + "/health", timeout=10).json() == {"message": "health ok"}  # no key needed
    assert requests.post(ray_server.url + "/identify", data=cases[1]["data"], timeout=60).status_code == 401
    spec = httpx.get(ray_server.url + "/openapi.json").json()
    assert spec["paths"].keys() == httpx.get(live_server.url + "/openapi.json").json()["paths"].keys()


def test_sigterm_stops_every_ray_process_it_started(ray_server):
    """Last in the module: stops the fixture's server."""
    server = psutil.Process(ray_server.proc.pid)
    started = [p for p in server.children(recursive=True) if p.is_running()]
    names = {p.name() for p in started}
    assert {"raylet", "gcs_server"} <= names, names
    ray_server.proc.send_signal(signal.SIGTERM)
    assert ray_server.proc.wait(120) == 0, ray_server.output()[-3000:]
    gone, alive = psutil.wait_procs(started, timeout=60)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], [(p.pid, p.name()) for p in alive]
