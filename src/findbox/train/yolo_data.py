"""vlm.jsonl -> an ultralytics YOLO data set with one class, "object".

Input: a vlm.jsonl (read and split by `findbox.data.vlm`) with the images in `images/` beside it.

Output (`convert_vlm_to_yolo`):
    OUT/images/{train,val}/NAME      links to the original images (symlink, else hard link, else copy)
    OUT/labels/{train,val}/STEM.txt  one "0 cx cy w h" row a box, normalised by that image's size
    OUT/data.yaml                    what ultralytics' `data=` reads
An image with an empty annotation list gets an empty label file: a background image.
The split (`findbox.data.vlm.split_index`) is returned as a `Split` for split.json.

Bad input never yields a silent image/label mismatch: a malformed line raises
`ValueError("path:line: ...")`; an image that cannot be used (missing, corrupt,
truncated, ...) is skipped with a warning naming file and line, and counted.

An EXIF-rotated image (a phone photo stored sideways) is read upright, as `findbox eval`
and the server decode it (`findbox.images`): its boxes are in that frame, and so are its
labels. ultralytics reads such files upright too (OpenCV applies the orientation, its PIL
fallback calls `exif_transpose`), which `read_image_wh` checks on each one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from findbox.boxes import clip_xyxy, ltwh_to_xyxy
from findbox.data.vlm import MIN_SIDE_PX, VAL_FRACTION, Split, VlmRecord, read_vlm_jsonl, split_index

LOG = logging.getLogger(__name__)

CLASS_NAME = "object"
MIN_IMAGE_SIDE_PX = 10  # ultralytics drops images with a side under 10 px; drop them here first
MAX_LOGGED_WARNINGS = 20  # the rest are counted in the summary and listed in split.json
UPRIGHT_TOLERANCE = 8.0  # mean |difference| per channel level between two decodes of one upright image


# --- the image names ultralytics can label ----------------------------------------------------


def check_yolo_image_name(record: VlmRecord, where: str) -> None:
    """Raise ValueError("path:line: ...") for an image name whose label ultralytics would look for elsewhere."""
    # ultralytics finds a label by replacing the LAST "/images/" of the image path with "/labels/"
    if {"images", "labels"} & set(PurePosixPath(record.image).parts[:-1]):
        raise ValueError(
            f'{where}: expected "image" without an "images" or "labels" folder in it, got {record.image!r}'
        )


# --- one image ---------------------------------------------------------------------------------


def read_image_wh(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file upright (its EXIF orientation applied, as `findbox.images`
    decodes it), from its header, checked the way ultralytics will read it.

    Raises ValueError (the reason) for a file ultralytics would drop or read differently:
    an unreadable or corrupt file, a format ultralytics does not load, a side under
    10 px, a JPEG without its end marker (truncated), or an EXIF-rotated file that
    ultralytics does not read upright (`_check_read_upright`).
    """
    from findbox.images import EXIF_ORIENTATION, _pil_open, upright_wh  # PIL's own open, not ultralytics' wrapper

    path = Path(path)
    try:
        with _pil_open(path) as im:
            im.verify()  # must come first; it leaves the file unusable, so reopen for the header
        with _pil_open(path) as im:
            fmt = (im.format or "").lower()
            width, height = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as exc:  # PIL raises many types for a corrupt file; all mean "unusable"
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    suffix = path.suffix.lower().lstrip(".")
    loadable = _ultralytics_image_formats()
    if suffix not in loadable:
        raise ValueError(f"extension .{suffix} is not one ultralytics loads ({', '.join(sorted(loadable))})")
    if fmt not in loadable | {"jpeg2000"}:
        raise ValueError(f"format {fmt or 'unknown'} is not one ultralytics loads")
    if width < MIN_IMAGE_SIDE_PX or height < MIN_IMAGE_SIDE_PX:
        raise ValueError(f"image is {width}x{height}; ultralytics drops images with a side under {MIN_IMAGE_SIDE_PX} px")
    if fmt in ("jpeg", "mpo"):
        with open(path, "rb") as f:
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":
                raise ValueError("truncated JPEG (no end-of-image marker)")
    if orientation not in (None, 1):
        _check_read_upright(path, orientation)
    width, height = upright_wh((width, height), orientation)
    return int(width), int(height)


