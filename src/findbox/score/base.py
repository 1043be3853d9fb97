"""The scorer interface: what every model family provides, and what they all share.

A family (`TransformersScorer`, `OpenClipScorer`, `OnnxScorer`) supplies only its towers
(`image_features`, `text_features`), its `embed_dim`, its `logit_scale_bias` and an
`info` dict. Chunking, L2 normalisation, autocast, the caption cache and the logit
are here, once, so every family embeds and scores by the same rules.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from findbox.cache import TEXT_CACHE_BYTES, TextCache
from findbox.score.preprocess import CropPreprocess, check_prompt


class Scorer(abc.ABC):
    """Embeds crops and captions; scores every crop against every caption.

    Scores are the model's own logit: cos(img, txt) * exp(logit_scale) + logit_bias
    (bias 0 for softmax-trained CLIPs). Ranking within one caption needs nothing else,
    and no softmax is ever taken: over the one caption of a query it would always be 1.0.
    """

    def __init__(
        self,
        preprocess: CropPreprocess,
        prompt: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
        text_cache_size: int = 4096,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
    ):
        self.preprocess = preprocess
        self.prompt = check_prompt(prompt)  # a spec file's or a training config's prompt too
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.text_cache_size = text_cache_size
        self.text_cache_bytes = text_cache_bytes
        self._text_cache = TextCache(text_cache_size, text_cache_bytes)
        self.text_cache_hits = 0
        self.text_cache_misses = 0
        # torch.bfloat16 under precision bf16-mixed: fp32 weights, bf16 matmuls via torch.autocast
        self.autocast_dtype: torch.dtype | None = None
        # crops whose longer side is at most this are scored at this square input (`set_small_input`)
        self.small_input: int | None = None

    # -- what a family provides

    @abc.abstractmethod
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) normalised pixels on `device` -> (n, D) projected, not yet normalised embeddings."""

    @abc.abstractmethod
    def text_features(self, captions: list[str]) -> torch.Tensor:
        """Raw captions (the family prompts and tokenises them) -> (m, D) projected, not yet normalised."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """D, the width of the shared image-text embedding."""

    @property
    @abc.abstractmethod
    def info(self) -> dict:
        """{"kind", "family", "prompt", ...}: what the server logs and reports about this scorer."""

    @abc.abstractmethod
    def logit_scale_bias(self) -> tuple[float, float]:
        """(exp(logit_scale), logit_bias) as floats; bias 0.0 for softmax-trained models."""

    def input_sizes(self) -> tuple[int, ...]:
        """Square input sides other than `preprocess.size_hw` this family's `image_features` accepts.

        () = the model's own size only. A family that interpolates its position embeddings
        (SigLIP, CLIP) or runs any patch grid (SigLIP 2 NaFlex) returns the sides it can run.
        """
        return ()

    # -- shared by every family

    def set_small_input(self, side: int | None) -> None:
        """Score crops whose longer side is at most `side` pixels at a side x side input (fewer tokens).

        None or 0 turns it off. Raises ValueError naming `small_crop_input` when this scorer
        cannot run that size (a size it has no position embeddings for, or not smaller than its own).
        """
        if not side:
            self.small_input = None
            return
        allowed = self.input_sizes()
        if side not in allowed:
            h, w = self.preprocess.size_hw
            raise ValueError(f"small_crop_input: expected 0 (off) or one of {list(allowed) or 'none'} for this "
                             f"{self.info.get('family', 'scorer')} scorer (input {h}x{w}), got {side}")
        self.small_input = int(side)

    def _input_groups(self, crops: list[np.ndarray]) -> list[tuple[CropPreprocess, list[int]]]:
        """Crops by the input size they are scored at: [(preprocess, crop indices)], the full size first."""
        if self.small_input is None:
            return [(self.preprocess, list(range(len(crops))))]
        small = [i for i, c in enumerate(crops) if max(c.shape[:2]) <= self.small_input]
        small_set = set(small)
        full = [i for i in range(len(crops)) if i not in small_set]
        side = self.small_input
        return [(self.preprocess, full), (dataclasses.replace(self.preprocess, size_hw=(side, side)), small)]

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def embed_images(self, crops: list[np.ndarray], checkpoint: Callable[[str], None] | None = None) -> torch.Tensor:
        """(h, w, 3) uint8 RGB crops -> (N, D) float32 L2-normalised on the CPU, in chunks of max_batch.

        With `small_input` set, small crops are embedded in their own chunks at the small size;
        rows stay in the order of `crops`.
        checkpoint(before): called before each chunk's forward; it raises to drop the rest (a deadline).
        """
        rows: list[int] = []
        chunks = []
        for preprocess, indices in self._input_groups(crops):
            for start in range(0, len(indices), self.max_batch):
                if checkpoint is not None:
                    checkpoint("embedding crops")
                chunk = indices[start : start + self.max_batch]
                pixels = preprocess([crops[i] for i in chunk]).to(self.device, self.dtype)
                with self._autocast():
                    emb = self.image_features(pixels).float()
                chunks.append(torch.nn.functional.normalize(emb, dim=-1).cpu())
                rows.extend(chunk)
        if not chunks:
            return torch.zeros((0, self.embed_dim))
        emb = torch.cat(chunks)
        if rows != list(range(len(crops))):
            emb = emb[torch.argsort(torch.as_tensor(rows))]
        return emb

    @torch.inference_mode()
    def embed_texts(self, captions: list[str], checkpoint: Callable[[str], None] | None = None) -> torch.Tensor:
        """Captions -> (M, D) float32 L2-normalised on the CPU. Distinct captions are cached (`TextCache`, LRU)."""
        found = {c: self._text_cache.get(c) for c in dict.fromkeys(captions)}
        missing = [c for c, e in found.items() if e is None]
        self.text_cache_hits += len(captions) - len(missing)
        self.text_cache_misses += len(missing)
        for start in range(0, len(missing), self.max_batch):
            if checkpoint is not None:  # called before each chunk's forward; it raises to drop the rest
                checkpoint("embedding captions")
            chunk = missing[start : start + self.max_batch]
            with self._autocast():
                emb = self.text_features(chunk).float()
            # a row of its own each: a view would keep its whole batch alive, past the cache's byte count
            found.update((c, e.clone()) for c, e in zip(chunk, torch.nn.functional.normalize(emb, dim=-1).cpu()))
        # read before caching: a request larger than the cache still gets every caption
        result = [found[c] for c in captions]
        for c in captions:  # in request order, so that the last used are the most recent
            self._text_cache.put(c, found[c])
        if not result:
            return torch.zeros((0, self.embed_dim))
        return torch.stack(result)

    def score(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> np.ndarray:
        """(N, D) x (M, D) normalised embeddings -> (N, M) float32 logits."""
        scale, bias = self.logit_scale_bias()
        return (image_emb.float() @ text_emb.float().T * scale + bias).numpy()


def logit_scale_bias_of(model: torch.nn.Module) -> tuple[float, float]:
    """(exp(model.logit_scale), model.logit_bias or 0.0): where transformers and open_clip models keep them."""
    scale = float(model.logit_scale.detach().float().exp())
    bias = getattr(model, "logit_bias", None)
    return scale, float(bias.detach().float()) if bias is not None else 0.0
