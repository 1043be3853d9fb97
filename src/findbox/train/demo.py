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
    # then fine-tunes of that detector without warmup at larger sizes, where the smallest objects are big
    # enough to be found and boxed tightly (most misses were small objects and thin missiles): first on the
    # same images, then on a larger fresh set of det_more = (images, seed); each (data, stages) starts from
    # the previous one's detector.pt
    det_more: tuple[int, int] = (500, 1100)
    det_finetunes: tuple[tuple[str, str], ...] = (("det_data", "960:4"), ("det_more_data", "960:5"))
    # served larger than trained: on the fresh sets 1280 found 97-98% of objects, 960 95-96%
    det_imgsz: int = 1280
    det_batch: int = 8
    det_nbs: int = 8  # one optimizer step per batch: from scratch needs steps more than batch size
    scorer_seed: int = 2000  # scorer data: the first N images of this seed (synth is deterministic per image)
    scorer_preset: str = "small"  # 64 px input, 4 layers of 128: ~2 MB, learns colours and shapes
    scorer_text_length: int = 24  # prompt + the longest caption fit in ~16 tokens; 64 would triple text cost
    # (epochs, peak lr, images) per round, each from the previous round's weights with its own warmup
    # and cosine; from scratch, so far above the fine-tuning 2e-5. 1500 images give ~8000 crops, where
    # validation stops improving at ~0.94; the last round doubles the data (the first 1500 images again
    # plus 1500 new ones)
    scorer_rounds: tuple[tuple[int, float, int], ...] = (
        (4, 7e-4, 1500), (3, 3e-4, 1500), (3, 2e-4, 1500), (4, 2e-4, 1500), (4, 2e-4, 3000))
    # then rounds on a larger fresh set that mixes noise levels, in batches of whole images (the ablation in
    # docs/TRAIN_SCORER.md: image batches help at the training noise level, and high-noise crops are what lift
    # --noise high); (images, seed, noise) per set, all trained as one (`--crops A --crops B`)
    scorer_mix: tuple[tuple[int, int, str], ...] = ((6000, 2100, "low"), (3000, 2200, "high"))
    # (epochs, peak lr): validation was still climbing after the first (0.936 -> 0.975) and the second
    # (-> 0.988); 44,537 crops of 8,100 images, ~22 and ~30 min on a quiet 2-core CPU
    scorer_mix_rounds: tuple[tuple[int, float], ...] = ((5, 2e-4), (8, 2e-4))
    scorer_batch: int = 128
    scorer_micro_batch: int = 128
    eval_images: int = 100
    # fresh seeds, never trained on nor used to choose anything (9001-9003, the earlier bundle's, chose
    # det_imgsz, score_fusion and the mixed round)
    eval_seeds: tuple[int, ...] = (9301, 9302, 9303)
    conf: float = 0.05
    iou: float = 0.3
    max_det: int = 12
    # rank by p_match * det_conf: partial boxes on big objects and background blobs have low
    # confidence; measured +0.3 to +0.8 points over the scorer alone on the fresh sets
    score_fusion: str = "product"
    fusion_weight: float = 1.0


# `--recipe quick`: the same steps with about half the training, aimed at one hour on 2 CPU cores (issue 16):
# fewer from-scratch detector epochs, one 960 px fine-tune on the larger fresh set only, three scorer rounds
RECIPES = {
    "full": DemoRecipe(),
    "quick": DemoRecipe(det_stages="512:10,640:3", det_finetunes=(("det_more_data", "960:2"),),
                        scorer_rounds=((4, 7e-4, 1500), (3, 3e-4, 1500), (2, 2e-4, 3000)), scorer_mix_rounds=()),
}


def run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def findbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "findbox.cli", *args]


def detector_runs(recipe: DemoRecipe) -> list[tuple[str, str, str]]:
    """(run folder, data folder, stages) of each detector run, in order; each starts from the last."""
    return [("det", "det_data", recipe.det_stages)] + [
        (f"det_finetune{k}", data, stages) for k, (data, stages) in enumerate(recipe.det_finetunes, start=1)]


def mix_names(recipe: DemoRecipe) -> list[str]:
    """The mixed sets' names: data in scorer_NAME/, crops in crops_NAME/."""
    return [f"mix_{noise}_{seed}" for _, seed, noise in recipe.scorer_mix]


