"""Evaluation data: vlm.jsonl records -> instances, the split, and the client's request batches.

Reading and splitting are `findbox.data.vlm`'s, the same as detector and scorer training.
One instance is one (image, caption, true box). Requests are formed like the
published client's: for each image, its captions in requests of `batch`
instances (the image repeated once per instance), so a request never mixes images.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from findbox.data.vlm import VlmRecord, read_split, split_index


class SplitName(str, enum.Enum):
    VAL = "val"
    TRAIN = "train"
    ALL = "all"


@dataclass(frozen=True)
class Sample:
    """One instance to answer. truth_ltwh: [left, top, width, height] in image pixels.

    split: the data set's own split name from vlm.jsonl (e.g. "testA"); None when the data has none.
    """

    image: str
    caption: str
    truth_ltwh: tuple[float, float, float, float]
    split: str | None = None


def select_split(records: list[VlmRecord], split: SplitName, split_file: str | Path | None = None) -> list[VlmRecord]:
    """The images of one split, in jsonl order.

    With a split file the names in it decide (an image named there but absent from
    the jsonl raises); otherwise the last 20% of lines are val (`split_index`).
    """
    split = SplitName(split)
    if split == SplitName.ALL:
        return list(records)
    if split_file is not None:
        chosen = read_split(split_file)
        names = chosen.train if split == SplitName.TRAIN else chosen.val
        known = {r.image for r in records}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"{split_file}: {len(unknown)} {split.value} images are not in the jsonl, "
                             f"e.g. {unknown[0]!r}; expected the split of this data set")
        wanted = set(names)
        return [r for r in records if r.image in wanted]
    # a single line cannot be split in two: it is train, and val is empty
    n_train = split_index(len(records)) if len(records) >= 2 else len(records)
    return records[:n_train] if split == SplitName.TRAIN else records[n_train:]


def samples_of(records: list[VlmRecord]) -> list[Sample]:
    """One Sample per annotation, in jsonl order."""
    return [Sample(r.image, a.caption, a.bbox_ltwh, r.split_of(a)) for r in records for a in r.annotations]


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
