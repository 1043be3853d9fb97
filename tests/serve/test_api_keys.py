"""--api-key-file: the model endpoints ask for a Bearer key, /health stays open; both engines share it."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from findbox.images import encode_jpeg_b64
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args


def test_keys_guard_the_model_endpoints_only(tiny_models, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# one key a client\nalpha-key\n\nbeta-key\n")
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False) + ["--api-key-file", str(keys)])
    body = json.dumps({"instances": [{"caption": CAPTIONS[0], "b64": encode_jpeg_b64(make_image(0))}]})
    try:
        assert requests.get(server.url + "/health", timeout=10).json() == {"message": "health ok"}
        for path in ("/identify", "/v1/ground"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "alpha-key"},
                            {"Authorization": "Basic alpha-key"}, {"Authorization": "Bearer # one key a client"}):
                r = requests.post(server.url + path, data=body, headers=headers, timeout=60)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.json()["field"] == "authorization" and r.headers["WWW-Authenticate"] == "Bearer"
            for key in ("alpha-key", "beta-key"):
                r = requests.post(server.url + path, data=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
                assert r.status_code == 200, r.text
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
    finally:
        server.stop()


def test_an_empty_or_missing_key_file_stops_the_server_before_it_binds(tiny_models, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n# no key\n")
    for path, says in ((empty, "expected at least one key"), (tmp_path / "missing", "missing")):
        result = subprocess.run([sys.executable, "-m", "findbox.cli", "serve", *tiny_serve_args(tiny_models),
                                 "--api-key-file", str(path), "--port", "0"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and says in result.stderr, result.stderr[-1000:]
