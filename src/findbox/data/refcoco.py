"""RefCOCO, RefCOCO+ and RefCOCOg (the refer toolkit's layout) -> an ImportSet.

    refs(unc).p / refs(google).p / refs(umd).p   a pickled list of refs:
        {"ref_id", "ann_id", "image_id", "split", "category_id", "file_name",
         "sentences": [{"sent", "raw", "tokens", "sent_id"}, ...], ...}
    instances.json                                COCO: images {id, file_name, width, height},
                                                  annotations {id, image_id, bbox [x, y, w, h]}

One annotation per sentence: the box of the ref's annotation, the sentence's `sent` as the
caption, the ref's split; the annotations of one image on one line. The image's file is
instances.json's `file_name` in the COCO image folder (the ref's own `file_name` carries an
annotation suffix no file has), and its size, which the boxes are checked against, is
instances.json's width and height. The pickle is read by `load_plain_pickle`: it is untrusted.
"""

from __future__ import annotations

import json
from pathlib import Path

from findbox.data.importing import ImportSet, image_name, number_list
from findbox.data.plain_pickle import load_plain_pickle

SPLITS = ("train", "val", "testA", "testB", "test")  # unc: train/val/testA/testB; umd: train/val/test; google: train/val


def read_instances(path: Path) -> tuple[dict, dict]:
    """instances.json -> ({image id: image dict}, {annotation id: annotation dict}); ValueError naming the field."""
    with open(path, encoding="utf-8") as f:
        try:
            coco = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: expected COCO instances JSON, got invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(coco.get("annotations"), list):
        raise ValueError(f"{path}: expected a COCO instances object with 'images' and 'annotations' lists")
    images, anns = {}, {}
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "width", "height")):
            raise ValueError(f"{path}: images[{i}]: expected id, file_name, width and height, got {im!r}"[:300])
        images[im["id"]] = im
    for i, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "bbox")):
            raise ValueError(f"{path}: annotations[{i}]: expected id, image_id and bbox, got {ann!r}"[:300])
        anns[ann["id"]] = ann
    return images, anns


def read_refcoco(refs_path: str | Path, instances_path: str | Path, images_dir: str | Path,
                 splits: tuple[str, ...] = ()) -> ImportSet:
    """The refs of `splits` (all when empty) as an ImportSet; ValueError naming the file and ref for a
    malformed ref, a ref whose annotation or image instances.json lacks, and a split no ref has."""
    refs_path, instances_path, images_dir = Path(refs_path), Path(instances_path), Path(images_dir)
    refs = load_plain_pickle(refs_path)
    if not isinstance(refs, list):
        raise ValueError(f"{refs_path}: expected a list of refs, got {type(refs).__name__}")
    images, anns = read_instances(instances_path)
    result = ImportSet("refcoco", {"refs": str(refs_path), "instances": str(instances_path), "images": str(images_dir),
                                   "splits": ",".join(splits) or "all"})
    seen_splits = set()
    for i, ref in enumerate(refs):
        where = f"{refs_path}: refs[{i}]"
        if not isinstance(ref, dict) or not all(k in ref for k in ("ref_id", "ann_id", "image_id", "split", "sentences")):
            raise ValueError(f"{where}: expected a ref with ref_id, ann_id, image_id, split and sentences, got "
                             f"{sorted(ref) if isinstance(ref, dict) else type(ref).__name__}")
        where = f"{refs_path}: ref_id {ref['ref_id']}"
        seen_splits.add(ref["split"])
        if splits and ref["split"] not in splits:
            continue
        ann = anns.get(ref["ann_id"])
        if ann is None:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} is not in {instances_path}; expected the instances.json "
                             "that came with these refs")
        im = images.get(ref["image_id"])
        if im is None:
            raise ValueError(f"{where}: image_id {ref['image_id']} is not in {instances_path}'s images")
        if ann["image_id"] != ref["image_id"]:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} belongs to image {ann['image_id']}, the ref says "
                             f"{ref['image_id']}")
        ltwh = number_list(ann["bbox"], 4, f"{instances_path}: annotation id {ann['id']}: bbox", "[x, y, w, h]")
        file_name = str(im["file_name"])
        image = result.image(image_name(file_name, f"{instances_path}: image id {im['id']}"), images_dir / file_name,
                             (im["width"], im["height"]), f"{instances_path}: image id {im['id']}")
        if not isinstance(ref["sentences"], list):
            raise ValueError(f"{where}: expected 'sentences' to be a list, got {type(ref['sentences']).__name__}")
        for j, sent in enumerate(ref["sentences"]):
            if not isinstance(sent, dict) or not isinstance(sent.get("sent"), str):
                raise ValueError(f"{where}: sentences[{j}]: expected a dict with a 'sent' string, got {sent!r}"[:300])
            record = f"ref_id {ref['ref_id']} sent_id {sent.get('sent_id', j)}"
            result.add_box(image, sent["sent"], ltwh, record, split=str(ref["split"]))
    missing = [s for s in splits if s not in seen_splits]
    if missing:
        raise ValueError(f"{refs_path}: split {', '.join(missing)}: no ref has it; expected one of "
                         f"{', '.join(sorted(map(str, seen_splits)))}")
    return result
