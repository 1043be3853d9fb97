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
from findbox.crops import cap_crop, cut_crops
from findbox.pipeline import Grounding

ORIGINAL_CROP_BATCH = 4


@torch.inference_mode()
def reference_ground(pipeline, image_rgb: np.ndarray, caption: str, candidates: Candidates | None = None) -> Grounding:
    """One (image, caption) instance through the pipeline's models, one step at a time.

    candidates: the image's detections when the caller ran the detector already.
    """
    detector, scorer, upscaler = pipeline.detector, pipeline.scorer, pipeline.upscaler
    if candidates is None:
        candidates = detector.detect([image_rgb])[0]
    crops = cut_crops(image_rgb, candidates.xyxy)
    if upscaler is not None:
        crops = [upscaler.upscale([cap_crop(c, scorer.preprocess.size_hw)])[0] for c in crops]
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
    image_wh = (image_rgb.shape[1], image_rgb.shape[0])
    xyxy, chosen = pipeline.ranking.pick(candidates, caption, image_wh)
    return Grounding(xyxy, candidates, chosen, image_wh)


@torch.inference_mode()
def reference_request(pipeline, images_rgb: list[np.ndarray], captions: list[str]) -> list[Grounding]:
    """A whole request as the original served it: one detector call over every instance's image
    (an image sent with four captions is decoded and detected four times, in one batch), then
    each instance alone as in `reference_ground`."""
    if len(images_rgb) != len(captions):
        raise ValueError(f"reference_request: expected one caption per image, got {len(images_rgb)} images "
                         f"and {len(captions)} captions")
    detections = pipeline.detector.detect(images_rgb)
    return [reference_ground(pipeline, im, c, cands) for im, c, cands in zip(images_rgb, captions, detections)]
