"""Sliced (SAHI-style) detection: speed against plain inference, and recall on small objects.

    .venv/bin/python benchmarks/bench_sliced.py [--detector PT] [--images 8] [--imgsz 640]

Speed: detector seconds per 1520x870 frame for plain inference and for 2x2 / 3x2 tiles
plus the full image (batched, merged by class-agnostic NMS).
Recall: only meaningful with a trained detector. By default the bundled demo detector
(src/findbox/assets/demo/detector.pt) is used when it exists; a random-weight detector
proposes noise, so without one only speed is measured. Recall@IoU>0.5 of the synthetic
ground truth, split into small objects (longest side < --small px) and the rest,
counting every proposal (up to max_det) as the scorer would see it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import RESULTS, bench_models, machine, scenes, write_result  # noqa: E402

from findbox.boxes import box_iou, ltwh_to_xyxy  # noqa: E402
from findbox.config import DetectorConfig  # noqa: E402
from findbox.detect.ultralytics import Detector  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.bundle import BUNDLE_DIR  # noqa: E402


def recall(found, frames, small_px: int) -> dict:
    hits = {"small": [0, 0], "other": [0, 0]}
    for cands, frame in zip(found, frames):
        truth = ltwh_to_xyxy(np.asarray(frame.boxes_ltwh, np.float32))
        iou = box_iou(truth, cands.xyxy) if len(cands) else np.zeros((len(truth), 0))
        for k, (_, _, w, h) in enumerate(frame.boxes_ltwh):
            group = hits["small" if max(w, h) < small_px else "other"]
            group[1] += 1
            group[0] += int(iou.shape[1] > 0 and iou[k].max() > 0.5)
    return {g: {"recall": (h / n if n else None), "objects": n} for g, (h, n) in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", help="ultralytics .pt (default: the demo detector if bundled, else random)")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--imgsz", type=int, help="default: the demo bundle's, else 640")
    parser.add_argument("--conf", type=float, help="default: the demo bundle's, 0.1 for another trained detector, "
                                                   "0.001 for random weights")
    parser.add_argument("--grids", default="1x1,2x2,3x2")
    parser.add_argument("--small", type=int, default=48, help="longest side below which an object is small (px)")
    parser.add_argument("--out", default=str(RESULTS / "sliced.json"))
    args = parser.parse_args()

    demo = BUNDLE_DIR / "detector.pt"
    path = Path(args.detector) if args.detector else (demo if demo.is_file() else bench_models()["detector"])
    trained = args.detector is not None or path == demo
    settings = dict(imgsz=640, conf=0.1 if trained else 0.001, iou=0.5, max_det=10)
    if path == demo:  # the settings the bundle serves with (its manifest), e.g. its training imgsz
        manifest = json.loads((BUNDLE_DIR / "manifest.json").read_text())
        settings.update(manifest.get("serve", {}).get("detection", {}))
    settings.update({k: v for k, v in (("imgsz", args.imgsz), ("conf", args.conf)) if v is not None})
    frames = scenes(args.images, start=30_000)
    images = [decode_image(decode_b64(f.b64)) for f in frames]
    base = Detector.from_file(path, DetectorConfig(**settings), "cpu")
    rows = {}
    for grid in args.grids.split(","):
        detector = Detector(base.yolo, dataclasses.replace(base.config, slices=grid), base.device)
        detector.detect(images[:1])  # warm-up
        t = time.perf_counter()
        found = detector.detect(images)
        seconds = (time.perf_counter() - t) / len(images)
        row = {"seconds_per_image": seconds, "boxes_per_image": float(np.mean([len(c) for c in found]))}
        if trained:
            row["recall"] = recall(found, frames, args.small)
        rows[grid] = row
        print(f"{grid}: {seconds * 1000:.0f} ms/image, {row['boxes_per_image']:.1f} boxes"
              + (f", recall {row['recall']}" if trained else ""), flush=True)
    out = {"machine": machine(), "detector": str(path), "trained": trained, "imgsz": settings["imgsz"],
           "detection": settings,
           "images": args.images, "small_px": args.small, "rows": rows,
           "command": " ".join([".venv/bin/python", *sys.argv])}
    if not trained:
        out["note"] = "random-weight detector: speed only (recall needs a trained detector)"
        print(out["note"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
