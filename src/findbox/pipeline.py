"""The grounding pipeline: detect -> crop -> (upscale) -> score -> best box.

Work is shared across a request: each distinct image is detected once (one
batched detector call), its crops are upscaled and embedded once, and each
distinct caption is embedded once (and cached across requests by the scorer).
With an `ImageCache`, an image seen in an earlier request skips detection and
embedding too. Images go through in chunks of PROPOSE_CHUNK, so memory stays
bounded however many instances a request carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from findbox.boxes import Candidates, xyxy_to_ltwh
from findbox.cache import ImageCache, ImageWork, image_key
from findbox.config import Fallback, ScoreFusion
from findbox.crops import prepare_crops
from findbox.detect.ultralytics import Detector
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
    """Work done since construction; tests and /metrics read these."""

    requests: int = 0
    queries: int = 0
    images_detected: int = 0
    crops_embedded: int = 0
    captions_embedded: int = 0
    fallbacks: int = 0
    image_cache_hits: int = 0  # distinct images of a request whose boxes and embeddings came from the cache
    image_cache_misses: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)


def fallback_box(fallback: Fallback, image_wh: tuple[int, int]) -> np.ndarray:
    w, h = image_wh
    if fallback == Fallback.IMAGE:
        return np.array([0, 0, w, h], dtype=np.float32)
    return np.zeros(4, dtype=np.float32)


# det_score floor under log: a zero confidence ranks last without producing -inf
MIN_DET_SCORE = 1e-6


def rank_scores(candidates: Candidates, fusion: ScoreFusion = ScoreFusion.SCORER, weight: float = 1.0) -> np.ndarray:
    """(N,) float32 ranking value per candidate; the highest wins. Pure: no model runs.

    scorer:  match_score (the scorer logit), as the original ranked.
    product: match_score + weight * log(det_score); for a sigmoid scorer with a very
             negative logit, logit ~ log sigmoid(logit), so this ranks like
             p_match * det_conf ** weight. weight 0 equals `scorer`.
    """
    fusion = ScoreFusion(fusion)
    if fusion == ScoreFusion.SCORER:
        return candidates.match_score
    det = np.log(np.maximum(candidates.det_score, np.float32(MIN_DET_SCORE)))
    return (candidates.match_score + np.float32(weight) * det).astype(np.float32)


TIE_TOLERANCE = 1e-5  # relative; float32 batching noise is ~1e-7


def choose(candidates: Candidates, caption: str, fusion: ScoreFusion = ScoreFusion.SCORER,
           weight: float = 1.0) -> int:
    """Index of the winning candidate: highest `rank_scores`; -1 when there is none.

    An empty caption describes nothing, so the most confident detection wins.
    """
    if len(candidates) == 0:
        return -1
    if not caption.strip():
        return int(np.argmax(candidates.det_score))
    scores = np.asarray(rank_scores(candidates, fusion, weight), dtype=np.float64)
    best = np.nanmax(scores) if np.isfinite(scores).any() else np.nan
    if not np.isfinite(best):
        return int(np.argmax(candidates.det_score))
    # Scores equal within float noise (identical boxes give identical crops) are a tie, and
    # batch size alone can reorder them at the 1e-7 level: break ties by detector confidence
    # so that batched and one-at-a-time runs pick the same box.
    tied = scores >= best - TIE_TOLERANCE * max(1.0, abs(best))
    return int(np.flatnonzero(tied)[np.argmax(candidates.det_score[tied])])


# distinct images detected and embedded together: bounds the detector batch and the
# crops held at once (crops then go to the scorer in chunks of its max_batch)
PROPOSE_CHUNK = 8


class Pipeline:
    """Composes the stages. `upscaler=None` means crops go to the scorer as cut."""

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
        self.fallback = Fallback(fallback)
        self.score_fusion = ScoreFusion(score_fusion)
        self.fusion_weight = float(fusion_weight)
        self.image_cache = image_cache  # None: every request pays for its images
        self.counters = Counters()

    def _timed(self, stage: str, timings: dict[str, float], start: float) -> float:
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + now - start
        self.counters.stage_seconds[stage] = self.counters.stage_seconds.get(stage, 0.0) + now - start
        return now

    def propose(self, images_rgb: list[np.ndarray]) -> tuple[list[Candidates], list[torch.Tensor]]:
        """Detect, crop, upscale and embed: everything that depends on the image alone.

        Returns per image its Candidates and a (N_i, D) crop-embedding matrix.
        """
        candidates, embeddings = self._propose(images_rgb, {})
        return candidates, embeddings

    def _propose(self, images_rgb, timings):
        n = len(images_rgb)
        candidates: list[Candidates | None] = [None] * n
        embeddings: list[torch.Tensor | None] = [None] * n
        keys: list[bytes | None] = [None] * n
        todo = list(range(n))
        for stage in ("detect", "crop_upscale", "embed_images"):  # reported even when the cache did it all
            timings.setdefault(stage, 0.0)
        if self.image_cache is not None:
            t = time.perf_counter()
            todo = []
            for i, image in enumerate(images_rgb):
                keys[i] = image_key(image)
                work = self.image_cache.get(keys[i])
                if work is None:
                    todo.append(i)
                else:
                    candidates[i], embeddings[i] = work.candidates, work.embeddings
            self.counters.image_cache_hits += n - len(todo)
            self.counters.image_cache_misses += len(todo)
            self._timed("image_cache", timings, t)
        for start in range(0, len(todo), PROPOSE_CHUNK):
            chunk = todo[start : start + PROPOSE_CHUNK]
            t = time.perf_counter()
            found = self.detector.detect([images_rgb[i] for i in chunk])
            self.counters.images_detected += len(chunk)
            t = self._timed("detect", timings, t)
            crops: list[np.ndarray] = []
            for i, cands in zip(chunk, found):
                crops.extend(prepare_crops(images_rgb[i], cands.xyxy, self.upscaler))
            t = self._timed("crop_upscale", timings, t)
            flat = self.scorer.embed_images(crops)
            self.counters.crops_embedded += len(crops)
            self._timed("embed_images", timings, t)
            for i, cands, emb in zip(chunk, found, torch.split(flat, [len(c) for c in found])):
                candidates[i], embeddings[i] = cands, emb
                if self.image_cache is not None:
                    self.image_cache.put(keys[i], ImageWork(cands, emb))  # the cache stores its own copy
        return candidates, embeddings

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
        for q, (index, caption) in enumerate(queries):
            if not 0 <= index < len(images_rgb):
                raise ValueError(f"queries[{q}]: image index {index} out of range for {len(images_rgb)} images")
            if not isinstance(caption, str):
                raise TypeError(f"queries[{q}]: expected a str caption, got {type(caption).__name__}")
        used = sorted({index for index, _ in queries})
        position = {index: k for k, index in enumerate(used)}
        candidates, embeddings = self._propose([images_rgb[i] for i in used], timings)

        t = time.perf_counter()
        captions = list(dict.fromkeys(c for _, c in queries))
        before = self.scorer.text_cache_misses
        text_emb = self.scorer.embed_texts(captions)
        self.counters.captions_embedded += self.scorer.text_cache_misses - before
        caption_row = {c: k for k, c in enumerate(captions)}
        t = self._timed("embed_texts", timings, t)

        # one matrix product per image covers every caption asked of it
        logits = [self.scorer.score(emb, text_emb) for emb in embeddings]
        results = []
        for index, caption in queries:
            k = position[index]
            image = images_rgb[index]
            image_wh = (image.shape[1], image.shape[0])
            cands = candidates[k].with_match_score(logits[k][:, caption_row[caption]])
            chosen = choose(cands, caption, self.score_fusion, self.fusion_weight)
            if chosen < 0:
                self.counters.fallbacks += 1
                box = fallback_box(self.fallback, image_wh)
            else:
                box = cands.xyxy[chosen].copy()
            results.append(Grounding(box, cands, chosen, image_wh))
        self._timed("choose", timings, t)
        self.counters.requests += 1
        self.counters.queries += len(queries)
        return results

    def ground_one(self, image_rgb: np.ndarray, caption: str) -> Grounding:
        return self.ground([image_rgb], [(0, caption)])[0]

    def ground_captions(self, image_rgb: np.ndarray, captions: list[str]) -> list[Grounding]:
        """All captions of one image: detected and embedded once."""
        return self.ground([image_rgb], [(0, c) for c in captions])
