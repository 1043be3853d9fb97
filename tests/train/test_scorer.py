"""The scorer trainer end to end on synthetic colour crops, and its input checks."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from findbox.testing.builders import build_siglip
from findbox.cli import main as cli_main
from findbox.score.transformers import TransformersScorer
from findbox.train.crops import MANIFEST, CropRow
from findbox.train.scorer import TrainScorerConfig, train
from findbox.train.scorer_data import epoch_batches, grounding_accuracy, load_crop_sets, RankBatches

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def write_colour_crops(root: Path, n_train_images: int = 12, n_val_images: int = 8, seed: int = 0) -> Path:
    """A `findbox crops` folder: each "image" has 3 crops of distinct colours, noisy patches
    of random sizes; the caption is the colour name."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train_images + n_val_images):
        split = "train" if i < n_train_images else "val"
        (root / "crops" / split).mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(rng.choice(list(COLOURS), size=3, replace=False)):
            h, w = rng.integers(6, 40, size=2)
            patch = np.asarray(COLOURS[name]) + rng.normal(0, 25, (h, w, 3))
            crop = f"crops/{split}/{i:06d}_{k:02d}.png"
            Image.fromarray(patch.clip(0, 255).astype(np.uint8)).save(root / crop)
            rows.append(CropRow(crop, str(name), f"image_{i}.jpg", i + 1, (0.0, 0.0, float(w), float(h)),
                                (int(w), int(h)), split))
    (root / MANIFEST).write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def colour_scorer(tmp_path_factory) -> Path:
    return build_siglip(tmp_path_factory.mktemp("colour") / "siglip", list(COLOURS), preset="tiny", seed=1)


def tiny_config(init, crops, out, **overrides) -> TrainScorerConfig:
    options = dict(epochs=6, lr=1e-3, warmup=0.1, batch=12, micro_batch=4, augs="none", precision="fp32",
                   device="cpu", workers=0, progress=False)
    options.update(overrides)
    crops = [str(c) for c in crops] if isinstance(crops, list) else str(crops)
    return TrainScorerConfig(init=str(init), crops=crops, out=str(out), **options)


def test_tiny_scorer_learns_colours_and_saves_a_clean_folder(colour_scorer, tmp_path):
    crops = write_colour_crops(tmp_path / "crops")
    out = tmp_path / "trained"
    metrics = train(tiny_config(colour_scorer, crops, out, epochs=12))

    # beats chance on the task's own decision (3 crops an image: chance 1/3)
    epochs = metrics["epochs"]
    assert epochs[0]["epoch"] == 0 and metrics["val_chance"] == pytest.approx(1 / 3)
    assert metrics["steps"] == 12 * 3  # 36 train crops / batch 12
    assert metrics["val_accuracy"] >= 0.8 > metrics["val_chance"] + 0.3, epochs

    # logs: loss and lr every step, warmup then decay
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "step" in r]
    assert len(steps) == 36 and all(np.isfinite(r["loss"]) for r in steps)
    assert steps[0]["lr"] < steps[2]["lr"] and steps[-1]["lr"] < steps[2]["lr"]
    assert json.loads((out / "metrics.json").read_text())["val_accuracy"] == metrics["val_accuracy"]

    # a clean save_pretrained folder that transformers and the server load
    keys = load_file(str(out / "model.safetensors")).keys()
    assert not [k for k in keys if k.startswith(("model.", "module.")) or "_orig_mod" in k or "wrapped" in k]
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(str(out), local_files_only=True)
    init = AutoModel.from_pretrained(str(colour_scorer), local_files_only=True)
    assert not torch.equal(plain.vision_model.head.probe, init.vision_model.head.probe)

    # the server's Scorer on the saved folder reproduces the trainer's validation figure
    scorer = TransformersScorer.from_pretrained(out)
    captions, _, val = load_crop_sets(crops)
    from findbox.images import load_image_file

    image_emb = scorer.embed_images([load_image_file(crops / r.crop) for r in val.rows])
    text_emb = scorer.embed_texts(captions)
    again = grounding_accuracy(image_emb, text_emb, val.caption_ids, val.image_groups())
    assert again.accuracy == pytest.approx(metrics["val_accuracy"])


