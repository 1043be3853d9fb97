"""Does a faster precision or backend pick the same boxes as fp32? Argmax agreement on synthetic scenes.

    .venv/bin/python benchmarks/bench_precision.py [--images 8] [--scorer DIR]

Detections are computed once; every precision / backend then embeds the same crops and
captions (all captions of each scene) and picks a box per caption. Reported per variant:
the share of (image, caption) queries whose chosen box equals fp32's, the largest logit
difference, and scorer seconds. With a trained scorer (--scorer, or the bundled demo
scorer when it exists) accuracy against the synthetic ground truth (IoU > 0.5) is
reported too; with random weights only the agreement means anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import BENCH_DETECTION, RESULTS, bench_models, machine, scenes  # noqa: E402

from findbox.boxes import box_iou, ltwh_to_xyxy  # noqa: E402
from findbox.config import DetectorConfig  # noqa: E402
from findbox.crops import cut_crops  # noqa: E402
from findbox.detector import Detector  # noqa: E402
from findbox.imageio import decode_b64, decode_image  # noqa: E402
from findbox.load import BUNDLE_DIR  # noqa: E402
from findbox.pipeline import choose  # noqa: E402
from findbox.scorer import Scorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--scorer", help="save_pretrained folder (default: the bundled demo scorer if any, else random)")
    parser.add_argument("--detector", help="ultralytics .pt (default: the bundled demo detector if any, else random)")
    parser.add_argument("--variants", default="bf16-mixed,bf16,onnx")
    parser.add_argument("--out", default=str(RESULTS / "precision.json"))
    args = parser.parse_args()

    models = bench_models()
    demo_scorer, demo_detector = BUNDLE_DIR / "scorer", BUNDLE_DIR / "detector.pt"
    scorer_path = Path(args.scorer) if args.scorer else (demo_scorer if demo_scorer.is_dir() else models["scorer"])
    detector_path = Path(args.detector) if args.detector else (
        demo_detector if demo_detector.is_file() else models["detector"])
    trained = scorer_path != models["scorer"]
    detection = dict(BENCH_DETECTION, conf=0.1) if detector_path != models["detector"] else dict(BENCH_DETECTION)
    detector = Detector.from_file(detector_path, DetectorConfig(**detection), "cpu")
    frames = scenes(args.images, start=50_000)
    images = [decode_image(decode_b64(f.b64)) for f in frames]
    candidates = detector.detect(images)
    crops = [c for image, cands in zip(images, candidates) for c in cut_crops(image, cands.xyxy)]
    sizes = [len(c) for c in candidates]

    def make(name: str) -> Scorer:
        if name == "fp32":
            return Scorer.from_pretrained(scorer_path)
        if name == "bf16":
            return Scorer.from_pretrained(scorer_path, dtype=torch.bfloat16)
        if name == "bf16-mixed":
            s = Scorer.from_pretrained(scorer_path)
            s.autocast_dtype = torch.bfloat16
            return s
        if name == "onnx":
            from findbox.scorers.onnx import OnnxScorer

            return OnnxScorer.from_scorer(Scorer.from_pretrained(scorer_path))
        raise ValueError(f"unknown variant {name!r}")

    picks, logits, seconds = {}, {}, {}
    for name in ["fp32", *[v for v in args.variants.split(",") if v]]:
        scorer = make(name)
        scorer.embed_images(crops[:2])  # warm-up
        t = time.perf_counter()
        emb = torch.split(scorer.embed_images(crops), sizes)
        texts = scorer.embed_texts(sorted({c for f in frames for c in f.captions}))
        seconds[name] = time.perf_counter() - t
        caption_row = {c: k for k, c in enumerate(sorted({c for f in frames for c in f.captions}))}
        picks[name], logits[name] = [], []
        for frame, cands, e in zip(frames, candidates, emb):
            scores = scorer.score(e, texts)
            for caption in frame.captions:
                s = scores[:, caption_row[caption]]
                logits[name].append(s)
                picks[name].append(choose(cands.with_match_score(s), caption))
        del scorer
    queries = len(picks["fp32"])
    rows = {}
    for name in picks:
        same = float(np.mean([a == b for a, b in zip(picks[name], picks["fp32"])]))
        diff = max(float(np.abs(a - b).max()) if len(a) else 0.0 for a, b in zip(logits[name], logits["fp32"]))
        row = {"same_box_as_fp32": same, "max_logit_diff": diff, "scorer_seconds": seconds[name]}
        if trained:
            hits = []
            k = 0
            for frame, cands in zip(frames, candidates):
                for caption, truth in zip(frame.captions, frame.boxes_ltwh):
                    chosen = picks[name][k]
                    k += 1
                    box = cands.xyxy[chosen:chosen + 1] if chosen >= 0 else np.zeros((1, 4), np.float32)
                    hits.append(float(box_iou(box, ltwh_to_xyxy(np.asarray([truth], np.float32)))[0, 0] > 0.5))
            row["accuracy"] = float(np.mean(hits))
        rows[name] = row
        print(f"{name:11s} same box as fp32 {100 * same:5.1f}% of {queries}, max logit diff {diff:.2e}, "
              f"scorer {seconds[name]:.1f}s" + (f", accuracy {row['accuracy']:.3f}" if trained else ""), flush=True)
    out = {"machine": machine(), "scorer": str(scorer_path), "detector": str(detector_path), "trained": trained,
           "images": args.images, "crops": len(crops), "queries": queries, "rows": rows,
           "command": " ".join([".venv/bin/python", *sys.argv])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
