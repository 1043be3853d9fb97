"""What every importer shares: boxes checked against their image, the skip summary, and the
atomic write of DIR/vlm.jsonl with DIR/images/.

An importer (refcoco.py, odvg.py, coco.py, yolo.py) reads its files into an `ImportSet`: one
`ImportImage` per image, in the order the source lists them, each box converted to
[l, t, w, h] in pixels of that image and checked by `ImportSet.add_box`. A box that is not
finite, has no area or lies outside its image is skipped and named in `ImportSet.skipped`;
a file that is not the format raises ValueError naming the file and the field.

`write_import` then refuses (with strict) or writes: images linked (or copied) into
DIR/images/, vlm.jsonl written to a temporary name and renamed at the end, so an interrupted or
refused import never leaves half a vlm.jsonl; DIR/import.json records what was read and skipped.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from findbox.data.vlm import read_vlm_jsonl

LOG = logging.getLogger("findbox.data")

# COCO writes boxes with 2 decimals; 3 keeps all of them and makes ltwh <-> xyxy round trips exact
BOX_DECIMALS = 3
# annotation tools round to the pixel grid: a box may pass its image's edge by this much and still count as inside
EDGE_TOLERANCE_PX = 1.0
MAX_LOGGED_SKIPS = 20  # the rest are counted in the summary and listed in import.json
PROGRESS_MIN_IMAGES = 200  # below this a progress bar is only noise

NOT_FINITE = "not finite"
ZERO_AREA = "zero area"
OUT_OF_BOUNDS = "out of bounds"
IMAGE_MISSING = "image file missing"
EMPTY_CAPTION = "empty caption"
SIZE_DIFFERS = "image file's size is not the declared one"
UNREADABLE = "image file unreadable"


def box_problem(ltwh: tuple[float, float, float, float], image_wh: tuple[float, float]) -> str | None:
    """Why a box cannot be kept (NOT_FINITE, ZERO_AREA, OUT_OF_BOUNDS), or None when it can.

    ltwh: [left, top, width, height] in pixels of an image of size image_wh (width, height).
    Inside means within EDGE_TOLERANCE_PX of the image on every side.
    """
    l, t, w, h = ltwh
    if not all(math.isfinite(v) for v in ltwh):
        return NOT_FINITE
    if w <= 0 or h <= 0:
        return ZERO_AREA
    width, height = image_wh
    tol = EDGE_TOLERANCE_PX
    if l < -tol or t < -tol or l + w > width + tol or t + h > height + tol:
        return OUT_OF_BOUNDS
    return None


def xyxy_to_ltwh(xyxy) -> tuple[float, float, float, float]:
    """[x1, y1, x2, y2] -> [l, t, w, h], rounded to BOX_DECIMALS (the inverse of `ltwh_to_xyxy`)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return (round(x1, BOX_DECIMALS), round(y1, BOX_DECIMALS), round(x2 - x1, BOX_DECIMALS), round(y2 - y1, BOX_DECIMALS))


def ltwh_to_xyxy(ltwh) -> list[float]:
    """[l, t, w, h] -> [x1, y1, x2, y2], rounded to BOX_DECIMALS."""
    l, t, w, h = (float(v) for v in ltwh)
    return [round(l, BOX_DECIMALS), round(t, BOX_DECIMALS), round(l + w, BOX_DECIMALS), round(t + h, BOX_DECIMALS)]


def number_list(value, n: int, where: str, what: str) -> list[float]:
    """`value` as n floats; ValueError "where: expected <what>, got ..." otherwise (NaN and inf pass: box_problem names them)."""
    if (not isinstance(value, (list, tuple)) or len(value) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{where}: expected {what}, got {value!r}")
    return [float(v) for v in value]


def split_name(obj: dict, where: str) -> str | None:
    """The optional "split" findbox's exports add to an ODVG region or COCO annotation (other tools ignore it)."""
    value = obj.get("split")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{where}.split: expected a split name such as \"val\", got {value!r}")
    return value


def image_name(relative: str, where: str) -> str:
    """The name an image gets under DIR/images/: its path relative to the source's image folder, POSIX,
    with folders named `images` or `labels` left out (the detector's YOLO conversion finds labels by
    those names and refuses them in an image's path)."""
    parts = [p for p in PurePosixPath(relative.replace("\\", "/")).parts if p not in ("images", "labels", ".")]
    if not parts or relative.startswith("/") or ".." in parts:
        raise ValueError(f"{where}: expected an image path relative to the image folder, got {relative!r}")
    return "/".join(parts)


