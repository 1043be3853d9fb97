"""Fewer tokens for small crops (`--small-crop-input`): what it costs in answers, what it saves in time.

    .venv/bin/python benchmarks/bench_small_crops.py [--demo-images 40] [--demo-noise low,high]
        [--demo-sides 24,32,40,48] [--base-sides 112,160] [--reps 5]

With `--small-crop-input S`, a crop whose longer side is at most S pixels is resized to
S x S instead of the scorer's own input, and the image tower runs on (S/patch)^2 tokens
with its position embeddings interpolated. Two parts:
- demo: the bundled demo models (trained; SigLIP input 64, patch 8) on fresh synthetic
  scenes per --demo-noise level. Detections once; the same crops embedded at every S;
  reported per S: share of crops scored small, same box as S = off, accuracy (IoU > 0.5
  against the synthetic truth) with the bundle's ranking, scorer seconds.
- base: siglip-base-size towers (input 224, patch 16; random weights: speed does not depend
  on them) embedding the demo detector's real proposals on the same scenes (their sizes are
  what decides how many crops go small); scorer seconds at each S against S = off, --reps
  runs each in alternating order, median and range; in fp32, in int8 and in the precision auto picks here.
Results: benchmarks/results/small_crops.json.
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
from common import RESULTS, auto_precision, bench_models, machine, scenes, write_result  # noqa: E402

from findbox.boxes import box_iou, ltwh_to_xyxy  # noqa: E402
from findbox.bundle import BUNDLE_DIR  # noqa: E402
from findbox.config import DetectorConfig  # noqa: E402
from findbox.crops import cut_crops  # noqa: E402
from findbox.detect.ultralytics import Detector  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.ranking import Ranking  # noqa: E402
from findbox.score.transformers import TransformersScorer  # noqa: E402


def detect_scenes(n_images: int, noise: str, start: int):
    """(frames, candidates per frame, crops in frame order) from the bundled detector with its serving settings."""
    manifest = json.loads((BUNDLE_DIR / "manifest.json").read_text())
    detector = Detector.from_file(BUNDLE_DIR / "detector.pt", DetectorConfig(**manifest["serve"]["detection"]), "cpu")
    frames = scenes(n_images, start=start, noise=noise)
    images = [decode_image(decode_b64(f.b64)) for f in frames]
    candidates = detector.detect(images)
    crops = [c for image, cands in zip(images, candidates) for c in cut_crops(image, cands.xyxy)]
    serve_ranking = manifest["serve"]["ranking"]
    return frames, candidates, crops, Ranking(serve_ranking["score_fusion"], serve_ranking["fusion_weight"])


def demo_answers(n_images: int, noise: str, sides: list[int], start: int) -> dict:
    frames, candidates, crops, ranking = detect_scenes(n_images, noise, start)
    sizes = [len(c) for c in candidates]
    scorer = TransformersScorer.from_pretrained(BUNDLE_DIR / "scorer")
    captions = sorted({c for f in frames for c in f.captions})
    column = {c: k for k, c in enumerate(captions)}
    texts = scorer.embed_texts(captions)
    longer = np.array([max(c.shape[:2]) for c in crops])
    rows, picks = {}, {}
    for side in [0, *sides]:
        scorer.set_small_input(side)
        t = time.perf_counter()
        emb = torch.split(scorer.embed_images(crops), sizes)
        seconds = time.perf_counter() - t
        chosen, hits = [], []
        for frame, cands, e in zip(frames, candidates, emb):
            scores = scorer.score(e, texts)
            for caption, truth in zip(frame.captions, frame.boxes_ltwh):
                k = ranking.choose(cands.with_match_score(scores[:, column[caption]]), caption)
                chosen.append(k)
                box = cands.xyxy[k : k + 1] if k >= 0 else np.zeros((1, 4), np.float32)
                hits.append(float(box_iou(box, ltwh_to_xyxy(np.asarray([truth], np.float32)))[0, 0] > 0.5))
        picks[side] = chosen
        rows[str(side)] = {"small_share": float(np.mean(longer <= side)) if side else 0.0,
                           "same_box_as_off": float(np.mean(np.array(chosen) == np.array(picks[0]))),
                           "accuracy": float(np.mean(hits)), "scorer_seconds": seconds}
        r = rows[str(side)]
        print(f"  small input {side or 'off':>3}: {100 * r['small_share']:5.1f}% of crops small, same box "
              f"{100 * r['same_box_as_off']:5.1f}%, accuracy {r['accuracy']:.3f} ({len(hits)} queries), "
              f"{seconds:.2f}s", flush=True)
    return {"noise": noise, "images": n_images, "crops": len(crops), "queries": len(picks[0]),
            "scorer_input": list(scorer.preprocess.size_hw), "crop_longer_side_percentiles":
            {str(q): float(np.percentile(longer, q)) for q in (10, 25, 50, 75, 90)}, "rows": rows}


def make_scorer(path: Path, precision: str, side: int):
    """The base-size scorer in `precision` (fp32, bf16 or int8, as `--precision` builds it) at small input `side`."""
    scorer = TransformersScorer.from_pretrained(path, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    scorer.set_small_input(side)
    if precision == "int8":
        from findbox.score.int8 import quantize_int8

        scorer = quantize_int8(scorer)  # ONNX Runtime towers (a small tower exported per side) or torch's
    return scorer


def base_speed(n_images: int, sides: list[int], reps: int, start: int) -> dict:
    _, _, crops, _ = detect_scenes(n_images, "low", start)
    path = bench_models()["scorer"]
    out = {}
    longer = np.array([max(c.shape[:2]) for c in crops])
    auto = auto_precision()
    for precision in dict.fromkeys(["fp32", "int8", auto]):  # int8: the fastest path, whatever auto runs
        scorers = {side: make_scorer(path, precision, side) for side in [0, *sides]}
        for scorer in scorers.values():
            scorer.embed_images(crops[:4])  # warm-up
        seconds = {side: [] for side in scorers}
        for r in range(reps):
            for side in (list(seconds) if r % 2 == 0 else list(seconds)[::-1]):
                t = time.perf_counter()
                scorers[side].embed_images(crops)
                seconds[side].append(time.perf_counter() - t)
        off = float(np.median(seconds[0]))
        out[precision] = {}
        for side, times in seconds.items():
            median = float(np.median(times))
            out[precision][str(side)] = {"small_share": float(np.mean(longer <= side)) if side else 0.0,
                                         "median_s": median, "min_s": min(times), "max_s": max(times),
                                         "speedup_vs_off": off / median}
            print(f"  {precision:5s} small input {side or 'off':>3}: {median:6.2f}s for {len(crops)} crops "
                  f"(range {min(times):.2f}-{max(times):.2f}), {off / median:.2f}x off", flush=True)
        del scorers
    return {"scorer": str(path), "crops": len(crops), "reps": reps, "auto_precision": auto, "rows": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-images", type=int, default=40, help="fresh scenes per noise level (0: skip)")
    parser.add_argument("--demo-noise", default="low,high")
    parser.add_argument("--demo-sides", default="24,32,40,48", help="small input sides for the demo scorer (64)")
    parser.add_argument("--base-images", type=int, default=8, help="scenes whose proposals the base towers embed")
    parser.add_argument("--base-sides", default="112,160", help="small input sides for the base-size scorer (224)")
    parser.add_argument("--reps", type=int, default=5, help="runs per side in the speed part (0: skip)")
    parser.add_argument("--start", type=int, default=70_000, help="first scene index (fresh: no other use)")
    parser.add_argument("--out", default=str(RESULTS / "small_crops.json"))
    args = parser.parse_args()
    ints = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731

    out = {"machine": machine(), "command": " ".join([".venv/bin/python", *sys.argv]), "demo": {}}
    for noise in [n for n in args.demo_noise.split(",") if n] if args.demo_images > 0 else []:
        print(f"demo models, {noise} noise, {args.demo_images} scenes")
        out["demo"][noise] = demo_answers(args.demo_images, noise, ints(args.demo_sides), args.start)
    if args.reps > 0:
        print(f"base-size towers on the demo detector's proposals of {args.base_images} scenes")
        out["base"] = base_speed(args.base_images, ints(args.base_sides), args.reps, args.start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
