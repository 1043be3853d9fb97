"""The scorer's training losses: SigLIP's pairwise sigmoid loss with multi-positive labels, and an
optional listwise term that is the server's decision itself (pick this image's box for the caption).

Pure functions of embeddings, so the trainer, GradCache and tests share them.

Caption id -1 marks a crop without a caption (a detector proposal that matches no object): its
image row has only negatives, and its text column is not a caption, so it is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NO_CAPTION = -1  # caption id of a crop that no caption names


def pair_labels(caption_ids: torch.Tensor) -> torch.Tensor:
    """(N,) integer caption ids -> (N, N) float32 labels, [image row, caption column]:
    +1 where the captions are equal, -1 elsewhere, 0 in the column of a crop without caption (-1).

    Identical captions describe interchangeable objects, so they are positives, not
    negatives (the original treated them as negatives). The diagonal is +1 for every crop
    with a caption; a crop without one is a negative for every caption (its row is all -1).
    """
    if caption_ids.ndim != 1:
        raise ValueError(f"caption_ids: expected shape (N,), got {tuple(caption_ids.shape)}")
    same = caption_ids[:, None] == caption_ids[None, :]
    labels = same.float() * 2.0 - 1.0
    # a crop without caption: no positive in its row, and its column is no caption at all
    labels[caption_ids == NO_CAPTION, :] = -1.0
    labels[:, caption_ids == NO_CAPTION] = 0.0
    return labels


def pair_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor | None) -> torch.Tensor:
    """(N, D), (N, D) L2-normalised -> (N, N) float32 logits [image row, caption column]:
    image_emb @ text_emb.T * exp(logit_scale) + logit_bias, as the server scores."""
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb, text_emb: expected two (N, D) tensors of the same shape, "
            f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    logits = image_emb.float() @ text_emb.float().T * logit_scale.float().exp().reshape(())
    if logit_bias is not None:
        logits = logits + logit_bias.float().reshape(())
    return logits


def _check_ids(name: str, ids: torch.Tensor, n: int) -> None:
    if ids.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {tuple(ids.shape)}")


def sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
    caption_ids: torch.Tensor,
) -> torch.Tensor:
    """SigLIP's sigmoid loss over every image-text pair of a batch.

    image_emb, text_emb: (N, D) L2-normalised embeddings; row i of each is one crop and
        the caption it was cut for (any caption for a crop without one: its column is ignored).
    logit_scale: scalar or (1,) log temperature, as SigLIP stores it (logits use exp(scale)).
    logit_bias: scalar or (1,) bias, or None (0) for models without one.
    caption_ids: (N,) integers; pairs with equal ids are positives; -1 = no caption (`pair_labels`).

    loss = mean over rows i of -sum_j logsigmoid(label_ij * logit_ij), over the caption
    columns j. Computed in float32. Returns a scalar tensor.
    """
    logits = pair_logits(image_emb, text_emb, logit_scale, logit_bias)
    _check_ids("caption_ids", caption_ids, image_emb.shape[0])
    labels = pair_labels(caption_ids.to(logits.device))
    return -(F.logsigmoid(labels * logits) * labels.abs()).sum(dim=-1).mean()


def listwise_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
    caption_ids: torch.Tensor,
    image_ids: torch.Tensor,
) -> torch.Tensor:
    """The decision as a loss: per source image, per caption present in it, cross-entropy of a
    softmax over that image's crops with the crop(s) of that caption as the target.

    Shapes as `sigmoid_loss`; image_ids: (N,) integers, equal for crops of one source image.
    A query (image g, caption c) is represented by its first row; candidates are the rows of g
    (captioned or not), positives those with caption c. Loss of a query =
    logsumexp(candidates' logits) - logsumexp(positives' logits); the mean over queries that
    have at least one negative candidate (the others are 0 whatever the model). 0 when none.
    The bias cancels in the softmax; it is accepted for a uniform signature.
    """
    n = image_emb.shape[0]
    logits = pair_logits(image_emb, text_emb, logit_scale, logit_bias)
    _check_ids("caption_ids", caption_ids, n)
    _check_ids("image_ids", image_ids, n)
    caption_ids, image_ids = caption_ids.to(logits.device), image_ids.to(logits.device)
    same_image = image_ids[:, None] == image_ids[None, :]  # [query row j, candidate row i]
    positive = same_image & (caption_ids[:, None] == caption_ids[None, :])
    earlier = torch.ones(n, n, dtype=torch.bool, device=logits.device).tril(-1)
    first = ~(positive & earlier).any(dim=1)  # no earlier row of the same (image, caption)
    queries = first & (caption_ids != NO_CAPTION) & (positive.sum(1) < same_image.sum(1))
    if not bool(queries.any()):
        return logits.sum() * 0.0  # keeps the graph, so a caller's backward still runs
    scores = logits.T  # [caption of row j, crop i]
    neg_inf = torch.finfo(scores.dtype).min
    all_lse = torch.logsumexp(scores.masked_fill(~same_image, neg_inf), dim=1)
    pos_lse = torch.logsumexp(scores.masked_fill(~positive, neg_inf), dim=1)
    return (all_lse - pos_lse)[queries].mean()


def scorer_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
    caption_ids: torch.Tensor,
    image_ids: torch.Tensor | None = None,
    listwise_weight: float = 0.0,
) -> torch.Tensor:
    """sigmoid_loss + listwise_weight * listwise_loss (the latter needs image_ids)."""
    loss = sigmoid_loss(image_emb, text_emb, logit_scale, logit_bias, caption_ids)
    if listwise_weight:
        if image_ids is None:
            raise ValueError("image_ids: expected (N,) source-image ids for listwise_weight > 0, got None")
        loss = loss + listwise_weight * listwise_loss(image_emb, text_emb, logit_scale, logit_bias,
                                                      caption_ids, image_ids)
    return loss
