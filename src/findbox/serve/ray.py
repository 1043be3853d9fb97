"""The Ray Serve engine: the same service, its stages as deployments that scale apart.

    findbox serve --engine ray [--scorer-replicas 2 --detector-replicas 1 ...]   # a local cluster
    findbox serve --engine ray --ray-address auto                                # join a running one
    serve run findbox.serve.ray:app_builder                                      # Ray's own tooling

What runs where (nothing here routes, retries or schedules: Ray Serve does):
- ingress (`FindboxIngress`): the in-process service's FastAPI app itself (`create_app`: protocol,
  validation, limits, error answers, the page), with a `RayEngine` in place of the in-process
  model worker. It probes the image headers and hands the encoded bytes on.
- scorer (`ScorerStage`): per replica a `Pipeline` (decode, crops, upscaler, scorer towers, text
  cache, ranking and fallback) driven by the same `ModelRunner` as in-process (one model call at
  a time, gathering concurrent requests), whose detector is a `RemoteDetector`.
- detector (`DetectorStage`): the detector; the frames of every scorer replica's chunks arrive as
  object refs (decoded once, in the scorer replica, never pickled) and are batched across
  requests by `@serve.batch`.
So the answers are the in-process server's: same code, same models, same arithmetic.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from findbox.env import require

require("ray", "ray")

import ray  # noqa: E402
from ray import serve  # noqa: E402

from findbox.config import PipelineConfig, RayConfig, ServeConfig  # noqa: E402

log = logging.getLogger("findbox.serve")

APP_NAME = "findbox"
# how long an answer waits past the request timeout for the scorer's own 504 to come back
HANDLE_GRACE_S = 5.0


def _set_threads(threads: int, num_cpus: float) -> None:
    """torch's threads in this replica: as given, else its CPU share rounded up (torch would take
    every core of the node, and replicas sharing a node would fight over them)."""
    import torch

    torch.set_num_threads(threads or max(1, math.ceil(num_cpus)))


# --- metrics --------------------------------------------------------------------------------------
# Each replica records through ray.serve.metrics; Ray's metrics agent on every node exports them to
# Prometheus as ray_findbox_*, tagged with the application, deployment and replica. The names and
# labels are the in-process /metrics ones (serve/metrics.py), so one dashboard reads both engines.


class ScorerMetrics:
    """Per scorer replica: requests, instances, per-stage seconds, requests per model call, and the
    pipeline's own counters (caches, work, stage seconds) as they grow."""

    def __init__(self):
        from ray.serve.metrics import Counter, Histogram

        from findbox.serve.metrics import BATCH_BUCKETS, LATENCY_BUCKETS

        self.requests = Counter("findbox_requests", description="Requests answered by this scorer replica, "
                                "by outcome (ok or the error's type).", tag_keys=("outcome",))
        self.instances = Counter("findbox_instances", description="(image, caption) instances answered.")
        self.stage_seconds = Histogram("findbox_stage_duration_seconds", description="Per-request time in each "
                                       "stage (decode, queue, detect, crop_upscale, embed_images, embed_texts, "
                                       "choose).", boundaries=list(LATENCY_BUCKETS), tag_keys=("stage",))
        self.batch_requests = Histogram("findbox_model_call_requests", description="Requests gathered into one "
                                        "model call.", boundaries=list(BATCH_BUCKETS))
        self.cache_hits = Counter("findbox_cache_hits", description="Cache lookups that hit, by cache.",
                                  tag_keys=("cache",))
        self.cache_misses = Counter("findbox_cache_misses", description="Cache lookups that missed, by cache.",
                                    tag_keys=("cache",))
        self.work = Counter("findbox_pipeline_work", description="Pipeline.counters: work done, by counter.",
                            tag_keys=("counter",))
        self.last: dict[tuple[str, str], float] = {}  # the pipeline's totals at the last record

    def record(self, outcome: str, job=None, stats: dict | None = None) -> None:
        self.requests.inc(tags={"outcome": outcome})
        if job is not None:
            self.instances.inc(len(job.queries))
            for stage, seconds in job.timings.items():
                self.stage_seconds.observe(seconds, tags={"stage": stage})
            self.batch_requests.observe(job.batch_requests)
        if stats is not None:
            grown = [(self.cache_hits, "cache", name, cache["hits"]) for name, cache in stats["caches"].items()]
            grown += [(self.cache_misses, "cache", name, cache["misses"]) for name, cache in stats["caches"].items()]
            grown += [(self.work, "counter", name, value) for name, value in stats["counters"].items()]
            for metric, tag, name, total in grown:
                key = (metric.info["name"], name)
                if total > self.last.get(key, 0):  # Ray's counters take increments; the pipeline keeps totals
                    metric.inc(total - self.last.get(key, 0), tags={tag: name})
                    self.last[key] = total