def image_wh_upright(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, its EXIF orientation applied; ValueError naming the file."""
    from findbox.images import EXIF_ORIENTATION, _pil_open, upright_wh

    try:
        with _pil_open(path) as im:
            return upright_wh(im.size, im.getexif().get(EXIF_ORIENTATION, 1))
    except FileNotFoundError:
        raise
    except Exception as exc:  # PIL raises many types for a file that is not an image
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


@dataclass
class ImportImage:
    """One line of the vlm.jsonl to be: `annotations` are {"caption", "bbox": [l, t, w, h]} (plus "split"
    where the source has one), in pixels of the image as the source declares its size (`image_wh`)."""

    name: str
    path: Path
    image_wh: tuple[float, float]
    annotations: list[dict] = field(default_factory=list)
    boxes_skipped: int = 0

    def line(self) -> dict:
        return {"image": self.name, "annotations": self.annotations}


@dataclass
class ImportSet:
    """What an importer read: the images in source order and the records it skipped, each named."""

    format: str
    sources: dict[str, str]
    images: dict[str, ImportImage] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"record", "image", "reason"}
    images_dropped: int = 0

    def image(self, name: str, path: Path, image_wh: tuple[float, float], where: str) -> ImportImage:
        """The image called `name` (added on first sight); ValueError when two source files would share the name."""
        found = self.images.get(name)
        if found is None:
            w, h = image_wh
            if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
                raise ValueError(f"{where}: expected a positive image width and height, got {w!r} x {h!r}")
            found = self.images[name] = ImportImage(name, path, (float(w), float(h)))
        elif found.path != path:
            raise ValueError(f"{where}: {path} and {found.path} would both be images/{name}; expected distinct names")
        elif tuple(map(float, image_wh)) != found.image_wh:
            w, h = found.image_wh
            raise ValueError(f"{where}: {name} is {image_wh[0]} x {image_wh[1]} here and {w:g} x {h:g} where it "
                             "first appeared; expected one size per image")
        return found

    def add_box(self, image: ImportImage, caption: str, ltwh, record: str, split: str | None = None) -> bool:
        """Add one annotation to `image` unless its box or caption cannot be used; then it is named in
        `skipped` with the reason (`record` says which source record it was) and False is returned."""
        ltwh = tuple(round(float(v), BOX_DECIMALS) if math.isfinite(v) else float(v) for v in ltwh)
        problem = box_problem(ltwh, image.image_wh)
        if problem is None and not caption.strip():
            problem = EMPTY_CAPTION
        if problem is not None:
            self.skip(record, image.name, problem, ltwh, image.image_wh)
            image.boxes_skipped += 1
            return False
        annotation = {"caption": caption, "bbox": list(ltwh)}
        if split is not None:
            annotation["split"] = split
        image.annotations.append(annotation)
        return True

    def skip(self, record: str, image: str, reason: str, ltwh=None, image_wh=None) -> None:
        row = {"record": record, "image": image, "reason": reason}
        if ltwh is not None:
            row["bbox"] = [v if math.isfinite(v) else str(v) for v in ltwh]  # JSON has no NaN
            row["image_wh"] = list(image_wh)
        self.skipped.append(row)

    def counts(self) -> Counter:
        return Counter(s["reason"] for s in self.skipped)

    def summary(self) -> str:
        n_ann = sum(len(i.annotations) for i in self.images.values())
        text = f"{len(self.images)} images, {n_ann} annotations"
        if self.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.counts().items()))
            text += f"; skipped {len(self.skipped)} records ({reasons})"
        if self.images_dropped:
            text += f"; {self.images_dropped} images left out (no usable box or no file)"
        return text


def check_files(result: ImportSet, keep_empty: bool, check_sizes: bool = False, progress: bool = True) -> None:
    """Drop images whose file is missing (each named in `skipped`) and, unless `keep_empty`, images
    whose every box was skipped. `keep_empty`: formats where an image without boxes is a real
    background image (COCO, YOLO) keep those that had none to begin with. `check_sizes`: also read
    each file's header and drop (naming it) an image whose upright size is not the declared one."""
    from findbox.logs import progress as progress_bar  # off under --quiet, like every findbox bar

    names = list(result.images)
    for name in progress_bar(names, desc="check image sizes", unit="image", file=sys.stderr,
                             disable=not (check_sizes and progress) or len(names) < PROGRESS_MIN_IMAGES):
        image = result.images[name]
        if not image.path.is_file():
            result.skip(f"image {image.path}", name, IMAGE_MISSING)
        elif check_sizes and (problem := _size_problem(image)):
            result.skip(f"image {image.path}", name, problem)
        elif image.annotations or (keep_empty and image.boxes_skipped == 0):
            continue
        del result.images[name]
        result.images_dropped += 1


def _size_problem(image: ImportImage) -> str | None:
    try:
        file_wh = image_wh_upright(image.path)
    except ValueError:
        return UNREADABLE
    return None if tuple(map(float, file_wh)) == image.image_wh else SIZE_DIFFERS


def refuse_if_strict(result: ImportSet, strict: bool) -> None:
    if strict and result.skipped:
        first = "; ".join(f"{s['record']}: {s['reason']}" for s in result.skipped[:5])
        more = f" (and {len(result.skipped) - 5} more)" if len(result.skipped) > 5 else ""
        raise ValueError(f"--strict: refused the import: {len(result.skipped)} records cannot be used: {first}{more}; "
                         "nothing was written")


def write_import(result: ImportSet, out_dir: str | Path, copy: bool = False, strict: bool = False,
                 keep_empty: bool = False, check_sizes: bool = False, progress: bool = True) -> Path:
    """Check the image files, then write OUT/images/ (symlinks, or copies with `copy`), OUT/vlm.jsonl
    and OUT/import.json; returns the vlm.jsonl path.

    `check_sizes` compares each file's header with the size the source declares (`check_files`).
    With `strict` any skipped record refuses the whole import before anything is written (ValueError).
    vlm.jsonl goes to a temporary name first and is renamed last: a refused, failed or interrupted
    import leaves any earlier vlm.jsonl as it was and never half a new one.
    """
    from findbox.logs import progress as progress_bar  # off under --quiet, like every findbox bar

    check_files(result, keep_empty, check_sizes, progress)
    refuse_if_strict(result, strict)
    if not result.images:
        raise ValueError(f"{result.format}: nothing to import: no image with a usable box "
                         f"({len(result.skipped)} records skipped)")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "vlm.jsonl"
    tmp = out_dir / f".vlm.jsonl.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for image in progress_bar(result.images.values(), desc=f"import {result.format}", unit="image",
                                      file=sys.stderr, disable=not progress or len(result.images) < PROGRESS_MIN_IMAGES):
                _place(image.path, images_dir / image.name, copy)
                f.write(json.dumps(image.line(), ensure_ascii=False) + "\n")
        read_vlm_jsonl(tmp, captions_required=True)  # what was written reads back, or nothing replaces vlm.jsonl
        os.replace(tmp, jsonl)
    finally:
        tmp.unlink(missing_ok=True)
    _write_record(result, out_dir, copy)
    for s in result.skipped[:MAX_LOGGED_SKIPS]:
        LOG.warning(f"skipped {s['record']} ({s['image']}): {s['reason']}")
    if len(result.skipped) > MAX_LOGGED_SKIPS:
        LOG.warning(f"... and {len(result.skipped) - MAX_LOGGED_SKIPS} more skipped records, listed in "
                    f"{out_dir / 'import.json'}")
    return jsonl


def _place(source: Path, target: Path, copy: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()  # an earlier import's link or copy; never its target
    if copy:
        shutil.copy2(source, target)
    else:
        os.symlink(source.resolve(), target)


def _write_record(result: ImportSet, out_dir: Path, copy: bool) -> None:
    """OUT/import.json: the sources, the counts and every skipped record (atomically, like vlm.jsonl)."""
    record = {
        "format": result.format,
        "sources": result.sources,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "images": len(result.images),
        "annotations": sum(len(i.annotations) for i in result.images.values()),
        "images_linked": "copied" if copy else "symlinked",
        "box_rule": f"finite, width and height > 0, inside the image within {EDGE_TOLERANCE_PX:g} px",
        "skipped_counts": dict(sorted(result.counts().items())),
        "images_left_out": result.images_dropped,
        "skipped": result.skipped,
    }
    tmp = out_dir / ".import.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "import.json")
