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
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from findbox.bundle import BUNDLE_DIR
from findbox.calibration import CALIBRATION_FILE, file_sha256
from findbox.provenance import provenance


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
    # `findbox calibrate` on a fresh set of its own (never trained on, not an eval seed): the record beside
    # the scorer that lets --precision auto pick a faster precision where it keeps fp32's answers
    calibration_images: int = 100
    calibration_seed: int = 9501
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


# what a build makes: both halves (`make demo-models`), or one half from nothing beside the other half taken from
# an existing bundle. The halves train independently (the scorer on ground-truth crops, never on detections), so
# each half of the full recipe fits where the whole does not (a 3 h session on 2 cores: benchmarks/demo_build_time.py)
# and its held-out figures, beside the same other half, are compared with the bundle's on the same seeds.
PARTS = ("all", "detector", "scorer")


def reused_weights(bundle: Path, half: str) -> Path:
    """The file whose SHA-256 names a bundle's `half` ("detector" or "scorer") when a `--part` build reuses it."""
    return bundle / "detector.pt" if half == "detector" else bundle / "scorer" / "model.safetensors"


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


def detector_data(recipe: DemoRecipe) -> list[tuple[str, int, int, str]]:
    """(data folder, images, seed, noise) of the detector's synth sets."""
    return [("det_data", recipe.det_images, recipe.det_seed, recipe.noise),
            ("det_more_data", *recipe.det_more, recipe.noise)]


def scorer_data(recipe: DemoRecipe, first_round: int = 0, end_round: int | None = None
                ) -> list[tuple[str, str, int, int, str]]:
    """(data folder, crops folder, images, seed, noise) of the synth sets that scorer rounds first_round+1 to
    end_round (default: the last) train on: the plain rounds' sets by size, then the mixed sets if a mixed
    round is among them."""
    end = len(scorer_runs(recipe)) if end_round is None else end_round
    plain = sorted({images for _, _, images in recipe.scorer_rounds[first_round:end]})
    sets = [(f"scorer_data_{n}", f"crops_{n}", n, recipe.scorer_seed, recipe.noise) for n in plain]
    if end > max(first_round, len(recipe.scorer_rounds)):  # mixed rounds come after the plain ones
        sets += [(f"scorer_{name}", f"crops_{name}", images, seed, noise)
                 for (images, seed, noise), name in zip(recipe.scorer_mix, mix_names(recipe))]
    return sets


def eval_data(recipe: DemoRecipe, seeds: tuple[int, ...] | list[int]) -> list[tuple[str, int, int, str]]:
    """(data folder, images, seed, noise) of the fresh evaluation sets: both noise levels, each seed."""
    return [(f"eval_{noise}_{seed}", recipe.eval_images, seed, noise) for noise in (recipe.noise, "high")
            for seed in seeds]


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
    old = recipe_of(manifest)
    for name in DETECTOR_FIELDS + SCORER_FIELDS:
        if getattr(old, name) != getattr(recipe, name):
            raise ValueError(f"continue_from: the bundle's recipe has {name} = {getattr(old, name)!r}, "
                             f"this recipe {getattr(recipe, name)!r}")
    done, wanted = scorer_runs(old), scorer_runs(recipe)
    if wanted[:len(done)] != done:
        raise ValueError(f"continue_from: the bundle's scorer rounds {done} are not the first rounds of this "
                         f"recipe's {wanted}")
    return len(done), manifest


def recipe_of(manifest: dict) -> DemoRecipe:
    """The recipe a manifest records (a field it lacks is the default, but a bundle made before mixed rounds
    existed ran none)."""
    recorded = manifest["recipe"]
    recipe = DemoRecipe(**{k: _tuples(v) for k, v in recorded.items() if k in DemoRecipe.__dataclass_fields__})
    return recipe if "scorer_mix_rounds" in recorded else dataclasses.replace(recipe, scorer_mix_rounds=())


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


def new_step(command: str, continue_from: Path | None) -> dict:
    """The record of one build as it runs: its command line, commit, clean-tree flag and start date
    (findbox.provenance), what it continued, and (filled in by `build`) the synth sets, detector runs and
    scorer rounds it is responsible for, with those whose output it found in the work folder (made by an
    earlier invocation there, not by this one) under found_in_work."""
    return {"command": command, **provenance(), "continued_from": str(continue_from) if continue_from else None,
            "data": [], "detector_runs": [], "scorer_rounds": [], "eval_seeds": [], "found_in_work": [],
            "build_seconds": None}