# --- the detector stage ---------------------------------------------------------------------------


class DetectorStage:
    """A replica of the detector, batched across requests (and across scorer replicas)."""

    def __init__(self, pipeline: PipelineConfig, stage: RayConfig):
        from findbox.env import ensure_offline
        from findbox.factory import load_detector

        ensure_offline()
        _set_threads(stage.detector_threads, stage.detector_num_cpus)
        self.detector = load_detector(pipeline)
        self.detect.set_max_batch_size(stage.detector_batch_size)
        self.detect.set_batch_wait_timeout_s(stage.detector_batch_wait_ms / 1000)
        self.batches: list[int] = []  # frames per model call, newest last (kept short)
        from ray.serve.metrics import Histogram

        from findbox.serve.metrics import BATCH_BUCKETS, LATENCY_BUCKETS

        self.frames_per_call = Histogram("findbox_detector_call_frames", description="Frames per detector call "
                                         "(cross-request batching).", boundaries=list(BATCH_BUCKETS))
        self.call_seconds = Histogram("findbox_detector_call_seconds", description="Seconds per detector call.",
                                      boundaries=list(LATENCY_BUCKETS))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # both set from RayConfig in __init__
    async def detect(self, calls: list[list[ray.ObjectRef]]) -> list[list]:
        """One detector call over the frames of every gathered call; each call gets its own Candidates back.

        calls: per call a list of object refs of (H, W, 3) uint8 RGB frames (in a list, so that
        Serve hands the refs over unresolved).
        """
        frames = await asyncio.gather(*(ref for refs in calls for ref in refs))
        start = time.perf_counter()
        found = await asyncio.to_thread(self.detector.detect, list(frames))
        self.call_seconds.observe(time.perf_counter() - start)
        self.frames_per_call.observe(len(frames))
        self.batches = (self.batches + [len(frames)])[-1000:]
        out, start = [], 0
        for refs in calls:
            out.append(found[start:start + len(refs)])
            start += len(refs)
        return out

    def batch_sizes(self) -> list[int]:
        """Frames per detector call, most recent last (cross-request batching, observed)."""
        return list(self.batches)


class RemoteDetector:
    """A `Pipeline`'s detector that runs in the detector deployment: `detect` as `Detector.detect`.

    Called from the scorer replica's model worker thread (never its event loop), so it may wait.
    """

    def __init__(self, handle):
        self.handle = handle

    def detect(self, images_rgb: list) -> list:
        if not images_rgb:
            return []
        refs = [ray.put(image) for image in images_rgb]
        return self.handle.detect.remote(refs).result()


# --- the scorer stage -----------------------------------------------------------------------------


class ScorerStage:
    """A replica of the rest of the pipeline: crops, upscaler, scorer, text cache, ranking."""

    def __init__(self, detector, config: ServeConfig):
        from findbox.factory import compose_pipeline
        from findbox.serve.runner import ModelRunner

        stage = config.ray
        _set_threads(stage.scorer_threads, stage.scorer_num_cpus)
        self.pipeline = compose_pipeline(config.pipeline, RemoteDetector(detector))
        if config.server.warmup:
            # Serve constructs replicas on their event loop, where a handle may not be waited on:
            # the warm-up (which calls the detector deployment) runs in a thread of its own
            with ThreadPoolExecutor(1) as pool:
                pool.submit(self.pipeline.warmup).result()
        server = config.server
        self.runner = ModelRunner(self.pipeline, server.batch_window_ms / 1000, server.max_instances)
        self.metrics = ScorerMetrics()

    async def ground(self, images: list, queries: list[tuple[int, str]], timeout_s: float):
        """(results, timings, batch_requests) for one request's distinct images (EncodedImages) and
        queries, within `timeout_s` (this replica's clock: the ingress's may be another node's)."""
        deadline = time.monotonic() + timeout_s
        try:
            job = await asyncio.to_thread(self.runner.ground, images, queries, deadline)
        except Exception as exc:
            self.metrics.record(type(exc).__name__)
            raise
        self.metrics.record("ok", job, self.pipeline.stats())
        return job.results, job.timings, job.batch_requests

    def stats(self) -> dict:
        return self.pipeline.stats()

    def check_health(self) -> None:
        """Serve replaces a replica whose check fails: here, one whose model worker has stopped."""
        if not self.runner.alive:
            raise RuntimeError("the model worker thread has stopped")


