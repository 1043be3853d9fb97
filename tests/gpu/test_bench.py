"""`make bench-gpu` smoke: benchmarks/bench_gpu.py at its smallest settings runs on CUDA end to end
and writes its results JSON (the figures themselves come from `make bench-gpu`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).parents[2]


def test_bench_gpu_smallest_settings_write_results(tmp_path):
    out = tmp_path / "gpu_smoke.json"  # never the real benchmarks/results/gpu.json
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--scorer-preset", "tiny",
           "--detector-yaml", "yolov8n.yaml", "--imgsz", "160", "--requests", "1", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads(out.read_text())
    assert result["gpu"], result.get("gpu")
    assert set(result["tower"]) == {f"{p}/{b}" for p in ("fp32", "fp16", "bf16") for b in (8, 32, 128)}
    assert all(row["crops_per_s"] > 0 and row["max_memory_allocated_mb"] > 0 for row in result["tower"].values())
    assert set(result["end_to_end"]) == {"fp16/a", "fp16/b", "bf16/a", "bf16/b"}
    contenders = [c for row in result["end_to_end"].values() for c in row["contenders"].values()]
    assert all(c["max_memory_allocated_mb"] > 0 for c in contenders), contenders
    backends = result["detector_backends"]["rows"]
    assert {"torch fp32", "torch fp16", "torch bf16 autocast, decoded in fp32"} <= set(backends)
    assert all(backends[k]["ms"] > 0 for k in ("torch fp16", "torch bf16 autocast, decoded in fp32"))
    # ONNX Runtime's GPU providers: measured where this onnxruntime has them, else the row says why
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        assert "ms" in backends[f"onnxruntime {provider}"] or "skipped" in backends[f"onnxruntime {provider}"]