def recorded_steps(manifest: dict) -> list[dict]:
    """The build steps of a manifest written before builds recorded them (no "steps"), derived from what
    those builds did record: the recipe, `continued_from` (the earlier build's command, build seconds,
    figures and the scorer rounds reused) and each build's figures (their eval seeds).

    The earlier build made the detector runs and the first scorer_rounds_reused rounds; a continuation
    made the rest. What those builds did not record stays None: commit, clean tree, date, and
    found_in_work. A continuation's command is the one `--continue-from BUNDLE` takes; the build of the
    time wrote no command line of its own (the "make demo-models (continuing ...)" it wrote was later
    edited by hand, so it is not read).
    """
    if "steps" in manifest:
        return manifest["steps"]
    recipe = recipe_of(manifest)
    earlier = manifest.get("continued_from")
    done = earlier["scorer_rounds_reused"] if earlier else len(scorer_runs(recipe))

    def step(command, continued, detector, rounds: range, first_round, figures, seconds):
        seeds = figures[recipe.noise]["seeds"]
        data = (detector_data(recipe) if detector else []) + [
            (data, images, seed, noise) for data, _, images, seed, noise in scorer_data(recipe, first_round, rounds[-1])
        ] + eval_data(recipe, seeds)
        return {"command": command, "commit": None, "clean_tree": None, "date": None, "continued_from": continued,
                "data": [list(d) for d in data],
                "detector_runs": [name for name, _, _ in detector_runs(recipe)] if detector else [],
                "scorer_rounds": list(rounds), "eval_seeds": list(seeds), "found_in_work": None,
                "build_seconds": seconds}

    if earlier is None:
        return [step(manifest["command"], None, True, range(1, done + 1), 0, manifest["figures"],
                     manifest.get("build_seconds"))]
    total = len(scorer_runs(recipe))
    return [step(earlier["command"], None, True, range(1, done + 1), 0, earlier["figures"], earlier["build_seconds"]),
            step(f"python -m findbox.train.demo --continue-from {earlier['bundle']}", earlier["bundle"], False,
                 range(done + 1, total + 1), done, manifest["figures"],
                 round(manifest["build_seconds"] - earlier["build_seconds"], 1))]


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


