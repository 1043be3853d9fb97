"""The grounding pipeline: detect -> crop -> (upscale) -> embed -> score -> best box.

`propose` is the image half (everything that depends on the image alone), `ground`
the caption half. Work is shared across a request: each distinct image is detected
once (one batched detector call), its crops are upscaled and embedded once, and each
distinct caption is embedded once (and cached across requests by the scorer). With
an `ImageCache`, an image seen in an earlier request skips the image half entirely.

Images go through in chunks (PROPOSE_CHUNK images, PROPOSE_CHUNK_PIXELS pixels), and an
`EncodedImage` is decoded only when its chunk comes up and released once the chunk is
embedded, so memory stays bounded by a chunk however many images a request carries.
A `deadline` is checked between units of work (a chunk's detector call, an image's crops, a
scorer forward over crops or captions): past it the rest is dropped (DeadlineExceeded), so a
request nobody waits for any more frees the models within one such unit. Each check also
beats `Pipeline.heartbeat`, by which the server tells a hung model call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from findbox.boxes import Candidates, xyxy_to_ltwh
from findbox.cache import ImageCache, ImageWork, image_key
from findbox.config import Fallback, ScoreFusion
from findbox.crops import prepare_crops
from findbox.detect.ultralytics import Detector
from findbox.images import EncodedImage
from findbox.ranking import Ranking
from findbox.score.base import Scorer
from findbox.upscaler import Upscaler


@dataclass
class Grounding:
    """The answer for one (image, caption) query.

    xyxy: (4,) float32 box in original-image pixels.
    candidates: every proposal of the image, match_score scored against this caption.
    chosen: index into candidates, or -1 when the fallback box was returned.
    """

    xyxy: np.ndarray
    candidates: Candidates
    chosen: int
    image_wh: tuple[int, int]

    @property
    def ltwh(self) -> np.ndarray:
        return xyxy_to_ltwh(self.xyxy)

    @property
    def fallback(self) -> bool:
        return self.chosen < 0


@dataclass
class Counters:
    """Work done since construction; tests read these, /metrics reads them through `Pipeline.stats`."""

    requests: int = 0
    queries: int = 0
    images_detected: int = 0
    crops_embedded: int = 0
    captions_embedded: int = 0
    fallbacks: int = 0
    image_cache_hits: int = 0  # distinct images of a request whose boxes and embeddings came from the cache
    image_cache_misses: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)


# the counters that measure work (the cache ones are reported as a cache, see `Pipeline.stats`)
WORK_COUNTERS = ("requests", "queries", "images_detected", "crops_embedded", "captions_embedded", "fallbacks")

# distinct images detected and embedded together: bounds the detector batch and the
# crops held at once (crops then go to the scorer in chunks of its max_batch)
PROPOSE_CHUNK = 8
# and the decoded pixels held at once: 8 frames of 1920x1080 (16.6 MP) fit, phone photos go
# 2 at a time; ~72 MB as RGB. One image larger than this (up to max_image_pixels) is a chunk alone.
PROPOSE_CHUNK_PIXELS = 24_000_000

# what `ground` and `propose` take per image: decoded (H, W, 3) uint8 RGB, or a file not decoded yet
ImageInput = np.ndarray | EncodedImage


class DeadlineExceeded(TimeoutError):
    """The caller's deadline passed before the answer was ready; the rest of the work was dropped."""


class ImageDecodeError(ValueError):
    """images[index] passed its header probe but its pixels did not decode (found when its chunk came up).

    error: the decoder's ValueError (an `ImageTooLarge` when the decoder found it over the cap).
    """

    def __init__(self, index: int, error: ValueError):
        super().__init__(f"images[{index}]: {error}")
        self.index = index
        self.error = error


# the image half's stages, reported (as 0 s) even when the image cache did all their work
IMAGE_STAGES = ("detect", "crop_upscale", "embed_images")


