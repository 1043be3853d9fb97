"""Evaluation data: vlm.jsonl lines -> instances, the split, and the client's request batches.

One instance is one (image, caption, true box). Requests are formed like the
published client's: for each image, its captions in requests of `batch`
instances (the image repeated once per instance), so a request never mixes images.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VAL_FRACTION = 0.2  # the original split: the last 20% of lines are val


class SplitName(str, enum.Enum):
    VAL = "val"
    TRAIN = "train"
    ALL = "all"


@dataclass(frozen=True)
class Sample:
    """One instance to answer. truth_ltwh: [left, top, width, height] in image pixels."""

    image: str
    caption: str
    truth_ltwh: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageEntry:
    """One jsonl line: an image name (relative to images/) and its annotations."""

    line: int
    image: str
    annotations: tuple[tuple[str, tuple[float, float, float, float]], ...]


def read_jsonl(path: str | Path) -> list[ImageEntry]:
    """Every non-blank line of a vlm.jsonl; a malformed line raises ValueError("path:line: ...")."""
    path = Path(path)
    entries = []
    with open(path, encoding="utf-8-sig") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: expected a JSON object, got invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
                raise ValueError(f'{where}: expected an object with an "image" file name, got {text.strip()[:80]!r}')
            annotations = obj.get("annotations")
            if not isinstance(annotations, list):
                raise ValueError(f'{where}: expected "annotations" to be a list, got {annotations!r}')
            parsed = []
            for i, ann in enumerate(annotations):
                caption = ann.get("caption") if isinstance(ann, dict) else None
                bbox = ann.get("bbox") if isinstance(ann, dict) else None
                if not isinstance(caption, str):
                    raise ValueError(f"{where}: annotations[{i}].caption: expected a str, got {caption!r}")
                if (not isinstance(bbox, list) or len(bbox) != 4
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                   for v in bbox)):
                    raise ValueError(f"{where}: annotations[{i}].bbox: expected 4 finite numbers [l, t, w, h], "
                                     f"got {bbox!r}")
                parsed.append((caption, tuple(float(v) for v in bbox)))
            entries.append(ImageEntry(line_no, obj["image"], tuple(parsed)))
    return entries


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """A detector run's split.json: {"train": [image names], "val": [image names], ...}."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for key in ("train", "val"):
        names = data.get(key) if isinstance(data, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected {key!r} to be a list of image names")
    return {"train": data["train"], "val": data["val"]}


def n_train_lines(n_lines: int, val_fraction: float = VAL_FRACTION) -> int:
    """Leading lines that are train, as the detector trainer splits: floor(0.8 n), both parts non-empty."""
    if n_lines < 2:
        return n_lines
    return min(max(math.floor(n_lines * (1.0 - val_fraction) + 1e-9), 1), n_lines - 1)


def select_split(entries: list[ImageEntry], split: SplitName, split_file: str | Path | None = None) -> list[ImageEntry]:
    """The images of one split, in jsonl order.

    With a split file the names in it decide (an image named there but absent from
    the jsonl raises); otherwise the last 20% of lines are val.
    """
    split = SplitName(split)
    if split == SplitName.ALL:
        return list(entries)
    if split_file is not None:
        names = read_split_file(split_file)[split.value]
        known = {e.image for e in entries}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"{split_file}: {len(unknown)} {split.value} images are not in the jsonl, "
                             f"e.g. {unknown[0]!r}; expected the split of this data set")
        wanted = set(names)
        return [e for e in entries if e.image in wanted]
    n_train = n_train_lines(len(entries))
    return entries[:n_train] if split == SplitName.TRAIN else entries[n_train:]


def samples_of(entries: list[ImageEntry]) -> list[Sample]:
    return [Sample(e.image, caption, ltwh) for e in entries for caption, ltwh in e.annotations]


def requests_of(samples: list[Sample], batch: int) -> Iterator[tuple[str, list[int]]]:
    """(image, sample indices) per request: an image's captions in chunks of `batch`, images in order."""
    if batch < 1:
        raise ValueError(f"batch: expected a positive number of instances, got {batch}")
    by_image: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_image.setdefault(s.image, []).append(i)
    for image, indices in by_image.items():
        for start in range(0, len(indices), batch):
            yield image, indices[start : start + batch]
