"""Per-request observation: one JSON log line and the request metrics.

`RequestObserver` is the outermost middleware, so it sees every answer, the
413s of the body cap and unhandled exceptions included. Endpoints add what only
they know (instance count, stage timings) to the `RequestRecord` found at
`request.state.findbox`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from findbox.serve.metrics import ServeMetrics, endpoint_label, error_kind

access_log = logging.getLogger("findbox.access")

# /health and /metrics are polled every few seconds: logged at DEBUG so they do not drown the requests
QUIET_ENDPOINTS = frozenset({"/health", "/metrics"})
ERROR_BODY_BYTES = 2048  # enough of an error body to log its detail


@dataclass
class RequestRecord:
    """What one request did; the endpoint fills what the middleware cannot see."""

    request_id: str
    method: str
    path: str
    instances: int | None = None
    images: int | None = None
    batch_requests: int | None = None  # requests sharing the model call (--batch-window-ms)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def log_line(record: RequestRecord, status: int, seconds: float, client: str | None, error: str | None) -> str:
    """The JSON access-log line: one object, keys stable, timings in milliseconds."""
    now = time.time()
    line = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
        "event": "request",
        "request_id": record.request_id,
        "method": record.method,
        "path": record.path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "instances": record.instances,
        "images": record.images,
        "timings_ms": {k: round(v * 1000, 3) for k, v in record.timings.items()},
        "client": client,
    }
    if record.batch_requests is not None:
        line["batch_requests"] = record.batch_requests
    if error is not None:
        line["error"] = error
    return json.dumps(line, ensure_ascii=False)


def _error_detail(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace") or None
    if isinstance(data, dict):
        return str(data.get("detail", data.get("message", data)))[:500]
    return str(data)[:500]


class RequestObserver:
    """Pure ASGI middleware: metrics and the JSON log line for every HTTP request."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        record = RequestRecord(given_id or uuid.uuid4().hex[:16], scope.get("method", ""), scope.get("path", ""))
        scope.setdefault("state", {})["findbox"] = record
        endpoint = endpoint_label(record.path)
        status = 500
        error_body = bytearray()

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", record.request_id.encode("latin-1"))]}
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < ERROR_BODY_BYTES:
                error_body.extend(message.get("body", b"")[: ERROR_BODY_BYTES - len(error_body)])
            await send(message)

        in_flight = self.metrics.in_flight.labels(endpoint)
        in_flight.inc()
        start = time.perf_counter()
        crashed: BaseException | None = None
        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:  # logged and counted here, re-raised for the server's 500
            crashed = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            in_flight.dec()
            m = self.metrics
            m.requests.labels(endpoint, str(status)).inc()
            m.request_seconds.labels(endpoint).observe(seconds)
            error = None
            if crashed is not None:
                error = f"{type(crashed).__name__}: {crashed}"
            elif status >= 400:
                error = _error_detail(bytes(error_body))
            if status >= 400:
                m.errors.labels(endpoint, error_kind(status), str(status)).inc()
            elif record.instances:
                m.instances.labels(endpoint).inc(record.instances)
            level = logging.WARNING if status >= 500 else logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                access_log.log(level, log_line(record, status, seconds, client[0] if client else None, error))
