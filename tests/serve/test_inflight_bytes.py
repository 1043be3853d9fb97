"""The global bound on request bytes in flight, on a real uvicorn process: concurrent requests over
the budget get 503 with Retry-After at once (their bodies never buffered), /health stays 200 and
fast, and a request is served again once the budget is free."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import httpx
import numpy as np
import requests
from PIL import Image

from findbox.serve.app import DRAIN_BYTES
from tests.conftest import CAPTIONS, ServerProcess, tiny_serve_args

WINDOW_S = 3.0  # the batch window holds each admitted request that long in the queue


def noise_b64(seed: int, side: int = 700) -> str:
    """~1 MB of base64 JPEG: noise does not compress."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)).save(
        buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


def test_requests_over_the_bytes_in_flight_get_503_at_once(tiny_models):
    bodies = [{"instances": [{"caption": CAPTIONS[0], "b64": noise_b64(i)}]} for i in range(8)]
    size = len(str(bodies[0]))
    # room for two such bodies counted 4 times each, not three
    budget = 2 * 4 * size + size
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) +
                           ["--max-inflight-bytes", str(budget), "--batch-window-ms", str(WINDOW_S * 1000)])
    try:
        answers: list[tuple[httpx.Response, float]] = []
        lock = threading.Lock()

        def post(body):
            start = time.monotonic()
            r = httpx.post(server.url + "/identify", json=body, timeout=60)
            with lock:
                answers.append((r, time.monotonic() - start))

        threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        health = []
        while any(t.is_alive() for t in threads):
            start = time.monotonic()
            health.append((httpx.get(server.url + "/health", timeout=30).status_code, time.monotonic() - start))
            time.sleep(0.1)
        for t in threads:
            t.join()

        statuses = sorted(r.status_code for r, _ in answers)
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(200) >= 1 and statuses.count(503) >= len(bodies) - 4, statuses
        for r, seconds in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"].isdigit()
                assert r.json()["field"] == "body" and r.json()["index"] is None
                assert "--max-inflight-bytes" in r.json()["detail"]
                assert seconds < WINDOW_S, "a refused request waited: it was queued, not refused at once"
        assert health and all(status == 200 for status, _ in health), health
        assert max(seconds for _, seconds in health) < 1.0, health
        # the budget is free again: a request is served
        r = httpx.post(server.url + "/identify", json=bodies[0], timeout=60)
        assert r.status_code == 200, r.text
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
        assert 'findbox_requests_total{endpoint="/identify",status="503"}' in metrics
    finally:
        server.stop()


def _raw_post_headers(url: str, length: int) -> socket.socket:
    """A connection that has sent a POST's headers (Content-Length `length`) and none of its body."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /identify HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, lower-cased headers, body) read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_refused_body_is_answered_before_it_is_read(tiny_models):
    """The 503 goes out when the headers say the body would not fit, not after the upload. A small
    body is drained and its connection answers the next request; a large one's connection is closed
    (draining a flood of large uploads is what starved /health), and clients that send their whole
    body before reading (requests, httpx) still get the 503, not a reset."""
    length = 4_000_000
    small = DRAIN_BYTES // 2
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) +
                           ["--max-inflight-bytes", str(4 * length + 1000)])
    sockets = []
    try:
        sockets.append(_raw_post_headers(server.url, length))  # holds the whole budget; its body never comes
        time.sleep(0.5)
        for size in (small, length):
            refused = _raw_post_headers(server.url, size)
            sockets.append(refused)
            refused.settimeout(5)
            status, headers, body = _read_response(refused)  # before a byte of the body was sent
            assert status == 503, body
            assert headers["retry-after"].isdigit() and b"--max-inflight-bytes" in body
            assert (headers.get("connection") == "close") == (size > DRAIN_BYTES), headers
        # the small one sends its body anyway (as requests does) and asks again on the same connection
        small_conn = sockets[1]
        small_conn.sendall(b"x" * small)
        small_conn.sendall(f"GET /health HTTP/1.1\r\nHost: {server.url[7:]}\r\n\r\n".encode())
        status, _, body = _read_response(small_conn)
        assert status == 200 and b"ok" in body.lower(), body
        # the large one's connection is closed by the server
        assert sockets[2].recv(65536) == b""
        for post in (lambda: requests.post(server.url + "/identify", data=b"{" + b" " * (length - 2) + b"}", timeout=30),
                     lambda: httpx.post(server.url + "/identify", content=b"{" + b" " * (length - 2) + b"}", timeout=30)):
            for _ in range(5):
                r = post()
                assert r.status_code == 503 and r.json()["field"] == "body", r.text
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
