"""Defects found by benchmarks/hostile.py and the fault figures, against real uvicorn servers."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from findbox.config import ServeConfig, ServerConfig
from findbox.images import encode_jpeg_b64
from findbox.serve.app import create_app
from tests.conftest import CAPTIONS, free_port, make_image
from tests.serve.test_limits import BrokenPipeline, body


@pytest.mark.parametrize("field, instance", [
    ("caption", b'{"caption": "grey \\ud800 missile", "b64": "%s"}'),
    ("key", b'{"key": "k\\udfff", "caption": "grey missile", "b64": "%s"}'),
])
def test_lone_surrogate_is_a_422_naming_the_field(live_server, field, instance):
    # valid JSON, but no tokenizer (and no UTF-8 answer) takes it: it used to be a 500 from the tokenizer
    image = encode_jpeg_b64(make_image(3)).encode()
    good = json.dumps({"caption": CAPTIONS[0], "b64": image.decode()}).encode()
    raw = b'{"instances": [' + good + b", " + instance % image + b"]}"
    r = httpx.post(live_server.url + "/v1/ground", content=raw, headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 422, r.text
    error = r.json()
    assert (error["index"], error["field"]) == (1, field)
    assert "lone surrogate" in error["detail"] and f"instances[1].{field}" in error["detail"]
    assert httpx.get(live_server.url + "/health").status_code == 200


def _http_post(sock: socket.socket, payload: bytes) -> bytes:
    """One HTTP/1.1 POST on an open socket; returns the raw answer (headers and JSON body)."""
    sock.sendall(b"POST /identify HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n" % len(payload) + payload)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_model_error_keeps_the_connection_open_and_carries_the_request_id():
    """A 500 from the models used to escape the app: uvicorn then closed the keep-alive connection (a
    pooled client's next request got "connection reset") and the answer had no X-Request-ID."""
    import uvicorn

    app = create_app(ServeConfig(server=ServerConfig(warmup=False)), load=lambda config: BrokenPipeline(seconds=0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        payload = json.dumps(body()).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            first = _http_post(sock, payload)
            assert first.startswith(b"HTTP/1.1 500"), first[:200]
            assert b"x-request-id:" in first.lower()
            head, answer = first.split(b"\r\n\r\n", 1)
            assert json.loads(answer) == {"detail": "internal error: RuntimeError: CUDA out of memory (pretend)",
                                          "index": None, "field": None}
            time.sleep(0.3)  # time for a close to arrive, if the server closed it
            second = _http_post(sock, payload)
            assert second.startswith(b"HTTP/1.1 200"), second[:200]
    finally:
        server.should_exit = True
        thread.join(30)
