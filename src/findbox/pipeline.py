"""The grounding pipeline: detect -> crop -> (upscale) -> embed -> score -> best box.

`propose` is the image half (everything that depends on the image alone), `ground`
the caption half. Work is shared across a request: each distinct image is detected
once (one batched detector call), its crops are upscaled and embedded once, and each
distinct caption is embedded once (and cached across requests by the scorer). With
an `ImageCache`, an image seen in an earlier request skips the image half entirely.
Images go through in chunks of PROPOSE_CHUNK, so memory stays bounded however many
instances a request carries.
"""

from __future__ import annotations

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

    @contextmanager
    def _stage(self, name: str, timings: dict[str, float]) -> Iterator[None]:
        """Adds the block's seconds to `timings[name]` (this call) and to the counters (since start)."""
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        timings[name] = timings.get(name, 0.0) + seconds
        self.counters.stage_seconds[name] = self.counters.stage_seconds.get(name, 0.0) + seconds

    def propose(self, images_rgb: list[np.ndarray], timings: dict[str, float] | None = None
                ) -> tuple[list[Candidates], list[torch.Tensor]]:
        """The image half: detect, crop, upscale and embed (or take all of it from the image cache).

        images_rgb: distinct (H, W, 3) uint8 RGB images.
        Returns per image its Candidates (xyxy in its pixels) and a (N_i, D) crop-embedding matrix.
        """
        timings = {} if timings is None else timings
        for stage in IMAGE_STAGES:
            timings.setdefault(stage, 0.0)
        candidates, embeddings, keys, todo = self._from_cache(images_rgb, timings)
        for start in range(0, len(todo), PROPOSE_CHUNK):
            chunk = todo[start : start + PROPOSE_CHUNK]
            # one batched detector call over the chunk's images
            with self._stage("detect", timings):
                found = self.detector.detect([images_rgb[i] for i in chunk])
            self.counters.images_detected += len(chunk)
            # exact boxes cut from the original image, upscaled when the pipeline has an upscaler
            with self._stage("crop_upscale", timings):
                crops = [crop for i, cands in zip(chunk, found)
                         for crop in prepare_crops(images_rgb[i], cands.xyxy, self.upscaler, self.scorer.preprocess.size_hw)]
            # every crop of the chunk through the image tower (in the scorer's max_batch chunks)
            with self._stage("embed_images", timings):
                flat = self.scorer.embed_images(crops)
            self.counters.crops_embedded += len(crops)
            for i, cands, emb in zip(chunk, found, torch.split(flat, [len(c) for c in found])):
                candidates[i], embeddings[i] = cands, emb
                if self.image_cache is not None:
                    self.image_cache.put(keys[i], ImageWork(cands, emb))  # the cache stores its own copy
        return candidates, embeddings

    def _from_cache(self, images_rgb: list[np.ndarray], timings: dict[str, float]):
        """(candidates, embeddings, keys, todo): per image its cached work or None, its cache key
        (None without a cache), and the indices still to propose."""
        n = len(images_rgb)
        candidates: list[Candidates | None] = [None] * n
        embeddings: list[torch.Tensor | None] = [None] * n
        keys: list[bytes | None] = [None] * n
        if self.image_cache is None:
            return candidates, embeddings, keys, list(range(n))
        todo = []
        with self._stage("image_cache", timings):
            for i, image in enumerate(images_rgb):
                keys[i] = image_key(image)
                work = self.image_cache.get(keys[i])
                if work is None:
                    todo.append(i)
                else:
                    candidates[i], embeddings[i] = work.candidates, work.embeddings
            self.counters.image_cache_hits += n - len(todo)
            self.counters.image_cache_misses += len(todo)
        return candidates, embeddings, keys, todo

    def ground(
        self,
        images_rgb: list[np.ndarray],
        queries: list[tuple[int, str]],
        timings: dict[str, float] | None = None,
    ) -> list[Grounding]:
        """Answer queries about a set of distinct images.

        images_rgb: distinct (H, W, 3) uint8 RGB images.
        queries: (image index, caption) pairs; answers come back in the same order.
        timings: if given, filled with seconds per stage for this call.
        """
        timings = {} if timings is None else timings
        _check_queries(queries, len(images_rgb))
        used = sorted({index for index, _ in queries})
        position = {index: k for k, index in enumerate(used)}
        # the image half, once per distinct image asked about
        candidates, embeddings = self.propose([images_rgb[i] for i in used], timings)
        # each distinct caption through the text tower once (the scorer caches them across requests)
        captions = list(dict.fromkeys(c for _, c in queries))
        with self._stage("embed_texts", timings):
            text_emb = self._embed_texts(captions)
        column = {c: k for k, c in enumerate(captions)}
        with self._stage("choose", timings):
            # one matrix product per image covers every caption asked of it
            logits = [self.scorer.score(emb, text_emb) for emb in embeddings]
            results = []
            for index, caption in queries:
                k = position[index]
                image_wh = (images_rgb[index].shape[1], images_rgb[index].shape[0])
                cands = candidates[k].with_match_score(logits[k][:, column[caption]])
                xyxy, chosen = self.ranking.pick(cands, caption, image_wh)
                self.counters.fallbacks += int(chosen < 0)
                results.append(Grounding(xyxy, cands, chosen, image_wh))
        self.counters.requests += 1
        self.counters.queries += len(queries)
        return results

    def _embed_texts(self, captions: list[str]) -> torch.Tensor:
        before = self.scorer.text_cache_misses
        text_emb = self.scorer.embed_texts(captions)
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


def _check_queries(queries: list[tuple[int, str]], n_images: int) -> None:
    for q, (index, caption) in enumerate(queries):
        if not 0 <= index < n_images:
            raise ValueError(f"queries[{q}]: image index {index} out of range for {n_images} images")
        if not isinstance(caption, str):
            raise TypeError(f"queries[{q}]: expected a str caption, got {type(caption).__name__}")
