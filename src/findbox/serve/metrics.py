"""Prometheus metrics for `GET /metrics`.

Request-side series (requests, errors, instances, latency per endpoint and per
stage) are observed by `observe.RequestObserver`. Model-side series (cache hits,
work counters, stage seconds) are read at scrape time from `Pipeline.stats()`, and
model info from each stage's `info`.
"""

from __future__ import annotations

import platform
import re
from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

# `_created` series double every counter and no dashboard here reads them
prometheus_client.disable_created_metrics()

# seconds: a cached caption (~1 ms) up to a 64-instance request on a CPU (minutes)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# the routes the app serves; any other path is counted as "other" so a scanner cannot grow the label set
KNOWN_PATHS = frozenset({"/", "/health", "/identify", "/v1/ground", "/metrics", "/openapi.json", "/docs", "/redoc"})


def endpoint_label(path: str) -> str:
    if path in KNOWN_PATHS:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


def error_kind(status: int) -> str:
    """A short name per error status, for the `kind` label."""
    kinds = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 422: "invalid",
             500: "internal", 503: "unavailable", 504: "timeout"}
    return kinds.get(status, "client" if status < 500 else "server")


class ServeMetrics:
    """One registry per app, so several apps in one process (tests) never share series."""

    def __init__(self, pipeline: Callable[[], object | None]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("findbox_requests", "HTTP requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("findbox_errors", "Requests answered with a 4xx or 5xx, by kind and status.",
                              ["endpoint", "kind", "status"], registry=r)
        self.instances = Counter("findbox_instances", "(image, caption) instances answered with 200.",
                                 ["endpoint"], registry=r)
        self.in_flight = Gauge("findbox_requests_in_flight", "Requests being served now.", ["endpoint"], registry=r)
        self.request_seconds = Histogram("findbox_request_duration_seconds",
                                         "Time from request start to the last response byte.",
                                         ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("findbox_stage_duration_seconds",
                                       "Per-request time in each stage (decode, queue, detect, crop_upscale, "
                                       "embed_images, embed_texts, choose, total).",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_instances = Histogram("findbox_model_call_instances",
                                         "Instances per model call (above 1 request per call with --batch-window-ms).",
                                         buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("findbox_model_call_requests", "Requests gathered into one model call.",
                                        buckets=BATCH_BUCKETS, registry=r)
        prometheus_client.ProcessCollector(registry=r)  # process_resident_memory_bytes and friends
        from findbox import __version__

        # which build answers: `findbox --version` of the server, for a dashboard or a bug report
        Info("findbox_build", "findbox and Python versions of this server.", registry=r).info(
            {"version": __version__, "python": platform.python_version()})
        r.register(PipelineCollector(pipeline))

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stage_seconds.labels(stage).observe(seconds)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class PipelineCollector(Collector):
    """Reads the loaded pipeline at scrape time; emits only `findbox_ready 0` while loading.

    pipeline: returns the pipeline (anything with `stats()` in `Pipeline.stats`' form and
        detector/scorer/upscaler stages), or None while loading.
    """

    def __init__(self, pipeline: Callable[[], object | None]):
        self.pipeline = pipeline

    def collect(self):
        pipeline = self.pipeline()
        yield GaugeMetricFamily("findbox_ready", "1 once the models are loaded and warm.", value=int(pipeline is not None))
        if pipeline is None:
            return
        info = InfoMetricFamily("findbox_model", "The loaded models, from each stage's `info`.", labels=["stage"])
        for stage in ("detector", "scorer", "upscaler"):
            part = getattr(pipeline, stage, None)
            if part is None:
                continue
            try:
                details = dict(getattr(part, "info", {}) or {})
            except Exception as exc:  # an info property that fails must not break the scrape; say so in the label
                details = {"info_error": type(exc).__name__}
            # where and in what precision the stage runs: a scrape shows a GPU server really on its GPU
            for attr in ("device", "dtype", "half"):
                if getattr(part, attr, None) is not None:
                    details.setdefault(attr, str(getattr(part, attr)))
            labels = {_label_name(k): str(v)[:200] for k, v in details.items() if _label_name(k) != "stage"}
            info.add_metric([stage], labels)
        yield info

        stats = pipeline.stats()
        hits = CounterMetricFamily("findbox_cache_hits", "Cache lookups that hit, by cache.", labels=["cache"])
        misses = CounterMetricFamily("findbox_cache_misses", "Cache lookups that missed, by cache.", labels=["cache"])
        ratio = GaugeMetricFamily("findbox_cache_hit_ratio", "hits / (hits + misses) since start, by cache.",
                                  labels=["cache"])
        for name, cache in sorted(stats["caches"].items()):
            h, m = cache["hits"], cache["misses"]
            hits.add_metric([name], h)
            misses.add_metric([name], m)
            ratio.add_metric([name], h / (h + m) if h + m else 0.0)
        yield from (hits, misses, ratio)

        work = CounterMetricFamily("findbox_pipeline_work", "Pipeline.counters: work done since start, by counter.",
                                   labels=["counter"])
        for name, value in stats["counters"].items():
            work.add_metric([name], value)
        stage_total = CounterMetricFamily("findbox_pipeline_stage_seconds", "Seconds spent in each stage since start.",
                                          labels=["stage"])
        for stage, seconds in sorted(stats["stage_seconds"].items()):
            stage_total.add_metric([str(stage)], float(seconds))
        yield from (work, stage_total)


def _label_name(key) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", str(key))
    return name if name and not name[0].isdigit() and not name.startswith("__") else f"k_{name.lstrip('_')}"
