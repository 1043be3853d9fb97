"""Reduced ablation of issue 16: which scorer training choices help the server's decision.

Every variant fine-tunes the bundled demo scorer on the same fresh synth images, for about the
same number of crops seen, at the same learning rate; all are then ranked by `findbox eval` on the
same detections and crops of fresh seeds (`--compare-scorer`), once with the bundle's product
ranking and once with the scorer alone.

    python benchmarks/ablation_scorer.py [--work runs/ablation] [--eval-limit 60]

Writes WORK/ (data, crops, one scorer folder per variant, eval runs, logs) and
benchmarks/results/ablation_scorer.json. Steps whose output exists are skipped, so a rerun resumes.
Heavy commands run under `nice -n 10` (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "src" / "findbox" / "assets" / "demo"
RESULTS = ROOT / "benchmarks" / "results" / "ablation_scorer.json"

TRAIN = {"images": 300, "seed": 3100, "noise": "low"}  # fresh: the bundle's scorer saw seed 2000
EVAL_SETS = {"low": (9101, "low"), "high": (9102, "high")}  # never used for tuning
EVAL_IMAGES = 150
# one schedule for all: a fine-tune of the bundle (its last rounds ran at 2e-4 from scratch)
COMMON = ["--lr", "1e-4", "--warmup", "0.1", "--augs", "v1", "--precision", "fp32", "--device", "cpu",
          "--workers", "1", "--no-progress"]
# name -> (crops folder, epochs, flags): about the same crops seen each: 4 epochs of the 1535 truth
# crops (6140), or 2 epochs of truth + 1765 proposal crops (6600)
VARIANTS = {
    "a_micro12": ("crops_gt", 4, ["--batch", "12", "--micro-batch", "12"]),
    "b_gradcache128": ("crops_gt", 4, ["--batch", "128", "--micro-batch", "128"]),
    "c_image_batches": ("crops_gt", 4, ["--batch", "128", "--micro-batch", "128", "--batch-by", "image"]),
    "d_proposals": ("crops_prop", 2, ["--batch", "128", "--micro-batch", "128", "--batch-by", "image"]),
    "e_listwise": ("crops_prop", 2, ["--batch", "128", "--micro-batch", "128", "--batch-by", "image",
                                     "--listwise-weight", "1"]),
    # harder proposals: the detector at a lower threshold and more boxes per image, so more partial,
    # loose and background boxes become negatives; 2 epochs of truth + proposals (~7.5k crops seen)
    "f_hard_proposals": ("crops_prop_hard", 2, ["--batch", "128", "--micro-batch", "128", "--batch-by", "image"]),
}
HARD_PROPOSALS = {"conf": 0.01, "max_det": 30}
FUSIONS = {"product": ["--score-fusion", "product", "--fusion-weight", "1"], "scorer": ["--score-fusion", "scorer"]}


def findbox(*args: str) -> list[str]:
    return ["nice", "-n", "10", sys.executable, "-m", "findbox.cli", *args]


def step(cmd: list[str], done: Path, log: Path, commands: list[str]) -> None:
    """Run `cmd` unless `done` exists; either way record it as a reproducing command."""
    commands.append(" ".join(cmd[3:]).replace(sys.executable + " -m findbox.cli", "findbox").replace(str(ROOT) + "/", ""))
    if done.exists():
        return
    print(f"[{time.strftime('%H:%M:%S')}] {commands[-1]}", flush=True)
    with open(log, "w") as f:
        # one thread: two cores shared with other jobs, where two threads each thrash
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / "runs" / "ablation"))
    parser.add_argument("--eval-limit", type=int, default=None, help="first N images of each eval set")
    parser.add_argument("--results", default=str(RESULTS), help="the results JSON")
    parser.add_argument("--skip-train", action="store_true", help="only evaluate the variants already trained")
    args = parser.parse_args()
    work = Path(args.work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    serve = json.loads((BUNDLE / "manifest.json").read_text())["serve"]["detection"]
    detection = ["--imgsz", str(serve["imgsz"]), "--conf", str(serve["conf"]), "--iou", str(serve["iou"]),
                 "--max-det", str(serve["max_det"])]

    # --- data -----------------------------------------------------------------------------------
    step(findbox("synth", str(work / "train_data"), "--images", str(TRAIN["images"]), "--seed", str(TRAIN["seed"]),
                 "--noise", TRAIN["noise"]), work / "train_data" / "vlm.jsonl", logs / "synth_train.log", commands)
    for name, (seed, noise) in EVAL_SETS.items():
        step(findbox("synth", str(work / f"eval_{name}_{seed}"), "--images", str(EVAL_IMAGES), "--seed", str(seed),
                     "--noise", noise), work / f"eval_{name}_{seed}" / "vlm.jsonl", logs / f"synth_eval_{name}.log",
             commands)
    crops_args = ["--data", str(work / "train_data" / "vlm.jsonl"), "--val-fraction", "0.1", "--no-progress"]
    crops_cmds = {
        "crops_gt": findbox("crops", *crops_args, "--out", str(work / "crops_gt")),
        # the detector's own boxes at the server's settings, labelled by the IoU rule
        "crops_prop": findbox("crops", *crops_args, "--out", str(work / "crops_prop"), "--proposals",
                              str(BUNDLE / "detector.pt"), *detection, "--device", "cpu"),
        "crops_prop_hard": findbox("crops", *crops_args, "--out", str(work / "crops_prop_hard"), "--proposals",
                                   str(BUNDLE / "detector.pt"), *detection, "--conf", str(HARD_PROPOSALS["conf"]),
                                   "--max-det", str(HARD_PROPOSALS["max_det"]), "--device", "cpu"),
    }

    # --- train ----------------------------------------------------------------------------------
    training = {}
    for name, (crops, epochs, flags) in VARIANTS.items():
        if crops in crops_cmds:  # cut when first needed
            step(crops_cmds.pop(crops), work / crops / "manifest.jsonl", logs / f"{crops}.log", commands)
        out = work / name
        cmd = findbox("train", "scorer", "--init", str(BUNDLE / "scorer"), "--crops", str(work / crops), "--out",
                      str(out), "--epochs", str(epochs), *flags, *COMMON)
        if args.skip_train and not (out / "metrics.json").exists():
            continue
        step(cmd, out / "metrics.json", logs / f"train_{name}.log", commands)
        m = json.loads((out / "metrics.json").read_text())
        log = [json.loads(line) for line in open(out / "train_log.jsonl")]
        training[name] = {"crops": crops, "epochs": epochs, "flags": flags, "steps": m["steps"],
                          "crops_seen": sum(r["batch"] for r in log if "step" in r), "train_crops": m["train_crops"],
                          "seconds": m["seconds"], "val_accuracy_before": m["epochs"][0].get("val_accuracy"),
                          "val_accuracy": m.get("val_accuracy"), "path": str(out)}

    # what each crop set holds (findbox crops' crops.json): truth crops per split, proposals and their hits
    crop_sets = {}
    for crops in ("crops_gt", "crops_prop", "crops_prop_hard"):
        if (work / crops / "crops.json").is_file():
            info = json.loads((work / crops / "crops.json").read_text())
            proposals = info.get("proposals") or {}
            crop_sets[crops] = {"truth_crops": info["crops"], "images": info["images"],
                                "proposal_crops": proposals.get("crops", 0),
                                "proposal_hits": proposals.get("positive", 0),
                                "proposal_settings": {k: proposals["settings"][k] for k in ("conf", "max_det")}
                                if proposals else None}

    # --- evaluate: the same detections and crops for every scorer -------------------------------
    scorers = [str(work / name) for name in training]
    figures: dict = {}
    for set_name, (seed, _) in EVAL_SETS.items():
        for fusion, fusion_flags in FUSIONS.items():
            out = work / "eval" / f"{set_name}_{fusion}"
            limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
            compare = [a for s in scorers for a in ("--compare-scorer", s)]
            step(findbox("eval", str(work / f"eval_{set_name}_{seed}" / "vlm.jsonl"), "--out", str(out), "--split",
                         "all", "--detector", str(BUNDLE / "detector.pt"), "--scorer", str(BUNDLE / "scorer"),
                         "--no-upscaler", *detection, *fusion_flags, "--no-sweep", "--device", "cpu",
                         "--precision", "fp32", *limit,
                         "--failures", "0", "--no-progress", *compare),
                 out / "metrics.json", logs / f"eval_{set_name}_{fusion}.log", commands)
            m = json.loads((out / "metrics.json").read_text())
            rows = {}
            for row in m["scorers"]:
                name = "bundle" if row["scorer"].endswith("(run)") else Path(row["scorer"]).name
                rows[name] = {k: row[k] for k in ("accuracy", "scorer_accuracy_given_covered", "ms_per_crop")}
            figures.setdefault(set_name, {})[fusion] = {
                "variants": rows, "headline_accuracy": m.get("accuracy"),
                "detector_recall": (m.get("diagnostics") or {}).get("detector_recall"),
                "n_instances": m.get("n_instances"), "seed": seed}

    result = {
        "what": "reduced ablation of issue 16: fine-tunes of the bundled demo scorer, ranked on the same detections",
        "train_data": TRAIN, "eval_sets": {k: {"seed": s, "noise": n, "images": args.eval_limit or EVAL_IMAGES}
                                           for k, (s, n) in EVAL_SETS.items()},
        "detection": serve, "common_flags": COMMON, "crop_sets": crop_sets, "training": training, "figures": figures,
        "commands": commands,
    }
    write_result(args.results, result)
    print(table(result))
    return 0


def table(result: dict) -> str:
    """Markdown: one row a scorer, accuracy and scorer accuracy given a covering box per set and ranking."""
    sets = list(result["figures"])
    head = ["scorer", "crops seen", "steps"]
    for set_name in sets:
        for fusion in FUSIONS:
            head.append(f"{set_name} {fusion}: acc / given covered")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ["bundle", *result["training"]]:
        t = result["training"].get(name, {})
        cells = [name, str(t.get("crops_seen", "-")), str(t.get("steps", "-"))]
        for set_name in sets:
            for fusion in FUSIONS:
                row = result["figures"][set_name][fusion]["variants"].get(name)
                cells.append(f"{row['accuracy']:.3f} / {row['scorer_accuracy_given_covered']:.3f}" if row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
