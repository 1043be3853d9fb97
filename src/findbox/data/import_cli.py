"""`findbox data import FORMAT ... --out DIR`: another format's data set as DIR/vlm.jsonl and DIR/images/.

    findbox data import refcoco --refs 'refcoco/refs(unc).p' --instances refcoco/instances.json \\
        --images coco/train2014 --split testA --out data/refcoco_testA
    findbox data import odvg train.odvg.jsonl --images images/ --out data/odvg
    findbox data import coco --instances annotations/instances_val2017.json --images val2017 --out data/coco_val
    findbox data import yolo dataset/data.yaml --out data/mine

The result is what `findbox eval`, `findbox crops` and `findbox train detector` read. Images are
symlinked into DIR/images/ (--copy copies them). Boxes become [l, t, w, h] in pixels of the image
and are checked against its size: a record whose box is not finite, has no area or lies outside
its image is named, skipped and counted in the summary (DIR/import.json lists them all); --strict
refuses the whole import instead. vlm.jsonl is written under a temporary name and renamed at the
end: a refused or interrupted import leaves no half-written vlm.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from findbox.data.refcoco import SPLITS as REFCOCO_SPLITS
from findbox.data.yolo import SPLIT_KEYS as YOLO_SPLITS

FORMATS = {
    "refcoco": "RefCOCO / RefCOCO+ / RefCOCOg: refs(unc|google|umd).p + instances.json + the COCO image folder",
    "odvg": "Grounding DINO's ODVG jsonl (grounding and detection records)",
    "coco": "a COCO instances JSON (caption = category name)",
    "yolo": "an ultralytics detection data set, data.yaml (caption = class name)",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for vlm.jsonl, images/ and import.json")
    parser.add_argument("--copy", action="store_true", help="copy the images into DIR/images/ (default: symlinks)")
    parser.add_argument("--strict", action="store_true", help="refuse the whole import if any record has to be "
                        "skipped (default: skip it, name it and count it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    log_options(parser)


def log_options(parser: argparse.ArgumentParser) -> None:
    """--log-level and -q after FORMAT too (`data import` and `data export`); SUPPRESS keeps the value
    given before it."""
    parser.add_argument("--log-level", default=argparse.SUPPRESS, type=str.lower,
                        choices=("debug", "info", "warning", "error"), help="log level (default info)")
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only (--log-level warning)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, help_text in FORMATS.items():
        p = formats.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_parser=p)
        if name == "refcoco":
            p.add_argument("--refs", required=True, metavar="REFS_P", help="refs(unc).p, refs(google).p or refs(umd).p "
                           "(read with a restricted unpickler: plain containers and scalars only)")
            p.add_argument("--instances", required=True, metavar="INSTANCES_JSON", help="the instances.json beside it")
            p.add_argument("--images", required=True, metavar="DIR", help="the COCO image folder (train2014)")
            p.add_argument("--split", action="append", default=[], choices=REFCOCO_SPLITS,
                           help="only the refs of this split (repeatable; default all)")
        elif name == "odvg":
            p.add_argument("file", metavar="FILE_JSONL", help="the ODVG jsonl")
            p.add_argument("--images", required=True, metavar="DIR", help="the folder its filenames are relative to")
            p.add_argument("--label-map", metavar="JSON", help="label -> name, for detection instances without "
                           "a 'category'")
        elif name == "coco":
            p.add_argument("--instances", required=True, metavar="INSTANCES_JSON", help="the COCO instances JSON")
            p.add_argument("--images", required=True, metavar="DIR", help="the folder its file_names are relative to")
            p.add_argument("--images-of", metavar="VLM_JSONL", help="only the images this vlm.jsonl lists, e.g. every "
                           "object of a RefCOCO import's images, for the detector")
        else:
            p.add_argument("data", metavar="DATA_YAML", help="the data set's data.yaml")
            p.add_argument("--split", action="append", default=[], choices=YOLO_SPLITS,
                           help="only this split (repeatable; default every one the yaml names)")
        if name != "yolo":  # YOLO's sizes are read from the files already
            p.add_argument("--check-sizes", action="store_true", help="also read every image's header and leave out, "
                           "named, an image whose size is not the one the annotation file declares (default: trust "
                           "the declared size; no image is opened)")
        _common(p)


def read_source(args: argparse.Namespace):
    """The ImportSet the arguments name."""
    if args.format == "refcoco":
        from findbox.data.refcoco import read_refcoco

        return read_refcoco(args.refs, args.instances, args.images, tuple(args.split))
    if args.format == "odvg":
        from findbox.data.odvg import read_label_map, read_odvg

        return read_odvg(args.file, args.images, read_label_map(args.label_map) if args.label_map else None)
    if args.format == "coco":
        from findbox.data.coco import read_coco
        from findbox.data.vlm import read_vlm_jsonl

        only = {r.image for r in read_vlm_jsonl(args.images_of)} if args.images_of else None
        return read_coco(args.instances, args.images, only)
    from findbox.data.yolo import read_yolo

    return read_yolo(args.data, tuple(args.split))


def main(args: argparse.Namespace) -> int:
    from findbox.data.importing import write_import

    result = read_source(args)
    jsonl = write_import(result, Path(args.out), copy=args.copy, strict=args.strict,
                         keep_empty=args.format in ("coco", "yolo", "odvg"),
                         check_sizes=getattr(args, "check_sizes", False), progress=not args.no_progress)
    print(f"findbox data import {args.format}: {result.summary()} -> {jsonl}")
    return 0
