import math

import pytest
import torch

from findbox.train.loss import pair_labels, sigmoid_loss


def naive_sigmoid_loss(image_emb, text_emb, logit_scale, logit_bias, captions):
    """The definition, one pair at a time, in float64."""
    n = len(captions)
    total = 0.0
    for i in range(n):
        row = 0.0
        for j in range(n):
            logit = float(image_emb[i].double() @ text_emb[j].double()) * math.exp(float(logit_scale))
            logit += float(logit_bias) if logit_bias is not None else 0.0
            label = 1.0 if captions[i] == captions[j] else -1.0
            row += -math.log(1.0 / (1.0 + math.exp(-label * logit)))
        total += row
    return total / n


def random_embeddings(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    return img, txt


@pytest.mark.parametrize(
    "captions, scale, bias",
    [
        (["a", "b", "c", "d"], math.log(10.0), -10.0),  # SigLIP's initial values
        (["a", "b", "a", "c", "a"], 0.0, 0.0),  # repeated caption: several positives a row
        (["a"], 1.0, 0.5),  # one pair
        (["a", "a", "a"], 2.0, -1.0),  # all positives
        (["x", "y"], 3.0, None),  # no bias (softmax-trained CLIP-style models)
    ],
)
def test_loss_equals_naive_double_loop(captions, scale, bias):
    img, txt = random_embeddings(len(captions), 8)
    ids = torch.tensor([sorted(set(captions)).index(c) for c in captions])
    got = sigmoid_loss(img, txt, torch.tensor([scale]), None if bias is None else torch.tensor([bias]), ids)
    expected = naive_sigmoid_loss(img, txt, scale, bias, captions)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_pair_labels_mark_identical_captions_positive():
    labels = pair_labels(torch.tensor([3, 1, 3, 2]))
    expected = torch.tensor(
        [[1, -1, 1, -1], [-1, 1, -1, -1], [1, -1, 1, -1], [-1, -1, -1, 1]], dtype=torch.float32
    )
    assert torch.equal(labels, expected)


def test_repeated_caption_lowers_loss_when_its_pairs_agree():
    # Two crops of the same caption with identical embeddings: as positives the off-diagonal
    # pair is rewarded; the single-positive (diagonal) loss would punish it.
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    txt = img.clone()
    scale, bias = torch.tensor(math.log(10.0)), torch.tensor(-5.0)
    multi = sigmoid_loss(img, txt, scale, bias, torch.tensor([0, 0, 1]))
    diagonal_only = sigmoid_loss(img, txt, scale, bias, torch.tensor([0, 1, 2]))
    assert multi < diagonal_only


def test_distinct_captions_match_transformers_siglip_loss():
    # With all captions distinct the labels are the identity, as in SiglipModel(return_loss=True).
    img, txt = random_embeddings(6, 16, seed=1)
    scale, bias = torch.tensor([2.3]), torch.tensor([-4.0])
    logits_per_text = txt @ img.T * scale.exp() + bias
    eye = torch.eye(6)
    hf = -torch.nn.functional.logsigmoid((2 * eye - 1) * logits_per_text).sum(-1).mean()
    assert sigmoid_loss(img, txt, scale, bias, torch.arange(6)).item() == pytest.approx(hf.item(), rel=1e-6)


def test_gradients_flow_to_embeddings_scale_and_bias():
    img, txt = random_embeddings(4, 8)
    img.requires_grad_()
    txt.requires_grad_()
    scale = torch.tensor([1.0], requires_grad=True)
    bias = torch.tensor([0.0], requires_grad=True)
    sigmoid_loss(img, txt, scale, bias, torch.tensor([0, 1, 0, 2])).backward()
    for t in (img, txt, scale, bias):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "img_shape, txt_shape, ids_shape",
    [((4, 8), (3, 8), (4,)), ((4, 8), (4, 8), (3,)), ((4,), (4,), (4,)), ((4, 8), (4, 8), (4, 1))],
)
def test_shape_mismatch_raises(img_shape, txt_shape, ids_shape):
    with pytest.raises(ValueError):
        sigmoid_loss(torch.zeros(img_shape), torch.zeros(txt_shape), torch.tensor(0.0), torch.tensor(0.0),
                     torch.zeros(ids_shape, dtype=torch.long))
