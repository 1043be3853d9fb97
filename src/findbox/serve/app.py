"""The FastAPI application: /, /health, /identify, /v1/ground, /metrics.

Models load in a background thread so /health can answer 503 while loading.
One worker thread owns the models (`runner.ModelRunner`: they are not
re-entrant); request parsing and image decoding run concurrently in the thread
pool. /health and /metrics answer on the event loop, so requests waiting for the
models (each holding a pool thread) never delay them; a request body is parsed in
a worker thread, so a large one never stalls the event loop. Every request is
bounded by --request-timeout-s (504 past it), observed by
`observe.RequestObserver` (metrics, one JSON log line).
"""

from __future__ import annotations

import email.message
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from findbox.config import PipelineConfig, Precision, ScoreFusion, ServeConfig
from findbox.images import ImageTooLarge
from findbox.serve.admission import (
    COST_PER_BODY_BYTE,
    RETRY_AFTER_S,
    InFlightBudget,
    Reservation,
    default_inflight_bytes,
)
from findbox.serve.docs import add_docs_routes
from findbox.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from findbox.serve.metrics import ServeMetrics
from findbox.serve.observe import RequestObserver, RequestRecord
from findbox.serve.protocol import (
    CandidateOut,
    ErrorOut,
    GroundingOut,
    GroundResponse,
    IdentifyRequest,
    IdentifyResponse,
    InstanceError,
    decode_instances,
    first_instance,
    round_box,
)
from findbox.serve.runner import FAILING_CALLS, ImageDecodeError, ModelRunner, Overloaded

log = logging.getLogger("findbox.serve")


class ServiceState:
    """The pipeline once loaded, or why it is not."""

    def __init__(self) -> None:
        self.pipeline = None
        self.runner: ModelRunner | None = None
        self.error: str | None = None
        self.ready = threading.Event()


def _error(status: int, message: str, index: int | None = None, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, "index": index, "field": field})


# The largest refused body left to drain on its connection; a larger one's connection is closed.
DRAIN_BYTES = 1 << 20


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over the cap, declared or streamed; 503 with Retry-After
    when the body would take the bytes in flight over `budget` (`admission.InFlightBudget`).

    The budget is reserved from the declared Content-Length before any byte is read (a chunked
    body: chunk by chunk as it streams) and held until the request's answer is sent. A refused
    request is answered at once, before its body is read. A body of up to `DRAIN_BYTES` is then
    drained by uvicorn's parser on the kept-alive connection; a larger one (or a chunked one, whose
    size is unknown) gets `Connection: close`, because a flood of large refused uploads drained by
    the event loop is what starves /health (docs/OPERATIONS.md, "Bytes in flight"). A client that
    reads while it sends (curl) stops uploading; one that sends its whole body first (requests,
    httpx) finds the 503 waiting when its send fails on the closed connection.
    """

    def __init__(self, app, max_bytes: int, budget: InFlightBudget):
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        if declared is not None and declared > self.max_bytes:
            return await _error(413, f"body: {declared} bytes, above the cap of {self.max_bytes}", None, "body")(
                scope, receive, send
            )
        reservation = self._reserve(declared or 0, None)
        try:
            if reservation is None:
                return await self._refuse(scope, receive, send, close=declared is None or declared > DRAIN_BYTES)
            # buffer the body (JSON needs all of it anyway) and stop reading at the cap
            chunks, seen, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                more = message.get("more_body", False)
                if seen > self.max_bytes:
                    return await _error(413, f"body: above the cap of {self.max_bytes} bytes", None, "body")(
                        scope, receive, send
                    )
                if declared is None and self._reserve(len(chunks[-1]), reservation) is None:  # chunked
                    del chunks
                    return await self._refuse(scope, receive, send, close=True)
            held = [b"".join(chunks)]
            del chunks  # one copy of the body, not two; the app takes it from `held`
            await self.app(scope, self._replay(held, receive), send)
        finally:
            if reservation is not None:  # the answer is sent (or the client is gone): the bytes are free
                reservation.release()

    def _reserve(self, nbytes: int, reservation: Reservation | None) -> Reservation | None:
        """`reservation` grown by (or a new one for) `nbytes` of body; None when over the budget."""
        cost = nbytes * COST_PER_BODY_BYTE
        if reservation is None:
            return self.budget.reserve(cost)
        return reservation if reservation.grow(cost) else None

    async def _refuse(self, scope, receive, send, close: bool) -> None:
        """Answer 503 with Retry-After now; the unread rest of the body is dropped as it arrives, or
        with the connection (`close`)."""
        response = _error(503, f"body: the server holds its limit of request bytes in flight "
                               f"({self.budget.capacity} bytes, --max-inflight-bytes); retry later", None, "body")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        if close:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)

    @staticmethod
    def _replay(held: list[bytes], receive):
        """A receive() that hands the app the buffered body, once, and forgets it (the app keeps its copy)."""

        async def replay():
            if held:
                return {"type": "http.request", "body": held.pop(), "more_body": False}
            return await receive()

        return replay


def _media_type(content_type: str | None) -> str:
    """'application/json; charset=utf-8' -> 'application/json'; '' when the header is absent."""
    if not content_type:
        return ""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


def _is_json(media_type: str) -> bool:
    """FastAPI's rule: application/json and application/*+json are JSON."""
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


