"""GradCache gives the full-batch gradient: in one process and across two (gloo, CPU)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from findbox.train.loss import sigmoid_loss
from findbox.score.transformers import TransformersScorer
from findbox.train.gradcache import Collective, ScorerTowers, gradcache_backward
from tests.conftest import CAPTIONS, free_port

pytestmark = pytest.mark.usefixtures("one_thread")

# 10 rows with repeated captions (multi-positive); sizes chosen so micro-batches are uneven
BATCH_CAPTIONS = [CAPTIONS[i] for i in (0, 1, 2, 0, 3, 4, 5, 1, 0, 2)]


def make_batch(scorer_dir):
    scorer = TransformersScorer.from_pretrained(scorer_dir)
    torch.manual_seed(0)
    h, w = scorer.preprocess.size_hw
    pixels = torch.randn(len(BATCH_CAPTIONS), 3, h, w)
    tokens = scorer.tokenize(BATCH_CAPTIONS)
    ids = torch.tensor([CAPTIONS.index(c) for c in BATCH_CAPTIONS])
    return scorer, dict(pixel_values=pixels, **tokens), ids


def micro(batch, rows):
    return {k: v[rows] for k, v in batch.items()}


def full_batch_grads(towers, batch, ids):
    towers.zero_grad()
    img, txt, scale, bias = towers(**batch)
    loss = sigmoid_loss(img, txt, scale, bias, ids)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in towers.named_parameters() if p.grad is not None}


def assert_same_grads(got, expected):
    assert got.keys() == expected.keys()
    # atol for gradients that are zero in exact arithmetic (attention key biases): float noise there
    scale = max(float(g.abs().max()) for g in expected.values())
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_gradcache_gradient_equals_full_batch_gradient(tiny_models):
    scorer, batch, ids = make_batch(tiny_models["scorer"])
    towers = ScorerTowers(scorer).train()
    with torch.no_grad():  # a non-trivial scale and bias, so their gradients matter
        towers.model.logit_scale.fill_(2.0)
        towers.model.logit_bias.fill_(-3.0)
    ref_loss, ref = full_batch_grads(towers, batch, ids)
    assert {"model.logit_scale", "model.logit_bias"} <= ref.keys()

    towers.zero_grad()
    micro_batches = [micro(batch, slice(s, s + 3)) for s in range(0, len(ids), 3)]  # 3 + 3 + 3 + 1
    result = gradcache_backward(towers, micro_batches, ids)
    got = {n: p.grad.clone() for n, p in towers.named_parameters() if p.grad is not None}
    assert result.loss == pytest.approx(ref_loss, rel=1e-6)
    assert (result.logit_scale, result.logit_bias) == pytest.approx((torch.tensor(2.0).exp().item(), -3.0))
    assert_same_grads(got, ref)


def test_gradcache_with_frozen_text_tower_leaves_it_untouched(tiny_models):
    scorer, batch, ids = make_batch(tiny_models["scorer"])
    towers = ScorerTowers(scorer).train()
    for p in towers.model.text_model.parameters():
        p.requires_grad_(False)
    _, ref = full_batch_grads(towers, batch, ids)
    towers.zero_grad()
    gradcache_backward(towers, [micro(batch, slice(0, 5)), micro(batch, slice(5, 10))], ids)
    got = {n: p.grad.clone() for n, p in towers.named_parameters() if p.grad is not None}
    assert not any(n.startswith("model.text_model.") for n in got)
    assert_same_grads(got, ref)


def test_gradcache_rejects_caption_ids_of_the_wrong_length(tiny_models):
    scorer, batch, ids = make_batch(tiny_models["scorer"])
    with pytest.raises(ValueError, match="caption_ids"):
        gradcache_backward(ScorerTowers(scorer), [batch], ids[:4])
    with pytest.raises(ValueError, match="micro_batches"):
        gradcache_backward(ScorerTowers(scorer), [], ids)


WORKER = textwrap.dedent(
    """
    import json, sys, torch
    import findbox
    from accelerate import Accelerator
    from findbox.score.transformers import TransformersScorer
    from findbox.train.gradcache import Collective, ScorerTowers, gradcache_backward

    scorer_dir, batch_file, out_file = sys.argv[1:4]
    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    batch, ids = torch.load(batch_file)
    towers = accelerator.prepare(ScorerTowers(TransformersScorer.from_pretrained(scorer_dir)).train())
    n = len(ids) // world
    local = {k: v[rank * n:(rank + 1) * n] for k, v in batch.items()}
    micro_batches = [{k: v[s:s + 2] for k, v in local.items()} for s in range(0, n, 2)]
    loss = gradcache_backward(towers, micro_batches, ids, Collective.from_accelerator(accelerator, towers)).loss
    grads = {n: p.grad for n, p in accelerator.unwrap_model(towers).named_parameters() if p.grad is not None}
    torch.save((loss, grads), f"{out_file}.{rank}")
    """
)


@pytest.mark.slow
def test_two_process_gradcache_equals_single_process_full_batch(tiny_models, tmp_path):
    """DDP (gloo on CPU, via accelerate) with gathered embeddings: each rank holds half the
    batch, yet the synced gradient is the full-batch one, on both ranks."""
    scorer, batch, ids = make_batch(tiny_models["scorer"])
    towers = ScorerTowers(scorer).train()
    ref_loss, ref = full_batch_grads(towers, batch, ids)
    torch.save((batch, ids), tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", OMP_NUM_THREADS="1")
        cmd = [sys.executable, str(tmp_path / "worker.py"), str(tiny_models["scorer"]), str(tmp_path / "batch.pt"),
               str(tmp_path / "grads")]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out
    for rank in range(2):
        loss, got = torch.load(tmp_path / f"grads.{rank}")
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        assert_same_grads({n: g.clone() for n, g in got.items()}, ref)
