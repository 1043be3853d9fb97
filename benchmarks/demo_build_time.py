"""How long `make demo-models` takes, run by run, against the arithmetic it does (issue 27's <= 1.5 h goal).

    .venv/bin/python benchmarks/demo_build_time.py --work runs/demo

Reads a demo build's work folder (`findbox.train.demo`: `make demo-models` writes runs/demo/), from
nothing or still running, and for every step of the recipe (`DemoRecipe`) writes:
- measured: the synth sets' seconds (each set's first image to its vlm.jsonl, file times), the crop
  sets' (first crop to manifest.jsonl), each
  detector stage's train_s and per-epoch seconds, each scorer round's seconds (their metrics.json);
- projected, for the runs the folder does not hold yet: their training FLOPs at the seconds per
  FLOP the build's own finished runs of the same kind took (detector stages, scorer rounds); a
  kind with nothing finished yet takes the shipped bundle's recorded seconds for that run (made on
  a machine busy with other jobs: an upper bound, and said so in the row);
- with --earlier (an earlier record of this script), the steps this folder lacks but that record measured
  (a half of the recipe built by `python -m findbox.train.demo --part`, the other half in an earlier build),
  taken from it with that record's commit, date and work folder as their "source";
- with --bundle, the finished build's wall time and held-out accuracy beside the shipped bundle's; with --earlier,
  also the other half's, as the earlier record evaluated it ("earlier_built");
- the floor: each run's training FLOPs (3x a forward: forward and backward; counted with torch's
  FlopCounterMode on the bundle's own detector and scorer, the recipe's architecture) at the fp32
  matmul rate measured on this machine (`client_latency.json`, a quiet run), the time no fp32
  training can beat. Validation and augmentation are outside the count (the measured seconds
  include them).
Writes benchmarks/results/demo_build_time.json; docs_tables.py renders it in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_result  # noqa: E402

VAL_FRACTION_DETECTOR = 0.2  # findbox train detector's default split: the last 20% of lines validate
VAL_FRACTION_CROPS = 0.1  # the build's `findbox crops --val-fraction 0.1`


def stages_of(text: str) -> list[tuple[int, int]]:
    """"512:25,640:6" -> [(512, 25), (640, 6)]."""
    return [tuple(int(v) for v in part.split(":")) for part in text.split(",")]  # type: ignore[misc]


def first_mtime(files) -> float | None:
    """The earliest modification time of `files` (None: no files)."""
    return min((p.stat().st_mtime for p in files if p.is_file()), default=None)


def set_seconds(done: Path, outputs) -> float | None:
    """A finished set's wall seconds: its first output file's time to `done`'s, the file written last (None: not
    finished). Synth sets: images, then vlm.jsonl; crop sets: crops, then manifest.jsonl."""
    first = first_mtime(outputs)
    return done.stat().st_mtime - first if done.is_file() and first is not None else None


def counted_flops() -> dict:
    """Forward GFLOP of the bundle's detector at square training sizes, and of its scorer per crop and caption."""
    import torch
    from bench_flops import count_flops
    from ultralytics import YOLO

    from findbox.bundle import bundled_paths
    from findbox.score import load_scorer

    paths = bundled_paths()
    yolo = YOLO(str(paths["detector"])).model.float().eval()
    scorer = load_scorer(str(paths["scorer"]), "cpu")
    h, w = scorer.preprocess.size_hw
    return {"detector_gflop": {size: count_flops(yolo, torch.zeros(1, 3, size, size)) / 1e9 for size in (512, 640, 960)},
            "image_tower_gflop": count_flops(scorer.image_features, torch.zeros(1, 3, h, w)) / 1e9,
            "text_tower_gflop": count_flops(scorer.text_features, ["red, white, and blue light aircraft"]) / 1e9}


def read_record(where: str) -> dict:
    """A record from a file, or from git (REV:PATH, a record as committed) when no such file exists."""
    if Path(where).is_file():
        return json.loads(Path(where).read_text())
    if ":" not in where:
        raise SystemExit(f"--earlier: no file {where!r} (a committed record is REV:PATH)")
    shown = subprocess.run(["git", "show", where], capture_output=True, text=True)
    if shown.returncode:
        raise SystemExit(f"--earlier: git show {where}: {shown.stderr.strip()}")
    return json.loads(shown.stdout)


def source_of(record: dict) -> dict:
    """Where a step measured in an earlier record of this script was measured: that record's own source for a step
    it took from an even earlier one, else the record itself."""
    return {k: record.get(k) for k in ("commit", "clean_tree", "date", "work")}