def scorer_runs(recipe: DemoRecipe) -> list[tuple[int, float, list[str], str]]:
    """(epochs, peak lr, crop folders, batch_by) of each scorer round, in order; each starts from the last."""
    mix = [f"crops_{name}" for name in mix_names(recipe)]
    return ([(epochs, lr, [f"crops_{images}"], "crop") for epochs, lr, images in recipe.scorer_rounds]
            + [(epochs, lr, mix, "image") for epochs, lr in recipe.scorer_mix_rounds])


# what a bundle's scorer and detector depend on: a bundle can be continued only by a recipe that
# starts the same way (same data, detector runs and first scorer rounds)
DETECTOR_FIELDS = ("noise", "det_images", "det_seed", "det_model", "det_stages", "det_more", "det_finetunes",
                   "det_batch", "det_nbs")
SCORER_FIELDS = ("noise", "scorer_seed", "scorer_preset", "scorer_text_length", "scorer_batch", "scorer_micro_batch")


def continued_rounds(recipe: DemoRecipe, bundle: Path) -> tuple[int, dict]:
    """How many of the recipe's scorer rounds the bundle at `bundle` already ran, and its manifest.

    The bundle's manifest must record a recipe with the same detector and data settings, and
    scorer rounds that are a prefix of this recipe's (`scorer_runs`); else ValueError naming
    the first difference. Its detector and scorer are then exactly what this recipe's first
    steps make, so only the remaining rounds need to run.
    """
    path = bundle / "manifest.json"
    if not path.is_file():
        raise ValueError(f"continue_from: expected a demo bundle with manifest.json, got {str(bundle)!r}")
    manifest = json.loads(path.read_text())
    recorded = manifest["recipe"]
    old = DemoRecipe(**{k: _tuples(v) for k, v in recorded.items() if k in DemoRecipe.__dataclass_fields__})
    if "scorer_mix_rounds" not in recorded:  # a bundle made before mixed rounds existed ran none
        old = dataclasses.replace(old, scorer_mix_rounds=())
    for name in DETECTOR_FIELDS + SCORER_FIELDS:
        if getattr(old, name) != getattr(recipe, name):
            raise ValueError(f"continue_from: the bundle's recipe has {name} = {getattr(old, name)!r}, "
                             f"this recipe {getattr(recipe, name)!r}")
    done, wanted = scorer_runs(old), scorer_runs(recipe)
    if wanted[:len(done)] != done:
        raise ValueError(f"continue_from: the bundle's scorer rounds {done} are not the first rounds of this "
                         f"recipe's {wanted}")
    return len(done), manifest