def _check_read_upright(path: Path, orientation: int) -> None:
    """Raise ValueError unless ultralytics reads this EXIF-rotated file as `findbox.images` does.

    The labels are in the upright frame, the boxes' frame (eval and the server decode files
    upright). ultralytics reads JPEG and PNG upright through OpenCV, other formats through
    PIL's `exif_transpose`, but OpenCV's handling has varied by version and format: each rotated
    file is decoded both ways and compared, so that no label is ever written in the wrong frame.
    """
    from ultralytics.utils.patches import imread

    from findbox.images import load_image_file

    ours = load_image_file(path)
    theirs = imread(str(path))
    # the two decoders may round a JPEG differently by a level or two; a wrong turn changes every pixel
    same = (theirs is not None and theirs.shape == ours.shape
            and float(np.abs(theirs[..., ::-1].astype(np.int16) - ours).mean()) < UPRIGHT_TOLERANCE)
    if not same:
        raise ValueError(f"EXIF orientation {orientation}: ultralytics decodes this file otherwise than eval and the "
                         f"server (another frame or other pixels), so its boxes would not match; save it upright "
                         f"without the tag")


def _ultralytics_image_formats() -> set[str]:
    from findbox.env import ensure_offline
    ensure_offline()  # ultralytics reads the offline variables at import
    from ultralytics.data.utils import IMG_FORMATS

    return set(IMG_FORMATS)


@dataclass(frozen=True)
class YoloBoxes:
    """Boxes of one image in YOLO label form.

    xywhn: (K, 4) float64 (cx, cy, w, h) normalised by the image size, in [0, 1]; kept boxes only.
    kept: (N,) bool, input box i survived (not degenerate after clipping).
    clipped: (N,) bool, input box i reached outside the image and was clipped.
    """

    xywhn: np.ndarray
    kept: np.ndarray
    clipped: np.ndarray


def ltwh_to_yolo(ltwh: np.ndarray, image_wh: tuple[int, int], min_side_px: float = MIN_SIDE_PX) -> YoloBoxes:
    """(N, 4) ltwh pixel boxes -> YoloBoxes for an image of `image_wh` = (width, height) pixels.

    Boxes are clipped to [0, W] x [0, H]; a box with a side under `min_side_px` after
    clipping (including zero or negative width/height, or a box wholly outside) is dropped.
    """
    width, height = image_wh
    if width <= 0 or height <= 0:
        raise ValueError(f"image_wh: expected positive sizes, got {image_wh}")
    ltwh = np.asarray(ltwh, dtype=np.float64).reshape(-1, 4)
    xyxy = ltwh_to_xyxy(ltwh).astype(np.float64)
    inside = clip_xyxy(xyxy, image_wh).astype(np.float64)
    clipped = np.any(inside != xyxy, axis=1)
    w = inside[:, 2] - inside[:, 0]
    h = inside[:, 3] - inside[:, 1]
    kept = (w >= min_side_px) & (h >= min_side_px)
    xywhn = np.stack(
        [(inside[:, 0] + inside[:, 2]) / 2 / width, (inside[:, 1] + inside[:, 3]) / 2 / height, w / width, h / height],
        axis=1,
    )[kept]
    return YoloBoxes(xywhn=xywhn.clip(0.0, 1.0), kept=kept, clipped=clipped)


def yolo_label_text(xywhn: np.ndarray) -> str:
    """(K, 4) normalised boxes -> the text of a YOLO label file (class 0); "" for none."""
    return "".join(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cx, cy, w, h in np.asarray(xywhn).reshape(-1, 4))


# --- the whole data set ------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What the conversion did, for the summary and for metrics.json."""

    lines: int = 0
    images: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    background_images: int = 0  # images written with an empty label file
    boxes: int = 0  # label rows written
    boxes_clipped: int = 0  # written after clipping to the image
    boxes_degenerate: int = 0  # dropped: under MIN_SIDE_PX after clipping
    skipped: list[dict] = field(default_factory=list)  # {"image", "line", "reason"}
    # (width, height) of every image written, train and val: what caching them decoded costs (`detector.cache_plan`)
    image_wh: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "images": dict(self.images),
            "background_images": self.background_images,
            "boxes": self.boxes,
            "boxes_clipped": self.boxes_clipped,
            "boxes_degenerate": self.boxes_degenerate,
            "images_skipped": len(self.skipped),
        }

    def summary(self) -> str:
        return (
            f"{self.lines} lines -> {self.images['train']} train + {self.images['val']} val images "
            f"({self.background_images} background), {self.boxes} boxes; "
            f"{self.boxes_clipped} boxes clipped to the image, {self.boxes_degenerate} degenerate boxes skipped, "
            f"{len(self.skipped)} images skipped"
        )


@dataclass(frozen=True)
class YoloDataset:
    data_yaml: Path
    split: Split
    report: ConversionReport


