"""Data for scorer training: crops and captions in, augmented uint8 crops and caption ids out.

Preprocessing is the server's: `CropPreprocess.resize` (the processor's size and filter),
then pixel-level albumentations on uint8 RGB, then `CropPreprocess.normalize` last (done by
the trainer per micro-batch). Text is `Scorer.tokenize` (prompt, max_length padding).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from findbox.train.crops import MANIFEST, CropRow, read_manifest


# --- crops and captions -------------------------------------------------------------------------


@dataclass(frozen=True)
class CropSet:
    """The crops of one split, from one or several `findbox crops` folders.

    roots: the crops folders; folder_ids: (N,) int64, the folder of each row (an index into roots).
    rows: manifest rows, folder by folder in manifest order; row_numbers: their 1-based manifest lines.
    caption_ids: (N,) int64 index into the shared caption list (equal caption = equal id);
        -1 (`loss.NO_CAPTION`) for a proposal crop that no caption names.
    image_ids: (N,) int64, equal for crops of one source image (the order of `image_groups`);
        images of different folders are different images even when their names are equal.
    """

    roots: tuple[Path, ...]
    folder_ids: np.ndarray
    rows: tuple[CropRow, ...]
    row_numbers: tuple[int, ...]
    caption_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, index: int) -> Path:
        """The PNG of row `index`."""
        return self.roots[self.folder_ids[index]] / self.rows[index].crop

    def where(self, index: int) -> str:
        """Row `index` as a person finds it: its manifest and line."""
        return f"{self.roots[self.folder_ids[index]] / MANIFEST}:{self.row_numbers[index]}"

    def image_groups(self) -> list[np.ndarray]:
        """Row indices grouped by source image, in first-seen order."""
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for i, (folder, row) in enumerate(zip(self.folder_ids.tolist(), self.rows)):
            groups[(folder, row.image)].append(i)
        return [np.asarray(g) for g in groups.values()]

    @property
    def image_ids(self) -> np.ndarray:
        ids = np.empty(len(self.rows), dtype=np.int64)
        for k, rows in enumerate(self.image_groups()):
            ids[rows] = k
        return ids


def load_crop_sets(crops_dirs: str | Path | list[str | Path]) -> tuple[list[str], CropSet, CropSet]:
    """(captions, train, val) of one `findbox crops` folder or several, in the order given.

    Several folders train as one set (e.g. day and night captures, two noise levels): their rows
    are concatenated, each folder's own split kept, images grouped per folder.
    captions: the distinct captions of all folders and both splits, sorted; ids index this list.
    Proposal crops (`findbox crops --proposals`) train only: the validation figure stays the
    decision among ground-truth crops, comparable across crop folders.
    Raises ValueError for an empty folder, missing files (see `read_manifest`), a folder given
    twice and no train crop.
    """
    from findbox.train.loss import NO_CAPTION

    roots = [Path(d) for d in ([crops_dirs] if isinstance(crops_dirs, (str, Path)) else crops_dirs)]
    if not roots:
        raise ValueError("crops: expected at least one folder made by `findbox crops`")
    seen = [r.resolve() for r in roots]
    if len(set(seen)) != len(seen):
        raise ValueError(f"crops: a folder is given twice in {[str(r) for r in roots]}; its crops would count double")
    manifests = [read_manifest(root) for root in roots]
    captions = sorted({r.caption for rows in manifests for r in rows if r.caption is not None})
    index = {c: i for i, c in enumerate(captions)}
    sets = {}
    for split in ("train", "val"):
        numbered = [(k, n, r) for k, rows in enumerate(manifests) for n, r in enumerate(rows, start=1)
                    if r.split == split and (split == "train" or r.kind == "truth")]
        sets[split] = CropSet(
            roots=tuple(roots),
            folder_ids=np.asarray([k for k, _, _ in numbered], dtype=np.int64),
            rows=tuple(r for _, _, r in numbered),
            row_numbers=tuple(n for _, n, _ in numbered),
            caption_ids=np.asarray([NO_CAPTION if r.caption is None else index[r.caption] for _, _, r in numbered],
                                   dtype=np.int64),
        )
    if not len(sets["train"]):
        shown = ", ".join(str(r) for r in roots)
        raise ValueError(f"crops: {shown} has no train crop; expected rows with split 'train' in its manifest")
    return captions, sets["train"], sets["val"]


def check_caption_lengths(crop_sets: list[CropSet], scorer) -> None:
    """Raise ValueError listing the manifest rows whose prompted caption does not fit the text length.

    Training would silently truncate them, and the server would read a different text.
    """
    from findbox.score.preprocess import format_prompt

    lengths: dict[str, int] = {}
    too_long = []
    for crop_set in crop_sets:
        for i, row in enumerate(crop_set.rows):
            if row.caption is None:
                continue
            if row.caption not in lengths:
                ids = scorer.tokenizer(format_prompt(scorer.prompt, row.caption))["input_ids"]
                lengths[row.caption] = len(ids)
            if lengths[row.caption] > scorer.max_text_length:
                too_long.append((crop_set.where(i), row.caption, lengths[row.caption]))
    if too_long:
        shown = "; ".join(f"{where}: {c!r} ({k} tokens)" for where, c, k in too_long[:5])
        more = f"; and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise ValueError(
            f"caption: {len(too_long)} manifest row(s) exceed the text length of {scorer.max_text_length} tokens "
            f"with the prompt {scorer.prompt!r}: {shown}{more}"
        )


# Captions name colours: a transform that removes or swaps colours would teach the scorer
# that "red" may look grey. V1's ToGray suits the detector, not the scorer.
COLOUR_CHANGING = ("ToGray", "ToSepia", "ChannelShuffle", "ChannelDropout")


def pixel_level(transforms: list) -> tuple[list, list[str]]:
    """(kept, dropped names): only pixel-level (ImageOnly) transforms that keep colours suit crops.

    Crops keep the geometry the server will show the scorer; flips, rotations and warps
    belong to the detector, whose boxes move with the pixels.
    """
    from findbox.env import require
    require("albumentations", "train")
    import albumentations as A

    def keep(t) -> bool:
        return isinstance(t, A.ImageOnlyTransform) and type(t).__name__ not in COLOUR_CHANGING

    kept = [t for t in transforms if keep(t)]
    dropped = [type(t).__name__ for t in transforms if not keep(t)]
    return kept, dropped


class CropDataset(torch.utils.data.Dataset):
    """(row index, augmentation seed) -> ((H, W, 3) uint8 crop, resized and augmented; caption id).

    The seed makes a sample's augmentation independent of worker and rank: the same
    (seed, epoch, position) always gives the same pixels.
    """

    def __init__(self, crop_set: CropSet, preprocess, transforms: list | None = None):
        self.crop_set = crop_set
        self.preprocess = preprocess
        self.augment = None
        if transforms:
            from findbox.env import require
            require("albumentations", "train")
            import albumentations as A

            self.augment = A.Compose(transforms)

    def __len__(self) -> int:
        return len(self.crop_set)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int]:
        from findbox.images import load_image_file

        index, seed = key
        crop = self.preprocess.resize(load_image_file(self.crop_set.path(index)))
        if self.augment is not None:
            self.augment.set_random_seed(seed)
            crop = self.augment(image=crop)["image"]
        return np.ascontiguousarray(crop, dtype=np.uint8), int(self.crop_set.caption_ids[index])


def collate(samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ((n, H, W, 3) uint8, (n,) int64)."""
    return torch.from_numpy(np.stack([s[0] for s in samples])), torch.tensor([s[1] for s in samples])


