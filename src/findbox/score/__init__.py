"""Stage 3: score crops against captions. One interface (`findbox.score.base.Scorer`),
one small class per model family, chosen from a `--scorer` spec (`findbox.score.spec`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from findbox.cache import TEXT_CACHE_BYTES
from findbox.score.base import Scorer
from findbox.score.spec import ScorerFamily, ScorerSpec, parse_scorer_spec


def load_scorer(
    spec: str | Path | ScorerSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    prompt: str | None = None,
    max_batch: int = 32,
    text_cache_size: int = 4096,
    text_cache_bytes: int = TEXT_CACHE_BYTES,
) -> Scorer:
    """Any scorer spec -> a ready `Scorer` of its family.

    prompt: overrides the spec's prompt, which overrides the family's default.
    """
    if not isinstance(spec, ScorerSpec):
        spec = parse_scorer_spec(spec)
    prompt = prompt if prompt is not None else spec.prompt
    if spec.family == ScorerFamily.OPEN_CLIP:
        from findbox.score.open_clip import OpenClipScorer

        return OpenClipScorer.from_files(spec.arch, spec.weights, spec.tokenizer, device, dtype, prompt, max_batch,
                                         text_cache_size, mean=spec.mean, std=spec.std,
                                         text_cache_bytes=text_cache_bytes)
    from findbox.score.transformers import TransformersScorer

    return TransformersScorer.from_pretrained(spec.path, device, dtype, prompt=prompt, max_batch=max_batch,
                                              text_cache_size=text_cache_size, text_cache_bytes=text_cache_bytes)