def convert_vlm_to_yolo(jsonl_path: str | Path, out_dir: str | Path, val_fraction: float = VAL_FRACTION) -> YoloDataset:
    """Write the YOLO data set for `jsonl_path` under `out_dir` (its images/ and labels/ are replaced).

    Deterministic: the same jsonl and images give the same files and the same split.
    Raises ValueError for a malformed jsonl (naming file and line) and when train or
    val ends up without a usable image.
    """
    jsonl_path = Path(jsonl_path).resolve()
    out_dir = Path(out_dir).resolve()
    records = read_vlm_jsonl(jsonl_path)
    for rec in records:  # before any file is written
        check_yolo_image_name(rec, f"{jsonl_path}:{rec.line}")
    n_train = split_index(len(records), val_fraction)
    images_dir = jsonl_path.parent / "images"

    for sub in ("images", "labels"):  # only what this function owns; links are removed, never their targets
        if (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)
    report = ConversionReport(lines=len(records))
    names: dict[str, list[str]] = {"train": [], "val": []}
    label_owner: dict[str, VlmRecord] = {}
    warned = 0

    def warn(message: str) -> None:
        nonlocal warned
        warned += 1
        if warned <= MAX_LOGGED_WARNINGS:
            LOG.warning(message)

    for index, rec in enumerate(records):
        split = "train" if index < n_train else "val"
        where = f"{jsonl_path}:{rec.line}"
        source = images_dir / rec.image
        try:
            if not source.is_file():
                raise ValueError(f"missing image file {source}")
            image_wh = read_image_wh(source)
        except ValueError as exc:
            report.skipped.append({"image": rec.image, "line": rec.line, "reason": str(exc)})
            warn(f"{where}: skipped image {rec.image!r}: {exc}")
            continue

        stem = rec.image.rsplit(".", 1)[0]  # ultralytics' own image -> label name rule
        if stem in label_owner:
            other = label_owner[stem]
            raise ValueError(
                f"{where}: images {other.image!r} (line {other.line}) and {rec.image!r} would share the label "
                f"file {stem}.txt; expected distinct names without their extension"
            )
        label_owner[stem] = rec

        boxes = ltwh_to_yolo(rec.ltwh, image_wh)
        n_degenerate = int((~boxes.kept).sum())
        if n_degenerate:
            warn(
                f"{where}: {rec.image!r}: skipped {n_degenerate} degenerate box(es) "
                f"(side under {MIN_SIDE_PX:g} px after clipping to {image_wh[0]}x{image_wh[1]})"
            )
        report.boxes_degenerate += n_degenerate
        report.boxes_clipped += int((boxes.clipped & boxes.kept).sum())
        report.boxes += len(boxes.xywhn)
        report.background_images += int(len(boxes.xywhn) == 0)

        image_link = out_dir / "images" / split / rec.image
        label_file = out_dir / "labels" / split / f"{stem}.txt"
        image_link.parent.mkdir(parents=True, exist_ok=True)
        label_file.parent.mkdir(parents=True, exist_ok=True)
        _link(source, image_link)
        label_file.write_text(yolo_label_text(boxes.xywhn), encoding="utf-8")
        names[split].append(rec.image)
        report.images[split] += 1
        report.image_wh.append(image_wh)

    if warned > MAX_LOGGED_WARNINGS:
        LOG.warning(f"... and {warned - MAX_LOGGED_WARNINGS} more warnings (skipped images are listed in split.json)")
    for split in ("train", "val"):
        if not names[split]:
            raise ValueError(
                f"{jsonl_path}: no usable {split} image ({len(report.skipped)} of {len(records)} skipped, "
                f"first: {report.skipped[0]['reason'] if report.skipped else 'none'}); "
                f"expected images in {images_dir}"
            )

    data_yaml = out_dir / "data.yaml"
    # JSON strings are valid YAML scalars, so paths with odd characters stay intact
    data_yaml.write_text(
        f"path: {json.dumps(str(out_dir))}\ntrain: images/train\nval: images/val\nnames:\n  0: {CLASS_NAME}\n",
        encoding="utf-8",
    )
    split = Split(
        train=tuple(names["train"]),
        val=tuple(names["val"]),
        val_fraction=val_fraction,
        source=str(jsonl_path),
        skipped=tuple(report.skipped),
    )
    LOG.info(f"YOLO data set in {out_dir}: {report.summary()}")
    return YoloDataset(data_yaml=data_yaml, split=split, report=report)


def _link(source: Path, target: Path) -> None:
    """Symlink `target` -> `source`; hard link, then copy, where symlinks are not allowed."""
    try:
        os.symlink(source, target)
    except OSError:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
