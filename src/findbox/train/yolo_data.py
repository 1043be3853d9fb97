"""vlm.jsonl -> an ultralytics YOLO data set with one class, "object".

Input: `vlm.jsonl`, one JSON object a line,
    {"image": "image_0.jpg", "annotations": [{"caption": "grey missile", "bbox": [l, t, w, h]}, ...]}
with the images in `images/` beside it; `bbox` is ltwh in pixels of that image.

Output (`convert_vlm_to_yolo`):
    OUT/images/{train,val}/NAME      links to the original images (symlink, else hard link, else copy)
    OUT/labels/{train,val}/STEM.txt  one "0 cx cy w h" row a box, normalised by that image's size
    OUT/data.yaml                    what ultralytics' `data=` reads
An image with an empty annotation list gets an empty label file: a background image.

The split is by line order (the original's: the last 20% of lines are val), decided
before any image is opened, so a missing image never shifts another into the other
split. `write_split` / `read_split` keep it in a JSON file for evaluation.

Bad input never yields a silent image/label mismatch: a malformed line raises
`ValueError("path:line: ...")`; an image that cannot be used (missing, corrupt,
EXIF-rotated, ...) is skipped with a warning naming file and line, and counted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from findbox.boxes import clip_xyxy, ltwh_to_xyxy

LOG = logging.getLogger(__name__)

CLASS_NAME = "object"
MIN_SIDE_PX = 1.0  # a box thinner than one pixel after clipping holds nothing to learn
MIN_IMAGE_SIDE_PX = 10  # ultralytics drops images with a side under 10 px; drop them here first
SPLIT_RULE = "by line order: the last val_fraction of the jsonl's non-blank lines are val"
MAX_LOGGED_WARNINGS = 20  # the rest are counted in the summary and listed in split.json


# --- reading vlm.jsonl -------------------------------------------------------------------------


@dataclass(frozen=True)
class VlmRecord:
    """One line of vlm.jsonl.

    line: 1-based line number in the file.
    image: file name relative to `images/` beside the jsonl (POSIX separators).
    ltwh: (N, 4) float64 boxes, pixels of that image; N = 0 for a background image.
    captions: N captions in annotation order (None where a line has none: the detector needs only boxes).
    """

    line: int
    image: str
    ltwh: np.ndarray
    captions: tuple[str | None, ...] = ()


def read_vlm_jsonl(path: str | Path) -> list[VlmRecord]:
    """Parse and validate every line; blank lines are ignored.

    Raises ValueError("path:line: expected ..., got ...") on the first malformed line,
    and when two lines name the same image.
    """
    path = Path(path)
    records: list[VlmRecord] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}:{line_no}"
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: expected UTF-8 text, got undecodable bytes ({exc.reason})") from None
            if not text.strip():
                continue
            record = parse_vlm_line(text, line_no, where)
            if record.image in first_line:
                raise ValueError(
                    f"{where}: image {record.image!r} is already listed on line {first_line[record.image]}; "
                    "expected one line per image"
                )
            first_line[record.image] = line_no
            records.append(record)
    return records


def parse_vlm_line(text: str, line_no: int, where: str) -> VlmRecord:
    """One non-blank jsonl line -> VlmRecord; `where` prefixes every error ("path:line")."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: expected a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f'{where}: expected "image" to be a file name, got {image!r}')
    _check_image_name(image, where)
    annotations = obj.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(
            f'{where}: expected "annotations" to be a list ([] for an image without objects), got {annotations!r}'
        )
    ltwh = np.zeros((len(annotations), 4), dtype=np.float64)
    captions: list[str | None] = []
    for i, ann in enumerate(annotations):
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            got = bbox if isinstance(ann, dict) else ann
            raise ValueError(f"{where}: annotations[{i}].bbox: expected 4 numbers [left, top, width, height], got {got!r}")
        if not all(math.isfinite(v) for v in bbox):
            raise ValueError(f"{where}: annotations[{i}].bbox: expected finite numbers, got {bbox!r}")
        ltwh[i] = bbox
        caption = ann.get("caption")
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"{where}: annotations[{i}].caption: expected a string, got {caption!r}")
        captions.append(caption)
    return VlmRecord(line=line_no, image=image, ltwh=ltwh, captions=tuple(captions))


