"""The scorer's training loss: SigLIP's pairwise sigmoid loss with multi-positive labels.

A pure function of embeddings, so the trainer, GradCache and tests share it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_labels(caption_ids: torch.Tensor) -> torch.Tensor:
    """(N,) integer caption ids -> (N, N) float32 labels: +1 where the captions are equal, -1 elsewhere.

    Identical captions describe interchangeable objects, so they are positives, not
    negatives (the original treated them as negatives). The diagonal is always +1.
    """
    if caption_ids.ndim != 1:
        raise ValueError(f"caption_ids: expected shape (N,), got {tuple(caption_ids.shape)}")
    same = caption_ids[:, None] == caption_ids[None, :]
    return same.float() * 2.0 - 1.0


def sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
    caption_ids: torch.Tensor,
) -> torch.Tensor:
    """SigLIP's sigmoid loss over every image-text pair of a batch.

    image_emb, text_emb: (N, D) L2-normalised embeddings; row i of each is one crop and
        the caption it was cut for.
    logit_scale: scalar or (1,) log temperature, as SigLIP stores it (logits use exp(scale)).
    logit_bias: scalar or (1,) bias, or None (0) for models without one.
    caption_ids: (N,) integers; pairs with equal ids are positives.

    logits = image_emb @ text_emb.T * exp(logit_scale) + logit_bias, (N, N);
    loss = mean over rows i of -sum_j logsigmoid(label_ij * logit_ij). Computed in float32.
    Returns a scalar tensor.
    """
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb, text_emb: expected two (N, D) tensors of the same shape, "
            f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if caption_ids.shape != (image_emb.shape[0],):
        raise ValueError(f"caption_ids: expected shape ({image_emb.shape[0]},), got {tuple(caption_ids.shape)}")
    logits = image_emb.float() @ text_emb.float().T * logit_scale.float().exp().reshape(())
    if logit_bias is not None:
        logits = logits + logit_bias.float().reshape(())
    labels = pair_labels(caption_ids.to(logits.device))
    return -F.logsigmoid(labels * logits).sum(dim=-1).mean()
