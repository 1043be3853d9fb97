"""COCO detection files in and out.

In: an instances JSON (images {id, file_name, width, height}, annotations {image_id, category_id,
bbox [x, y, w, h], iscrowd}, categories {id, name}) -> an ImportSet, the caption of a box being its
category's name. Crowd annotations (iscrowd 1: one box around a group) are skipped and counted; an
image without annotations is a background line.

Out: a vlm.jsonl -> an instances JSON (one category per distinct caption, so importing it again
gives the same records), and `findbox predict`'s JSON lines -> a COCO results list
[{image_id, category_id, bbox, score}] that pycocotools' `loadRes` reads against those instances.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from findbox.data.importing import ImportSet, image_name, number_list, split_name
from findbox.data.vlm import VlmRecord

CROWD = "crowd box (iscrowd 1)"


def _load_json(path: Path, what: str):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: expected {what}, got invalid JSON ({exc.msg} at line {exc.lineno})") from None


def read_coco(instances_path: str | Path, images_dir: str | Path, only: set[str] | None = None) -> ImportSet:
    """The instances file as an ImportSet; ValueError naming the file and the entry for a malformed one.

    only: image names (as under DIR/images/) to keep, e.g. those of another import; the rest are
    left out before anything is checked. None keeps every image.
    """
    path, images_dir = Path(instances_path), Path(images_dir)
    coco = _load_json(path, "COCO instances JSON")
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")):
        raise ValueError(f"{path}: expected a COCO instances object with 'images', 'annotations' and 'categories' lists")
    names = {}
    for i, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise ValueError(f"{path}: categories[{i}]: expected {{id, name}}, got {cat!r}"[:300])
        names[cat["id"]] = cat["name"]
    result = ImportSet("coco", {"instances": str(path), "images": str(images_dir)})
    by_id = {}
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "width", "height")):
            raise ValueError(f"{path}: images[{i}]: expected id, file_name, width and height, got {im!r}"[:300])
        where = f"{path}: image id {im['id']}"
        name = image_name(str(im["file_name"]), where)
        if only is not None and name not in only:
            continue
        by_id[im["id"]] = result.image(name, images_dir / str(im["file_name"]), (im["width"], im["height"]), where)
    known_ids = {im["id"] for im in coco["images"] if isinstance(im, dict)}
    for i, ann in enumerate(coco["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or not all(k in ann for k in ("image_id", "category_id", "bbox")):
            raise ValueError(f"{where}: expected image_id, category_id and bbox, got {ann!r}"[:300])
        where = f"{path}: annotation id {ann.get('id', i)}"
        if ann["image_id"] not in known_ids:
            raise ValueError(f"{where}: image_id {ann['image_id']} is not among the file's images")
        if ann["category_id"] not in names:
            raise ValueError(f"{where}: category_id {ann['category_id']} is not among the file's categories")
        if ann["image_id"] not in by_id:
            continue  # an image `only` leaves out
        image = by_id[ann["image_id"]]
        record = f"annotation id {ann.get('id', i)}"
        if ann.get("iscrowd"):
            result.skip(record, image.name, CROWD)
            image.boxes_skipped += 1
            continue
        ltwh = number_list(ann["bbox"], 4, f"{where}: bbox", "[x, y, w, h]")
        result.add_box(image, names[ann["category_id"]], ltwh, record, split_name(ann, where))
    return result


# --- out ------------------------------------------------------------------------------------------


def coco_instances(records: Iterable[VlmRecord], image_wh: dict[str, tuple[int, int]]) -> dict:
    """vlm.jsonl records -> a COCO instances dict. Image ids are 1-based in line order; one category per
    distinct caption, ids 1-based in order of first use. image_wh: (width, height) of each record's image."""
    images, annotations, categories = [], [], {}
    for image_id, rec in enumerate(records, start=1):
        w, h = image_wh[rec.image]
        images.append({"id": image_id, "file_name": rec.image, "width": w, "height": h})
        for ann in rec.annotations:
            if ann.caption is None:
                raise ValueError(f"line {rec.line}: expected every annotation to have a caption (the category), got none")
            category_id = categories.setdefault(ann.caption, len(categories) + 1)
            l, t, bw, bh = ann.bbox_ltwh
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": [l, t, bw, bh], "area": round(bw * bh, 3), "iscrowd": 0})
            if rec.split_of(ann) is not None:  # kept for the way back; COCO tools ignore it
                annotations[-1]["split"] = rec.split_of(ann)
    return {"info": {"description": "written by findbox data export coco"},
            "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in categories.items()]}


def image_id_for(path: str, file_ids: dict[str, int]) -> int | None:
    """The id of the instances image whose file_name `path` ends with (a predict line names the file as given
    on its command line, e.g. data/images/x.jpg for file_name x.jpg); None if none does."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    for k in range(len(parts)):
        found = file_ids.get("/".join(parts[k:]))
        if found is not None:
            return found
    return None


def coco_results(lines: Iterable[tuple[str, dict]], instances: dict | None = None) -> tuple[list[dict], int]:
    """`findbox predict` JSON lines -> (COCO results, fallback answers left out).

    lines: (where, parsed line) pairs. Every candidate of a line is one result: its box, its
    scorer logit for the caption as `score` (COCO ranks by it), the caption's category. A fallback
    answer (nothing detected) is no detection and is left out, counted.
    instances: the COCO instances the results are for: image ids by file name, category ids by
    name (ValueError naming the line for an image or caption it lacks). Without: ultralytics' rule,
    the file's stem as int where it is a number (COCO's 000000397133.jpg) else the stem, and
    categories numbered 1, 2, ... in order of the captions' first appearance.
    """
    file_ids = {im["file_name"]: im["id"] for im in instances["images"]} if instances else {}
    category_ids = {c["name"]: c["id"] for c in instances["categories"]} if instances else {}
    results, fallbacks = [], 0
    for where, line in lines:
        try:
            image, caption, candidates = line["image"], line["caption"], line["candidates"]
        except (KeyError, TypeError):
            raise ValueError(f"{where}: expected a findbox predict line with image, caption and candidates, "
                             f"got {str(line)[:200]}") from None
        if instances:
            image_id = image_id_for(image, file_ids)
            if image_id is None:
                raise ValueError(f"{where}: image {image!r} matches no file_name of the instances file")
            if caption not in category_ids:
                raise ValueError(f"{where}: caption {caption!r} is no category of the instances file")
            category_id = category_ids[caption]
        else:
            stem = PurePosixPath(image.replace("\\", "/")).stem
            image_id = int(stem) if stem.isnumeric() else stem
            category_id = category_ids.setdefault(caption, len(category_ids) + 1)
        if line.get("chosen", 0) < 0 and not candidates:
            fallbacks += 1
            continue
        for k, cand in enumerate(candidates):
            box = number_list(cand.get("box_ltwh"), 4, f"{where}: candidates[{k}].box_ltwh", "[l, t, w, h]")
            score = cand.get("score")
            if not isinstance(score, (int, float)) or not math.isfinite(score):
                raise ValueError(f"{where}: candidates[{k}].score: expected a number, got {score!r}")
            results.append({"image_id": image_id, "category_id": category_id, "bbox": box, "score": float(score)})
    return results, fallbacks


def read_predict_lines(path: str | Path) -> list[tuple[str, dict]]:
    """A `findbox predict` output file -> (where, parsed line) pairs; blank lines skipped."""
    from findbox.data.vlm import json_object

    path = Path(path)
    with open(path, encoding="utf-8") as f:
        return [(f"{path}:{n}", json_object(text, f"{path}:{n}")) for n, text in enumerate(f, start=1) if text.strip()]
