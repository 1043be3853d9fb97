"""The demo detector on torch against ONNX Runtime at its served imgsz: alone, and beside two concurrent loads.

    .venv/bin/python benchmarks/detector_backend.py [--frames 3] [--rounds 3]

Issue 27 item 2: `--detector-backend auto` times both backends once per checkpoint and machine
(findbox.detect.backend) and serves the faster; an earlier run had ONNX Runtime slower than torch
with another process on the machine. This settles it with numbers under three conditions:
- alone: nothing else of this benchmark runs;
- 2 torch loads: two other processes each detect in a loop on the torch backend (two more servers
  of the same model on the same cores, as before `auto`);
- 2 onnx loads: the same with the ONNX backend.
Each load process uses the default threads (as a server would). Both backends go through
`findbox.detect.ultralytics.Detector` with the bundle's detection settings (imgsz 1280, conf, iou,
max_det) on `--frames` synthetic 1520x870 scenes (medium noise); per condition, `--rounds` passes
over the frames in alternating backend order, one detect call per frame, median (min-max) ms per
frame. Same boxes: every frame's boxes against torch's in the same condition (matched, 0.5 px,
`findbox.detect.backend.match_boxes`). "auto picks": `decide_backend` on that condition's numbers.
The machine is shared: the 1-minute load average before and after each condition is recorded.
Results: benchmarks/results/detector_backend.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import RESULTS, load_average, scenes, write_result  # noqa: E402

from findbox.bundle import bundle_detection_defaults, bundled_paths  # noqa: E402
from findbox.config import DetectorBackend, DetectorConfig, from_dict  # noqa: E402

BACKENDS = ("torch", "onnx")


def detector(backend: str):
    from findbox.detect.ultralytics import Detector

    config = from_dict(DetectorConfig, bundle_detection_defaults(), "detection")
    return Detector.from_file(bundled_paths()["detector"], config, "cpu", backend=DetectorBackend(backend))


def load_loop(backend: str, frame: np.ndarray, ready, stop, calls) -> None:
    """A concurrent load: detect `frame` on `backend` in a loop until `stop` is set, counting calls."""
    det = detector(backend)
    det.detect([frame])
    ready.set()
    while not stop.is_set():
        det.detect([frame])
        with calls.get_lock():
            calls.value += 1


def time_backends(detectors: dict, frames: list[np.ndarray], rounds: int) -> dict:
    """Per backend: ms per frame over `rounds` alternating passes, and the boxes of the last pass."""
    from findbox.detect.backend import decide_backend, match_boxes

    ms = {n: [] for n in detectors}
    found = {}
    for r in range(rounds):
        for name in (BACKENDS if r % 2 == 0 else BACKENDS[::-1]):
            found[name] = []
            for frame in frames:
                t = time.perf_counter()
                found[name] += detectors[name].detect([frame])
                ms[name].append(1000 * (time.perf_counter() - t))
        print(f"    pass {r + 1}/{rounds}: " + ", ".join(f"{n} {np.median(ms[n][-len(frames):]):.0f} ms"
                                                      for n in BACKENDS), flush=True)
    out = {}
    for name in BACKENDS:
        diffs = [match_boxes(t, o) for t, o in zip(found["torch"], found[name])]
        out[name] = {"median_ms": float(np.median(ms[name])), "min_ms": min(ms[name]), "max_ms": max(ms[name]),
                     "ms_per_call": ms[name], "boxes_per_frame": float(np.mean([len(c) for c in found[name]])),
                     "frames_same_boxes": sum(d is not None and d <= 0.5 for d in diffs),
                     "max_box_diff_px": max((d for d in diffs if d is not None), default=None)}
    choice = decide_backend([m / 1000 for m in ms["torch"]], [m / 1000 for m in ms["onnx"]], found["torch"],
                            found["onnx"])
    out["onnx_vs_torch"] = out["torch"]["median_ms"] / out["onnx"]["median_ms"]
    out["auto_picks"] = {"backend": choice.backend.value, "reason": choice.reason}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="synthetic frames per pass")
    parser.add_argument("--rounds", type=int, default=3, help="passes per condition (alternating backend order)")
    parser.add_argument("--out", default=str(RESULTS / "detector_backend.json"))
    args = parser.parse_args()
    if bundled_paths()["detector"] is None:
        raise SystemExit("detector_backend: the demo bundle's detector.pt is missing (make demo-models)")
    frames = frames_of(args.frames)
    detectors = {name: detector(name) for name in BACKENDS}
    for det in detectors.values():  # warm-up: the predictor and the ONNX Runtime session are built on first use
        det.detect(frames[:1])

    ctx = mp.get_context("spawn")  # a fresh interpreter per load, as another server would be
    conditions = {}
    for condition, load_backend in (("alone", None), ("2 torch loads", "torch"), ("2 onnx loads", "onnx")):
        print(f"  {condition}", flush=True)
        stop, procs, readies, calls = ctx.Event(), [], [], ctx.Value("i", 0)
        if load_backend is not None:
            for _ in range(2):
                ready = ctx.Event()
                procs.append(ctx.Process(target=load_loop, args=(load_backend, frames[0], ready, stop, calls)))
                procs[-1].start()
                readies.append(ready)
            for ready in readies:
                if not ready.wait(300):
                    raise SystemExit(f"detector_backend: a {load_backend} load process did not start in 300 s")
        before, started = load_average()[0], time.perf_counter()
        try:
            result = time_backends(detectors, frames, args.rounds)
        finally:
            stop.set()
            for p in procs:
                p.join(60)
        seconds = time.perf_counter() - started
        result.update(load_1min_before=before, load_1min_after=load_average()[0], seconds=seconds,
                      load_backend=load_backend, load_processes=len(procs),
                      load_calls_per_s=calls.value / seconds if procs else None)
        conditions[condition] = result

    from findbox.detect.backend import machine as backend_machine

    config = detectors["torch"].config
    write_result(args.out, {
        "detector": str(bundled_paths()["detector"]),
        "detection": {"imgsz": config.imgsz, "conf": config.conf, "iou": config.iou, "max_det": config.max_det},
        "frames": args.frames, "rounds": args.rounds, "image_wh": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "backend_machine": backend_machine(), "conditions": conditions,
        "note": "shared 2-core machine: other engineers' work may run beside it (see the load averages)",
    })


def frames_of(count: int) -> list[np.ndarray]:
    from findbox.images import decode_b64, decode_image

    return [decode_image(decode_b64(s.b64)) for s in scenes(count, start=500)]


if __name__ == "__main__":
    main()