# Bodies read as JSON whatever they declare, as the original server's `await request.json()` did:
# the published test client posts `data=json.dumps(...)` through requests, which sets no Content-Type;
# `curl -d` declares a form; some clients say text/plain. A form or upload that is not JSON is refused.
JSON_BY_CONTENT = ("", "text/plain", "application/x-www-form-urlencoded")
HOW_TO_SEND = ('send a JSON object {"instances": [{"caption": "...", "b64": "<base64 image>"}]}, e.g. '
               """(printf '{"instances": [{"caption": "grey missile", "b64": "'; base64 -w0 image.jpg; printf '"}]}')"""
               " | curl -s localhost:5004/identify -H 'Content-Type: application/json' -d @-")


def _json_invalid(exc: Exception) -> RequestValidationError:
    pos = getattr(exc, "pos", None)
    return RequestValidationError([{"type": "json_invalid", "loc": ("body",) if pos is None else ("body", pos),
                                    "msg": "JSON decode error", "input": {},
                                    "ctx": {"error": getattr(exc, "msg", None) or str(exc)[:200]}}])


def _looks_like_json(body: bytes) -> bool:
    """Whether a body without a JSON Content-Type was meant as JSON (an object or array)."""
    return body.lstrip()[:1] in (b"{", b"[")


