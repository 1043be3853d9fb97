"""Bounded LRU caches: per-image work (detections and crop embeddings), keyed by content, and
caption embeddings (`TextCache`, the scorer's).

Clients often send the same image in several requests, one caption each. Everything
that depends on the image alone (detector boxes, crop embeddings) is then reused:
only the caption is new, and captions are cached by the scorer already.

An image the server received is keyed by a hash of its file bytes (`EncodedImage.key`),
so a hit skips decoding too, and a request need not be decoded to be looked up; an
array an in-process caller passes is keyed by its pixels and shape. The cache belongs
to one pipeline: its models and settings are fixed, so they are not part of the key.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from findbox.boxes import Candidates
from findbox.images import EncodedImage


TEXT_CACHE_BYTES = 32 * 1024 * 1024  # PipelineConfig.text_cache_mb's default, for scorers built without a config


def _check_bounds(cache: str, max_entries: int, max_bytes: int) -> None:
    for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{cache}: expected {name} as an int >= 0, got {value!r}")


def image_key(image: np.ndarray | EncodedImage) -> bytes:
    """Content key: an EncodedImage's own key (BLAKE2b of its file bytes), or for an (H, W, 3)
    uint8 array a 16-byte BLAKE2b of shape, dtype and pixels.

    ~2 ms for a 1520x870 frame, against ~100 ms for the detector alone.
    """
    if isinstance(image, EncodedImage):
        return image.key
    image_rgb = image
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((image_rgb.shape, image_rgb.dtype.str)).encode())
    h.update(np.ascontiguousarray(image_rgb).data)
    return h.digest()


@dataclass(frozen=True)
class ImageWork:
    """What the pipeline computed for one image: its proposals, their (N, D) crop embeddings and
    the upright image's (W, H) (a hit on an encoded image is never decoded, so it comes from here)."""

    candidates: Candidates
    embeddings: torch.Tensor
    image_wh: tuple[int, int]

    def copy(self) -> "ImageWork":
        """Arrays copied, so that a caller editing its results in place cannot change the cache."""
        c = self.candidates
        return ImageWork(Candidates(c.xyxy.copy(), c.det_score.copy(), c.match_score.copy()), self.embeddings.clone(),
                         self.image_wh)

    @property
    def nbytes(self) -> int:
        c = self.candidates
        arrays = c.xyxy.nbytes + c.det_score.nbytes + c.match_score.nbytes
        return arrays + self.embeddings.element_size() * self.embeddings.nelement() + 256  # + object overhead


class ImageCache:
    """LRU of ImageWork, bounded by entry count and by bytes (whichever is hit first).

    max_entries: 0 disables the cache (every lookup misses, nothing is stored).
    max_bytes: total of `ImageWork.nbytes`; one entry is ~30 KB for 10 boxes at D=768.
    """

    def __init__(self, max_entries: int, max_bytes: int = 64 * 1024 * 1024):
        _check_bounds("image cache", max_entries, max_bytes)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, ImageWork] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> ImageWork | None:
        """A copy of the entry (the cache keeps its own), or None."""
        work = self._entries.get(key)
        if work is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return work.copy()

    def put(self, key: bytes, work: ImageWork) -> None:
        """Store a copy of `work` (evicting the least recently used entries past either bound)."""
        size = work.nbytes
        if self.max_entries == 0 or size > self.max_bytes:
            return
        work = work.copy()
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._entries[key] = work
        self.nbytes += size
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0


class TextCache:
    """LRU of caption -> (D,) embedding, bounded by entry count and by bytes (whichever is hit first).

    An entry's bytes (`entry_bytes`) are its embedding's, its caption's UTF-8 text's and a fixed
    overhead: the text counts because a client may send captions of any length (up to the body
    cap), which a count alone would let grow the cache without limit.
    max_entries: 0 disables the cache. An entry larger than max_bytes is not stored.
    Embeddings are stored as given: the scorer never edits them in place.
    """

    OVERHEAD = 256  # the dict slot, the str and tensor objects

    def __init__(self, max_entries: int, max_bytes: int = TEXT_CACHE_BYTES):
        _check_bounds("text cache", max_entries, max_bytes)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.nbytes = 0

    @classmethod
    def entry_bytes(cls, caption: str, embedding: torch.Tensor) -> int:
        return len(caption.encode("utf-8")) + embedding.element_size() * embedding.nelement() + cls.OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        """Captions from the least to the most recently used."""
        return iter(self._entries)

    def get(self, caption: str) -> torch.Tensor | None:
        """The caption's embedding (now the most recently used), or None."""
        embedding = self._entries.get(caption)
        if embedding is not None:
            self._entries.move_to_end(caption)
        return embedding

    def put(self, caption: str, embedding: torch.Tensor) -> None:
        """Store (or refresh) as the most recently used, evicting the least recently used past either bound."""
        size = self.entry_bytes(caption, embedding)
        if self.max_entries == 0 or size > self.max_bytes:
            return
        old = self._entries.pop(caption, None)
        if old is not None:
            self.nbytes -= self.entry_bytes(caption, old)
        self._entries[caption] = embedding
        self.nbytes += size
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            evicted_caption, evicted = self._entries.popitem(last=False)
            self.nbytes -= self.entry_bytes(evicted_caption, evicted)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