def _check_image_name(image: str, where: str) -> None:
    """A relative path under images/ that ultralytics maps to the right label file."""
    parts = PurePosixPath(image).parts
    if image.startswith(("/", "\\")) or ".." in parts or "\\" in image:
        raise ValueError(f'{where}: expected "image" to be a relative path inside images/, got {image!r}')
    # ultralytics finds a label by replacing the LAST "/images/" of the image path with "/labels/"
    if "images" in parts[:-1] or "labels" in parts[:-1]:
        raise ValueError(f'{where}: expected "image" without an "images" or "labels" folder in it, got {image!r}')


# --- the split ---------------------------------------------------------------------------------


def split_index(n_lines: int, val_fraction: float) -> int:
    """Number of leading lines that are train; the rest (the last `val_fraction`) are val.

    Both parts are kept non-empty: n_lines must be >= 2 and 0 < val_fraction < 1.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    if n_lines < 2:
        raise ValueError(f"expected at least 2 images to split into train and val, got {n_lines}")
    n_train = math.floor(n_lines * (1.0 - val_fraction) + 1e-9)  # the original: int(0.8 * n)
    return min(max(n_train, 1), n_lines - 1)


@dataclass(frozen=True)
class Split:
    """Which images trained and which validated, by name relative to images/."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    val_fraction: float
    source: str = ""  # the vlm.jsonl the names come from
    skipped: tuple[dict, ...] = ()  # {"image", "line", "reason"} of the lines no split could use

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rule": SPLIT_RULE,
            "val_fraction": self.val_fraction,
            "train": list(self.train),
            "val": list(self.val),
            "skipped": [dict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "split") -> "Split":
        for key in ("train", "val", "val_fraction"):
            if key not in data:
                raise ValueError(f"{where}: expected a {key!r} key, got keys {sorted(data)}")
        for key in ("train", "val"):
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise ValueError(f"{where}: expected {key!r} to be a list of image names")
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            val_fraction=float(data["val_fraction"]),
            source=str(data.get("source", "")),
            skipped=tuple(data.get("skipped", ())),
        )


def write_split(path: str | Path, split: Split) -> None:
    _write_json(Path(path), split.to_dict())


def read_split(path: str | Path) -> Split:
    """The split a detector run wrote (DIR/split.json): `read_split(p).val` are the val image names."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        return Split.from_dict(json.load(f), str(path))


# --- one image ---------------------------------------------------------------------------------


def read_image_wh(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, checked the way ultralytics will read it.

    Raises ValueError (the reason) for a file ultralytics would drop or read differently:
    an unreadable or corrupt file, a format ultralytics does not load, a side under
    10 px, a JPEG without its end marker (truncated), or an EXIF orientation (ultralytics
    rotates the pixels, but the frame the boxes were drawn in is unknown).
    """
    from findbox.images import _pil_open  # PIL's own open, not ultralytics' plugin-installing wrapper

    path = Path(path)
    try:
        with _pil_open(path) as im:
            im.verify()  # must come first; it leaves the file unusable, so reopen for the header
        with _pil_open(path) as im:
            fmt = (im.format or "").lower()
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
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
    if orientation not in (None, 1):
        raise ValueError(f"EXIF orientation {orientation}: ultralytics rotates the pixels, the boxes' frame is unknown")
    if fmt in ("jpeg", "mpo"):
        with open(path, "rb") as f:
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":
                raise ValueError("truncated JPEG (no end-of-image marker)")
    return int(width), int(height)


def _ultralytics_image_formats() -> set[str]:
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


def convert_vlm_to_yolo(jsonl_path: str | Path, out_dir: str | Path, val_fraction: float = 0.2) -> YoloDataset:
    """Write the YOLO data set for `jsonl_path` under `out_dir` (its images/ and labels/ are replaced).

    Deterministic: the same jsonl and images give the same files and the same split.
    Raises ValueError for a malformed jsonl (naming file and line) and when train or
    val ends up without a usable image.
    """
    jsonl_path = Path(jsonl_path).resolve()
    out_dir = Path(out_dir).resolve()
    records = read_vlm_jsonl(jsonl_path)
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


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
