"""Training speed on this machine class, each change against its "before" on the same data and seed (issue 27 item 4).

    .venv/bin/python benchmarks/train_speed.py [--work DIR] [--skip scorer-precision,...]

Every run is a `findbox train` command in its own process (the commands are recorded); time per epoch
comes from the run's own records: the scorer's metrics.json (`train_s`, `val_s` per epoch), the
detector's (`epoch_s` per stage, from ultralytics' results.csv: training plus validation).

- scorer-precision: `--precision fp32` against `bf16` (autocast, fp32 master weights), the demo recipe's
  small SigLIP from random weights (its first round: lr 7e-4, batch 128, augs v1), seeds 0 and 1, on
  fresh synth crops; and a fine-tune of the bundled demo scorer (2 epochs, lr 2e-4), where accuracy is
  near its ceiling and a precision that loses any shows. Validation accuracy after each epoch.
- scorer-workers: data loading in 0 (on the training thread), 1 and 2 loader processes, one epoch each;
  every sample's augmentation is seeded by its position, so accuracy must not change.
- scorer-base: fp32 against bf16 on a base-size SigLIP (random weights: time only), one epoch each of
  a small crop set, alternating.
- detector: the demo detector fine-tuned (2 epochs at 512, augs v2, batch 8, the demo recipe's
  fine-tune settings) with `--cache off` and `ram`, `--workers 0`, 1 and 2 (findbox now passes workers
  to ultralytics on the CPU too, where it ran none).
Runs of a comparison alternate, so a load change on the shared machine hits both sides; the load
average is recorded before and after each run. Data: WORK/ (default: the findbox cache), kept between runs.
Results: benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import RESULTS, load_average, write_result  # noqa: E402

from findbox.env import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "src" / "findbox" / "assets" / "demo"
# fresh seeds: the bundle trained on scorer seeds 2000-2200 and detector seeds 1000-1100
SCORER_DATA = {"images": 300, "seed": 2300, "noise": "low"}
DETECTOR_DATA = {"images": 100, "seed": 1300, "noise": "low"}
SCORER_COMMON = ["--batch", "128", "--micro-batch", "128", "--augs", "v1", "--device", "cpu", "--no-progress"]
SCRATCH = ["--epochs", "6", "--lr", "7e-4"]  # the demo recipe's first round, on less data
FINETUNE = ["--epochs", "2", "--lr", "2e-4"]
DETECTOR_COMMON = ["--stages", "512:2", "--warmup-epochs", "0", "--batch", "8", "--nbs", "8", "--augs", "v2",
                   "--device", "cpu"]
SECTIONS = ("scorer-precision", "scorer-workers", "detector", "scorer-base")


def findbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "findbox.cli", *args]


def shown(cmd: list[str], work: Path) -> str:
    """The command as a person reruns it: `findbox ...`, with WORK/ for the data folder."""
    text = " ".join(cmd).replace(f"{sys.executable} -m findbox.cli", "findbox").replace(str(work), "WORK")
    return text.replace(str(ROOT) + "/", "")


def prepare(work: Path) -> dict[str, Path]:
    """Synth sets, scorer crops and the from-scratch init scorer (built once, as the demo recipe builds it)."""
    from findbox.synth import COLOUR_NAMES, OBJECT_TYPES
    from findbox.testing.builders import build_siglip
    from findbox.train.demo import RECIPES

    paths = {"scorer_data": work / "scorer_data", "crops": work / "crops", "detector_data": work / "detector_data",
             "init": work / "init_scorer"}
    for key, spec in (("scorer_data", SCORER_DATA), ("detector_data", DETECTOR_DATA)):
        if not (paths[key] / "vlm.jsonl").is_file():
            subprocess.run(findbox("synth", str(paths[key]), "--images", str(spec["images"]), "--seed",
                                   str(spec["seed"]), "--noise", spec["noise"], "--force"), check=True)
    if not (paths["crops"] / "manifest.jsonl").is_file():
        subprocess.run(findbox("crops", "--data", str(paths["scorer_data"] / "vlm.jsonl"), "--out",
                               str(paths["crops"]), "--val-fraction", "0.2", "--no-progress"), check=True)
    if not (paths["init"] / "config.json").is_file():
        recipe = RECIPES["full"]
        captions = sorted({json.loads(line)["caption"] for line in open(paths["crops"] / "manifest.jsonl")})
        build_siglip(paths["init"], captions + list(COLOUR_NAMES) + list(OBJECT_TYPES), preset=recipe.scorer_preset,
                     vocab_size=512, text_length=recipe.scorer_text_length)
    return paths


def timed_run(cmd: list[str], out: Path, work: Path) -> dict:
    """Run one training command into a fresh `out`; its wall time and the load around it."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    load_before = load_average()[0]
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    row = {"command": shown(cmd, work), "wall_s": round(time.monotonic() - started, 1),
           "load_1min_before": load_before, "load_1min_after": load_average()[0]}
    print(f"  {row['command'][:110]}: {row['wall_s']} s (load {load_before:.1f} -> {row['load_1min_after']:.1f})",
          flush=True)
    return row


