"""A straightforward per-instance loop over the same models, as the original ran them.

Used to check that the batched `Pipeline` gives the same boxes, and as the
baseline in the benchmarks. Deliberately naive: the image is detected again for
every caption, every crop is upscaled alone, crops are embedded 4 at a time and
the caption is re-encoded for every instance.
"""

from __future__ import annotations

import numpy as np
import torch

from findbox.boxes import Candidates
from findbox.config import Fallback
from findbox.crops import cut_crops
from findbox.pipeline import Grounding, choose, fallback_box

ORIGINAL_CROP_BATCH = 4


@torch.inference_mode()
def reference_ground(pipeline, image_rgb: np.ndarray, caption: str) -> Grounding:
    """One (image, caption) instance through the pipeline's models, one step at a time."""
    detector, scorer, upscaler = pipeline.detector, pipeline.scorer, pipeline.upscaler
    candidates: Candidates = detector.detect([image_rgb])[0]
    crops = cut_crops(image_rgb, candidates.xyxy)
    if upscaler is not None:
        crops = [upscaler.upscale([c])[0] for c in crops]
    image_emb = []
    for start in range(0, len(crops), ORIGINAL_CROP_BATCH):
        pixels = scorer.preprocess(crops[start : start + ORIGINAL_CROP_BATCH]).to(scorer.device, scorer.dtype)
        emb = scorer.image_features(pixels)
        image_emb.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        text = scorer.text_features([caption])  # re-encoded every time
    if image_emb:
        text_emb = torch.nn.functional.normalize(text.float(), dim=-1).cpu()
        logits = scorer.score(torch.cat(image_emb), text_emb)[:, 0]
    else:
        logits = np.zeros(0, np.float32)
    candidates = candidates.with_match_score(logits)
    chosen = choose(candidates, caption, pipeline.score_fusion, pipeline.fusion_weight)
    image_wh = (image_rgb.shape[1], image_rgb.shape[0])
    box = fallback_box(Fallback(pipeline.fallback), image_wh) if chosen < 0 else candidates.xyxy[chosen].copy()
    return Grounding(box, candidates, chosen, image_wh)
