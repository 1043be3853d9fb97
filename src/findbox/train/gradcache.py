"""A real contrastive batch in bounded memory: GradCache over micro-batches and devices.

The sigmoid loss couples every crop with every caption of the batch, so splitting a
batch into micro-batches with gradient accumulation (the original's "batch 960") gives
each loss only its own micro-batch as negatives. GradCache (Gao et al. 2021) keeps the
whole batch in one loss:

1. embed every micro-batch without gradients and gather the embeddings of all devices;
2. compute the loss on the gathered (N, D) embeddings and its gradient with respect to
   them and to logit scale/bias (cheap: N x N, no tower activations);
3. re-embed each local micro-batch with gradients and backpropagate the cached
   embedding gradients through the towers (`sum(emb * grad).backward()`), summing
   parameter gradients; then the caller takes one optimizer step.

The parameter gradients equal those of the full-batch loss (tests check it), because
the towers are deterministic (SigLIP has no dropout) and inputs are identical in both
passes. Across devices every rank computes the same global loss; a rank's share of the
gradient is its own slice, scaled by world_size because DDP averages gradients.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Sequence

import torch
import torch.nn.functional as F

from findbox.train.loss import sigmoid_loss


class ScorerTowers(torch.nn.Module):
    """A `Scorer`'s model as one module that returns what the loss needs.

    Wrapping lets DDP/FSDP see every trained parameter in `forward` (they only hook
    `forward`; `get_image_features` alone would bypass them). Embeddings are the server's:
    `TransformersScorer.image_features` on normalised pixels, `token_features` on `tokenize`
    output, then float32 and L2-normalised as `embed_images` / `embed_texts` do.
    """

    def __init__(self, scorer):
        super().__init__()
        self.model = scorer.model
        self._scorer = scorer  # not a Module: only its feature functions are used

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None):
        """-> (image_emb (n, D) | None, text_emb (n, D) | None, logit_scale (1,), logit_bias (1,) | None)."""
        img = txt = None
        if pixel_values is not None:
            img = F.normalize(self._scorer.image_features(pixel_values).float(), dim=-1)
        if input_ids is not None:
            kwargs = {"input_ids": input_ids}
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask
            txt = F.normalize(self._scorer.token_features(kwargs).float(), dim=-1)
        return img, txt, self.model.logit_scale, getattr(self.model, "logit_bias", None)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _backward(t: torch.Tensor) -> None:
    t.backward()


@dataclass(frozen=True)
class Collective:
    """How a step talks to the other processes. The default is a single process.

    gather: concatenates every rank's (n, ...) tensor along dim 0, in rank order; no gradient.
    backward: runs backward on a scalar (accelerate's applies fp16 loss scaling).
    no_sync: a context in which backward does not all-reduce gradients (all micro-batches but the last).
    """

    world_size: int = 1
    rank: int = 0
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity
    backward: Callable[[torch.Tensor], None] = _backward
    no_sync: Callable[[], ContextManager] = field(default=contextlib.nullcontext)

    @classmethod
    def from_accelerator(cls, accelerator, model: torch.nn.Module) -> "Collective":
        return cls(
            world_size=accelerator.num_processes,
            rank=accelerator.process_index,
            gather=accelerator.gather,
            backward=accelerator.backward,
            no_sync=lambda: accelerator.no_sync(model),
        )


@dataclass(frozen=True)
class StepResult:
    """What one GradCache backward saw: the global loss and the temperature and bias it used
    (read from the forward, since under FSDP a rank's own copy of a parameter may be a shard)."""

    loss: float
    logit_scale: float  # exp(logit_scale): the multiplier of cosine similarity
    logit_bias: float


def gradcache_backward(
    model: torch.nn.Module,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    caption_ids: torch.Tensor,
    collective: Collective = Collective(),
    loss_fn: Callable[..., torch.Tensor] = sigmoid_loss,
) -> StepResult:
    """Accumulate into the parameters' .grad the gradient of the sigmoid loss over the global batch.

    model: returns (image_emb, text_emb, logit_scale, logit_bias) like `ScorerTowers`.
    micro_batches: this rank's part of the batch, as model keyword arguments
        (pixel_values, input_ids, attention_mask); iterated twice, so it must give the
        same tensors both times (augment before, not inside).
    caption_ids: (N,) ids of the GLOBAL batch, rank 0's rows first; equal ids are positives.
    Every rank must hold the same number of rows.
    loss_fn: (image_emb, text_emb, logit_scale, logit_bias, caption_ids) -> scalar on the gathered
        batch, e.g. `functools.partial(loss.scorer_loss, image_ids=..., listwise_weight=...)`.
    """
    if len(micro_batches) == 0:
        raise ValueError("micro_batches: expected at least one micro-batch, got none")
    # 1. embeddings of the whole batch, no activations kept
    img_parts, txt_parts = [], []
    with torch.no_grad():
        for mb in micro_batches:
            img, txt, scale, bias = model(**mb)
            img_parts.append(img.float())
            txt_parts.append(txt.float())
    img_local, txt_local = torch.cat(img_parts), torch.cat(txt_parts)
    n_local = img_local.shape[0]
    img_all = collective.gather(img_local.contiguous())
    txt_all = collective.gather(txt_local.contiguous())
    if img_all.shape[0] != n_local * collective.world_size or caption_ids.shape != (img_all.shape[0],):
        raise ValueError(
            f"caption_ids: expected ({n_local} rows x {collective.world_size} ranks,), got {tuple(caption_ids.shape)} "
            f"for {img_all.shape[0]} gathered embeddings"
        )

    # 2. the loss and its gradient w.r.t. the embeddings, scale and bias
    img_leaf = img_all.detach().requires_grad_()
    txt_leaf = txt_all.detach().requires_grad_()
    scale_leaf = scale.detach().float().requires_grad_()
    bias_leaf = bias.detach().float().requires_grad_() if bias is not None else None
    with torch.enable_grad():
        loss = loss_fn(img_leaf, txt_leaf, scale_leaf, bias_leaf, caption_ids.to(img_leaf.device))
        loss.backward()
    rows = slice(collective.rank * n_local, (collective.rank + 1) * n_local)
    # DDP averages parameter gradients over ranks; each rank holds only its rows' share of the
    # embedding gradient, so scale it back up. The scale/bias gradient is whole on every rank.
    grad_img = img_leaf.grad[rows] * collective.world_size
    grad_txt = txt_leaf.grad[rows] * collective.world_size
    grad_scale = scale_leaf.grad / len(micro_batches)  # added once per micro-batch below
    grad_bias = bias_leaf.grad / len(micro_batches) if bias_leaf is not None else None

    # 3. backpropagate the cached gradients through the towers, one micro-batch at a time
    start = 0
    for k, mb in enumerate(micro_batches):
        last = k == len(micro_batches) - 1
        with contextlib.nullcontext() if last else collective.no_sync():
            img, txt, scale, bias = model(**mb)
            stop = start + img.shape[0]
            terms = []
            if img.requires_grad:
                terms.append((img.float() * grad_img[start:stop]).sum())
            if txt.requires_grad:
                terms.append((txt.float() * grad_txt[start:stop]).sum())
            # every micro-batch touches scale and bias, so DDP sees every parameter used in the synced one
            if scale.requires_grad:
                terms.append((scale.float() * grad_scale).sum())
            if bias is not None and bias.requires_grad:
                terms.append((bias.float() * grad_bias).sum())
            if terms:
                collective.backward(torch.stack(terms).sum())
            start = stop
    return StepResult(
        loss=float(loss.detach()),
        logit_scale=float(scale_leaf.detach().exp().reshape(-1)[0]),
        logit_bias=float(bias_leaf.detach().reshape(-1)[0]) if bias_leaf is not None else 0.0,
    )
