"""/metrics in Prometheus text format, and the JSON access-log line per request."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from findbox.images import encode_jpeg_b64
from findbox.serve.metrics import PipelineCollector, endpoint_label, error_kind
from tests.conftest import CAPTIONS, make_image


def scrape(server) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}."""
    r = httpx.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_histograms_caches_and_model_info(live_server):
    before = scrape(live_server)
    images = [encode_jpeg_b64(make_image(seed)) for seed in (21, 22, 23, 24)]  # new images: detected every time

    def body(image):
        return {"instances": [{"caption": CAPTIONS[0], "b64": image}, {"caption": CAPTIONS[3], "b64": image}]}

    for image in images[:3]:  # the same captions each time: text cache hits
        assert httpx.post(live_server.url + "/v1/ground", json=body(image), timeout=120).status_code == 200
    assert httpx.post(live_server.url + "/identify", json=body(images[3]), timeout=120).status_code == 200
    assert httpx.post(live_server.url + "/identify", json={"instances": [{"b64": images[0]}]}).status_code == 400
    after = scrape(live_server)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("findbox_requests_total", endpoint="/v1/ground", status="200") == 3
    assert grew("findbox_requests_total", endpoint="/identify", status="200") == 1
    assert grew("findbox_instances_total", endpoint="/v1/ground") == 6
    assert grew("findbox_errors_total", endpoint="/identify", kind="bad_request", status="400") == 1
    assert grew("findbox_request_duration_seconds_count", endpoint="/v1/ground") == 3

    # per-stage latency histograms: cumulative buckets up to +Inf, one observation per answered request
    for stage in ("decode", "detect", "embed_images", "embed_texts", "total"):
        assert grew("findbox_stage_duration_seconds_bucket", stage=stage, le="+Inf") == 4, stage
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in after.items()
                         if k[0] == "findbox_stage_duration_seconds_bucket" and dict(k[1])["stage"] == stage)
        assert len(buckets) > 10 and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert grew("findbox_stage_duration_seconds_sum", stage="detect") > 0

    assert grew("findbox_cache_hits_total", cache="text") >= 6  # 2 captions x 3 repeats, at least
    assert 0 < value(after, "findbox_cache_hit_ratio", cache="text") <= 1
    assert grew("findbox_pipeline_work_total", counter="queries") == 8
    assert value(after, "findbox_ready") == 1
    models = {dict(k[1])["stage"]: dict(k[1]) for k, v in after.items() if k[0] == "findbox_model_info" and v == 1}
    assert set(models) == {"detector", "scorer"}  # the live server runs without an upscaler
    assert models["detector"]["kind"] == "ultralytics" and models["scorer"]["family"] == "siglip"
    assert models["detector"]["device"] == models["scorer"]["device"] == "cpu"  # tests/gpu checks "cuda" the same way
    assert value(after, "process_resident_memory_bytes") > 0


def test_one_json_log_line_per_request(live_server):
    image = encode_jpeg_b64(make_image(25))
    body = {"instances": [{"caption": CAPTIONS[2], "b64": image}, {"caption": CAPTIONS[4], "b64": image}]}
    r = httpx.post(live_server.url + "/v1/ground", json=body, headers={"x-request-id": "log-test-1"}, timeout=120)
    assert r.status_code == 200 and r.headers["x-request-id"] == "log-test-1"
    bad = httpx.post(live_server.url + "/identify", content=b"not json",
                     headers={"x-request-id": "log-test-2", "content-type": "application/json"})
    assert bad.status_code == 400

    lines = {}
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        for raw in live_server.output().splitlines():
            if raw.startswith("{") and '"log-test-' in raw:
                line = json.loads(raw)
                lines[line["request_id"]] = line
        time.sleep(0.1)
    ok, bad_line = lines["log-test-1"], lines["log-test-2"]
    assert ok["status"] == 200 and ok["path"] == "/v1/ground" and ok["instances"] == 2 and ok["images"] == 1
    assert {"decode", "queue", "detect", "embed_texts", "choose", "total"} <= set(ok["timings_ms"])
    assert ok["timings_ms"] == r.json()["timings_ms"]
    assert ok["duration_ms"] >= ok["timings_ms"]["total"]
    assert bad_line["status"] == 400 and "not valid JSON" in bad_line["error"]


@pytest.mark.parametrize("path, label", [("/v1/ground", "/v1/ground"), ("/static/app.js", "/static"),
                                         ("/wp-admin", "other"), ("/", "/")])
def test_endpoint_label_is_bounded(path, label):
    assert endpoint_label(path) == label


@pytest.mark.parametrize("status, kind", [(400, "bad_request"), (413, "too_large"), (504, "timeout"),
                                          (418, "client"), (502, "server")])
def test_error_kind(status, kind):
    assert error_kind(status) == kind


def test_collector_reads_pipeline_stats():
    stats = {"counters": {"requests": 2, "queries": 9},
             "stage_seconds": {"detect": 1.5, "choose": 0.25},
             "caches": {"image": {"hits": 2, "misses": 6, "entries": 3}, "text": {"hits": 0, "misses": 0}}}
    pipeline = SimpleNamespace(detector=SimpleNamespace(info={"kind": "fake"}), scorer=None, upscaler=None,
                               stats=lambda: stats)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in PipelineCollector(lambda: pipeline).collect() for s in family.samples}
    assert got[("findbox_ready", ())] == 1
    assert got[("findbox_model_info", (("kind", "fake"), ("stage", "detector")))] == 1
    assert got[("findbox_cache_hits_total", (("cache", "image"),))] == 2
    assert got[("findbox_cache_misses_total", (("cache", "image"),))] == 6
    assert got[("findbox_cache_hit_ratio", (("cache", "image"),))] == 0.25
    assert got[("findbox_cache_hit_ratio", (("cache", "text"),))] == 0.0  # no lookups yet: 0, not a division error
    assert got[("findbox_pipeline_work_total", (("counter", "queries"),))] == 9
    assert got[("findbox_pipeline_stage_seconds_total", (("stage", "detect"),))] == 1.5


def test_collector_while_loading_says_not_ready():
    families = list(PipelineCollector(lambda: None).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("findbox_ready", [0])]
