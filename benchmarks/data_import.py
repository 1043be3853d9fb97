"""`findbox data import refcoco` on a synthetic RefCOCO-sized set: its time and peak memory.

    .venv/bin/python benchmarks/data_import.py   # -> benchmarks/results/data_import.json

The set has RefCOCO's (unc) scale: 20,000 images, 50,000 refs with 140,000 sentences (40,000 refs of
3 sentences, 10,000 of 2), and an instances.json of 196,000 annotations (the referred ones and the
other objects of those images, each with a 16-number polygon, as COCO's have). 50 refs have a box
past their image's edge, so the skip path runs too. The importer never opens an image: sizes come
from instances.json (as RefCOCO's toolkit and mmdetection take them), and it only checks that each
file exists before linking it, so the 20,000 image files here are empty placeholders.

The import runs as the command a user types, in its own process: wall seconds from start to exit
(Python start-up and imports included) and that process's peak RSS (getrusage of the waited child).
Goal: under a minute and under 1 GB.
"""

from __future__ import annotations

import json
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, write_result

N_IMAGES = 20_000
N_REFS = 50_000
SENTENCES = [3] * 40_000 + [2] * 10_000  # 140,000 sentences
N_ANNOTATIONS = 196_000
N_OUT_OF_BOUNDS = 50
GOAL_SECONDS = 60.0
GOAL_RSS_MB = 1024.0
WORDS = "man woman left right red blue shirt small big dog cat car near far white black the in on with".split()


def write_set(root: Path, seed: int = 0) -> dict[str, Path]:
    """refs(unc).p, instances.json and the image folder of the synthetic set, under `root`."""
    rng = random.Random(seed)
    images_dir = root / "train2014"
    images_dir.mkdir(parents=True)
    images = []
    for i in range(N_IMAGES):
        name = f"COCO_train2014_{i:012d}.jpg"
        (images_dir / name).touch()
        images.append({"id": i, "file_name": name, "width": rng.choice([640, 500, 480]),
                       "height": rng.choice([480, 427, 375]), "license": 1, "coco_url": "", "date_captured": ""})
    annotations = []
    for a in range(N_ANNOTATIONS):
        im = images[a % N_IMAGES]
        w, h = rng.uniform(5, im["width"] / 2), rng.uniform(5, im["height"] / 2)
        x, y = rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h)
        polygon = [round(v, 2) for v in (x, y, x + w, y, x + w, y + h, x, y + h, x, y + h / 2, x + w / 2, y,
                                         x + w, y + h / 2, x + w / 2, y + h)]
        annotations.append({"id": a, "image_id": im["id"], "category_id": 1 + a % 80, "iscrowd": 0,
                            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2),
                            "segmentation": [polygon]})
    for a in range(N_OUT_OF_BOUNDS):  # boxes past the right edge: named, skipped and counted
        ann, im = annotations[a], images[a % N_IMAGES]
        ann["bbox"][0] = im["width"] - ann["bbox"][2] / 2
    splits = ["train"] * 85 + ["val"] * 7 + ["testA"] * 4 + ["testB"] * 4  # RefCOCO's proportions, by image
    refs, sent_id = [], 0
    for r, n_sent in enumerate(SENTENCES):
        ann = annotations[r]  # ann r belongs to image r % N_IMAGES: 2-3 refs an image
        sentences = []
        for _ in range(n_sent):
            text = " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
            sentences.append({"tokens": text.split(), "raw": text.capitalize(), "sent_id": sent_id, "sent": text})
            sent_id += 1
        refs.append({"sent_ids": [s["sent_id"] for s in sentences], "file_name": f"x_{ann['id']}.jpg",
                     "ann_id": ann["id"], "ref_id": r, "image_id": ann["image_id"],
                     "split": splits[ann["image_id"] % len(splits)], "sentences": sentences,
                     "category_id": ann["category_id"]})
    coco = {"info": {}, "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in range(1, 81)]}
    (root / "refcoco").mkdir()
    (root / "refcoco" / "instances.json").write_text(json.dumps(coco))
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return {"refs": root / "refcoco" / "refs(unc).p", "instances": root / "refcoco" / "instances.json",
            "images": images_dir}


def main() -> int:
    findbox = Path(sys.executable).parent / "findbox"
    with tempfile.TemporaryDirectory(prefix="findbox-data-import-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        paths = write_set(root)
        print(f"wrote the set in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        out = root / "out"
        command = [str(findbox), "data", "import", "refcoco", "--refs", str(paths["refs"]), "--instances",
                   str(paths["instances"]), "--images", str(paths["images"]), "--out", str(out), "--quiet"]
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        lines = (out / "vlm.jsonl").read_text(encoding="utf-8").splitlines()
        record = json.loads((out / "import.json").read_text())
        sizes = {"refs_p_mb": paths["refs"].stat().st_size / 2**20,
                 "instances_json_mb": paths["instances"].stat().st_size / 2**20}
    result = {
        "set": {"images": N_IMAGES, "refs": N_REFS, "sentences": sum(SENTENCES), "instances_annotations": N_ANNOTATIONS,
                "boxes_out_of_bounds": N_OUT_OF_BOUNDS, **{k: round(v, 1) for k, v in sizes.items()},
                "image_files": "empty placeholders: the importer reads sizes from instances.json and never opens one"},
        "import_command": "findbox data import refcoco --refs REFS --instances INSTANCES --images DIR --out OUT --quiet",
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "goal": {"seconds": GOAL_SECONDS, "peak_rss_mb": GOAL_RSS_MB},
        "met": seconds < GOAL_SECONDS and peak_rss_mb < GOAL_RSS_MB,
        "output": {"vlm_jsonl_lines": len(lines), "annotations": record["annotations"],
                   "skipped_counts": record["skipped_counts"], "summary": run.stdout.strip()},
    }
    write_result(RESULTS / "data_import.json", result)
    print(json.dumps({k: result[k] for k in ("seconds", "peak_rss_mb", "met")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