# --- batches ------------------------------------------------------------------------------------


def epoch_batches(n: int, batch: int, epoch: int, seed: int) -> list[np.ndarray]:
    """The global batches of one epoch: a seeded permutation of range(n) cut into batches of `batch`.

    Every batch is full: the last is topped up from the start of the permutation, so every
    crop is seen once an epoch and the contrastive batch never shrinks. Identical on every rank.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch: expected 1..{n} (the number of crops), got {batch}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    steps = -(-n // batch)
    order = np.concatenate([order, order[: steps * batch - n]])
    return [order[s * batch : (s + 1) * batch] for s in range(steps)]


class RankBatches(torch.utils.data.Sampler):
    """This rank's contiguous slice of each global batch, as (row index, augmentation seed) keys.

    Contiguous slices in rank order make `gather` reassemble the global batch in order.
    Call `set_epoch` before each epoch.
    """

    def __init__(self, n: int, batch: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        if batch % world_size:
            raise ValueError(f"batch: expected a multiple of the number of processes ({world_size}), got {batch}")
        self.n, self.batch, self.rank, self.world_size, self.seed = n, batch, rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[np.ndarray]:
        return epoch_batches(self.n, self.batch, self.epoch, self.seed)

    def steps(self, epochs: int) -> int:
        """Optimizer steps of epochs 1..epochs (the trainer's schedule length)."""
        return epochs * len(self)

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self):
        offset = 0  # a global position per sample of the epoch, the key of its augmentation
        for global_batch in self.global_batches():
            per_rank = len(global_batch) // self.world_size
            start = self.rank * per_rank
            rows = global_batch[start : start + per_rank]
            yield [(int(i), _sample_seed(self.seed, self.epoch, offset + start + k)) for k, i in enumerate(rows)]
            offset += len(global_batch)


