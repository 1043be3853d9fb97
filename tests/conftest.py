"""Shared fixtures: tiny random-weight models in the real file formats.

Built once per test session into a temporary folder: an ultralytics .pt from a
model yaml, a SigLIP save_pretrained folder with a SentencePiece tokenizer
learned from captions, and a Real-ESRGAN compact .pth.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from findbox.env import ensure_offline

# The tests import ultralytics, transformers and albumentations directly: set the offline
# environment before any of them (importing findbox alone no longer does).
ensure_offline()

from findbox.testing.builders import build_compact_upscaler, build_siglip, build_yolo  # noqa: E402

CAPTIONS = [
    "grey missile",
    "red and white helicopter",
    "red, white, and blue light aircraft",
    "green and brown camouflage fighter jet",
    "yellow drone",
    "black cargo aircraft",
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "detector": build_yolo(root / "detector.pt", "yolov8n.yaml"),
        "scorer": build_siglip(root / "scorer", CAPTIONS, preset="tiny"),
        "upscaler": build_compact_upscaler(root / "upscaler.pth", num_feat=8, num_conv=2),
    }


# Random weights give low confidences: a tiny threshold makes them propose boxes.
TINY_DETECTION = {"imgsz": 160, "conf": 0.001, "iou": 0.5, "max_det": 10}


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_models):
    from findbox.factory import load_pipeline

    # fp32: tests compare its numbers with fp32 references (auto may pick bf16 or int8 on this CPU)
    return load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]),
                         upscaler=str(tiny_models["upscaler"]), device="cpu", precision="fp32",
                         detection=dict(TINY_DETECTION))


def make_image(seed: int, width: int = 200, height: int = 120) -> np.ndarray:
    """A sky-like gradient with a few coloured blobs: gives random detectors something to see."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    image = (np.array([120, 170, 230]) * (1 - y) + np.array([220, 230, 240]) * y) * np.ones((1, width, 1))
    for _ in range(4):
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 12)
        image[y0 : y0 + rng.integers(6, 12), x0 : x0 + rng.integers(10, 20)] = rng.integers(0, 255, 3)
    return image.clip(0, 255).astype(np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `findbox serve` uvicorn process on 127.0.0.1."""

    def __init__(self, args: list[str], timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"findbox-serve-{self.port}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        output = self.output()  # before stop() closes the log
        self.stop()
        raise TimeoutError(f"server not ready in {timeout} s:\n{output}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def tiny_serve_args(models: dict[str, Path], upscaler: bool = True) -> list[str]:
    args = ["--detector", str(models["detector"]), "--scorer", str(models["scorer"]), "--device", "cpu"]
    args += ["--upscaler", str(models["upscaler"])] if upscaler else ["--no-upscaler"]
    for key, value in TINY_DETECTION.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args
