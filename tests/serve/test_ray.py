"""`findbox serve --engine ray`: the same service on Ray Serve, against the in-process one.

One local Ray cluster for the module (the server process starts it, with `--ray-num-cpus` set so
fractional stages fit on 2 cores), the tiny models of `live_server`, the same flags.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
import requests

from findbox.images import encode_jpeg_b64
from tests.conftest import CAPTIONS, ServerProcess, free_port, make_image, tiny_serve_args

pytest.importorskip("ray")

RAY_ARGS = ["--engine", "ray", "--ray-num-cpus", "4", "--detector-num-cpus", "0.5", "--scorer-num-cpus", "0.5",
            "--scorer-replicas", "2", "--detector-threads", "1", "--scorer-threads", "1"]
# what both servers get: live_server's flags (tests/serve/conftest.py); one detector backend for both, as
# `auto` decides per thread count and the Ray detector replica runs with other threads than live_server
SHARED_ARGS = ["--max-image-pixels", "4000000", "--detector-backend", "torch"]


KEY = {"Authorization": "Bearer ray-test-key"}  # the key file guards the Ray ingress as it guards in-process
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def ray_server(tiny_models, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text("ray-test-key\n")
    proc = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + SHARED_ARGS + RAY_ARGS
                         + ["--api-key-file", str(keys), "--ray-metrics-port", str(METRICS_PORT)], timeout=300)
    yield proc
    proc.stop()


def scorer_replica_pids(server: ServerProcess) -> list[int]:
    """The scorer replicas' worker processes (Ray titles them ray::ServeReplica:APP:DEPLOYMENT)."""
    pids = []
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if "ServeReplica:findbox:ScorerStage" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            pass
    return pids


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


def test_findbox_series_reach_the_clusters_prometheus_endpoint(ray_server):
    """findbox's counters and stage timings, recorded in the replicas through ray.serve.metrics, in the
    node's Prometheus export as ray_findbox_*, tagged per deployment."""
    body = {"instances": instances(8, seed=7)}
    assert httpx.post(ray_server.url + "/v1/ground", json=body, headers=KEY, timeout=300).status_code == 200
    wanted = {"ray_findbox_instances_total": "ScorerStage", "ray_findbox_stage_duration_seconds_count": "ScorerStage",
              "ray_findbox_pipeline_work_total": "ScorerStage", "ray_findbox_detector_call_frames_count": "DetectorStage"}
    found: dict[str, float] = {}
    for _ in range(45):  # Ray's metrics agent exports every few seconds
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
        for name, deployment in wanted.items():
            values = [float(m.group(1)) for m in re.finditer(
                rf'^{name}{{[^}}]*deployment="{deployment}"[^}}]*}} (\S+)$', text, re.M)]
            if values:
                found[name] = sum(values)
        if len(found) == len(wanted) and found["ray_findbox_instances_total"] >= 8:
            break
        time.sleep(1)
    assert found.keys() == wanted.keys(), sorted(found)
    assert found["ray_findbox_instances_total"] >= 8
    assert "stage=\"detect\"" in text


def test_a_killed_scorer_replica_costs_no_answer_to_a_retrying_client(ray_server, live_server):
    """One of two scorer replicas killed under load: a request it held answers 503 with Retry-After
    (never a 500), and clients retrying 503s, as README shows, get every answer, right."""
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    pids = scorer_replica_pids(ray_server)
    assert len(pids) == 2, pids
    body = json.dumps({"instances": instances(12, seed=11)})
    expected = requests.post(live_server.url + "/identify", data=body, timeout=300).json()
    plain: list[requests.Response] = []
    retried: list[requests.Response] = []
    stop = threading.Event()

    def client(retry: bool) -> None:
        session = requests.Session()
        if retry:
            session.mount("http://", HTTPAdapter(max_retries=Retry(
                total=8, backoff_factor=0.5, allowed_methods=None, status_forcelist=[502, 503, 504])))
        while not stop.is_set():
            (retried if retry else plain).append(
                session.post(ray_server.url + "/identify", data=body, headers=KEY, timeout=300))

    clients = [threading.Thread(target=client, args=(k % 2 == 0,)) for k in range(8)]
    for c in clients:
        c.start()
    time.sleep(3)  # every replica holds requests now
    os.kill(pids[0], signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for c in clients:
        c.join()
    # With these tiny models a request lasts milliseconds and Serve mostly routes around the dead replica
    # before anything is lost; benchmarks/ray_faults.py measures it with the demo's slower requests.
    lost = [r for r in plain if r.status_code != 200]
    assert {r.status_code for r in lost} <= {503}, [(r.status_code, r.text) for r in lost]
    assert all(r.headers.get("Retry-After") and "replica" in r.json()["detail"] for r in lost)
    assert {r.status_code for r in retried} == {200}
    assert all(r.json() == expected for r in retried + [r for r in plain if r.status_code == 200])
    for _ in range(120):  # Serve starts a replacement
        if len(scorer_replica_pids(ray_server)) == 2:
            break
        time.sleep(1)
    assert len(scorer_replica_pids(ray_server)) == 2


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