# --- the ingress ----------------------------------------------------------------------------------


class RayEngine:
    """What the service's endpoints call instead of the in-process `ModelRunner`: the scorer deployment.

    `ground` runs in the ingress's worker threads (create_app calls it through anyio.to_thread),
    so waiting on the handle's result there never blocks the event loop.
    """

    alive = True  # Serve watches the replicas (check_health) and replaces dead ones
    failing = False
    failed_calls = 0
    error = None
    stalled_s = 0.0

    def __init__(self, scorer):
        self.scorer = scorer

    def ground(self, images: list, queries: list[tuple[int, str]], deadline: float = math.inf):
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError

        from findbox.serve.runner import DeadlineExceeded, Job, Overloaded

        remaining = max(0.0, deadline - time.monotonic()) if math.isfinite(deadline) else 86400.0
        response = self.scorer.ground.remote(images, queries, remaining)
        try:
            results, timings, batch_requests = response.result(timeout_s=remaining + HANDLE_GRACE_S)
        except BackPressureError as exc:
            raise Overloaded(f"request: every scorer replica's queue is full ({exc}); retry later") from None
        except TimeoutError:
            response.cancel()
            raise DeadlineExceeded("request: not answered within the request timeout") from None
        except RayActorError as exc:  # the scorer replica died under this request: Serve replaces it
            raise Overloaded(f"request: the scorer replica answering it stopped ({type(exc).__name__}); "
                             f"retry: another replica answers") from None
        except RayTaskError as exc:  # the replica's own error (bad image, its 504, its full queue): as in-process
            if isinstance(exc.cause, RayActorError):  # the detector replica died under it: the same
                raise Overloaded(f"request: the detector replica answering it stopped ({type(exc.cause).__name__}); "
                                 f"retry: another replica answers") from None
            if isinstance(exc.cause, Exception):
                raise exc.cause from None
            raise
        job = Job(images, queries, deadline, results=results, timings=timings, batch_requests=batch_requests)
        job.done.set()
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to stop here: the deployments belong to Serve."""


class RemoteStats:
    """`pipeline.stats()` for the ingress's /metrics: the last answer of one scorer replica, refreshed
    in the background (the metrics endpoint answers on the event loop and must not wait)."""

    def __init__(self, scorer, every_s: float = 5.0):
        self.scorer, self.every_s = scorer, every_s
        self.latest: dict | None = None
        threading.Thread(target=self._refresh, name="findbox-stats", daemon=True).start()

    def _refresh(self) -> None:
        while True:
            try:
                self.latest = self.scorer.stats.remote().result(timeout_s=30)
            except Exception as exc:  # a replica being replaced: keep the last figures, say why at debug
                log.debug("scorer stats not refreshed: %s", exc)
            time.sleep(self.every_s)

    def stats(self) -> dict:
        if self.latest is None:
            raise RuntimeError("no scorer stats yet")
        return self.latest

    def warmup(self) -> None:
        """Nothing: each scorer replica warmed its pipeline up before it reported ready."""


def ingress_app(config: ServeConfig):
    """The ingress's ASGI app, built in the ingress replica (Serve calls this there)."""
    from findbox.serve.app import create_app

    app_name = serve.get_replica_context().app_name  # APP_NAME, or what a Serve config file calls it
    detector = serve.get_deployment_handle("DetectorStage", app_name=app_name)
    scorer = serve.get_deployment_handle("ScorerStage", app_name=app_name)

    def load(_pipeline_config):
        scorer.stats.remote().result(timeout_s=600)  # the scorer replicas (and their detector) are up
        detector.batch_sizes.remote().result(timeout_s=600)
        return RemoteStats(scorer)

    return create_app(config, load=load, engine=lambda pipeline: RayEngine(scorer))


# --- the application ------------------------------------------------------------------------------