def build(recipe: DemoRecipe, work: Path, out: Path, command: str = "python -m findbox.train.demo",
          continue_from: Path | None = None, part: str = "all", reuse_from: Path = BUNDLE_DIR) -> dict:
    """Run the recipe in `work` (a step whose output is there already is skipped) and write the bundle to `out`.

    command: the command line that runs this build, recorded in the manifest's steps.
    continue_from: an earlier bundle of a recipe this one extends (`continued_rounds`): its detector and
        scorer stand for this recipe's detector runs and first scorer rounds, which are not run again;
        the manifest says so and keeps the earlier build's training record and steps.
    The manifest's "steps" are the earlier bundle's (`recorded_steps`) and this build's (`new_step`):
    a bundle built from nothing has one step, with no continued_from and nothing found_in_work.
    part: "all" (both halves), or "detector" / "scorer": only that half's data and runs, from nothing; the other
        half is copied from the bundle at `reuse_from` (the installed demo bundle by default), named with its
        SHA-256 in the step's "reused", then calibrated and evaluated with the new half as a whole bundle would
        be. Such a bundle is a measurement of one half, written to a folder of its own (never `reuse_from`).
    """
    r = recipe
    if part not in PARTS:
        raise ValueError(f"part: expected one of {', '.join(PARTS)}, got {part!r}")
    if part != "all":
        if continue_from is not None:
            raise ValueError("part: a build of one half starts from nothing; it cannot also continue_from a bundle")
        if not (reuse_from / "detector.pt").is_file() or not (reuse_from / "scorer" / "config.json").is_file():
            raise ValueError(f"reuse_from: expected a bundle with detector.pt and scorer/, got {str(reuse_from)!r}")
        if out.resolve() == reuse_from.resolve():
            raise ValueError(f"out: a build of one half writes a bundle of its own, not into reuse_from "
                             f"{str(reuse_from)!r}")
    done_rounds, earlier = 0, None
    if continue_from is not None:
        done_rounds, earlier = continued_rounds(r, continue_from)  # checked before anything is written
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    started = time.time()
    step = new_step(command, continue_from)
    step["part"] = part
    if part != "all":  # the other half is the reused bundle's (its scorer is copied in the scorer step below)
        half = "detector" if part == "scorer" else "scorer"
        weights = reused_weights(reuse_from, half)
        step["reused"] = {half: str(reuse_from / ("detector.pt" if half == "detector" else "scorer")),
                          "sha256": file_sha256(weights) if weights.is_file() else None}
    if part == "scorer":
        shutil.copyfile(reuse_from / "detector.pt", work / "reused_detector.pt")
    if continue_from is not None:
        # copied first: `out` may be the very bundle being continued
        shutil.copyfile(continue_from / "detector.pt", work / "continued_detector.pt")
        if not (work / f"scorer_round{done_rounds}" / "config.json").exists():
            shutil.copytree(continue_from / "scorer", work / f"scorer_round{done_rounds}", dirs_exist_ok=True)

    def synth(folder: str, images: int, seed: int, noise: str = r.noise) -> Path:
        if (work / folder / "vlm.jsonl").exists():
            step["found_in_work"].append(folder)
        else:
            run(findbox("synth", str(work / folder), "--images", str(images), "--seed", str(seed), "--noise", noise,
                        "--force"), log)
        step["data"].append([folder, images, seed, noise])
        return work / folder / "vlm.jsonl"

    # --- data -----------------------------------------------------------------------------
    train_detector = continue_from is None and part != "scorer"
    if train_detector:
        for folder, images, seed, noise in detector_data(r):
            synth(folder, images, seed, noise)
    runs_left = scorer_runs(r)[done_rounds:] if part != "detector" else []
    # (data folder, crops folder) of every scorer data set still needed
    crop_sets = []
    for data, crops, images, seed, noise in scorer_data(r, done_rounds) if runs_left else []:
        synth(data, images, seed, noise)
        crop_sets.append((data, crops))

    # --- detector: from random weights, then fine-tunes without warmup --------------------
    detector = (r.det_model if train_detector else
                str(work / ("reused_detector.pt" if part == "scorer" else "continued_detector.pt")))
    for k, (name, data, stages) in enumerate(detector_runs(r) if train_detector else []):
        step["detector_runs"].append(name)
        if (work / name / "detector.pt").exists():
            step["found_in_work"].append(name)
        else:
            run(findbox("train", "detector", "--data", str(work / data / "vlm.jsonl"), "--out", str(work / name),
                        "--model", detector, "--stages", stages, *(["--warmup-epochs", "0"] if k else []),
                        "--batch", str(r.det_batch), "--nbs", str(r.det_nbs), "--augs", "v2", "--device", "cpu",
                        # the path the bundle was built on: ultralytics ran no loader process on the CPU and
                        # cached nothing; `--cache auto` and CPU workers change the mosaic draws, so they wait for
                        # a rebuild that measures them (benchmarks/train_speed.py measured a 2-epoch fine-tune)
                        "--workers", "0", "--cache", "off"), log)
        detector = str(work / name / "detector.pt")

    # --- scorer ---------------------------------------------------------------------------
    for data, crops in crop_sets:
        if (work / crops / "manifest.jsonl").exists():
            step["found_in_work"].append(crops)
        else:
            run(findbox("crops", "--data", str(work / data / "vlm.jsonl"), "--out", str(work / crops),
                        "--val-fraction", "0.1", "--no-progress"), log)
    step["scorer_rounds"] = list(range(done_rounds + 1, done_rounds + len(runs_left) + 1))
    if part == "detector":  # the reused scorer; this build calibrates it with its new detector
        if not (work / "scorer" / "config.json").exists():
            shutil.copytree(reuse_from / "scorer", work / "scorer", ignore=shutil.ignore_patterns(CALIBRATION_FILE))
    elif (work / "scorer" / "config.json").exists():
        step["found_in_work"].append("scorer")  # every round's result, from an earlier invocation here
    else:
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
            if (round_out / "config.json").exists():
                step["found_in_work"].append(round_out.name)
            else:
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
                                                   "checkpoints", CALIBRATION_FILE))
    detection = {"imgsz": r.det_imgsz, "conf": r.conf, "iou": r.iou, "max_det": r.max_det}

    # --- calibration: which faster precisions keep the scorer's answers (read by --precision auto):
    # first, so that the evaluation measures what `findbox serve` then serves ---
    data = synth(f"calib_{r.noise}_{r.calibration_seed}", r.calibration_images, r.calibration_seed)
    run(findbox("calibrate", "--data", str(data), "--detector", str(out / "detector.pt"), "--scorer", str(out / "scorer"),
                "--no-upscaler", "--device", "cpu", "--imgsz", str(r.det_imgsz), "--conf", str(r.conf), "--iou",
                str(r.iou), "--max-det", str(r.max_det), "--score-fusion", r.score_fusion, "--fusion-weight",
                str(r.fusion_weight), "--no-progress"), log)
    step["calibration"] = json.loads((out / "scorer" / CALIBRATION_FILE).read_text())["results"]
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
    step["eval_seeds"] = list(r.eval_seeds)

    step["build_seconds"] = round(time.time() - started, 1)

    manifest = {
        "what": "findbox demo bundle: a single-class YOLO and a SigLIP-architecture scorer trained from random "
                "weights on findbox synth data, on the CPU",
        "recipe": dataclasses.asdict(r),
        "serve": {"detection": detection, "ranking": {"score_fusion": r.score_fusion, "fusion_weight": r.fusion_weight},
                  "upscaler": None},
        "figures": figures,
        "training": training_record(work, r),
        "build_seconds": step["build_seconds"],
    }
    earlier_steps = recorded_steps(earlier) if earlier is not None else []
    if earlier is not None:
        # the earlier build's record stands for the steps not run again; this build's rounds follow it
        new_rounds = [s for s in manifest["training"]["scorer"] if s["round"] > done_rounds]
        manifest["training"] = {
            "detector": earlier["training"]["detector"],
            "scorer": [s for s in earlier["training"]["scorer"] if s["round"] <= done_rounds] + new_rounds,
            "train_seconds": round(earlier["training"]["train_seconds"] + sum(s["seconds"] or 0 for s in new_rounds), 1),
        }
        manifest["continued_from"] = {
            "bundle": str(continue_from), "scorer_rounds_reused": done_rounds,
            "command": earlier_steps[-1]["command"],
            "build_seconds": earlier.get("build_seconds"), "figures": earlier.get("figures"),
            # what that bundle itself continued, so every earlier build's figures stay in the record
            "continued_from": earlier.get("continued_from"),
        }
        manifest["build_seconds"] = round(earlier.get("build_seconds", 0) + manifest["build_seconds"], 1)
    manifest["steps"] = earlier_steps + [step]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore_steps(bundle: Path) -> dict:
    """Give a manifest written before builds recorded their steps the steps its builds did record
    (`recorded_steps`), in place of its "command" (which the build records per step now); nothing
    else in it changes. A manifest with steps is left as it is."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    if "steps" not in manifest:
        steps = recorded_steps(manifest)
        manifest.pop("command", None)
        manifest["steps"] = steps
        path.write_text(json.dumps(manifest, indent=2) + "\n")
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
    parser.add_argument("--part", choices=PARTS, default="all",
                        help="all: both halves (default); detector or scorer: only that half, from nothing, beside the "
                             "other half of the bundle at --reuse-from, into a bundle of its own at --out")
    parser.add_argument("--reuse-from", metavar="BUNDLE", default=str(BUNDLE_DIR),
                        help="with --part detector|scorer: the bundle whose other half is used (default: the installed "
                             "demo bundle)")
    parser.add_argument("--restore-steps", action="store_true",
                        help="only give the bundle at --out the build steps its manifest's records imply, if it has none "
                             "(a manifest written before builds recorded them); trains nothing")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.restore_steps:
        print(json.dumps(restore_steps(Path(args.out))["steps"], indent=2))
        return 0
    command = shlex.join(["python", "-m", "findbox.train.demo", *argv])  # `make demo-models` runs this
    try:
        manifest = build(RECIPES[args.recipe], Path(args.work), Path(args.out), command,
                         Path(args.continue_from) if args.continue_from else None, args.part, Path(args.reuse_from))
    except ValueError as exc:
        print(f"findbox.train.demo: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest["figures"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
