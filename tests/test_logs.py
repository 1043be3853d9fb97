"""Logs a newcomer reads: no warning that makes a working model look broken, no per-tensor quantisation
chatter at INFO, no client-side line per HTTP request. Each run in its own process: transformers warns once."""

from __future__ import annotations

import http.server
import logging
import os
import subprocess
import sys
import threading

import httpx

from findbox.cli import setup_logging


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_loading_the_demo_scorer_warns_of_nothing():
    code = """
import logging
from findbox.bundle import bundled_paths
from findbox.cli import setup_logging
from findbox.score.transformers import TransformersScorer
setup_logging("info")
TransformersScorer.from_pretrained(bundled_paths()["scorer"])
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "token_id must be" not in r.stderr and "unexpected behavior" not in r.stderr, r.stderr


def test_int8_quantisation_lines_are_debug_only(tiny_models, tmp_path):
    code = f"""
import sys
from findbox.cli import setup_logging
from findbox.factory import load_pipeline
setup_logging(sys.argv[1] if len(sys.argv) > 1 else "info")
load_pipeline(detector={str(tiny_models["detector"])!r}, scorer={str(tiny_models["scorer"])!r}, no_upscaler=True,
              device="cpu", precision="int8", scorer_backend="onnx")
"""
    info = subprocess.run([sys.executable, "-c", code, "info"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FINDBOX_CACHE": str(tmp_path / "a")})
    debug = subprocess.run([sys.executable, "-c", code, "debug"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "FINDBOX_CACHE": str(tmp_path / "b")})
    assert info.returncode == 0 and debug.returncode == 0, info.stderr + debug.stderr
    assert "Quantization parameters for tensor" not in info.stderr
    assert debug.stderr.count("Quantization parameters for tensor") >= 5  # still there when asked for


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # the server's own access lines are not what this test reads
        pass


def test_http_client_requests_log_at_debug_only(caplog):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        setup_logging("info")
        with caplog.at_level(logging.INFO):
            httpx.get(url)
        assert not [r for r in caplog.records if r.name == "httpx"]
        setup_logging("debug")
        with caplog.at_level(logging.DEBUG):
            httpx.get(url)
        assert any("HTTP Request: GET" in r.getMessage() for r in caplog.records if r.name == "httpx")
    finally:
        server.shutdown()
        setup_logging("info")