def _deployment(cls, name: str, replicas: int, max_replicas: int, num_cpus: float, num_gpus: float,
                max_ongoing: int, max_queued: int, max_per_node: int = 0):
    """`cls` as a deployment with the stage's resources; autoscaling between `replicas` and `max_replicas`
    when the latter is above the former (Serve's autoscaler, on ongoing requests)."""
    options: dict[str, Any] = dict(name=name, ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
                                   max_ongoing_requests=max_ongoing, max_queued_requests=max_queued,
                                   health_check_period_s=10, health_check_timeout_s=30)
    if max_per_node:
        options["max_replicas_per_node"] = max_per_node
    if max_replicas > replicas:
        options["autoscaling_config"] = {"min_replicas": replicas, "max_replicas": max_replicas,
                                         "target_ongoing_requests": max(1, max_ongoing // 2)}
    else:
        options["num_replicas"] = replicas
    return serve.deployment(cls).options(**options)


def build_application(config: ServeConfig):
    """The Serve application of `config`: ingress -> scorer -> detector."""
    stage = config.ray
    server = config.server
    detector = _deployment(DetectorStage, "DetectorStage", stage.detector_replicas, stage.detector_max_replicas,
                           stage.detector_num_cpus, stage.detector_num_gpus,
                           # a batch fills only if that many calls may be in flight at once
                           max_ongoing=max(stage.detector_batch_size * 2, 8), max_queued=-1)
    scorer = _deployment(ScorerStage, "ScorerStage", stage.scorer_replicas, stage.scorer_max_replicas,
                         stage.scorer_num_cpus, stage.scorer_num_gpus,
                         # requests a replica's model worker gathers into one call while the last one runs
                         max_ongoing=stage.scorer_max_ongoing, max_queued=server.max_queued_requests,
                         max_per_node=stage.scorer_max_replicas_per_node)
    def build_ingress_app():  # Serve takes a no-argument function as an app builder, run in the replica
        return ingress_app(config)

    @serve.ingress(build_ingress_app)
    class FindboxIngress:
        """The HTTP ingress: findbox's FastAPI app, with a RayEngine."""

        def __init__(self, scorer_stage, detector_stage):
            pass  # bound only to make both stages part of the application; the app looks them up by name

    ingress = serve.deployment(FindboxIngress).options(
        num_replicas=stage.ingress_replicas, ray_actor_options={"num_cpus": stage.ingress_num_cpus},
        max_ongoing_requests=max(server.max_queued_requests, 64))
    detector_app = detector.bind(config.pipeline, stage)
    return ingress.bind(scorer.bind(detector_app, config), detector_app)


def app_builder(args: dict[str, Any] | None = None):
    """For Ray's tooling (`serve run|build findbox.serve.ray:app_builder [key=value ...]`): the keys of a
    `findbox serve` TOML file (e.g. scorer=/models/siglip, scorer_replicas=2); none = the bundled demo,
    with its settings, as `findbox serve` with no model options."""
    from findbox.bundle import with_bundle_defaults
    from findbox.config import nest_keys

    nested = nest_keys(ServeConfig, dict(args or {}), "app_builder")
    nested["pipeline"] = with_bundle_defaults(nested.get("pipeline", {}))
    return build_application(ServeConfig(**nested))


# --- findbox serve --engine ray ---------------------------------------------------------------------


def run(config: ServeConfig, log_level: str = "info") -> int:
    """Serve `config` on Ray until SIGTERM/SIGINT; a local cluster is started (and stopped) unless
    `config.ray.address` names one to join (left running)."""
    stage = config.ray
    started_here = not stage.address
    if started_here:
        # address "local": a cluster of its own even where another runs on this machine (ray start)
        ray.init(address="local", num_cpus=stage.num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=log_level.upper(), log_to_driver=log_level == "debug",
                 **({"_metrics_export_port": stage.metrics_export_port} if stage.metrics_export_port else {}))
    else:
        ray.init(address=stage.address, logging_level=log_level.upper(), log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.server.host, "port": config.server.port})
        serve.run(build_application(config), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("ready on Ray: http://%s:%d (detector replicas %d, scorer replicas %d)", config.server.host,
                 config.server.port, stage.detector_replicas, stage.scorer_replicas)
        stop.wait()
        log.info("stopping: draining the Ray application")
    finally:
        if started_here:
            serve.shutdown()  # every deployment, the controller and the proxies
            ray.shutdown()  # the raylet, the GCS and the workers this process started
        else:
            serve.delete(APP_NAME)  # ours only: the cluster and its other applications stay
    return 0