def built_bundle(folder: Path, shipped: dict) -> dict:
    """The finished build's one invocation (wall seconds, whether it reused anything, which half it built with
    `--part` and the bundle half it reused) and its held-out accuracy per noise level beside the shipped bundle's on
    the same seeds."""
    manifest = json.loads((folder / "manifest.json").read_text())
    if len(manifest["steps"]) != 1 or manifest["steps"][0].get("continued_from"):
        raise SystemExit(f"{folder}: not one from-nothing invocation (steps: {len(manifest['steps'])})")
    step = manifest["steps"][0]
    figures = {}
    for noise, mine in manifest["figures"].items():
        theirs = shipped["figures"][noise]
        if mine["seeds"] != theirs["seeds"]:
            raise SystemExit(f"{folder}: evaluated on seeds {mine['seeds']}, the shipped bundle on {theirs['seeds']}")
        p, n = theirs["accuracy"], mine["n_instances"]
        figures[noise] = {"built": mine["accuracy"], "shipped": theirs["accuracy"], "n_instances": n,
                          "standard_error": (p * (1 - p) / n) ** 0.5, "seeds": mine["seeds"],
                          "built_per_seed": mine["per_seed"], "shipped_per_seed": theirs["per_seed"],
                          "built_detector_recall": mine["detector_recall"],
                          "shipped_detector_recall": theirs["detector_recall"]}
    return {"command": step["command"], "commit": step["commit"], "clean_tree": step["clean_tree"],
            "date": step["date"], "wall_s": step["build_seconds"], "found_in_work": step["found_in_work"],
            "part": step.get("part", "all"), "reused": step.get("reused"),
            "train_s": manifest["training"]["train_seconds"], "figures": figures}


