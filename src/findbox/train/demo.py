"""`make demo-models`: build the bundled demo models from nothing, on the CPU.

Synthetic data -> a small single-class YOLO from random weights -> ground-truth
crops -> a small SigLIP-architecture scorer from random weights (its tokenizer
learned from the captions) -> evaluation on fresh synthetic sets -> the bundle in
src/findbox/assets/demo with a manifest of what was done and measured.

Every step is a findbox command, so this script is also a worked example of
the whole workflow. Run: python -m findbox.train.demo --out src/findbox/assets/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoRecipe:
    noise: str = "low"  # the training noise level; V2 augmentations add heavy noise on top
    det_images: int = 250  # detector data: 200 train + 50 val images
    det_seed: int = 1000
    det_model: str = "yolov8n.yaml"  # smallest YOLO that still finds 30 px objects
    det_stages: str = "512:25,640:6"  # cheap epochs at 512 (objects of 10-50 px), then 640 for small objects
    det_imgsz: int = 640  # the last stage's size, served
    det_batch: int = 8
    det_nbs: int = 8  # one optimizer step per batch: from scratch needs steps more than batch size
    scorer_images: int = 1500  # crops are cheap: ~8000 of them for the scorer
    scorer_seed: int = 2000
    scorer_preset: str = "small"  # 64 px input, 4 layers of 128: ~2 MB, learns colours and shapes
    scorer_text_length: int = 24  # prompt + the longest caption fit in ~16 tokens; 64 would triple text cost
    # (epochs, peak lr) per round, each from the previous round's weights with its own warmup and
    # cosine; from scratch, so far above the fine-tuning 2e-5
    scorer_rounds: tuple[tuple[int, float], ...] = ((4, 7e-4), (3, 3e-4))
    scorer_batch: int = 128
    scorer_micro_batch: int = 128
    eval_images: int = 50
    eval_seeds: tuple[int, ...] = (9001, 9002)  # fresh seeds: never seen in training
    conf: float = 0.05
    iou: float = 0.3
    max_det: int = 12


def run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def findbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "findbox.cli", *args]


def build(recipe: DemoRecipe, work: Path, out: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    started = time.time()
    r = recipe

    # --- data -----------------------------------------------------------------------------
    if not (work / "det_data" / "vlm.jsonl").exists():
        run(findbox("synth", str(work / "det_data"), "--images", str(r.det_images), "--seed", str(r.det_seed),
                    "--noise", r.noise, "--force"), log)
    if not (work / "scorer_data" / "vlm.jsonl").exists():
        run(findbox("synth", str(work / "scorer_data"), "--images", str(r.scorer_images), "--seed",
                    str(r.scorer_seed), "--noise", r.noise, "--force"), log)

    # --- detector -------------------------------------------------------------------------
    if not (work / "det" / "detector.pt").exists():
        run(findbox("train", "detector", "--data", str(work / "det_data" / "vlm.jsonl"), "--out", str(work / "det"),
                    "--model", r.det_model, "--stages", r.det_stages,
                    "--batch", str(r.det_batch), "--nbs", str(r.det_nbs), "--augs", "v2", "--device", "cpu",
                    "--workers", "2"), log)

    # --- scorer ---------------------------------------------------------------------------
    if not (work / "crops" / "manifest.jsonl").exists():
        run(findbox("crops", "--data", str(work / "scorer_data" / "vlm.jsonl"), "--out", str(work / "crops"),
                    "--val-fraction", "0.1"), log)
    if not (work / "scorer" / "config.json").exists():
        from findbox.builders import build_siglip
        from findbox.synth import COLOUR_NAMES, OBJECT_TYPES

        captions = sorted({json.loads(line)["caption"] for line in open(work / "crops" / "manifest.jsonl")})
        words = captions + list(COLOUR_NAMES) + list(OBJECT_TYPES)
        build_siglip(work / "init_scorer", words, preset=r.scorer_preset, vocab_size=512, text_length=r.scorer_text_length)
        init = work / "init_scorer"
        for k, (epochs, lr) in enumerate(r.scorer_rounds, start=1):
            round_out = work / f"scorer_round{k}"
            if not (round_out / "config.json").exists():
                run(findbox("train", "scorer", "--init", str(init), "--crops", str(work / "crops"),
                            "--out", str(round_out), "--epochs", str(epochs), "--lr", str(lr),
                            "--batch", str(r.scorer_batch), "--micro-batch", str(r.scorer_micro_batch),
                            "--augs", "v1", "--precision", "fp32", "--device", "cpu", "--workers", "1"), log)
            init = round_out
        shutil.copytree(init, work / "scorer")

    # --- bundle ---------------------------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "det" / "detector.pt", out / "detector.pt")
    if (out / "scorer").exists():
        shutil.rmtree(out / "scorer")
    shutil.copytree(work / "scorer", out / "scorer",
                    ignore=shutil.ignore_patterns("*.jsonl", "*.csv", "metrics.json", "train_config.json", "*.png",
                                                   "checkpoints"))
    detection = {"imgsz": r.det_imgsz, "conf": r.conf, "iou": r.iou, "max_det": r.max_det}

    # --- evaluation on fresh data ---------------------------------------------------------
    figures = {}
    for noise in (r.noise, "high"):
        for seed in r.eval_seeds[:1]:
            data = work / f"eval_{noise}_{seed}"
            if not (data / "vlm.jsonl").exists():
                run(findbox("synth", str(data), "--images", str(r.eval_images), "--seed", str(seed), "--noise", noise,
                            "--force"), log)
            report = work / f"report_{noise}_{seed}"
            run(findbox("eval", str(data / "vlm.jsonl"), "--out", str(report), "--split", "all",
                        "--detector", str(out / "detector.pt"), "--scorer", str(out / "scorer"), "--no-upscaler",
                        "--device", "cpu", "--imgsz", str(r.det_imgsz), "--conf", str(r.conf), "--iou", str(r.iou),
                        "--max-det", str(r.max_det)), log)
            m = json.loads((report / "metrics.json").read_text())
            figures[f"{noise}_seed{seed}"] = {
                k: m.get(k) for k in ("accuracy", "n_instances", "instances_per_s", "task_score")
            } | {"detector_recall": (m.get("diagnostics") or {}).get("detector_recall"),
                 "scorer_accuracy_given_covered": (m.get("diagnostics") or {}).get("scorer_accuracy_given_covered")}

    manifest = {
        "what": "findbox demo bundle: a single-class YOLO and a SigLIP-architecture scorer trained from random "
                "weights on findbox synth data, on the CPU",
        "command": "make demo-models",
        "recipe": dataclasses.asdict(r),
        "serve": {"detection": detection, "upscaler": None},
        "figures": figures,
        "build_seconds": round(time.time() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="src/findbox/assets/demo", help="bundle folder")
    parser.add_argument("--work", default="runs/demo", help="scratch folder (data, runs, reports)")
    args = parser.parse_args(argv)
    manifest = build(DemoRecipe(), Path(args.work), Path(args.out))
    print(json.dumps(manifest["figures"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
