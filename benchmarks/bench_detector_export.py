"""The demo detector in PyTorch against its ultralytics ONNX export run by ONNX Runtime, on this CPU.

    .venv/bin/python benchmarks/bench_detector_export.py [--runs 7] [--frames 6]

Issue 17 item 4. Both sides go through `findbox.detect.ultralytics.Detector` with the bundle's
detection settings (imgsz 1280, conf, iou, max_det): only the model file differs.
- torch: the bundle's detector.pt, as `findbox serve` runs it. ultralytics letterboxes a
  1520x870 frame to 1280x736 (the short side padded to a stride multiple only).
- onnx 1280x1280: `YOLO(pt).export(format="onnx", imgsz=1280, dynamic=False)`, the static square
  input ultralytics exports by default: the frame is padded to 1280x1280, 1.74x the pixels.
- onnx 736x1280: the same export at imgsz=(736, 1280), the input torch sees for these frames.
- onnx dynamic: dynamic=True (any input shape, as a server of frames of several sizes needs),
  fed the same 1280x736 letterbox as torch.
Exports go to a temporary folder (simplify=False: onnxslim is not installed and the export must
not try to fetch it). Timing: one 1520x870 frame, `--runs` detect calls per contender, each
contender alone in the process (loaded, warmed up, timed, dropped), torch first and again last to
show drift; median and range. Exports go through findbox's `export_onnx_file`, which restores
torch's thread count (ultralytics' export lowers it to cores - 1 for the process; the count timed
is recorded as torch_threads). Same boxes: every contender against torch on `--frames` synthetic
frames (medium noise). Results: benchmarks/results/detector_export.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, load_average, machine, scenes, timed, write_result  # noqa: E402

from findbox.boxes import Candidates  # noqa: E402
from findbox.bundle import bundle_detection_defaults, bundled_paths  # noqa: E402
from findbox.config import DetectorConfig, from_dict  # noqa: E402
from findbox.detect.ultralytics import Detector, export_onnx_file  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402


def export_onnx(pt: Path, folder: Path, imgsz, dynamic: bool) -> tuple[Path, float]:
    """(the .onnx path, export seconds), through findbox's export (which restores torch's thread count) in a
    subfolder of its own."""
    out = folder / f"{'x'.join(map(str, np.atleast_1d(imgsz)))}{'_dynamic' if dynamic else ''}"
    out.mkdir()
    t = time.perf_counter()
    path = export_onnx_file(pt, out, imgsz, dynamic)
    return path, time.perf_counter() - t


def same_boxes(a: Candidates, b: Candidates, tol_px: float = 1.0) -> tuple[bool, float | None]:
    """(same count and every box within tol_px, largest corner difference in pixels; None when the counts differ)."""
    if len(a) != len(b):
        return False, None
    if len(a) == 0:
        return True, 0.0
    diff = float(np.abs(a.xyxy - b.xyxy).max())
    return diff <= tol_px, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed detect calls per contender (alternating)")
    parser.add_argument("--frames", type=int, default=6, help="synthetic frames for the same-boxes check")
    parser.add_argument("--out", default=str(RESULTS / "detector_export.json"))
    args = parser.parse_args()
    from ultralytics import YOLO

    pt = bundled_paths()["detector"]
    if pt is None:
        raise SystemExit("bench_detector_export: the demo bundle's detector.pt is missing (make demo-models)")
    config = from_dict(DetectorConfig, bundle_detection_defaults(), "detection")
    device = torch.device("cpu")
    frames = [decode_image(decode_b64(s.b64)) for s in scenes(args.frames, start=500)]
    result = {"command": " ".join([".venv/bin/python", *sys.argv]), "machine": machine(), "detector": str(pt),
              "detection": {"imgsz": config.imgsz, "conf": config.conf, "iou": config.iou, "max_det": config.max_det},
              "image_wh": [int(frames[0].shape[1]), int(frames[0].shape[0])], "runs": args.runs,
              "frames": args.frames, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "contenders": {}}

    with tempfile.TemporaryDirectory() as tmp:
        paths, exports = {"torch": pt}, {}
        for name, imgsz, dynamic in (("onnx 1280x1280", config.imgsz, False),
                                     ("onnx 736x1280", (736, config.imgsz), False),
                                     ("onnx dynamic", config.imgsz, True)):
            # findbox's export restores torch's threads; ultralytics' own sets cores - 1 for the process, and
            # this script once called it directly: on 2 cores torch then detected on one thread (248-276 ms a
            # frame against ~150 on two)
            paths[name], exports[name] = export_onnx(pt, Path(tmp), imgsz, dynamic)
            print(f"  exported {name} in {exports[name]:.1f}s", flush=True)
        result["torch_threads"] = torch.get_num_threads()
        paths["torch (again)"] = pt  # the machine's drift over the run
        # each contender alone in the process (loaded, warmed up, timed, dropped), as a server loads one backend
        names, seconds, found = list(paths), {}, {}
        load_before = load_average()
        for name in names:
            det = (Detector.from_file(pt, config, device) if name.startswith("torch")
                   else Detector(YOLO(str(paths[name]), task="detect"), config, device))
            det.detect(frames[:1])  # warm-up: the first call builds the predictor (and ONNX Runtime's session)
            seconds[name] = [timed(det.detect, frames[:1])[0] for _ in range(args.runs)]
            found[name] = [det.detect([f])[0] for f in frames]
            print(f"  {name}: " + ", ".join(f"{x * 1000:.0f}" for x in seconds[name]) + " ms", flush=True)
            del det
            gc.collect()
        load_after = load_average()

        for name in names:
            checks = [same_boxes(t, o) for t, o in zip(found["torch"], found[name])]
            s = seconds[name]
            result["contenders"][name] = {
                "median_ms": 1000 * float(np.median(s)), "min_ms": 1000 * min(s), "max_ms": 1000 * max(s),
                "run_ms": [1000 * x for x in s],
                "speedup_vs_torch": float(np.median(seconds["torch"]) / np.median(s)),
                "frames_same_boxes": sum(ok for ok, _ in checks),
                # over the frames with as many boxes as torch's
                "max_box_diff_px": max((d for _, d in checks if d is not None), default=None),
                "boxes_per_frame": float(np.mean([len(c) for c in found[name]])),
                "export_s": exports.get(name),
            }
    result["load_before"], result["load_after"] = load_before, load_after
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, result)
    print(json.dumps({k: {f: v[f] for f in ("median_ms", "min_ms", "max_ms", "speedup_vs_torch",
                                              "frames_same_boxes", "max_box_diff_px")}
                      for k, v in result["contenders"].items()}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