def image_epoch_batches(groups: list[np.ndarray], batch: int, epoch: int, seed: int,
                        multiple_of: int = 1) -> list[np.ndarray]:
    """The global batches of one epoch, built from whole source images.

    groups: row indices of each image (`CropSet.image_groups`). Images are visited in a seeded
    permutation and packed in order while the batch holds at most `batch` crops; an image with
    more crops than `batch` is a batch of its own. The last batch is topped up with whole
    images from the start of the permutation while they fit, so every image is seen once an
    epoch and the last batch does not shrink. A batch is then padded to a multiple of
    `multiple_of` (the processes, which gather equal shares) by repeating its first rows: a
    repeat has its own caption, so it is a positive of its copy and no false negative.
    Identical on every rank; the number of batches may differ between epochs.
    """
    if batch < 1:
        raise ValueError(f"batch: expected at least 1, got {batch}")
    if not groups:
        raise ValueError("groups: expected at least one image, got none")
    order = np.random.default_rng([seed, epoch]).permutation(len(groups))
    batches: list[list[np.ndarray]] = [[]]
    size = 0
    for g in order:
        if size and size + len(groups[g]) > batch:
            batches.append([])
            size = 0
        batches[-1].append(groups[g])
        size += len(groups[g])
    if len(batches) > 1:
        for g in order:
            if size + len(groups[g]) > batch:
                break
            batches[-1].append(groups[g])
            size += len(groups[g])
    out = []
    for parts in batches:
        rows = np.concatenate(parts)
        short = -len(rows) % multiple_of
        out.append(np.concatenate([rows, np.resize(rows, short)]) if short else rows)
    return out


class RankImageBatches(RankBatches):
    """`RankBatches` of whole images (`image_epoch_batches`): each caption meets the other objects
    of its own scene as negatives, plus those of the batch's other images."""

    def __init__(self, groups: list[np.ndarray], batch: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        super().__init__(sum(len(g) for g in groups), batch, rank, world_size, seed)
        self.groups = groups

    def global_batches(self) -> list[np.ndarray]:
        return image_epoch_batches(self.groups, self.batch, self.epoch, self.seed, self.world_size)

    def steps(self, epochs: int) -> int:
        return sum(len(image_epoch_batches(self.groups, self.batch, e, self.seed, self.world_size))
                   for e in range(1, epochs + 1))

    def __len__(self) -> int:
        return len(self.global_batches())


def _sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


# --- the validation figure ----------------------------------------------------------------------


@dataclass(frozen=True)
class GroundingAccuracy:
    """The task's own decision on ground-truth crops.

    For each validation image and each of its captions: is the crop that caption names the
    highest-scoring of that image's crops? (A crop with an identical caption counts: the
    caption names it too.) chance: the same figure for a uniform random pick.
    """

    accuracy: float
    chance: float
    queries: int
    images: int

    def to_dict(self) -> dict:
        return {"val_accuracy": self.accuracy, "val_chance": self.chance, "val_queries": self.queries,
                "val_images": self.images}


def grounding_accuracy(image_emb: torch.Tensor, text_emb: torch.Tensor, caption_ids: np.ndarray,
                       groups: list[np.ndarray]) -> GroundingAccuracy:
    """image_emb: (N, D) crops; text_emb: (C, D) one row a caption id; caption_ids: (N,);
    groups: row indices of each source image. Ranking by cosine equals ranking by the logit."""
    hits, chance, queries = 0, 0.0, 0
    ids = np.asarray(caption_ids)
    for rows in groups:
        scores = (text_emb[ids[rows]].float() @ image_emb[rows].float().T).cpu().numpy()  # (queries, crops)
        best = rows[scores.argmax(axis=1)]
        hits += int((ids[best] == ids[rows]).sum())
        chance += float((ids[rows][:, None] == ids[rows][None, :]).mean(axis=1).sum())
        queries += len(rows)
    if queries == 0:
        return GroundingAccuracy(float("nan"), float("nan"), 0, 0)
    return GroundingAccuracy(hits / queries, chance / queries, queries, len(groups))