def main() -> int:
    import torch
    from bench_flops import matmul_peak

    from findbox.bundle import bundle_manifest
    from findbox.train.demo import DemoRecipe, detector_data, detector_runs, scorer_data, scorer_runs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/demo"), help="the build's work folder")
    parser.add_argument("--bundle", type=Path, help="the build's --out folder: its manifest's wall time and figures")
    parser.add_argument("--earlier", metavar="FILE|REV:PATH",
                        help="an earlier record of this script, as a file or as a committed one (git's REV:PATH): the "
                             "steps --work lacks but it measured are taken from it, with its commit and date (the "
                             "other half of a `--part` build)")
    parser.add_argument("--out", default=str(RESULTS / "demo_build_time.json"))
    args = parser.parse_args()
    earlier = read_record(args.earlier) if args.earlier else None

    def from_earlier(section: str, match: dict, field: str) -> tuple[dict, dict | None]:
        """(row, source) of the earlier record's row of `section` that matches `match` on the keys given and has
        `field` measured; else ({}, None)."""
        for row in (earlier or {}).get(section, []):
            if all(row.get(k) == v for k, v in match.items()) and row.get(field) is not None:
                return row, row.get("source") or source_of(earlier)
        return {}, None

    recipe, shipped = DemoRecipe(), bundle_manifest()
    shipped_det = {(d["run"], d["imgsz"]): d["train_s"] for d in shipped["training"]["detector"]}
    shipped_scorer = {s["round"]: s for s in shipped["training"]["scorer"]}
    flops = counted_flops()
    peak = matmul_peak(torch.float32)  # GFLOP/s with torch's threads, as the build trained

    data_rows = []
    for folder, images, seed, noise in detector_data(recipe) + [(d, n, s, z) for d, _, n, s, z in scorer_data(recipe)]:
        done = set_seconds(args.work / folder / "vlm.jsonl", (args.work / folder / "images").glob("*.jpg"))
        source = None
        if done is None:
            row, source = from_earlier("data", {"set": folder, "images": images}, "seconds")
            done = row.get("seconds")
        data_rows.append({"set": folder, "images": images, "seconds": done, "source": source})
    crop_rows = []
    for _, crops, images, _, _ in scorer_data(recipe):
        done = set_seconds(args.work / crops / "manifest.jsonl", (args.work / crops / "crops").rglob("*"))
        source = None
        if done is None:
            row, source = from_earlier("crops", {"set": crops, "images": images}, "seconds")
            done = row.get("seconds")
        crop_rows.append({"set": crops, "images": images, "seconds": done, "source": source})

    det_images = {folder: images for folder, images, _, _ in detector_data(recipe)}
    rows = []
    for name, data, stages in detector_runs(recipe):
        metrics = args.work / name / "metrics.json"
        done = {s["imgsz"]: s for s in json.loads(metrics.read_text())["stages"]} if metrics.is_file() else {}
        train = round(det_images[data] * (1 - VAL_FRACTION_DETECTOR))
        val = det_images[data] - train
        for imgsz, epochs in stages_of(stages):
            forward = flops["detector_gflop"][imgsz]
            stage = done.get(imgsz)
            measured, epoch_s, source = (stage["train_s"], stage.get("epoch_s"), None) if stage else (None, None, None)
            if stage is None:
                row, source = from_earlier("runs", {"run": name, "imgsz": imgsz, "epochs": epochs, "samples": train},
                                           "measured_s")
                measured, epoch_s = row.get("measured_s"), row.get("epoch_s")
            rows.append({"kind": "detector", "run": name, "imgsz": imgsz, "epochs": epochs, "samples": train,
                         "train_gflop": epochs * (3 * train + val) * forward, "measured_s": measured,
                         "epoch_s": epoch_s, "source": source, "shipped_s": shipped_det.get((name, imgsz))})
    sample_gflop = flops["image_tower_gflop"] + flops["text_tower_gflop"]
    for k, (epochs, _, folders, batch_by) in enumerate(scorer_runs(recipe), start=1):
        metrics = args.work / f"scorer_round{k}" / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.is_file() else None
        row, source = ({}, None) if m else from_earlier("runs", {"run": f"scorer_round{k}"}, "measured_s")
        measured = m["seconds"] if m else row.get("measured_s")
        crops = m["train_crops"] if m else row.get("samples", shipped_scorer[k]["train_crops"])
        rows.append({"kind": "scorer", "run": f"scorer_round{k}", "imgsz": None, "epochs": epochs, "samples": crops,
                     "batch_by": batch_by, "train_gflop": epochs * 3 * crops * sample_gflop,
                     "measured_s": measured, "epoch_s": None, "source": source,
                     "shipped_s": shipped_scorer[k]["seconds"]})

    for row in rows:
        row["floor_s"] = row["train_gflop"] / peak
        finished = [r for r in rows if r["kind"] == row["kind"] and r["measured_s"]]
        if row["measured_s"] is not None:
            row["projected_s"], row["projected_from"] = row["measured_s"], "measured"
        elif finished:
            rate = sum(r["measured_s"] for r in finished) / sum(r["train_gflop"] for r in finished)
            row["projected_s"] = rate * row["train_gflop"]
            row["projected_from"] = f"this build's finished {row['kind']} runs' seconds per FLOP"
        else:
            row["projected_s"], row["projected_from"] = row["shipped_s"], "the shipped build's record (busy machine)"
    outputs = [*args.work.glob("*/metrics.json"), *args.work.glob("*/vlm.jsonl"),
               *args.work.glob("crops_*/manifest.jsonl")]
    first = first_mtime(args.work.glob("*/images/*.jpg"))
    totals = {"elapsed_s": max(p.stat().st_mtime for p in outputs) - first if first is not None else None,
              "train_measured_s": sum(r["measured_s"] or 0 for r in rows),
              "train_projected_s": sum(r["projected_s"] or 0 for r in rows),
              "train_floor_s": sum(r["floor_s"] for r in rows),
              "shipped_train_s": shipped["training"]["train_seconds"],
              "data_measured_s": sum(r["seconds"] or 0 for r in data_rows),
              "crops_measured_s": sum(r["seconds"] or 0 for r in crop_rows),
              "runs_measured": sum(r["measured_s"] is not None for r in rows), "runs": len(rows),
              "runs_measured_earlier": sum(r["source"] is not None for r in rows)}
    built = built_bundle(args.bundle, shipped) if args.bundle else None
    # the other half's evaluation, as the earlier record holds it: a half built from nothing says little alone
    earlier_built = []
    for other in [*(earlier or {}).get("earlier_built", []), (earlier or {}).get("built")]:
        parts = {b["part"] for b in [built, *earlier_built] if b}
        if other and other["part"] != "all" and other["part"] not in parts:
            earlier_built.append({**other, "source": other.get("source") or source_of(earlier)})
    if built and totals["runs_measured"] == totals["runs"]:
        # the whole recipe, measured in two halves: this invocation's wall time (its synth sets, crops, runs,
        # calibration and evaluation) plus the seconds of the steps the earlier build measured
        totals["full_build_s"] = built["wall_s"] + sum(
            r.get("seconds") or r.get("measured_s") or 0 for r in data_rows + crop_rows + rows if r["source"])
    write_result(args.out, {"work": str(args.work), "fp32_matmul_gflops": peak, "flops": flops, "data": data_rows,
                            "crops": crop_rows, "runs": rows, "totals": totals, "built": built,
                            "earlier_built": earlier_built})
    for r in rows:
        print(f"{r['run']:15s} {r['imgsz'] or '':>5} x{r['epochs']:<3} measured {r['measured_s']}  projected "
              f"{r['projected_s']:.0f} s  floor {r['floor_s']:.0f} s")
    print({k: round(v, 1) if isinstance(v, float) else v for k, v in totals.items()})
    if built:
        print(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
