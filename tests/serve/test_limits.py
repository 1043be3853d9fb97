"""Request timeout (504) and graceful shutdown (in-flight requests finish on SIGTERM)."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from findbox.boxes import Candidates
from findbox.config import ServeConfig, ServerConfig
from findbox.images import encode_jpeg_b64
from findbox.pipeline import Counters, Grounding
from findbox.serve.app import create_app
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args


class SlowPipeline:
    """Stands in for the models: every call takes `seconds` and answers one box per query."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0
        self.counters = Counters()

    def stats(self) -> dict:
        return {"counters": {}, "stage_seconds": {}, "caches": {}}

    def ground(self, images, queries, timings=None, deadline=None):
        self.calls += 1
        time.sleep(self.seconds)
        box = np.array([1, 2, 11, 22], np.float32)
        cands = Candidates(box[None], np.array([0.9], np.float32), np.array([1.5], np.float32))
        return [Grounding(box, cands, 0, images[i].stored_wh) for i, _ in queries]


def body(n: int = 1) -> dict:
    return {"instances": [{"caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(i, 40, 30))} for i in range(n)]}


def test_request_over_the_timeout_gets_504_and_queued_work_is_dropped():
    pipeline = SlowPipeline(seconds=1.5)
    config = ServeConfig(server=ServerConfig(warmup=False, request_timeout_s=0.4))
    app = create_app(config, load=lambda config: pipeline)
    with TestClient(app) as client:
        while client.get("/health").status_code != 200:
            time.sleep(0.01)
        results = {}

        def send(name):
            start = time.monotonic()
            r = client.post("/v1/ground", json=body())
            results[name] = (r, time.monotonic() - start)

        first = threading.Thread(target=send, args=("first",))
        first.start()
        time.sleep(0.1)  # the first holds the models; the second queues behind it
        send("second")
        first.join()
        for name, (r, seconds) in results.items():
            assert r.status_code == 504, (name, r.text)
            assert r.json()["field"] == "request" and "--request-timeout-s" in r.json()["detail"]
            assert seconds < 1.2, f"{name} waited {seconds:.2f} s: the 504 must not wait for the models"
        time.sleep(1.6)  # the first call finishes in the background; the expired second never starts
        assert pipeline.calls == 1

        pipeline.seconds = 0.0  # the service is still fine afterwards
        r = client.post("/identify", json=body(2))
        assert r.status_code == 200 and r.json()["predictions"] == [[1.0, 2.0, 10.0, 20.0]] * 2
        metrics = client.get("/metrics").text
        assert 'findbox_errors_total{endpoint="/v1/ground",kind="timeout",status="504"} 2.0' in metrics


class BrokenPipeline(SlowPipeline):
    def stats(self) -> dict:
        return {"counters": {}, "stage_seconds": {}, "caches": {}}

    def ground(self, images, queries, timings=None, deadline=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA out of memory (pretend)")
        return super().ground(images, queries, timings, deadline)


def test_model_error_is_a_json_500_and_the_service_goes_on():
    app = create_app(ServeConfig(server=ServerConfig(warmup=False)), load=lambda config: BrokenPipeline(seconds=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        while client.get("/health").status_code != 200:
            time.sleep(0.01)
        r = client.post("/identify", json=body())
        assert r.status_code == 500 and "CUDA out of memory (pretend)" in r.json()["detail"]
        assert client.post("/identify", json=body()).status_code == 200
        assert 'findbox_errors_total{endpoint="/identify",kind="internal",status="500"} 1.0' in client.get("/metrics").text


def test_sigterm_lets_the_in_flight_request_finish(tiny_models):
    # a batch window makes the request deterministically slow (it waits 2 s for company) on any machine
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--batch-window-ms", "2000"])
    try:
        image = encode_jpeg_b64(make_image(31))
        payload = {"instances": [{"key": "slow", "caption": CAPTIONS[1], "b64": image}]}
        answer = {}

        def slow_request():
            r = httpx.post(server.url + "/v1/ground", json=payload, timeout=60)
            answer["response"], answer["at"] = r, time.monotonic()

        thread = threading.Thread(target=slow_request)
        thread.start()
        deadline = time.monotonic() + 10
        while 'findbox_requests_in_flight{endpoint="/v1/ground"} 1.0' not in httpx.get(server.url + "/metrics").text:
            assert time.monotonic() < deadline, "the slow request never arrived"
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        thread.join(60)

        r = answer["response"]
        assert r.status_code == 200, r.text
        assert answer["at"] > sent, "the request must have been in flight when SIGTERM arrived"
        assert r.json()["results"][0]["key"] == "slow" and r.json()["results"][0]["candidates"]
        # uvicorn re-raises the SIGTERM once it has shut down cleanly: the exit status says "terminated"
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/health", timeout=2)
        assert "Shutting down" in server.output() and "Application shutdown complete" in server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("precision, shown", [("fp32", "precision fp32 on cpu"), ("bf16", "precision bf16 on cpu")])
def test_ready_line_names_the_precision_that_runs(precision, shown):
    from findbox.config import PipelineConfig
    from findbox.serve.app import describe_models

    line = describe_models(PipelineConfig(device="cpu", precision=precision))
    assert line.endswith(shown) and "bundled demo detector.pt" in line


def test_ready_line_says_when_the_precision_was_chosen_automatically():
    from findbox.config import PipelineConfig
    from findbox.serve.app import describe_models

    # the bundled demo ships its calibration record: the line says auto chose from it (a path, or fp32 as none
    # that kept the answers ran 5% faster)
    assert "(auto; calibrated" in describe_models(PipelineConfig(device="cpu"))


def test_ready_line_precision_is_the_one_the_scorer_runs(tmp_path):
    """auto resolves per scorer family: an open_clip scorer has no int8 path, so the line must not say int8."""
    from findbox.config import PipelineConfig
    from findbox.device import BF16_FLAGS, choose_precision, cpu_flags
    from findbox.serve.app import describe_models
    from findbox.testing.builders import build_open_clip

    spec = build_open_clip(tmp_path / "oc", "tiny-clip")
    expected = choose_precision("cpu", cpu_flags(), int8_scorer=False).value  # no record for open_clip: fp32
    line = describe_models(PipelineConfig(device="cpu", scorer=spec))
    assert expected == "fp32" and line.split(", precision ")[-1].startswith("fp32 (auto")
    if cpu_flags() & BF16_FLAGS:  # what would be faster here, and that it is not measured
        assert "(auto; open_clip scorers are not calibrated: --precision bf16 is faster" in line
        # nor does calibrate take an open_clip scorer, so the detector's part does not send the user there
        assert "; precision fp32 (auto; not calibrated beside this open_clip scorer" in line, line
