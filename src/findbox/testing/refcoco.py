"""Small data sets in RefCOCO's own file layout, for tests and the worked example of docs/DATA.md.

Real RefCOCO is downloaded by its user (refs + instances.json from the refer toolkit's release,
the images from COCO train2014); nothing here downloads. This writes the same layout:

    ROOT/refcoco/refs(unc).p       a list of refs, pickled at protocol 2 as the Python 2 originals
    ROOT/refcoco/instances.json    COCO: images, annotations (bbox [x, y, w, h]), categories
    ROOT/train2014/NAME            the images

    python -m findbox.testing.refcoco synth/vlm.jsonl --out refcoco_demo   # a findbox synth set in that layout
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Ref:
    """One referred object: its box [x, y, w, h], its sentences and its split."""

    bbox: tuple[float, float, float, float]
    sentences: tuple[str, ...]
    split: str = "train"
    category: str = "object"


@dataclass
class Scene:
    """One image: its file name, its size (W, H) and its refs. `source`: a file to copy instead of a blank image."""

    file_name: str
    image_wh: tuple[int, int]
    refs: list[Ref] = field(default_factory=list)
    source: Path | None = None


def write_refcoco(root: str | Path, scenes: list[Scene], refs_name: str = "refs(unc).p") -> dict[str, Path]:
    """Write `scenes` in RefCOCO's layout under `root`; returns {"refs", "instances", "images"}.
    Images without a `source` are grey PNG/JPEG files of exactly their image_wh."""
    from PIL import Image

    root = Path(root)
    ann_dir, image_dir = root / "refcoco", root / "train2014"
    ann_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    categories: dict[str, int] = {}
    images, annotations, refs = [], [], []
    sent_id = 0
    for image_id, scene in enumerate(scenes, start=1):
        target = image_dir / scene.file_name
        if scene.source is not None:
            shutil.copy2(scene.source, target)
        else:
            w, h = scene.image_wh
            Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(target)
        images.append({"id": image_id, "file_name": scene.file_name, "width": scene.image_wh[0],
                       "height": scene.image_wh[1]})
        for ref in scene.refs:
            category_id = categories.setdefault(ref.category, len(categories) + 1)
            ann_id = len(annotations) + 1
            x, y, w, h = ref.bbox
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(ref.bbox),
                                "area": w * h, "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            sentences = []
            for text in ref.sentences:
                sentences.append({"tokens": text.split(), "raw": text, "sent_id": sent_id, "sent": text})
                sent_id += 1
            stem = scene.file_name.rsplit(".", 1)[0]
            refs.append({"sent_ids": [s["sent_id"] for s in sentences], "file_name": f"{stem}_{ann_id}.jpg",
                         "ann_id": ann_id, "ref_id": len(refs), "image_id": image_id, "split": ref.split,
                         "sentences": sentences, "category_id": category_id})
    instances = {"info": {}, "licenses": [], "images": images, "annotations": annotations,
                 "categories": [{"id": i, "name": n, "supercategory": "object"} for n, i in categories.items()]}
    (ann_dir / "instances.json").write_text(json.dumps(instances))
    with open(ann_dir / refs_name, "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return {"refs": ann_dir / refs_name, "instances": ann_dir / "instances.json", "images": image_dir}


def scenes_from_vlm(jsonl: str | Path, val_fraction: float = 0.2) -> list[Scene]:
    """A findbox vlm.jsonl (e.g. `findbox synth`'s) as RefCOCO scenes: one ref a box, its caption the
    sentence; the last val_fraction of the images are the val split (findbox's own split rule)."""
    from findbox.data.vlm import read_vlm_jsonl, split_index
    from findbox.data.importing import image_wh_upright

    jsonl = Path(jsonl)
    records = read_vlm_jsonl(jsonl, captions_required=True)
    n_train = split_index(len(records), val_fraction)
    scenes = []
    for i, rec in enumerate(records):
        path = jsonl.parent / "images" / rec.image
        split = "train" if i < n_train else "val"
        scenes.append(Scene(rec.image.replace("/", "_"), image_wh_upright(path),
                            [Ref(a.bbox_ltwh, (a.caption,), split) for a in rec.annotations], source=path))
    return scenes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write a vlm.jsonl data set in RefCOCO's file layout")
    parser.add_argument("data", metavar="VLM_JSONL")
    parser.add_argument("--out", required=True, metavar="DIR")
    args = parser.parse_args(argv)
    paths = write_refcoco(args.out, scenes_from_vlm(args.data))
    print(" ".join(f"{k}={v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
