"""One model call at a time, optionally gathering concurrent requests into it.

The models are not re-entrant, so a single worker thread owns them. Requests
hand it a `Job` (decoded images and their queries) and wait. With a batch window
above zero the worker waits that long after the first job for others and runs
them all in one `Pipeline.ground` call (one batched detector call, crop and
caption embedding shared), then hands each job its own answers back in order.

A job whose deadline passes while it waits is dropped before it reaches the
models, so a backlog of timed-out requests costs nothing; one whose deadline passes
while the models work on it is dropped at the next chunk (`Pipeline.ground(deadline=)`),
so the worker is free again within one chunk's time.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field

from findbox.pipeline import DeadlineExceeded, ImageDecodeError, ImageInput

log = logging.getLogger("findbox.serve")

__all__ = ["DeadlineExceeded", "ImageDecodeError", "Job", "ModelRunner"]  # the errors re-exported for serve


@dataclass
class Job:
    images: list[ImageInput]
    queries: list[tuple[int, str]]
    deadline: float  # time.monotonic() seconds
    submitted: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    results: list | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage of the model call
    batch_requests: int = 1
    error: BaseException | None = None
    abandoned: bool = False  # the requester gave up; skip it if not yet started


class ModelRunner:
    """Serialises `pipeline.ground`; gathers jobs for `window_s` when it is above zero.

    max_instances: a gathered call stops taking jobs once it holds this many queries.
    on_call(n_requests, n_instances): called after each model call (metrics).
    """

    def __init__(self, pipeline, window_s: float = 0.0, max_instances: int = 256, on_call=None):
        self.pipeline = pipeline
        self.window_s = float(window_s)
        self.max_instances = max_instances
        self.on_call = on_call
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="findbox-models", daemon=True)
        self._thread.start()

    def ground(self, images: list[ImageInput], queries: list[tuple[int, str]], deadline: float = math.inf) -> Job:
        """Answers for one request, as a finished Job; raises DeadlineExceeded, ImageDecodeError
        (its index into `images`) or the model's error.

        deadline: time.monotonic() seconds after which the answer is no longer wanted.
        """
        job = Job(images, queries, deadline)
        self._jobs.put(job)
        if not job.done.wait(None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())):
            job.abandoned = True
            raise DeadlineExceeded("request: not answered within the request timeout")
        if job.error is not None:
            raise job.error
        return job

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs: False after `close()` or an error that ended the thread."""
        return self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Let queued jobs finish, then stop the worker."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """`first` plus whatever arrives within the window (up to max_instances); True if closing."""
        jobs, count = [first], len(first.queries)
        end = time.monotonic() + self.window_s
        while self.window_s > 0 and count < self.max_instances:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._jobs.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.queries)
        return jobs, False

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._jobs.get()
            if first is None:
                break
            jobs, closing = self._gather(first)
            now = time.monotonic()
            live = []
            for job in jobs:
                if job.abandoned or now >= job.deadline:
                    job.error = DeadlineExceeded("request: timed out while queued for the models")
                    job.done.set()
                else:
                    live.append(job)
            if live:
                self._run(live)

    def _run(self, jobs: list[Job]) -> None:
        """One pipeline.ground over every job's images; each job gets its own answers back.

        A job with an image that does not decode gets that error and the others run again
        without it (work already done for them is in the image cache, when there is one).
        """
        while jobs:
            try:
                self._run_once(jobs)
                return
            except ImageDecodeError as exc:
                offset = 0
                for job in jobs:
                    if exc.index < offset + len(job.images):
                        break
                    offset += len(job.images)
                job.error = ImageDecodeError(exc.index - offset, exc.error)  # numbered as the job numbers it
                job.done.set()
                jobs = [other for other in jobs if other is not job]

    def _run_once(self, jobs: list[Job]) -> None:
        images, queries, spans = [], [], []
        for job in jobs:
            offset = len(images)
            images.extend(job.images)
            spans.append((len(queries), len(queries) + len(job.queries)))
            queries.extend((offset + i, caption) for i, caption in job.queries)
        started = time.monotonic()
        timings: dict[str, float] = {}
        # the work is wanted until the last requester's deadline
        deadline = max(job.deadline for job in jobs)
        try:
            results = self.pipeline.ground(images, queries, timings,
                                           deadline=None if math.isinf(deadline) else deadline)
        except ImageDecodeError:
            raise
        except DeadlineExceeded as exc:  # every requester has had its 504 already
            log.warning("dropped the rest of a model call for %d request(s): %s", len(jobs), exc)
            for job in jobs:
                job.error = exc
                job.done.set()
            return
        except Exception as exc:  # handed to every requester, who answers 500 with it
            log.exception("model call failed for %d request(s)", len(jobs))
            for job in jobs:
                job.error = exc
                job.done.set()
            return
        assert len(results) == len(queries), "pipeline.ground answers every query"
        for job, (lo, hi) in zip(jobs, spans):
            job.results = results[lo:hi]
            job.timings = {"queue": started - job.submitted, **timings}
            job.batch_requests = len(jobs)
            job.done.set()
        if self.on_call is not None:
            self.on_call(len(jobs), len(queries))