def _tuples(value):
    """JSON lists back to the recipe's tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def training_record(work: Path, recipe: DemoRecipe) -> dict:
    """What each training run reported (its own metrics.json): stage mAPs, val accuracies, seconds."""
    detector = []
    for name, _, _ in detector_runs(recipe):
        path = work / name / "metrics.json"
        if path.is_file():
            for stage in json.loads(path.read_text()).get("stages", []):
                detector.append({"run": name} | {k: stage.get(k) for k in
                                                 ("imgsz", "epochs", "mAP50", "mAP50-95", "recall", "train_s")})
    scorer = []
    for k in range(1, len(scorer_runs(recipe)) + 1):
        path = work / f"scorer_round{k}" / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            scorer.append({"round": k, "train_crops": m.get("train_crops"), "val_accuracy": m.get("val_accuracy"),
                           "val_chance": m.get("val_chance"), "seconds": m.get("seconds")})
    seconds = sum(d["train_s"] or 0 for d in detector) + sum(s["seconds"] or 0 for s in scorer)
    return {"detector": detector, "scorer": scorer, "train_seconds": round(seconds, 1)}


def pooled_figures(runs: list[dict], seeds: tuple[int, ...]) -> dict:
    """Headline figures over several eval runs (fresh seeds), pooled by instance."""
    n = sum(m["n_instances"] for m in runs)
    covered = sum(m["diagnostics"]["detector_recall"] * m["n_instances"] for m in runs)
    # scorer accuracy is None for a run where nothing was covered: it picked nothing right
    picked = sum((m["diagnostics"]["scorer_accuracy_given_covered"] or 0.0) * m["diagnostics"]["detector_recall"]
                 * m["n_instances"] for m in runs)
    return {
        "accuracy": sum(m["n_hits"] for m in runs) / n,
        "detector_recall": covered / n,
        "scorer_accuracy_given_covered": picked / covered if covered else None,
        "n_instances": n,
        "n_images": sum(m["n_images"] for m in runs),
        "seeds": list(seeds),
        "instances_per_s": min(m["instances_per_s"] for m in runs),
        "per_seed": {str(seed): m["accuracy"] for seed, m in zip(seeds, runs)},
    }


def build(recipe: DemoRecipe, work: Path, out: Path, command: str = "make demo-models",
          continue_from: Path | None = None) -> dict:
    """Run the recipe in `work` (a step whose output is there already is skipped) and write the bundle to `out`.

    continue_from: an earlier bundle of a recipe this one extends (`continued_rounds`): its detector and
        scorer stand for this recipe's detector runs and first scorer rounds, which are not run again;
        the manifest says so and keeps the earlier build's training record.
    """
    r = recipe
    done_rounds, earlier = 0, None
    if continue_from is not None:
        done_rounds, earlier = continued_rounds(r, continue_from)  # checked before anything is written
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    started = time.time()
    if continue_from is not None:
        # copied first: `out` may be the very bundle being continued
        shutil.copyfile(continue_from / "detector.pt", work / "continued_detector.pt")
        if not (work / f"scorer_round{done_rounds}" / "config.json").exists():
            shutil.copytree(continue_from / "scorer", work / f"scorer_round{done_rounds}", dirs_exist_ok=True)

    def synth(folder: str, images: int, seed: int, noise: str = r.noise) -> Path:
        if not (work / folder / "vlm.jsonl").exists():
            run(findbox("synth", str(work / folder), "--images", str(images), "--seed", str(seed), "--noise", noise,
                        "--force"), log)
        return work / folder / "vlm.jsonl"

    # --- data -----------------------------------------------------------------------------
    if continue_from is None:
        synth("det_data", r.det_images, r.det_seed)
        synth("det_more_data", *r.det_more)
    runs_left = scorer_runs(r)[done_rounds:]
    mix_needed = bool(r.scorer_mix_rounds and runs_left)  # mixed rounds come last: any round left includes them
    # (data folder, crops folder) of every scorer data set still needed
    crop_sets = []
    for images in sorted({images for _, _, images in r.scorer_rounds[done_rounds:]}):
        synth(f"scorer_data_{images}", images, r.scorer_seed)
        crop_sets.append((f"scorer_data_{images}", f"crops_{images}"))
    if mix_needed:
        for (images, seed, noise), name in zip(r.scorer_mix, mix_names(r)):
            synth(f"scorer_{name}", images, seed, noise)
            crop_sets.append((f"scorer_{name}", f"crops_{name}"))

    # --- detector: from random weights, then fine-tunes without warmup --------------------
    detector = r.det_model if continue_from is None else str(work / "continued_detector.pt")
    for k, (name, data, stages) in enumerate(detector_runs(r) if continue_from is None else []):
        if not (work / name / "detector.pt").exists():
            run(findbox("train", "detector", "--data", str(work / data / "vlm.jsonl"), "--out", str(work / name),
                        "--model", detector, "--stages", stages, *(["--warmup-epochs", "0"] if k else []),
                        "--batch", str(r.det_batch), "--nbs", str(r.det_nbs), "--augs", "v2", "--device", "cpu",
                        "--workers", "2"), log)
        detector = str(work / name / "detector.pt")

    # --- scorer ---------------------------------------------------------------------------
    for data, crops in crop_sets:
        if not (work / crops / "manifest.jsonl").exists():
            run(findbox("crops", "--data", str(work / data / "vlm.jsonl"), "--out", str(work / crops),
                        "--val-fraction", "0.1", "--no-progress"), log)
    if not (work / "scorer" / "config.json").exists():
        if continue_from is None:
            from findbox.testing.builders import build_siglip
            from findbox.synth import COLOUR_NAMES, OBJECT_TYPES

            # the tokenizer learns its vocabulary from the first round's captions (and every colour and type)
            first = work / f"crops_{r.scorer_rounds[0][2]}" / "manifest.jsonl"
            captions = sorted({json.loads(line)["caption"] for line in open(first)})
            words = captions + list(COLOUR_NAMES) + list(OBJECT_TYPES)
            build_siglip(work / "init_scorer", words, preset=r.scorer_preset, vocab_size=512,
                         text_length=r.scorer_text_length)
        init = work / "init_scorer" if continue_from is None else work / f"scorer_round{done_rounds}"
        for k, (epochs, lr, folders, batch_by) in enumerate(runs_left, start=done_rounds + 1):
            round_out = work / f"scorer_round{k}"
            if not (round_out / "config.json").exists():
                crops = [arg for folder in folders for arg in ("--crops", str(work / folder))]
                run(findbox("train", "scorer", "--init", str(init), *crops,
                            "--out", str(round_out), "--epochs", str(epochs), "--lr", str(lr),
                            "--batch", str(r.scorer_batch), "--micro-batch", str(r.scorer_micro_batch),
                            "--batch-by", batch_by, "--augs", "v1", "--precision", "fp32", "--device", "cpu",
                            "--workers", "1"), log)
            init = round_out
        shutil.copytree(init, work / "scorer")

    # --- bundle ---------------------------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(detector, out / "detector.pt")
    if (out / "scorer").exists():
        shutil.rmtree(out / "scorer")
    shutil.copytree(work / "scorer", out / "scorer",
                    ignore=shutil.ignore_patterns("*.jsonl", "*.csv", "metrics.json", "train_config.json", "*.png",
                                                   "checkpoints"))
    detection = {"imgsz": r.det_imgsz, "conf": r.conf, "iou": r.iou, "max_det": r.max_det}

    # --- evaluation on fresh data ---------------------------------------------------------
    figures = {}
    for noise in (r.noise, "high"):
        runs = []
        for seed in r.eval_seeds:
            data = synth(f"eval_{noise}_{seed}", r.eval_images, seed, noise)
            report = work / f"report_{noise}_{seed}"
            run(findbox("eval", str(data), "--out", str(report), "--split", "all",
                        "--detector", str(out / "detector.pt"), "--scorer", str(out / "scorer"), "--no-upscaler",
                        "--device", "cpu", "--imgsz", str(r.det_imgsz), "--conf", str(r.conf), "--iou", str(r.iou),
                        "--max-det", str(r.max_det), "--score-fusion", r.score_fusion,
                        "--fusion-weight", str(r.fusion_weight), "--no-progress"), log)
            runs.append(json.loads((report / "metrics.json").read_text()))
        figures[noise] = pooled_figures(runs, r.eval_seeds)

    manifest = {
        "what": "findbox demo bundle: a single-class YOLO and a SigLIP-architecture scorer trained from random "
                "weights on findbox synth data, on the CPU",
        "command": command,
        "recipe": dataclasses.asdict(r),
        "serve": {"detection": detection, "ranking": {"score_fusion": r.score_fusion, "fusion_weight": r.fusion_weight},
                  "upscaler": None},
        "figures": figures,
        "training": training_record(work, r),
        "build_seconds": round(time.time() - started, 1),
    }
    if earlier is not None:
        # the earlier build's record stands for the steps not run again; this build's rounds follow it
        new_rounds = [s for s in manifest["training"]["scorer"] if s["round"] > done_rounds]
        manifest["training"] = {
            "detector": earlier["training"]["detector"],
            "scorer": [s for s in earlier["training"]["scorer"] if s["round"] <= done_rounds] + new_rounds,
            "train_seconds": round(earlier["training"]["train_seconds"] + sum(s["seconds"] or 0 for s in new_rounds), 1),
        }
        manifest["continued_from"] = {
            "bundle": str(continue_from), "scorer_rounds_reused": done_rounds, "command": earlier.get("command"),
            "build_seconds": earlier.get("build_seconds"), "figures": earlier.get("figures"),
        }
        manifest["build_seconds"] = round(earlier.get("build_seconds", 0) + manifest["build_seconds"], 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="src/findbox/assets/demo", help="bundle folder")
    parser.add_argument("--work", default="runs/demo", help="scratch folder (data, runs, reports)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="full",
                        help="full: the shipped bundle's recipe; quick: about half the training (default: full)")
    parser.add_argument("--continue-from", metavar="BUNDLE", default=None,
                        help="an earlier bundle whose recipe this one extends: reuse its detector and scorer rounds, "
                             "run only the rounds it lacks (default: build from nothing)")
    args = parser.parse_args(argv)
    command = "make demo-models" if args.recipe == "full" else f"python -m findbox.train.demo --recipe {args.recipe}"
    try:
        manifest = build(RECIPES[args.recipe], Path(args.work), Path(args.out), command,
                         Path(args.continue_from) if args.continue_from else None)
    except ValueError as exc:
        print(f"findbox.train.demo: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest["figures"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
