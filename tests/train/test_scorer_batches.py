"""Batches of whole images, crops without caption, and the listwise loss (issue 16)."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from findbox.train.loss import listwise_loss, pair_labels, scorer_loss, sigmoid_loss
from findbox.train.scorer_data import RankImageBatches, image_epoch_batches

# 7 images of 1-5 crops; rows numbered in image order
SIZES = [3, 5, 1, 4, 2, 5, 3]
GROUPS = [np.arange(sum(SIZES[:k]), sum(SIZES[: k + 1])) for k in range(len(SIZES))]


def image_of(row: int) -> int:
    return next(k for k, g in enumerate(GROUPS) if row in g)


@pytest.mark.parametrize("batch, multiple_of", [(8, 1), (10, 1), (10, 2), (5, 1), (3, 1), (23, 4)])
def test_image_batches_hold_whole_images_and_cover_every_image(batch, multiple_of):
    batches = image_epoch_batches(GROUPS, batch, epoch=2, seed=1, multiple_of=multiple_of)
    for b in batches:
        assert len(b) % multiple_of == 0
        present = {image_of(int(r)) for r in b}
        for k in present:  # every image present with all its crops
            assert set(GROUPS[k].tolist()) <= set(b.tolist())
        padded = len(b) - len(set(b.tolist()))  # repeats are only the padding
        assert padded < multiple_of
        whole = sum(SIZES[k] for k in present)
        assert whole <= batch or len(present) == 1  # an image larger than the batch is alone
    assert {image_of(int(r)) for b in batches for r in b} == set(range(len(SIZES)))


def test_image_batches_are_seeded_by_seed_and_epoch():
    def run(epoch, seed):
        return [b.tolist() for b in image_epoch_batches(GROUPS, 8, epoch, seed)]

    assert run(3, 0) == run(3, 0)
    assert run(3, 0) != run(4, 0) and run(3, 0) != run(3, 1)


def test_last_image_batch_is_topped_up_with_whole_images():
    batches = image_epoch_batches([np.arange(2 * k, 2 * k + 2) for k in range(5)], 4, epoch=0, seed=0)
    assert [len(b) for b in batches] == [4, 4, 4]  # 5 images of 2: the third batch takes a second image again


def test_rank_image_batches_reassemble_the_global_batch_and_count_steps():
    ranks = [RankImageBatches(GROUPS, 8, rank=r, world_size=2, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    for step, global_batch in enumerate(ranks[0].global_batches()):
        assert [i for r in range(2) for i, _ in per_rank[r][step]] == global_batch.tolist()
    seeds = [seed for r in range(2) for b in per_rank[r] for _, seed in b]
    assert len(set(seeds)) == len(seeds)
    expected = 0
    for epoch in (1, 2, 3):
        ranks[0].set_epoch(epoch)
        expected += len(ranks[0])
    assert ranks[1].steps(3) == expected


def test_same_image_crops_are_negatives_unless_the_caption_is_equal():
    # image 0: red car, blue car, red car; image 1: red car, green boat. Caption ids: red car 0, blue car 1, green boat 2
    caption_ids = torch.tensor([0, 1, 0, 0, 2])
    labels = pair_labels(caption_ids)
    assert labels[0, 1] == -1 and labels[1, 0] == -1  # same scene, other caption: a negative
    assert labels[0, 2] == 1 and labels[2, 0] == 1  # same scene, equal caption: a positive
    assert labels[0, 3] == 1  # equal caption in another image: a positive too
    assert labels[4, 0] == -1  # other image, other caption: the usual in-batch negative
    # through the sampler: a batch of whole images carries both kinds
    groups = [np.arange(0, 3), np.arange(3, 5)]
    (batch,) = image_epoch_batches(groups, 5, epoch=0, seed=0)
    rows = labels[batch][:, batch]
    image = torch.tensor([0, 0, 0, 1, 1])[batch]
    same_image_other_caption = (image[:, None] == image[None, :]) & (caption_ids[batch][:, None] != caption_ids[batch][None, :])
    assert bool(same_image_other_caption.any()) and bool((rows[same_image_other_caption] == -1).all())


def test_a_crop_without_caption_is_a_negative_for_every_caption_and_no_column():
    labels = pair_labels(torch.tensor([0, -1, 1, -1]))
    assert labels[:, 1].abs().sum() == 0 and labels[:, 3].abs().sum() == 0
    assert labels[0].tolist() == [1, 0, -1, 0] and labels[1].tolist() == [-1, 0, -1, 0]


def naive_sigmoid(img, txt, scale, bias, ids):
    total = 0.0
    for i in range(len(ids)):
        for j in range(len(ids)):
            if ids[j] < 0:
                continue  # not a caption
            label = 1.0 if ids[i] == ids[j] and ids[i] >= 0 else -1.0
            logit = float(img[i] @ txt[j]) * float(scale.exp()) + float(bias)
            total -= float(F.logsigmoid(torch.tensor(label * logit)))
    return total / len(ids)


def naive_listwise(img, txt, scale, ids, image_ids):
    losses, seen = [], set()
    for j in range(len(ids)):
        key = (int(image_ids[j]), int(ids[j]))
        if ids[j] < 0 or key in seen:
            continue
        seen.add(key)
        candidates = [i for i in range(len(ids)) if image_ids[i] == image_ids[j]]
        positives = [i for i in candidates if ids[i] == ids[j]]
        if len(positives) == len(candidates):
            continue
        logits = torch.tensor([float(img[i] @ txt[j]) * float(scale.exp()) for i in candidates])
        log_p = logits.log_softmax(0)
        losses.append(-float(torch.logsumexp(log_p[[candidates.index(i) for i in positives]], 0)))
    return sum(losses) / len(losses) if losses else 0.0


def random_batch(seed=0, n=9, d=6):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    txt = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    # image 0: captions 0, 1, 0, none; image 1: 2, none; image 2: 1, 3, 3
    ids = torch.tensor([0, 1, 0, -1, 2, -1, 1, 3, 3])
    image_ids = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    for j in range(n):  # rows of one caption share its text embedding, as the tokens do
        first = next(i for i in range(n) if ids[i] == ids[j])
        txt[j] = txt[first]
    return img, txt, torch.tensor(1.5), torch.tensor(-2.0), ids, image_ids


def test_sigmoid_loss_with_crops_without_caption_matches_a_naive_loop():
    img, txt, scale, bias, ids, _ = random_batch()
    assert float(sigmoid_loss(img, txt, scale, bias, ids)) == pytest.approx(naive_sigmoid(img, txt, scale, bias, ids), rel=1e-5)


def test_listwise_loss_matches_a_naive_loop():
    for seed in range(3):
        img, txt, scale, bias, ids, image_ids = random_batch(seed)
        got = float(listwise_loss(img, txt, scale, bias, ids, image_ids))
        assert got == pytest.approx(naive_listwise(img, txt, scale, ids, image_ids), rel=1e-5)
        assert got > 0


def test_listwise_loss_is_zero_without_a_query_and_falls_with_the_right_pick():
    img, txt, scale, bias, _, _ = random_batch()
    one_per_image = torch.arange(9)
    loss = listwise_loss(img, txt, scale, bias, torch.arange(9), one_per_image)
    assert float(loss) == 0.0
    # two crops, one caption each: making the caption's own crop closer lowers the loss
    txt2 = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    near = F.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0]]), dim=-1)
    far = F.normalize(torch.tensor([[0.1, 1.0], [1.0, 0.1]]), dim=-1)
    ids, image_ids = torch.tensor([0, 1]), torch.tensor([0, 0])
    assert float(listwise_loss(near, txt2, scale, bias, ids, image_ids)) < float(listwise_loss(far, txt2, scale, bias, ids, image_ids))


def test_scorer_loss_adds_the_weighted_listwise_term_and_needs_image_ids():
    img, txt, scale, bias, ids, image_ids = random_batch()
    expected = sigmoid_loss(img, txt, scale, bias, ids) + 0.5 * listwise_loss(img, txt, scale, bias, ids, image_ids)
    assert float(scorer_loss(img, txt, scale, bias, ids, image_ids, 0.5)) == pytest.approx(float(expected), rel=1e-6)
    assert float(scorer_loss(img, txt, scale, bias, ids)) == float(sigmoid_loss(img, txt, scale, bias, ids))
    with pytest.raises(ValueError, match="image_ids"):
        scorer_loss(img, txt, scale, bias, ids, None, 0.5)
    with pytest.raises(ValueError, match=r"image_ids: expected shape \(9,\)"):
        listwise_loss(img, txt, scale, bias, ids, image_ids[:3])


@pytest.mark.usefixtures("one_thread")
def test_gradcache_with_listwise_and_uncaptioned_crops_gives_the_full_batch_gradient(tiny_models):
    from tests.train.test_scorer_gradcache import assert_same_grads, make_batch, micro
    from findbox.train.gradcache import ScorerTowers, gradcache_backward

    scorer, batch, ids = make_batch(tiny_models["scorer"])
    ids = ids.clone()
    ids[[3, 8]] = -1  # two proposal crops that name nothing (their text rows are placeholders)
    image_ids = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    loss_fn = functools.partial(scorer_loss, image_ids=image_ids, listwise_weight=0.7)
    towers = ScorerTowers(scorer).train()
    img, txt, scale, bias = towers(**batch)
    ref_loss = loss_fn(img, txt, scale, bias, ids)
    ref_loss.backward()
    ref = {n: p.grad.clone() for n, p in towers.named_parameters() if p.grad is not None}
    towers.zero_grad()
    result = gradcache_backward(towers, [micro(batch, slice(s, s + 4)) for s in range(0, 10, 4)], ids,
                                loss_fn=loss_fn)
    got = {n: p.grad.clone() for n, p in towers.named_parameters() if p.grad is not None}
    assert result.loss == pytest.approx(ref_loss.item(), rel=1e-6)
    assert_same_grads(got, ref)


@pytest.mark.usefixtures("one_thread")
def test_trainer_with_image_batches_listwise_and_uncaptioned_crops_learns(tmp_path):
    import json

    from findbox.testing.builders import build_siglip
    from findbox.train.crops import MANIFEST
    from findbox.train.scorer import train
    from tests.train.test_scorer import COLOURS, tiny_config, write_colour_crops

    crops = write_colour_crops(tmp_path / "crops")
    # a proposal-like grey crop in every train image that names nothing
    rows = [json.loads(line) for line in (crops / MANIFEST).read_text().splitlines()]
    extra = []
    for r in rows:
        if r["split"] == "train" and r["crop"].endswith("_00.png"):
            name = r["crop"].replace("_00.png", "_p00.png")
            Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(crops / name)
            extra.append({**r, "crop": name, "caption": None, "kind": "proposal", "iou": 0.2})
    (crops / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows + extra))

    init = build_siglip(tmp_path / "siglip", list(COLOURS), preset="tiny", seed=1)
    out = tmp_path / "trained"
    metrics = train(tiny_config(init, crops, out, epochs=12, batch_by="image", listwise_weight=1.0))
    assert metrics["train_crops"] == 36 + 12 and metrics["val_crops"] == 24
    # whole images of 4 crops, 3 a batch of 12: 4 steps an epoch
    assert metrics["steps"] == 12 * 4
    assert metrics["val_accuracy"] >= 0.8 > metrics["val_chance"] + 0.3, metrics["epochs"]
    record = json.loads((out / "train_config.json").read_text())
    assert record["batch_by"] == "image" and record["listwise_weight"] == 1.0
