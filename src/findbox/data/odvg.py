"""Grounding DINO's ODVG jsonl in and out (Open-GroundingDino, mmdetection's ODVGDataset).

One JSON object a line, boxes [x1, y1, x2, y2] in pixels:
    {"filename": "a.jpg", "height": H, "width": W,
     "grounding": {"caption": "...", "regions": [{"bbox": [x1, y1, x2, y2] or [[...], ...], "phrase": "...",
                                                  "tokens_positive": [[start, end], ...]}, ...]}}
    {"filename": "a.jpg", "height": H, "width": W,
     "detection": {"instances": [{"bbox": [x1, y1, x2, y2], "label": 0, "category": "dog"}, ...]}}

In: a region gives one annotation per box, its `phrase` as the caption (the words that name the
object; the record's caption is the whole sentence); a detection instance gives one annotation,
its `category` as the caption (or the label map's name for its `label`). Lines naming the same
file are one image. Out: grounding records (caption = the distinct captions joined by ". ", each
region's tokens_positive its span in it) or detection records with a label map.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from pathlib import Path

from findbox.data.importing import ImportSet, image_name, ltwh_to_xyxy, number_list, split_name, xyxy_to_ltwh
from findbox.data.vlm import VlmRecord, json_object


class OdvgKind(str, enum.Enum):
    GROUNDING = "grounding"  # caption + phrases: what Grounding DINO trains on
    DETECTION = "detection"  # instances with a label map: one category per distinct caption


def read_label_map(path: str | Path) -> dict[str, str]:
    """ODVG's label map, {"0": "dog", ...}; ValueError naming the file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of label -> name, got {str(data)[:200]}")
    return {str(k): v for k, v in data.items()}


def read_odvg(path: str | Path, images_dir: str | Path, label_map: dict[str, str] | None = None) -> ImportSet:
    """The ODVG file as an ImportSet; ValueError naming file and line for a line that is not ODVG."""
    path, images_dir = Path(path), Path(images_dir)
    result = ImportSet("odvg", {"odvg": str(path), "images": str(images_dir)})
    with open(path, encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if text.strip():
                _read_line(json_object(text, f"{path}:{line_no}"), f"{path}:{line_no}", result, images_dir, label_map)
    return result


def _read_line(obj: dict, where: str, result: ImportSet, images_dir: Path, label_map: dict[str, str] | None) -> None:
    filename = obj.get("filename")
    if not isinstance(filename, str) or not all(isinstance(obj.get(k), (int, float)) for k in ("height", "width")):
        raise ValueError(f"{where}: expected filename, height and width, got keys {sorted(obj)}")
    if "grounding" not in obj and "detection" not in obj:
        raise ValueError(f"{where}: expected a 'grounding' or a 'detection' record, got keys {sorted(obj)}")
    image = result.image(image_name(filename, where), images_dir / filename, (obj["width"], obj["height"]), where)
    line = where.rsplit(":", 1)[-1]
    if "detection" in obj:
        instances = obj["detection"].get("instances") if isinstance(obj["detection"], dict) else None
        if not isinstance(instances, list):
            raise ValueError(f"{where}: detection.instances: expected a list, got {instances!r}"[:300])
        for k, inst in enumerate(instances):
            at = f"{where}: detection.instances[{k}]"
            if not isinstance(inst, dict):
                raise ValueError(f"{at}: expected an object, got {inst!r}")
            name = inst.get("category")
            if not isinstance(name, str):
                name = (label_map or {}).get(str(inst.get("label")))
            if name is None:
                raise ValueError(f"{at}: expected a 'category' name, or a 'label' in --label-map, got {inst!r}"[:300])
            xyxy = number_list(inst.get("bbox"), 4, f"{at}.bbox", "[x1, y1, x2, y2]")
            result.add_box(image, name, xyxy_to_ltwh(xyxy), f"line {line} instance {k}", split_name(inst, at))
    if "grounding" in obj:
        regions = obj["grounding"].get("regions") if isinstance(obj["grounding"], dict) else None
        if not isinstance(regions, list):
            raise ValueError(f"{where}: grounding.regions: expected a list, got {regions!r}"[:300])
        for k, region in enumerate(regions):
            at = f"{where}: grounding.regions[{k}]"
            if not isinstance(region, dict) or not isinstance(region.get("phrase"), str):
                raise ValueError(f"{at}: expected a 'phrase' string and a 'bbox', got {region!r}"[:300])
            boxes = region.get("bbox")
            many = isinstance(boxes, list) and bool(boxes) and isinstance(boxes[0], list)  # one phrase, several boxes
            for m, box in enumerate(boxes if many else [boxes]):
                xyxy = number_list(box, 4, f"{at}.bbox" + (f"[{m}]" if many else ""), "[x1, y1, x2, y2]")
                result.add_box(image, region["phrase"], xyxy_to_ltwh(xyxy), f"line {line} region {k}"
                               + (f" box {m}" if many else ""), split_name(region, at))


# --- out ------------------------------------------------------------------------------------------


def odvg_lines(records: Iterable[VlmRecord], image_wh: dict[str, tuple[int, int]], kind: OdvgKind,
               label_map: dict[str, int] | None = None) -> list[dict]:
    """vlm.jsonl records -> ODVG objects, one per image. With DETECTION, `label_map` (caption -> label) is
    filled in order of first use; write it beside the file as {"label": caption}."""
    out = []
    for rec in records:
        w, h = image_wh[rec.image]
        head = {"filename": rec.image, "height": h, "width": w}
        captions = [a.caption or "" for a in rec.annotations]
        if kind is OdvgKind.DETECTION:
            labels = label_map if label_map is not None else {}
            instances = [{"bbox": ltwh_to_xyxy(a.bbox_ltwh), "label": labels.setdefault(c, len(labels)), "category": c,
                          **_split(rec, a)} for a, c in zip(rec.annotations, captions)]
            out.append({**head, "detection": {"instances": instances}})
            continue
        distinct = list(dict.fromkeys(captions))
        caption = ". ".join(distinct)
        starts, offset = {}, 0
        for c in distinct:  # each phrase's own span in the joined caption
            starts[c], offset = offset, offset + len(c) + 2
        regions = [{"bbox": ltwh_to_xyxy(a.bbox_ltwh), "phrase": c, "tokens_positive": [[starts[c], starts[c] + len(c)]],
                    **_split(rec, a)} for a, c in zip(rec.annotations, captions)]
        out.append({**head, "grounding": {"caption": caption, "regions": regions}})
    return out


def _split(rec: VlmRecord, annotation) -> dict:
    """{"split": name} where the record gives the annotation one (kept for the way back; other tools ignore it)."""
    split = rec.split_of(annotation)
    return {} if split is None else {"split": split}
