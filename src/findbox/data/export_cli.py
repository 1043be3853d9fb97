"""`findbox data export FORMAT VLM_JSONL --out PATH`: findbox's data (and predictions) for the rest of the field.

    findbox data export odvg data/vlm.jsonl --out data.odvg.jsonl                    # Grounding DINO grounding records
    findbox data export odvg data/vlm.jsonl --kind detection --out det.odvg.jsonl   # + det.odvg.label_map.json
    findbox data export coco data/vlm.jsonl --out instances.json \\
        --predictions boxes.jsonl --results results.json                           # + findbox predict's boxes

Image sizes (which ODVG and COCO carry) are read from the image headers in images/ beside the
jsonl (upright, as findbox reads the boxes). `findbox data import` of the written file gives
the same records back. Files are written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from findbox.data.import_cli import log_options
from findbox.data.odvg import OdvgKind

FORMATS = {
    "odvg": "Grounding DINO's ODVG jsonl: grounding records (or --kind detection with a label map)",
    "coco": "a COCO instances JSON (one category per caption); --predictions adds a COCO results JSON",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, help_text in FORMATS.items():
        p = formats.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_parser=p)
        p.add_argument("data", metavar="VLM_JSONL", help="the vlm.jsonl to export")
        p.add_argument("--out", required=True, metavar="PATH", help="the file to write")
        p.add_argument("--images", metavar="DIR", help="its image folder, for the sizes (default: images/ beside it)")
        if name == "odvg":
            p.add_argument("--kind", choices=[k.value for k in OdvgKind], default=OdvgKind.GROUNDING.value,
                           help="grounding records (caption + phrases) or detection records (categories, with the "
                                "label map beside: det.odvg.jsonl -> det.label_map.json) (default grounding)")
        else:
            p.add_argument("--predictions", metavar="PREDICT_JSONL", help="findbox predict's JSON lines on these "
                           "images: written as COCO results for the instances file")
            p.add_argument("--results", metavar="RESULTS_JSON", help="where the results go (with --predictions)")
        log_options(p)


def image_sizes(records, images_dir: Path) -> dict[str, tuple[int, int]]:
    """(width, height) of each record's image, upright; ValueError naming a missing or unreadable file."""
    from findbox.logs import progress as progress_bar  # off under --quiet, like every findbox bar

    from findbox.data.importing import image_wh_upright

    sizes = {}
    for rec in progress_bar(records, desc="image sizes", unit="image", file=sys.stderr, disable=len(records) < 200):
        path = images_dir / rec.image
        if not path.is_file():
            raise ValueError(f"line {rec.line}: image {rec.image!r}: no file {path}; expected the images beside "
                             "the jsonl (or --images DIR)")
        sizes[rec.image] = tuple(int(v) for v in image_wh_upright(path))
    return sizes


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(args: argparse.Namespace) -> int:
    from findbox.data.vlm import read_vlm_jsonl

    data = Path(args.data)
    out = Path(args.out)
    records = read_vlm_jsonl(data, captions_required=True)
    sizes = image_sizes(records, Path(args.images) if args.images else data.parent / "images")
    if args.format == "odvg":
        from findbox.data.odvg import odvg_lines

        kind = OdvgKind(args.kind)
        label_map: dict[str, int] = {}
        lines = odvg_lines(records, sizes, kind, label_map)
        write_atomic(out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        wrote = f"{len(lines)} {kind.value} records -> {out}"
        if kind is OdvgKind.DETECTION:
            map_path = out.with_name(out.name.split(".")[0] + ".label_map.json")
            write_atomic(map_path, json.dumps({str(v): k for k, v in label_map.items()}, ensure_ascii=False, indent=1))
            wrote += f", label map -> {map_path}"
        print(f"findbox data export odvg: {wrote}")
        return 0

    from findbox.data.coco import coco_instances, coco_results, read_predict_lines

    if bool(args.predictions) != bool(args.results):
        raise ValueError("predictions: expected --predictions PREDICT_JSONL and --results RESULTS_JSON together")
    instances = coco_instances(records, sizes)
    write_atomic(out, json.dumps(instances, ensure_ascii=False))
    wrote = f"{len(instances['images'])} images, {len(instances['annotations'])} boxes, " \
            f"{len(instances['categories'])} categories -> {out}"
    if args.predictions:
        results, fallbacks = coco_results(read_predict_lines(args.predictions), instances)
        write_atomic(Path(args.results), json.dumps(results))
        wrote += f"; {len(results)} results -> {args.results}"
        if fallbacks:
            wrote += f" ({fallbacks} fallback answers, nothing detected, are no detections and were left out)"
    print(f"findbox data export coco: {wrote}")
    return 0
