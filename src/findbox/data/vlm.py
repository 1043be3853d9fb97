"""The published data format, vlm.jsonl: its records, the one reader, the split rule and split.json.

One JSON object a line,
    {"image": "image_0.jpg", "annotations": [{"caption": "grey missile", "bbox": [l, t, w, h]}, ...]}
with the images in `images/` beside the jsonl; `bbox` is ltwh in pixels of that image.
An optional `"split"` (a name such as "val" or "testA", the data set's own split) may stand on
the line, on an annotation, or both (the annotation's wins); the task's files have none.

Detector training (`findbox.train.yolo_data`), crops for the scorer (`findbox.train.crops`)
and evaluation (`findbox.eval.data`) all read it here and split it here, so the three can
never disagree on which lines are val.

The split is by line order (the original's: the last 20% of the non-blank lines are val),
decided before any image is opened, so a missing image never shifts another into the other split.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

VAL_FRACTION = 0.2  # the original split: the last 20% of lines are val
SPLIT_RULE = "by line order: the last val_fraction of the jsonl's non-blank lines are val"
MIN_SIDE_PX = 1.0  # a box thinner than one pixel after clipping holds nothing to learn


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One object of an image.

    caption: as written in the jsonl; None where the line has none (the detector needs only boxes).
    bbox_ltwh: [left, top, width, height] in pixels of the image, as annotated (not clipped).
    """

    caption: str | None
    bbox_ltwh: tuple[float, float, float, float]
    split: str | None = None  # the data set's own split name (e.g. RefCOCO's "testA"); None when not given


@dataclass(frozen=True)
class VlmRecord:
    """One line of vlm.jsonl.

    line: 1-based line number in the file.
    image: file name relative to `images/` beside the jsonl (POSIX separators).
    annotations: in file order; empty for a background image.
    split: the data set's own split name for the whole line; None when not given. An annotation's
        own `split` overrides it (`split_of`).
    """

    line: int
    image: str
    annotations: tuple[Annotation, ...] = ()
    split: str | None = None

    def split_of(self, annotation: Annotation) -> str | None:
        """The split one of this line's annotations belongs to: its own, else the line's, else None."""
        return annotation.split if annotation.split is not None else self.split

    @property
    def ltwh(self) -> np.ndarray:
        """(N, 4) float64 boxes in pixels of the image; (0, 4) for a background image."""
        return np.array([a.bbox_ltwh for a in self.annotations], dtype=np.float64).reshape(-1, 4)

    @property
    def captions(self) -> tuple[str | None, ...]:
        """The N captions, in annotation order."""
        return tuple(a.caption for a in self.annotations)


# --- the reader --------------------------------------------------------------------------------


def read_vlm_jsonl(path: str | Path, captions_required: bool = False) -> list[VlmRecord]:
    """Parse and validate every line; blank lines are ignored.

    captions_required: every annotation needs a caption (crops and evaluation do; the detector does not).
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
            record = parse_vlm_line(text, line_no, where, captions_required)
            if record.image in first_line:
                raise ValueError(
                    f"{where}: image {record.image!r} is already listed on line {first_line[record.image]}; "
                    "expected one line per image"
                )
            first_line[record.image] = line_no
            records.append(record)
    return records


def json_object(text: str, where: str) -> dict:
    """One jsonl line -> its JSON object; ValueError prefixed by `where` ("path:line") otherwise."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: expected a JSON object, got invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_vlm_line(text: str, line_no: int, where: str, captions_required: bool = False) -> VlmRecord:
    """One non-blank jsonl line -> VlmRecord; `where` prefixes every error ("path:line")."""
    obj = json_object(text, where)
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f'{where}: expected "image" to be a file name, got {image!r}')
    parts = PurePosixPath(image).parts
    if image.startswith(("/", "\\")) or ".." in parts or "\\" in image:
        raise ValueError(f'{where}: expected "image" to be a relative path inside images/, got {image!r}')
    split = _split_name(obj, where, "split")
    annotations = obj.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(
            f'{where}: expected "annotations" to be a list ([] for an image without objects), got {annotations!r}'
        )
    parsed: list[Annotation] = []
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
        caption = ann.get("caption")
        if (caption is not None or captions_required) and not isinstance(caption, str):
            raise ValueError(f"{where}: annotations[{i}].caption: expected a string, got {caption!r}")
        parsed.append(Annotation(caption=caption, bbox_ltwh=tuple(float(v) for v in bbox),  # type: ignore[arg-type]
                                 split=_split_name(ann, where, f"annotations[{i}].split")))
    return VlmRecord(line=line_no, image=image, annotations=tuple(parsed), split=split)


def _split_name(obj: dict, where: str, field_name: str) -> str | None:
    """The optional "split" key of a line or an annotation: a non-empty string, or None when absent."""
    value = obj.get("split")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{where}: {field_name}: expected a split name such as \"val\", got {value!r}")
    return value


# --- the split ---------------------------------------------------------------------------------


def split_index(n_lines: int, val_fraction: float = VAL_FRACTION) -> int:
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
    """Which images trained and which validated, by name relative to images/.

    val_fraction: None in a split file written by hand without one.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    val_fraction: float | None
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
    def from_dict(cls, data: dict, where: str = "split") -> Split:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object with 'train' and 'val', got {type(data).__name__}")
        for key in ("train", "val"):
            if key not in data:
                raise ValueError(f"{where}: expected a {key!r} key, got keys {sorted(data)}")
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise ValueError(f"{where}: expected {key!r} to be a list of image names")
        val_fraction = data.get("val_fraction")
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            val_fraction=None if val_fraction is None else float(val_fraction),
            source=str(data.get("source", "")),
            skipped=tuple(data.get("skipped", ())),
        )


def write_split(path: str | Path, split: Split) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(split.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_split(path: str | Path) -> Split:
    """The split a detector run wrote (DIR/split.json): `read_split(p).val` are the val image names."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        return Split.from_dict(json.load(f), str(path))
