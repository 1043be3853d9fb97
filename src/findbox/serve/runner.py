"""One model call at a time, optionally gathering concurrent requests into it.

The models are not re-entrant, so a single worker thread owns them. Requests
hand it a `Job` (decoded images and their queries) and wait. With a batch window
above zero the worker waits that long after the first job for others and runs
them all in one `Pipeline.ground` call (one batched detector call, crop and
caption embedding shared), then hands each job its own answers back in order.

A job whose deadline passes while it waits is dropped before it reaches the
models, so a backlog of timed-out requests costs nothing; one whose deadline passes
while the models work on it is dropped at the next chunk (`Pipeline.ground(deadline=)`),
so the worker is free again within one unit of work (a detector call or a scorer forward).
A timed-out job drops its images at once, whether it waits in the queue or runs.

The queue is bounded (`Overloaded` past it). The worker beats a heartbeat at every unit of
work (`Pipeline.heartbeat`); `stalled_s` is how long a running call has gone without one, so
the server can tell a hung worker from a busy one; `failing` says the last model calls all
raised; `error` is what ended the worker thread, if anything did.
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

__all__ = ["DeadlineExceeded", "ImageDecodeError", "Job", "ModelRunner", "Overloaded"]

# this many model calls in a row raising (not a bad image, not a deadline) means the models are broken
FAILING_CALLS = 3


class Overloaded(RuntimeError):
    """The queue of requests waiting for the model worker is full."""  # the errors re-exported for serve


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
    taken: bool = False  # the worker runs it: its images are the worker's until the next checkpoint


class ModelRunner:
    """Serialises `pipeline.ground`; gathers jobs for `window_s` when it is above zero.

    max_instances: a gathered call stops taking jobs once it holds this many queries.
    on_call(n_requests, n_instances): called after each model call (metrics).
    max_queued: jobs waiting for the worker at most; `ground` raises Overloaded past it.
    """

    def __init__(self, pipeline, window_s: float = 0.0, max_instances: int = 256, on_call=None,
                 max_queued: int = 64):
        self.pipeline = pipeline
        self.window_s = float(window_s)
        self.max_instances = max_instances
        self.on_call = on_call
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()  # a job's abandoning against the worker taking its images
        self._busy_since: float | None = None  # time.monotonic() when the running model call began
        self.failed_calls = 0  # model calls in a row that raised
        self.error: BaseException | None = None  # what ended the worker thread
        self._thread = threading.Thread(target=self._loop, name="findbox-models", daemon=True)
        self._thread.start()

    def ground(self, images: list[ImageInput], queries: list[tuple[int, str]], deadline: float = math.inf) -> Job:
        """Answers for one request, as a finished Job; raises DeadlineExceeded, ImageDecodeError
        (its index into `images`) or the model's error.

        deadline: time.monotonic() seconds after which the answer is no longer wanted.
        """
        job = Job(images, queries, deadline)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"request: {self._jobs.maxsize} requests already wait for the models "
                             f"(--max-queued-requests); retry later") from None
        if not job.done.wait(None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())):
            with self._lock:  # a queued job's images go now, not when the worker pops it
                job.abandoned = True
                if not job.taken:
                    job.images, job.queries = [], []
            raise DeadlineExceeded("request: not answered within the request timeout")
        if job.error is not None:
            raise job.error
        return job

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs: False after `close()` or an error that ended the thread."""
        return self._thread.is_alive()

    @property
    def stalled_s(self) -> float:
        """Seconds the running model call has gone without a heartbeat; 0 when idle."""
        started = self._busy_since
        if started is None:
            return 0.0
        return time.monotonic() - max(started, getattr(self.pipeline, "heartbeat", started))

    @property
    def failing(self) -> bool:
        """Whether the last FAILING_CALLS model calls all raised."""
        return self.failed_calls >= FAILING_CALLS

    def close(self, timeout: float = 5.0) -> None:
        """Let queued jobs finish, then stop the worker."""
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:  # a worker that takes nothing: stop waiting for it
            return
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
        jobs: list[Job] = []
        try:
            closing = False
            while not closing:
                first = self._jobs.get()
                if first is None:
                    break
                jobs, closing = self._gather(first)
                live = self._take_live(jobs)
                if live:
                    self._busy_since = time.monotonic()
                    try:
                        self._run(live)
                    finally:
                        self._busy_since = None
                jobs = []
        except BaseException as exc:  # the thread ends: /health says why, no waiting requester is left hanging
            log.exception("the model worker thread stopped")
            self.error = exc
            for job in [*jobs, *self._drain()]:
                job.error = RuntimeError(f"the model worker thread stopped: {type(exc).__name__}: {exc}")
                job.done.set()

    def _drain(self) -> list[Job]:
        """Every job still queued, taken off the queue."""
        jobs = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)

    def _take_live(self, jobs: list[Job]) -> list[Job]:
        """The jobs still wanted (marked taken: an abandoning requester leaves their images to the
        worker, which drops them at its next checkpoint); the others are answered DeadlineExceeded."""
        live = []
        with self._lock:
            now = time.monotonic()
            for job in jobs:
                if job.abandoned or now >= job.deadline:
                    job.error = DeadlineExceeded("request: timed out while queued for the models")
                    job.done.set()
                else:
                    job.taken = True
                    live.append(job)
        return live

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
            self.failed_calls += 1
            for job in jobs:
                job.error = exc
                job.done.set()
            return
        assert len(results) == len(queries), "pipeline.ground answers every query"
        self.failed_calls = 0
        for job, (lo, hi) in zip(jobs, spans):
            job.results = results[lo:hi]
            job.timings = {"queue": started - job.submitted, **timings}
            job.batch_requests = len(jobs)
            job.done.set()
        if self.on_call is not None:
            self.on_call(len(jobs), len(queries))