def test_cli_trains_one_epoch_with_augs_and_frozen_text(colour_scorer, tmp_path):
    crops = write_colour_crops(tmp_path / "crops", n_train_images=4, n_val_images=2)
    out = tmp_path / "out"
    code = cli_main(["train", "scorer", "--init", str(colour_scorer), "--crops", str(crops), "--out", str(out),
                     "--epochs", "1", "--batch", "6", "--micro-batch", "3", "--augs", "v2", "--freeze", "text",
                     "--device", "cpu", "--workers", "0", "--no-progress"])
    assert code == 0
    record = json.loads((out / "train_config.json").read_text())
    assert record["freeze"] == "text" and record["augs"] == "v2" and record["batch_used"] == 6
    trained = TransformersScorer.from_pretrained(out).model
    init = TransformersScorer.from_pretrained(colour_scorer).model
    assert torch.equal(trained.text_model.embeddings.token_embedding.weight,
                       init.text_model.embeddings.token_embedding.weight)
    assert not torch.equal(trained.vision_model.head.probe, init.vision_model.head.probe)


def test_bad_input_exits_2_naming_the_problem(colour_scorer, tmp_path, capsys):
    def run(crops, *extra):
        code = cli_main(["train", "scorer", "--init", str(colour_scorer), "--crops", str(crops),
                         "--out", str(tmp_path / "out"), "--device", "cpu", "--workers", "0", *extra])
        return code, capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    code, err = run(tmp_path / "empty")
    assert code == 2 and "crops: expected a folder made by `findbox crops`" in err

    crops = write_colour_crops(tmp_path / "crops", n_train_images=3, n_val_images=1)
    code, err = run(crops, "--batch", "10", "--micro-batch", "4")
    assert code == 2 and "batch: expected a multiple of micro_batch (4), got 10" in err

    rows = (crops / MANIFEST).read_text().splitlines()
    long_row = json.loads(rows[4])
    long_row["caption"] = " ".join(["red green blue yellow"] * 20)
    rows[4] = json.dumps(long_row)
    (crops / MANIFEST).write_text("\n".join(rows) + "\n")
    code, err = run(crops)
    assert code == 2 and "caption: 1 manifest row(s) exceed the text length of 64 tokens" in err
    assert f"{crops / MANIFEST}:5:" in err  # the manifest and its line

    (crops / json.loads(rows[1])["crop"]).unlink()
    code, err = run(crops)
    assert code == 2 and "missing file (line 2: crops/train/000000_01.png)" in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_several_crop_folders_train_as_one_set(colour_scorer, tmp_path):
    """Two folders whose images share names: one caption list, images grouped per folder, each
    folder's split kept; the trainer records both, and refuses folders cut differently."""
    day = write_colour_crops(tmp_path / "day", n_train_images=4, n_val_images=2, seed=1)
    night = write_colour_crops(tmp_path / "night", n_train_images=3, n_val_images=1, seed=2)
    captions, train_set, val_set = load_crop_sets([day, night])
    assert captions == sorted({r.caption for r in train_set.rows + val_set.rows})
    assert len(train_set) == 3 * (4 + 3) and len(val_set) == 3 * (2 + 1)
    # image_0.jpg exists in both folders: two images, not one of six crops
    groups = train_set.image_groups()
    assert len(groups) == 4 + 3 and all(len(g) == 3 for g in groups)
    assert {train_set.folder_ids[g[0]] for g in groups} == {0, 1}
    # every row reads its own folder's file
    assert train_set.path(0) == day / train_set.rows[0].crop and train_set.path(len(train_set) - 1).is_relative_to(night)
    assert val_set.where(len(val_set) - 1) == f"{night / MANIFEST}:{val_set.row_numbers[-1]}"

    out = tmp_path / "out"
    code = cli_main(["train", "scorer", "--init", str(colour_scorer), "--crops", str(day), "--crops", str(night),
                     "--out", str(out), "--epochs", "1", "--batch", "6", "--micro-batch", "3", "--augs", "none",
                     "--batch-by", "image", "--device", "cpu", "--workers", "0", "--no-progress"])
    assert code == 0
    record = json.loads((out / "train_config.json").read_text())
    assert record["crops"] == [str(day), str(night)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_crops"] == 21 and metrics["val_crops"] == 9

    with pytest.raises(ValueError, match="crops: a folder is given twice"):
        load_crop_sets([day, tmp_path / "day"])
    (night / "crops.json").write_text(json.dumps({"upscaler": {"file": "x4.pth"}, "scale": 4}))
    with pytest.raises(ValueError, match="crops: the folders were cut differently"):
        train(tiny_config(colour_scorer, [str(day), str(night)], tmp_path / "mixed"))
    assert not (tmp_path / "mixed").exists()


@pytest.mark.parametrize("n, batch", [(10, 4), (12, 12), (7, 1), (5, 5)])
def test_epoch_batches_are_full_and_cover_every_crop(n, batch):
    batches = epoch_batches(n, batch, epoch=3, seed=0)
    assert all(len(b) == batch for b in batches) and len(batches) == -(-n // batch)
    assert set(np.concatenate(batches).tolist()) == set(range(n))
    assert [b.tolist() for b in batches] == [b.tolist() for b in epoch_batches(n, batch, epoch=3, seed=0)]


def test_rank_batches_reassemble_the_global_batch_in_order():
    ranks = [RankBatches(10, 4, rank=r, world_size=2, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    for step, global_batch in enumerate(ranks[0].global_batches()):
        gathered = [i for r in range(2) for i, _ in per_rank[r][step]]
        assert gathered == global_batch.tolist()
    seeds = [seed for r in range(2) for b in per_rank[r] for _, seed in b]
    assert len(set(seeds)) == len(seeds)  # every sample its own augmentation, even a topped-up repeat


def test_grounding_accuracy_counts_identical_captions_as_hits():
    # one image, crops captioned [a, a, b]; the text of "a" scores crop 1 highest: still a hit
    image_emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    text_emb = torch.tensor([[0.8, 0.2], [0.0, 1.0]])
    acc = grounding_accuracy(image_emb, text_emb, np.array([0, 0, 1]), [np.array([0, 1, 2])])
    assert acc.accuracy == 1.0 and acc.chance == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3) and acc.queries == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch=960, micro_batch=25), "batch: expected a multiple of micro_batch (25), got 960"),
        (dict(lr=0.0), "lr: expected a positive learning rate"),
        (dict(betas=(0.9, 1.0)), "betas: expected two numbers in [0, 1)"),
        (dict(precision="bf16-mixed"), "precision: expected one of auto, bf16, fp16, fp32"),
        (dict(augs="v3"), "augs: expected one of v1, v2, none"),
        (dict(freeze="both"), "freeze: expected one of none, text, vision"),
        (dict(prompt="a photo"), "prompt: expected a template with {}"),
        (dict(epochs=0), "epochs: expected a value in"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError) as info:
        TrainScorerConfig(init="i", crops="c", out="o", **overrides)
    assert message in str(info.value)


def test_batch_smaller_than_micro_batch_is_one_micro_batch():
    # the "Done when" line: --batch 8 with the default micro-batch of 12
    assert TrainScorerConfig(init="i", crops="c", out="o", batch=8).micro_batch == 12


def test_patience_stops_on_a_plateau_and_keeps_the_best_epochs_weights(colour_scorer, tmp_path):
    """lr 1e-12: no epoch can beat the starting weights, so --patience 1 stops after epoch 1 and keeps them."""
    crops = write_colour_crops(tmp_path / "crops")
    metrics = train(tiny_config(colour_scorer, crops, tmp_path / "flat", lr=1e-12, patience=1))
    assert metrics["early_stop"] == {"patience": 1, "min_delta": 0.001, "best_epoch": 0, "stopped_after_epoch": 1,
                                     "epochs_run": 1}
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    saved = load_file(str(tmp_path / "flat" / "model.safetensors"))
    start = load_file(str(colour_scorer / "model.safetensors"))
    assert all(torch.equal(saved[k], start[k]) for k in start)

    # learning: the weights kept are the best epoch's, and the record says which
    metrics = train(tiny_config(colour_scorer, crops, tmp_path / "learn", epochs=12, patience=3))
    record = metrics["early_stop"]
    best = max(metrics["epochs"], key=lambda e: e["val_accuracy"])
    assert record["best_epoch"] >= 1 and metrics["val_accuracy"] == pytest.approx(
        next(e for e in metrics["epochs"] if e["epoch"] == record["best_epoch"])["val_accuracy"])
    assert metrics["val_accuracy"] >= best["val_accuracy"] - 0.001
    assert json.loads((tmp_path / "learn" / "metrics.json").read_text())["early_stop"] == record