class Pipeline:
    """Composes the stages. `upscaler=None` means crops go to the scorer as cut.

    fallback, score_fusion, fusion_weight: make up `self.ranking`, which chooses each answer.
    """

    def __init__(
        self,
        detector: Detector,
        scorer: Scorer,
        upscaler: Upscaler | None = None,
        fallback: Fallback = Fallback.IMAGE,
        score_fusion: ScoreFusion = ScoreFusion.SCORER,
        fusion_weight: float = 1.0,
        image_cache: ImageCache | None = None,
    ):
        self.detector = detector
        self.scorer = scorer
        self.upscaler = upscaler
        self.ranking = Ranking(score_fusion, fusion_weight, fallback)
        self.image_cache = image_cache  # None: every request pays for its images
        self.counters = Counters()
        # time.monotonic() of the last checkpoint passed: a model call that stops beating is hung
        self.heartbeat = time.monotonic()

    def checkpoint(self, deadline: float | None, before: str) -> None:
        """Between two units of work (a detector call, an image's crops, a scorer forward): beats
        the heartbeat, and raises DeadlineExceeded past `deadline` (time.monotonic() seconds)."""
        self.heartbeat = time.monotonic()
        if deadline is not None and self.heartbeat >= deadline:
            raise DeadlineExceeded(f"request: deadline passed before {before}; the rest of the work was dropped")

    @contextmanager
    def _stage(self, name: str, timings: dict[str, float]) -> Iterator[None]:
        """Adds the block's seconds to `timings[name]` (this call) and to the counters (since start)."""
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        timings[name] = timings.get(name, 0.0) + seconds
        self.counters.stage_seconds[name] = self.counters.stage_seconds.get(name, 0.0) + seconds

    def propose(self, images: list[ImageInput], timings: dict[str, float] | None = None,
                deadline: float | None = None) -> list[ImageWork]:
        """The image half: decode, detect, crop, upscale and embed (or take all of it from the image cache).

        images: distinct images, (H, W, 3) uint8 RGB arrays or EncodedImages (decoded chunk by chunk).
        deadline: time.monotonic() seconds; checked before each chunk, after its detector call, before
            each image's crops and each scorer forward (DeadlineExceeded past it): the work done past
            it is at most the unit under way.
        Returns per image its Candidates (xyxy in its pixels), a (N_i, D) crop-embedding matrix and its (W, H).
        Raises ImageDecodeError naming the image whose pixels do not decode.
        """
        timings = {} if timings is None else timings
        for stage in IMAGE_STAGES:
            timings.setdefault(stage, 0.0)
        works, keys, todo = self._from_cache(images, timings)
        checkpoint = functools.partial(self.checkpoint, deadline)
        for chunk in _chunks(todo, [_pixels(image) for image in images]):
            checkpoint("detecting")
            decoded = self._decode(images, chunk, timings)
            # one batched detector call over the chunk's images
            with self._stage("detect", timings):
                found = self.detector.detect(decoded)
            self.counters.images_detected += len(chunk)
            # exact boxes cut from the original image, upscaled when the pipeline has an upscaler
            with self._stage("crop_upscale", timings):
                crops = []
                for image, cands in zip(decoded, found):
                    checkpoint("cropping")
                    crops += prepare_crops(image, cands.xyxy, self.upscaler, self.scorer.preprocess.size_hw)
            # every crop of the chunk through the image tower (in the scorer's max_batch chunks)
            with self._stage("embed_images", timings):
                flat = self.scorer.embed_images(crops, checkpoint)
            self.counters.crops_embedded += len(crops)
            for i, image, cands, emb in zip(chunk, decoded, found, torch.split(flat, [len(c) for c in found])):
                works[i] = ImageWork(cands, emb, (image.shape[1], image.shape[0]))
                if self.image_cache is not None:
                    self.image_cache.put(keys[i], works[i])  # the cache stores its own copy
            # the pixels are not needed past here: free them before the next chunk is decoded
            del decoded, crops, image
        return works

    def _decode(self, images: list[ImageInput], chunk: list[int], timings: dict[str, float]) -> list[np.ndarray]:
        """The chunk's images as (H, W, 3) uint8 RGB arrays, decoding EncodedImages."""
        if all(isinstance(images[i], np.ndarray) for i in chunk):
            return [images[i] for i in chunk]
        decoded = []
        with self._stage("decode", timings):
            for i in chunk:
                image = images[i]
                if isinstance(image, EncodedImage):
                    try:
                        image = image.decode()
                    except ValueError as exc:
                        raise ImageDecodeError(i, exc) from exc
                decoded.append(image)
        return decoded

    def _from_cache(self, images: list[ImageInput], timings: dict[str, float]):
        """(works, keys, todo): per image its cached work or None, its cache key (None without a
        cache), and the indices still to propose."""
        n = len(images)
        works: list[ImageWork | None] = [None] * n
        keys: list[bytes | None] = [None] * n
        if self.image_cache is None:
            return works, keys, list(range(n))
        todo = []
        with self._stage("image_cache", timings):
            for i, image in enumerate(images):
                keys[i] = image_key(image)
                works[i] = self.image_cache.get(keys[i])
                if works[i] is None:
                    todo.append(i)
            self.counters.image_cache_hits += n - len(todo)
            self.counters.image_cache_misses += len(todo)
        return works, keys, todo

    def ground(
        self,
        images: list[ImageInput],
        queries: list[tuple[int, str]],
        timings: dict[str, float] | None = None,
        deadline: float | None = None,
    ) -> list[Grounding]:
        """Answer queries about a set of distinct images.

        images: distinct images, (H, W, 3) uint8 RGB arrays or EncodedImages (decoded lazily, chunk by chunk).
        queries: (image index, caption) pairs; answers come back in the same order.
        timings: if given, filled with seconds per stage for this call.
        deadline: time.monotonic() seconds; past it the rest of the work is dropped and
            DeadlineExceeded raised (checked between units of work: `checkpoint`).
        Raises ImageDecodeError with the index into `images` of an image that does not decode.
        """
        timings = {} if timings is None else timings
        _check_queries(queries, len(images))
        used = sorted({index for index, _ in queries})
        position = {index: k for k, index in enumerate(used)}
        # the image half, once per distinct image asked about
        try:
            works = self.propose([images[i] for i in used], timings, deadline)
        except ImageDecodeError as exc:  # name the image as the caller numbered it
            raise ImageDecodeError(used[exc.index], exc.error) from exc.error
        # each distinct caption through the text tower once (the scorer caches them across requests)
        captions = list(dict.fromkeys(c for _, c in queries))
        with self._stage("embed_texts", timings):
            text_emb = self._embed_texts(captions, functools.partial(self.checkpoint, deadline))
        column = {c: k for k, c in enumerate(captions)}
        with self._stage("choose", timings):
            # one matrix product per image covers every caption asked of it
            logits = [self.scorer.score(work.embeddings, text_emb) for work in works]
            results = []
            for index, caption in queries:
                k = position[index]
                cands = works[k].candidates.with_match_score(logits[k][:, column[caption]])
                xyxy, chosen = self.ranking.pick(cands, caption, works[k].image_wh)
                self.counters.fallbacks += int(chosen < 0)
                results.append(Grounding(xyxy, cands, chosen, works[k].image_wh))
        self.counters.requests += 1
        self.counters.queries += len(queries)
        return results

    def _embed_texts(self, captions: list[str], checkpoint=None) -> torch.Tensor:
        before = self.scorer.text_cache_misses
        text_emb = self.scorer.embed_texts(captions, checkpoint)
        self.counters.captions_embedded += self.scorer.text_cache_misses - before
        return text_emb

    def ground_one(self, image_rgb: np.ndarray, caption: str) -> Grounding:
        return self.ground([image_rgb], [(0, caption)])[0]

    def ground_captions(self, image_rgb: np.ndarray, captions: list[str]) -> list[Grounding]:
        """All captions of one image: detected and embedded once."""
        return self.ground([image_rgb], [(0, c) for c in captions])

    def warmup(self) -> None:
        """One tiny synthetic request through every stage, so the first real one does not pay
        for lazy set-up (oneDNN primitives, CUDA kernels, tokenizer state). Used by serve
        before /health says ready and by eval before its first timed request.

        Counted like any request. A grey image rarely gets a box, so one crop also goes through
        upscaling and the image tower directly (not counted: it answers nothing).
        """
        image = np.full((64, 64, 3), 127, np.uint8)
        self.ground([image], [(0, "warm up")])
        crop_xyxy = np.array([[16, 16, 48, 48]], np.float32)
        self.scorer.embed_images(prepare_crops(image, crop_xyxy, self.upscaler, self.scorer.preprocess.size_hw))

    def stats(self) -> dict:
        """Work since construction, as plain numbers (what /metrics exports).

        {"counters": {name: int} (WORK_COUNTERS),
         "stage_seconds": {stage: float seconds},
         "caches": {"image": {"hits", "misses", "entries"}, "text": {"hits", "misses"}}}
        The image cache reports 0 hits and misses when the pipeline has none.
        """
        c = self.counters
        return {
            "counters": {name: getattr(c, name) for name in WORK_COUNTERS},
            "stage_seconds": dict(c.stage_seconds),
            "caches": {
                "image": {"hits": c.image_cache_hits, "misses": c.image_cache_misses,
                          "entries": len(self.image_cache) if self.image_cache is not None else 0},
                "text": {"hits": self.scorer.text_cache_hits, "misses": self.scorer.text_cache_misses},
            },
        }


def _pixels(image: ImageInput) -> int:
    """Pixels the image holds decoded (an EncodedImage's from its header)."""
    return image.pixels if isinstance(image, EncodedImage) else image.shape[0] * image.shape[1]


def _chunks(todo: list[int], pixels: list[int]) -> Iterator[list[int]]:
    """`todo` in order, cut into chunks of at most PROPOSE_CHUNK images and PROPOSE_CHUNK_PIXELS
    pixels (a larger image alone). The detector groups by shape, so the cut never changes a box."""
    chunk: list[int] = []
    held = 0
    for i in todo:
        if chunk and (len(chunk) == PROPOSE_CHUNK or held + pixels[i] > PROPOSE_CHUNK_PIXELS):
            yield chunk
            chunk, held = [], 0
        chunk.append(i)
        held += pixels[i]
    if chunk:
        yield chunk


def _check_queries(queries: list[tuple[int, str]], n_images: int) -> None:
    for q, (index, caption) in enumerate(queries):
        if not 0 <= index < n_images:
            raise ValueError(f"queries[{q}]: image index {index} out of range for {n_images} images")
        if not isinstance(caption, str):
            raise TypeError(f"queries[{q}]: expected a str caption, got {type(caption).__name__}")