def served_accuracy(folder: Path, crops: Path) -> float:
    """Validation accuracy of the saved weights as the server runs them by default (fp32, no autocast): the
    trainer's own figure is measured under its training autocast, so a bf16 run's would not compare."""
    import torch

    from findbox.images import load_image_file
    from findbox.score.transformers import TransformersScorer
    from findbox.train.gradcache import ScorerTowers
    from findbox.train.scorer_data import grounding_accuracy, load_crop_sets

    captions, _, val = load_crop_sets([crops])
    scorer = TransformersScorer.from_pretrained(str(folder), device="cpu", dtype=torch.float32)
    towers = ScorerTowers(scorer).eval()
    with torch.inference_mode():
        images = [towers(pixel_values=scorer.preprocess([load_image_file(val.path(i))
                                                         for i in range(start, min(start + 64, len(val)))]))[0]
                  for start in range(0, len(val), 64)]
        tokens = scorer.tokenize(captions)
        texts = [towers(**{k: v[start:start + 64] for k, v in tokens.items()})[1]
                 for start in range(0, len(captions), 64)]
    return grounding_accuracy(torch.cat(images), torch.cat(texts), val.caption_ids, val.image_groups()).accuracy


def scorer_run(work: Path, paths: dict, name: str, init: Path, schedule: list[str], precision: str, workers: int,
               seed: int) -> dict:
    out = work / "runs" / name
    cmd = findbox("train", "scorer", "--init", str(init), "--crops", str(paths["crops"]), "--out", str(out),
                  *schedule, *SCORER_COMMON, "--precision", precision, "--workers", str(workers), "--seed", str(seed))
    row = timed_run(cmd, out, work)
    metrics = json.loads((out / "metrics.json").read_text())
    trained = [e for e in metrics["epochs"] if e["epoch"] > 0]
    row.update(precision=metrics["precision"], seed=seed, workers=workers,
               train_s=[e["train_s"] for e in trained], val_s=[e["val_s"] for e in metrics["epochs"]],
               val_accuracy=[e["val_accuracy"] for e in metrics["epochs"]],
               train_loss=[e["train_loss"] for e in trained],
               final_val_accuracy=metrics["val_accuracy"], val_queries=metrics["val_queries"],
               served_fp32_val_accuracy=served_accuracy(out, paths["crops"]),
               train_crops=metrics["train_crops"])
    return row


def median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))


def scorer_precision(work: Path, paths: dict) -> dict:
    rows = {}
    for seed in (0, 1):
        order = ("fp32", "bf16") if seed % 2 == 0 else ("bf16", "fp32")
        for precision in order:
            rows[f"scratch {precision} seed {seed}"] = scorer_run(work, paths, f"scratch_{precision}_{seed}",
                                                                  paths["init"], SCRATCH, precision, 1, seed)
    for precision in ("fp32", "bf16"):
        rows[f"finetune {precision}"] = scorer_run(work, paths, f"finetune_{precision}", BUNDLE / "scorer", FINETUNE,
                                                   precision, 1, 0)
    summary = {}
    for kind in ("scratch", "finetune"):
        per = {p: [r for k, r in rows.items() if k.startswith(f"{kind} {p}")] for p in ("fp32", "bf16")}
        epoch = {p: median([s for r in per[p] for s in r["train_s"]]) for p in per}
        summary[kind] = {"median_epoch_train_s": epoch, "speedup": epoch["fp32"] / epoch["bf16"],
                         "final_val_accuracy": {p: [r["final_val_accuracy"] for r in per[p]] for p in per},
                         "served_fp32_val_accuracy": {p: [r["served_fp32_val_accuracy"] for r in per[p]] for p in per}}
    return {"rows": rows, "summary": summary}