def parse_request(body: bytes, content_type: str | None) -> IdentifyRequest:
    """A raw body -> IdentifyRequest, parsed and validated as FastAPI would, with the same errors.

    The body is JSON when declared so, and also when no Content-Type, text/plain or a form
    type is declared (`JSON_BY_CONTENT`) and the body is JSON text. Anything else (a multipart
    upload, a real form, an image) is refused with 415 saying what to send; a body sent
    without a Content-Type that is not JSON gets 400 saying the same.
    Runs in a worker thread: a body near --max-body-bytes takes seconds to parse. Raises
    RequestValidationError (answered by `_validation_error`), its locations under "body", or
    InstanceError on the "body" field.
    """
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    media_type = _media_type(content_type)
    if not _is_json(media_type):
        if media_type not in JSON_BY_CONTENT:
            raise InstanceError(None, "body", f"expected JSON, got Content-Type {media_type}; {HOW_TO_SEND}", 415)
        if not _looks_like_json(body):
            what = f"Content-Type {media_type}" if media_type else "no Content-Type"
            status = 415 if media_type == "application/x-www-form-urlencoded" else 400
            raise InstanceError(None, "body", f"expected JSON, got a body that is not JSON ({what}); {HOW_TO_SEND}",
                                status)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; not UTF-8/16/32 text; nested too deep
        raise _json_invalid(exc) from None
    try:
        return IdentifyRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]) from None


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    """Map pydantic's error list to one message naming the instance index and field."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    loc = [p for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return _error(400, f"body: not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})", None, "body")
    index = next((p for p in loc if isinstance(p, int)), None)
    field = str(loc[-1]) if loc and not isinstance(loc[-1], int) else ("instances" if loc else "body")
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc)) or "body"
    kind = str(first.get("type", ""))
    status = 400 if kind == "missing" or kind.endswith("_type") else 422  # malformed vs. well-formed but invalid
    return _error(status, f"{where}: {first['msg']}", index, field)


STATIC_DIR = Path(__file__).parent / "static"
# the page loads nothing from elsewhere: the browser refuses any other origin
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# the body of both POST endpoints, documented as FastAPI would; `read_body` parses it
BODY_SCHEMA = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/IdentifyRequest"}}}}}
ERROR_RESPONSES = {status: {"model": ErrorOut, "description": what} for status, what in [
    (400, "malformed request; names the instance index and field"),
    (401, "--api-key-file is set and the request has no 'Authorization: Bearer KEY' with one of its keys"),
    (413, "body, instance count, image or the request's decoded pixels over its cap"),
    (415, "a body that is not JSON (a form, an upload, an image); JSON is read whatever the Content-Type says"),
    (422, "well-formed but invalid request"),
    (503, "models loading or failed to load, the model worker stopped or hangs, the bytes in flight "
          "(--max-inflight-bytes) or the queue (--max-queued-requests) full: Retry-After says when to retry"),
    (504, "not answered within --request-timeout-s"),
]}


def body_schemas() -> dict:
    """IdentifyRequest and the models in it, exactly as FastAPI documents a body (from a route that takes one)."""
    documented = FastAPI()

    @documented.post("/")
    def take(body: IdentifyRequest) -> None: ...

    schemas = documented.openapi()["components"]["schemas"]
    return {name: schemas[name] for name in ("IdentifyRequest", "Instance")}


def describe_models(config: PipelineConfig, detector=None) -> str:
    """One line for the log: which files serve, with the settings that change answers; given the loaded
    `detector`, also the backend it runs on (and, when auto chose it, the measured times and why)."""
    from findbox.bundle import BUNDLE_DIR
    from findbox.device import resolve_device
    from findbox.factory import precision_choice, resolve_model_paths

    def name(path) -> str:
        if isinstance(path, list):
            return " + ".join(name(p) for p in path)
        if path is None:
            return "none"
        return f"bundled demo {Path(path).name}" if Path(path).parent == BUNDLE_DIR else str(path)

    paths = resolve_model_paths(config)
    d = config.detection
    device = resolve_device(config.device)
    choice = precision_choice(config, device, str(paths["scorer"]))
    precision = choice.precision.value
    if config.precision == Precision.AUTO:  # and why: calibrated, or what `findbox calibrate` would unlock
        precision += f" (auto; {choice.note})" if choice.note else " (auto)"
    elif choice.precision == Precision.INT8:  # which int8: static where the scorer's record has its scales
        from findbox.factory import int8_static_ranges
        from findbox.score.int8_static import STATIC_BACKEND

        if int8_static_ranges(config, device, str(paths["scorer"])) is not None:
            precision += f" ({STATIC_BACKEND}: scales from the calibration record)"
    from findbox.detect.backend import describe_backend
    from findbox.factory import detector_precision_choice

    backend = describe_backend(getattr(detector, "info", None) or {})
    detector_choice = detector_precision_choice(config, device, paths)
    detector_precision = ""  # said when it is not plain fp32, or when auto has a reason to give
    if detector_choice.note or detector_choice.precision != Precision.FP32:
        detector_precision = f"; precision {detector_choice.precision.value}" + (
            f" (auto; {detector_choice.note})" if detector_choice.note else "")
    return (f"detector {name(paths['detector'])} (imgsz {d.imgsz}, conf {d.conf}, iou {d.iou}, max_det {d.max_det}"
            + (f"; backend {backend}" if backend else "") + detector_precision + "), "
            f"scorer {name(paths['scorer'])}, upscaler {name(paths['upscaler'])}, "
            f"ranking {config.score_fusion.value}"
            + (f" (weight {config.fusion_weight})" if config.score_fusion != ScoreFusion.SCORER else "")
            + f", precision {precision} on {device}")


def worker_problem(runner: ModelRunner, stall_limit_s: float, failing: bool = True) -> str | None:
    """Why the model worker cannot answer, or None: its thread has stopped; a model call has gone
    `stall_limit_s` (the request timeout: nothing it holds can be answered in time) without a
    heartbeat, i.e. it hangs; or (with `failing`) its last model calls all raised."""
    if not runner.alive:
        why = f" ({type(runner.error).__name__}: {runner.error})" if runner.error is not None else ""
        return f"the model worker thread has stopped{why}"
    if (stalled := runner.stalled_s) > stall_limit_s:
        return (f"the model worker hangs: no progress for {stalled:.0f} s, above the request timeout of "
                f"{stall_limit_s:g} s")
    if failing and runner.failing:
        return f"the models failed their last {FAILING_CALLS} calls ({runner.failed_calls} in a row)"
    return None


def create_app(config: ServeConfig, load: Callable[[PipelineConfig], object] | None = None,
               engine: Callable[[object], object] | None = None) -> FastAPI:
    """The service. `load(config.pipeline) -> Pipeline` runs in a background thread at startup.

    engine(pipeline) -> what the endpoints hand each request's work to, with `ModelRunner`'s
    interface (ground, close, and the health attributes `worker_problem` reads); None = a
    `ModelRunner` in this process. The Ray engine (`findbox.serve.ray`) passes its own: the
    protocol, validation, limits and error answers here are the same for both.
    """
    from contextlib import asynccontextmanager

    if load is None:
        from findbox.factory import load_pipeline as load

    state = ServiceState()
    metrics = ServeMetrics(lambda: state.pipeline)

    def load_and_warm() -> None:
        try:
            pipeline = load(config.pipeline)
            if config.server.warmup:
                pipeline.warmup()

            def on_call(requests: int, instances: int) -> None:
                metrics.batch_requests.observe(requests)
                metrics.batch_instances.observe(instances)

            server = config.server
            if engine is not None:
                state.runner = engine(pipeline)
            else:
                state.runner = ModelRunner(pipeline, server.batch_window_ms / 1000, server.max_instances, on_call,
                                           server.max_queued_requests)
            state.pipeline = pipeline
            log.info("models loaded; ready: %s", describe_models(config.pipeline, pipeline.detector))
        except Exception as exc:  # reported on /health and by the CLI, never swallowed
            log.exception("loading the models failed")
            state.error = f"{type(exc).__name__}: {exc}"
        finally:
            state.ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load_and_warm, name="findbox-load", daemon=True).start()
        yield
        if state.runner is not None:  # uvicorn has already let in-flight requests finish
            state.runner.close()

    app = FastAPI(
        title="findbox",
        version=__import__("findbox").__version__,
        description="Find the object a caption describes. `/identify` speaks the original protocol; "
                    "`/v1/ground` returns every candidate with its scores; the page at `/` calls it.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # add_docs_routes serves them from installed files
    )
    add_docs_routes(app)
    app.state.findbox = state
    # parsing gets its own threads: never queued behind requests that hold pool threads waiting for the models
    parse_limiter = anyio.CapacityLimiter(4)
    app.state.config = config
    app.state.metrics = metrics
    budget = InFlightBudget(config.server.max_inflight_bytes or default_inflight_bytes())
    app.state.budget = budget
    app.add_middleware(BodySizeLimit, max_bytes=config.server.max_body_bytes, budget=budget)
    if config.server.api_key_file:  # outside the body bound: a request without a key reserves no bytes
        from findbox.serve.auth import ApiKeyGuard, read_keys

        app.add_middleware(ApiKeyGuard, keys=read_keys(config.server.api_key_file))
    app.add_middleware(RequestObserver, metrics=metrics)  # added last = outermost: sees the 413s too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(InstanceError)
    async def on_instance_error(request: Request, exc: InstanceError):
        return _error(exc.status, str(exc), exc.index, exc.field)

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, exc: Exception):
        # the observer has logged it with the request id; the client gets the same shape as every error
        return _error(500, f"internal error: {type(exc).__name__}: {exc}"[:500], None, None)

    def unavailable(health: bool = False) -> JSONResponse | None:
        """503 when nothing would answer. Failing model calls make /health say so (a restart may cure
        them) but requests still reach the models: one that succeeds clears it."""
        if state.pipeline is None or state.runner is None:
            message = f"models failed to load: {state.error}" if state.error else "models are loading"
            return JSONResponse(status_code=503, content={"message": message})
        if (problem := worker_problem(state.runner, config.server.request_timeout_s, health)) is not None:
            # nothing would answer: refuse at once, and let a health check restart us
            log.error("%s", problem)
            return JSONResponse(status_code=503, content={"message": f"{problem}; restart the server"})
        return None

    @app.get("/", include_in_schema=False)
    def page():
        """The page: drop an image, type captions, see every candidate and the chosen box."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                                "Cache-Control": "no-cache"})

    # async on purpose: a sync handler would wait for a pool thread, which requests waiting for the
    # models hold (40 by default), and a busy server would fail its health check
    @app.get("/health", responses={503: {"description": "models loading or failed to load, the model worker "
                                                         "stopped or hangs, or its last model calls all failed"}})
    async def health():
        """200 `{"message": "health ok"}` once the models are loaded and warm and the model worker runs
        (making progress, its last calls not all failed), 503 else."""
        return unavailable(health=True) or {"message": "health ok"}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics():
        """Prometheus text format: requests, errors, latency per stage, cache hits, model info."""
        # reads counters only (about a millisecond): cheap enough for the event loop
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def read_body(request: Request) -> IdentifyRequest:
        """The request's IdentifyRequest, parsed in a worker thread (`parse_request`)."""
        # read from the stream, not request.body(), which would keep the raw body for the whole request
        raw = b"".join([chunk async for chunk in request.stream()])
        return await anyio.to_thread.run_sync(parse_request, raw, request.headers.get("content-type"),
                                              limiter=parse_limiter)

    def run(body: IdentifyRequest, record: RequestRecord, deadline: float):
        """Read the image headers and ground, in a worker thread (the pixels are decoded in the
        model worker, chunk by chunk). Returns (results, seconds per stage)."""
        start = time.perf_counter()
        server = config.server
        images, queries = decode_instances(body.instances, server.max_instances, server.max_image_pixels,
                                           server.max_request_pixels)
        record.instances, record.images = len(queries), len(images)
        timings = {"decode": time.perf_counter() - start}
        if not queries:
            return [], timings
        try:
            job = state.runner.ground(images, queries, deadline)
        except ImageDecodeError as exc:  # a bad image found when its chunk came up: name its instance
            status = 413 if isinstance(exc.error, ImageTooLarge) else 400
            raise InstanceError(first_instance(queries, exc.index), "b64", str(exc.error), status) from None
        record.batch_requests = job.batch_requests
        for stage, seconds in job.timings.items():  # "decode": the headers here plus the pixels in the worker
            timings[stage] = timings.get(stage, 0.0) + seconds
        timings["total"] = time.perf_counter() - start
        return job.results, timings

    async def answer(body: IdentifyRequest, request: Request):
        """(results, timings, None) or (None, None, error response)."""
        if (response := unavailable()) is not None:
            return None, None, response
        record = getattr(request.state, "findbox", None) or RequestRecord("-", request.method, request.url.path)
        timeout = config.server.request_timeout_s
        try:
            with anyio.fail_after(timeout):
                # abandon_on_cancel: on timeout answer now; the runner drops the job if it has not started
                results, timings = await anyio.to_thread.run_sync(
                    run, body, record, time.monotonic() + timeout, abandon_on_cancel=True)
        except Overloaded as exc:
            response = _error(503, str(exc), None, "request")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return None, None, response
        except TimeoutError:  # anyio's scope, or the runner's DeadlineExceeded (a TimeoutError)
            return None, None, _error(504, f"request: not answered within the request timeout of {timeout:g} s "
                                           f"(--request-timeout-s)", None, "request")
        except InstanceError:
            raise
        except Exception as exc:
            # a model error (the runner has logged its traceback): answered here rather than re-raised, because
            # uvicorn closes a keep-alive connection under any exception that leaves the app (the client's next
            # request on it would fail) and Starlette's last-resort 500 bypasses the observer's X-Request-ID
            return None, None, _error(500, f"internal error: {type(exc).__name__}: {exc}"[:500], None, None)
        record.timings = timings
        metrics.observe_stages(timings)
        return results, timings, None

    @app.post("/identify", response_model=IdentifyResponse, responses=ERROR_RESPONSES, openapi_extra=BODY_SCHEMA)
    async def identify(request: Request):
        """One `[left, top, width, height]` per instance, in request order."""
        body = await read_body(request)
        results, _, error = await answer(body, request)
        if error is not None:
            return error
        return {"predictions": [round_box(g.ltwh) for g in results]}

    @app.post("/v1/ground", response_model=GroundResponse, responses=ERROR_RESPONSES, openapi_extra=BODY_SCHEMA)
    async def ground(request: Request):
        """Every candidate box with its detector confidence and scorer score, per instance."""
        body = await read_body(request)
        results, timings, error = await answer(body, request)
        if error is not None:
            return error
        out = []
        for inst, g in zip(body.instances, results):
            cands = [
                CandidateOut(box=round_box(b), det_conf=float(d), score=None if math.isnan(s) else float(s))
                for b, d, s in zip(g.candidates.ltwh, g.candidates.det_score, g.candidates.match_score)
            ]
            out.append(GroundingOut(key=inst.key, box=round_box(g.ltwh), chosen=g.chosen, fallback=g.fallback,
                                    image_wh=list(g.image_wh), candidates=cands))
        return GroundResponse(results=out, timings_ms={k: round(v * 1000, 3) for k, v in timings.items()})

    default_openapi = app.openapi

    def openapi() -> dict:
        """FastAPI's schema plus IdentifyRequest, the body the POST endpoints parse themselves."""
        if app.openapi_schema is None:
            default_openapi()["components"]["schemas"].update(body_schemas())
        return app.openapi_schema

    app.openapi = openapi
    return app
