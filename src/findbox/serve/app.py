"""The FastAPI application: /health, /identify, /v1/ground.

Models load in a background thread so /health can answer 503 while loading;
one lock serialises model calls (the models are not re-entrant), while request
parsing and image decoding run concurrently in the thread pool.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from findbox.config import ServeConfig
from findbox.serve.protocol import (
    CandidateOut,
    GroundingOut,
    GroundResponse,
    IdentifyRequest,
    IdentifyResponse,
    InstanceError,
    decode_instances,
    round_box,
)

log = logging.getLogger("findbox.serve")


class ServiceState:
    """The pipeline once loaded, or why it is not."""

    def __init__(self) -> None:
        self.pipeline = None
        self.error: str | None = None
        self.lock = threading.Lock()
        self.ready = threading.Event()


def _error(status: int, message: str, index: int | None = None, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, "index": index, "field": field})


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over the cap, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _error(413, f"body: {int(declared)} bytes, above the cap of {self.max_bytes}", None, "body")(
                scope, receive, send
            )
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
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)




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


def create_app(config: ServeConfig, load: Callable[[ServeConfig], object] | None = None) -> FastAPI:
    """The service. `load(config) -> Pipeline` runs in a background thread at startup."""
    from contextlib import asynccontextmanager

    if load is None:
        from findbox.load import load_pipeline as load

    state = ServiceState()

    def load_and_warm() -> None:
        try:
            pipeline = load(config)
            if config.warmup:
                import numpy as np

                pipeline.ground([np.full((64, 64, 3), 127, np.uint8)], [(0, "warm up")])
            state.pipeline = pipeline
            log.info("models loaded; ready")
        except Exception as exc:  # reported on /health and by the CLI, never swallowed
            log.exception("loading the models failed")
            state.error = f"{type(exc).__name__}: {exc}"
        finally:
            state.ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load_and_warm, name="findbox-load", daemon=True).start()
        yield

    app = FastAPI(
        title="findbox",
        version=__import__("findbox").__version__,
        description="Find the object a caption describes. `/identify` speaks the original protocol.",
        lifespan=lifespan,
    )
    app.state.findbox = state
    app.state.config = config
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        return _validation_error(exc)

    @app.exception_handler(InstanceError)
    async def on_instance_error(request: Request, exc: InstanceError):
        return _error(exc.status, str(exc), exc.index, exc.field)

    def pipeline_or_503():
        if state.pipeline is None:
            message = f"models failed to load: {state.error}" if state.error else "models are loading"
            return None, JSONResponse(status_code=503, content={"message": message})
        return state.pipeline, None

    @app.get("/health", responses={503: {"description": "models loading or failed"}})
    def health():
        """200 `{"message": "health ok"}` once the models are loaded and warm, 503 before."""
        _, unavailable = pipeline_or_503()
        return unavailable or {"message": "health ok"}

    def run(body: IdentifyRequest):
        pipeline, unavailable = pipeline_or_503()
        if unavailable:
            return None, unavailable, {}
        start = time.perf_counter()
        images, queries = decode_instances(body.instances, config.max_instances, config.max_image_pixels)
        timings = {"decode": time.perf_counter() - start}
        if not queries:
            return [], None, timings
        with state.lock:
            results = pipeline.ground(images, queries, timings)
        timings["total"] = time.perf_counter() - start
        return results, None, timings

    @app.post("/identify", response_model=IdentifyResponse, responses={400: {}, 413: {}, 422: {}, 503: {}})
    def identify(body: IdentifyRequest):
        """One `[left, top, width, height]` per instance, in request order."""
        results, unavailable, _ = run(body)
        if unavailable:
            return unavailable
        return {"predictions": [round_box(g.ltwh) for g in results]}

    @app.post("/v1/ground", response_model=GroundResponse, responses={400: {}, 413: {}, 422: {}, 503: {}})
    def ground(body: IdentifyRequest):
        """Every candidate box with its detector confidence and scorer score, per instance."""
        results, unavailable, timings = run(body)
        if unavailable:
            return unavailable
        out = []
        for inst, g in zip(body.instances, results):
            cands = [
                CandidateOut(box=round_box(b), det_conf=float(d), score=None if math.isnan(s) else float(s))
                for b, d, s in zip(g.candidates.ltwh, g.candidates.det_score, g.candidates.match_score)
            ]
            out.append(GroundingOut(key=inst.key, box=round_box(g.ltwh), chosen=g.chosen, fallback=g.fallback,
                                    image_wh=list(g.image_wh), candidates=cands))
        return GroundResponse(results=out, timings_ms={k: round(v * 1000, 3) for k, v in timings.items()})

    return app