def scorer_workers(work: Path, paths: dict) -> dict:
    rows = {}
    for workers in (0, 1, 2, 0, 1, 2):  # twice, alternating
        name = f"workers {workers}" + (" (again)" if f"workers {workers}" in rows else "")
        rows[name] = scorer_run(work, paths, f"workers_{workers}_{len(rows)}", paths["init"],
                                ["--epochs", "1", "--lr", "7e-4"], "fp32", workers, 0)
    return {"rows": rows}


BASE_DATA = {"images": 40, "seed": 2400, "noise": "low"}


def scorer_base(work: Path, paths: dict) -> dict:
    """Time per epoch of a base-size SigLIP (224 px, width 768: the size users fine-tune, where bf16 matmuls
    have work to do), random weights, so time only: fp32 and bf16 alternating, one epoch each."""
    from common import bench_models

    data, crops = work / "base_data", work / "base_crops"
    if not (data / "vlm.jsonl").is_file():
        subprocess.run(findbox("synth", str(data), "--images", str(BASE_DATA["images"]), "--seed",
                               str(BASE_DATA["seed"]), "--noise", BASE_DATA["noise"], "--force"), check=True)
    if not (crops / "manifest.jsonl").is_file():
        subprocess.run(findbox("crops", "--data", str(data / "vlm.jsonl"), "--out", str(crops), "--val-fraction",
                               "0.2", "--no-progress"), check=True)
    init = bench_models("base")["scorer"]
    rows = {}
    for k, precision in enumerate(("fp32", "bf16", "bf16", "fp32")):
        out = work / "runs" / f"base_{precision}_{k}"
        cmd = findbox("train", "scorer", "--init", str(init), "--crops", str(crops), "--out", str(out), "--epochs",
                      "1", "--lr", "2e-5", "--batch", "32", "--micro-batch", "16", "--augs", "v1", "--device", "cpu",
                      "--no-progress", "--precision", precision, "--workers", "1")
        row = timed_run(cmd, out, work)
        metrics = json.loads((out / "metrics.json").read_text())
        row.update(precision=metrics["precision"], train_s=[e["train_s"] for e in metrics["epochs"] if e["epoch"]],
                   val_s=[e["val_s"] for e in metrics["epochs"]], steps=metrics["steps"],
                   train_crops=metrics["train_crops"])
        rows[f"base {precision}, run {k + 1}"] = row
    return {"rows": rows, "data": BASE_DATA, "scorer": "siglip-base-patch16-224 sizes, random weights"}


def detector_run(work: Path, paths: dict, name: str, cache: str, workers: int) -> dict:
    out = work / "runs" / name
    cmd = findbox("train", "detector", "--data", str(paths["detector_data"] / "vlm.jsonl"), "--out", str(out),
                  "--model", str(BUNDLE / "detector.pt"), *DETECTOR_COMMON, "--cache", cache, "--workers", str(workers))
    row = timed_run(cmd, out, work)
    (stage,) = json.loads((out / "metrics.json").read_text())["stages"]
    row.update({k: stage[k] for k in ("epoch_s", "train_s", "mAP50", "mAP50-95", "precision", "recall", "cache",
                                      "workers")})
    return row


def detector(work: Path, paths: dict) -> dict:
    rows = {}
    for cache, workers in (("off", 0), ("ram", 0), ("ram", 1), ("ram", 2), ("off", 2)):
        rows[f"cache {cache}, workers {workers}"] = detector_run(work, paths, f"det_{cache}_{workers}", cache, workers)
    return {"rows": rows, "data": DETECTOR_DATA}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(cache_dir() / "train-speed"), help="data and runs (kept)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=str(RESULTS / "train_speed.json"))
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        parser.error(f"--skip: expected names of {', '.join(SECTIONS)}, got {', '.join(sorted(skip - set(SECTIONS)))}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results = {"started": started, "scorer_data": SCORER_DATA, "load_before": load_average()}
    for section, fn in (("scorer-precision", scorer_precision), ("scorer-workers", scorer_workers),
                        ("detector", detector), ("scorer-base", scorer_base)):
        if section not in skip:
            print(section, flush=True)
            results[section.replace("-", "_")] = fn(work, paths)
    results["load_after"] = load_average()
    write_result(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
