"""Shared pieces of the benchmarks: models, synthetic requests, timing and memory helpers.

Models are random-weight but full-size (speed does not depend on the weights): an
ultralytics YOLO from its yaml and a SigLIP with siglip-base-patch16-224 sizes. They
are built once into `findbox.env.cache_dir() / "bench-models"` and reused.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from findbox.env import cache_dir, ensure_offline

ensure_offline()  # the benchmarks import ultralytics and transformers directly

RESULTS = Path(__file__).parent / "results"

# Random weights give low confidences: a tiny threshold makes the detector propose ~max_det boxes,
# as a trained detector at the original's conf=0.1 does on 3-8-object scenes (it finds them plus
# false positives). imgsz 640: the detector is not what these benchmarks study.
BENCH_DETECTION = dict(imgsz=640, conf=0.001, iou=0.5, max_det=10)
IMAGE_WH = (1520, 870)  # the original images' size


def bench_models(scorer_preset: str = "base", detector_yaml: str = "yolov8n.yaml") -> dict[str, Path]:
    """Paths of the benchmark detector and scorer (built on first use, then cached)."""
    from findbox.testing.builders import build_siglip, build_yolo
    from findbox.synth import OBJECT_TYPES

    root = cache_dir() / "bench-models"
    detector = root / f"{Path(detector_yaml).stem}.pt"
    scorer = root / f"siglip-{scorer_preset}"
    if not detector.is_file():
        build_yolo(detector, detector_yaml)
    if not (scorer / "config.json").is_file():
        captions = [f"{c} {t}" for t in OBJECT_TYPES for c in ("grey", "red and white", "green and brown camouflage")]
        build_siglip(scorer, captions, preset=scorer_preset)
    return {"detector": detector, "scorer": scorer}


@dataclass(frozen=True)
class Scene:
    """One synthetic 1520x870 frame as a client sends it: base64 JPEG, and its objects' captions."""

    b64: str
    captions: tuple[str, ...]
    boxes_ltwh: tuple[tuple[int, int, int, int], ...]


def scenes(count: int, start: int = 0, seed: int = 7, min_objects: int = 4, noise: str = "medium") -> list[Scene]:
    """`count` synthetic scenes (findbox.synth), indices start..start+count-1."""
    import base64

    from findbox.synth import SynthConfig, generate_scene_jpeg

    config = SynthConfig(width=IMAGE_WH[0], height=IMAGE_WH[1], noise=noise, min_objects=min_objects)
    out = []
    for index in range(start, start + count):
        data, objects = generate_scene_jpeg(config, index, seed)
        out.append(Scene(base64.b64encode(data).decode("ascii"), tuple(o.caption for o in objects),
                         tuple(tuple(o.bbox_ltwh) for o in objects)))
    return out


def machine() -> dict:
    """CPU model, cores, torch build and load: recorded beside every result."""
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu_model"] = fields.get("Model name", "").strip()
        flags = fields.get("Flags", "").split()
        info["bf16_flags"] = [f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if values else float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident set since it started (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples this process's RSS every `interval` s in a thread; `phase(name)` records the peak within it."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.current: str | None = None
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            name = self.current
            if name is not None:
                rss = self._proc.memory_info().rss / 2**20
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss)

    @contextmanager
    def phase(self, name: str):
        self.current = name
        self.peaks[name] = max(self.peaks.get(name, 0.0), self._proc.memory_info().rss / 2**20)
        try:
            yield
        finally:
            self.current = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def provenance(outputs: tuple[str, ...] | None = None) -> dict:
    """The commit measured, whether the tree had changes beside it (a dirty tree: the figures may
    not be the commit's), and when: recorded beside every result (findbox.provenance, shared with the
    demo bundle's build; `outputs` as there)."""
    from findbox.provenance import provenance as of_checkout

    return of_checkout(Path(__file__).resolve().parent.parent, outputs)


def auto_precision() -> str:
    """What `--precision auto` runs on this machine for the benchmark's scorer (no calibration record: fp32)."""
    import torch

    from findbox.config import Precision
    from findbox.device import resolve_precision

    return resolve_precision(Precision.AUTO, torch.device("cpu")).value


def write_result(path: str | Path, fields: dict) -> None:
    """`fields` with the machine, the commit and the command line that made them, as JSON at `path`."""
    # results written earlier in the same run (make bench) leave the tree clean; they are listed instead
    out = {"machine": machine(), **provenance(outputs=("benchmarks/results/",)), **fields,
           "command": " ".join([".venv/bin/python", *sys.argv])}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, ensure_ascii=False, default=float) + "\n")
    print(f"wrote {path}")
