"""Does a faster precision or backend pick the same boxes as fp32? Argmax agreement on synthetic scenes.

    .venv/bin/python benchmarks/bench_precision.py [--images 6] [--demo-images 40] [--demo-noise low,high]
        [--variants bf16-mixed,bf16,onnx,int8,int8-torch] [--tower-reps 3]

Detections are computed once; every precision / backend then embeds the same crops and
captions (all captions of each scene) and picks a box per caption. Reported per variant:
the share of (image, caption) queries whose chosen box equals fp32's, the largest logit
difference, and scorer seconds. Two model sets:
- base_random: the benchmark's siglip-base-size scorer and detector, random weights. Random
  towers score every crop nearly alike, so near-ties flip easily: a harsh test of agreement.
- demo: the bundled demo detector and scorer (trained on synth data; small SigLIP), when
  installed. Trained, so accuracy against the synthetic ground truth (IoU > 0.5) is reported,
  once per --demo-noise level.
Then the image tower alone on the base-size scorer: seconds for one batch of 32 crops per
variant, --tower-reps runs each in alternating order, median and range.
Variants: fp32, bf16, bf16-mixed (torch autocast), onnx (fp32 ONNX Runtime), int8 (what
`--precision int8` runs: ONNX Runtime int8 towers), int8-torch (torch's dynamic int8).
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
from common import BENCH_DETECTION, RESULTS, bench_models, machine, scenes, write_result  # noqa: E402

from findbox.boxes import box_iou, ltwh_to_xyxy  # noqa: E402
from findbox.config import DetectorConfig  # noqa: E402
from findbox.crops import cut_crops  # noqa: E402
from findbox.detect.ultralytics import Detector  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.bundle import BUNDLE_DIR  # noqa: E402
from findbox.ranking import Ranking  # noqa: E402
from findbox.score.transformers import TransformersScorer  # noqa: E402


def make_scorer(scorer_path: Path, name: str):
    """The scorer of one variant, on the CPU."""
    if name == "fp32":
        return TransformersScorer.from_pretrained(scorer_path)
    if name == "bf16":
        return TransformersScorer.from_pretrained(scorer_path, dtype=torch.bfloat16)
    if name == "bf16-mixed":
        s = TransformersScorer.from_pretrained(scorer_path)
        s.autocast_dtype = torch.bfloat16
        return s
    if name in ("onnx", "int8"):
        from findbox.score.onnx import OnnxScorer

        return OnnxScorer.from_scorer(TransformersScorer.from_pretrained(scorer_path), int8=name == "int8")
    if name == "int8-torch":
        from findbox.score.int8 import quantize_torch_linears

        return quantize_torch_linears(TransformersScorer.from_pretrained(scorer_path))
    raise ValueError(f"variant: expected fp32, bf16, bf16-mixed, onnx, int8 or int8-torch, got {name!r}")


def tower_speed(scorer_path: Path, variants: list[str], batch: int, reps: int) -> dict:
    """Seconds of one image-tower forward over `batch` crops per variant; runs alternate in order."""
    scorers = {name: make_scorer(scorer_path, name) for name in ["fp32", *variants]}
    h, w = scorers["fp32"].preprocess.size_hw
    pixels = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    seconds = {name: [] for name in scorers}
    with torch.inference_mode():
        for scorer in scorers.values():  # warm-up: oneDNN / ORT pick their kernels on the first call
            scorer.image_features(pixels[:2].to(scorer.dtype))
        for r in range(reps):
            for name in (list(scorers) if r % 2 == 0 else list(scorers)[::-1]):
                scorer = scorers[name]
                t = time.perf_counter()
                scorer.image_features(pixels.to(scorer.dtype))
                seconds[name].append(time.perf_counter() - t)
    rows = {}
    for name, times in seconds.items():
        median = float(np.median(times))
        rows[name] = {"median_s": median, "min_s": min(times), "max_s": max(times),
                      "speedup_vs_fp32": float(np.median(seconds["fp32"])) / median}
        print(f"  {name:11s} {median:6.2f}s per {batch} crops (range {min(times):.2f}-{max(times):.2f}), "
              f"{rows[name]['speedup_vs_fp32']:.2f}x fp32", flush=True)
    return {"scorer": str(scorer_path), "batch": batch, "size_hw": [h, w], "reps": reps, "rows": rows}


def agreement(scorer_path: Path, detector_path: Path, detection: dict, trained: bool, n_images: int,
              variants: list[str], noise: str) -> dict:
    detector = Detector.from_file(detector_path, DetectorConfig(**detection), "cpu")
    frames = scenes(n_images, start=50_000, noise=noise)
    images = [decode_image(decode_b64(f.b64)) for f in frames]
    candidates = detector.detect(images)
    crops = [c for image, cands in zip(images, candidates) for c in cut_crops(image, cands.xyxy)]
    sizes = [len(c) for c in candidates]
    captions = sorted({c for f in frames for c in f.captions})
    caption_row = {c: k for k, c in enumerate(captions)}

    def make(name: str):
        return make_scorer(scorer_path, name)

    picks, logits, seconds = {}, {}, {}
    for name in ["fp32", *variants]:
        scorer = make(name)
        scorer.embed_images(crops[:2])  # warm-up
        t = time.perf_counter()
        emb = torch.split(scorer.embed_images(crops), sizes)
        texts = scorer.embed_texts(captions)
        seconds[name] = time.perf_counter() - t
        picks[name], logits[name] = [], []
        for frame, cands, e in zip(frames, candidates, emb):
            scores = scorer.score(e, texts)
            for caption in frame.captions:
                s = scores[:, caption_row[caption]]
                logits[name].append(s)
                picks[name].append(Ranking().choose(cands.with_match_score(s), caption))
        del scorer
    rows = {}
    for name in picks:
        same = float(np.mean([a == b for a, b in zip(picks[name], picks["fp32"])]))
        diff = max(float(np.abs(a - b).max()) if len(a) else 0.0 for a, b in zip(logits[name], logits["fp32"]))
        spread = float(np.median([np.ptp(s) for s in logits["fp32"] if len(s)]))
        row = {"same_box_as_fp32": same, "max_logit_diff": diff, "median_logit_spread": spread,
               "scorer_seconds": seconds[name]}
        if trained:
            hits, k = [], 0
            for frame, cands in zip(frames, candidates):
                for truth in frame.boxes_ltwh:
                    chosen = picks[name][k]
                    k += 1
                    box = cands.xyxy[chosen : chosen + 1] if chosen >= 0 else np.zeros((1, 4), np.float32)
                    hits.append(float(box_iou(box, ltwh_to_xyxy(np.asarray([truth], np.float32)))[0, 0] > 0.5))
            row["accuracy"] = float(np.mean(hits))
        rows[name] = row
        print(f"  {name:11s} same box as fp32 {100 * same:5.1f}% of {len(picks[name])}, max logit diff {diff:.2e} "
              f"(median spread {spread:.2e}), scorer {seconds[name]:.1f}s"
              + (f", accuracy {row['accuracy']:.3f}" if trained else ""), flush=True)
    return {"scorer": str(scorer_path), "detector": str(detector_path), "detection": detection, "trained": trained,
            "noise": noise, "images": n_images, "crops": len(crops), "queries": len(picks["fp32"]), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6, help="scenes for the base-size random set (0: skip)")
    parser.add_argument("--demo-images", type=int, default=40, help="scenes for the demo set (small, fast)")
    parser.add_argument("--demo-noise", default="low,high", help="noise levels of the demo set, comma-separated")
    parser.add_argument("--variants", default="bf16-mixed,bf16,onnx,int8,int8-torch")
    parser.add_argument("--tower-batch", type=int, default=32, help="crops per image-tower forward in the speed part")
    parser.add_argument("--tower-reps", type=int, default=3, help="runs per variant in the speed part (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "precision.json"))
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]

    models = bench_models()
    sets = {}
    if args.images > 0:
        print("base_random: siglip-base sizes, random weights")
        sets["base_random"] = agreement(models["scorer"], models["detector"], dict(BENCH_DETECTION), False,
                                        args.images, variants, "medium")
    demo_scorer, demo_detector = BUNDLE_DIR / "scorer", BUNDLE_DIR / "detector.pt"
    if demo_scorer.is_dir() and demo_detector.is_file():
        manifest = json.loads((BUNDLE_DIR / "manifest.json").read_text())
        detection = {**BENCH_DETECTION, **manifest.get("serve", {}).get("detection", {})}
        recipe = manifest.get("recipe", {})
        scorer_levels = sorted({recipe.get("noise")} | ({n for *_, n in recipe.get("scorer_mix", [])}
                                                        if recipe.get("scorer_mix_rounds") else set()))
        for noise in [n for n in args.demo_noise.split(",") if n]:
            print(f"demo: the bundled demo models (trained at {recipe.get('noise')} noise, the scorer also at "
                  f"{', '.join(str(n) for n in scorer_levels)}), {noise} noise")
            name = "demo" if noise == recipe.get("noise", "low") else f"demo_{noise}"
            sets[name] = agreement(demo_scorer, demo_detector, detection, True, args.demo_images, variants, noise)
    out = {"machine": machine(), "sets": sets, "command": " ".join([".venv/bin/python", *sys.argv])}
    if args.tower_reps > 0:
        print(f"image tower: base-size scorer, {args.tower_batch} crops per forward")
        out["tower"] = tower_speed(models["scorer"], variants, args.tower_batch, args.tower_reps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
