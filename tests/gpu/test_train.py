"""One scorer training run in bf16 on CUDA, on crops cut from a tiny synth set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def test_scorer_trains_in_bf16_on_cuda_and_the_saved_folder_loads(tmp_path):
    from findbox.bundle import bundled_paths
    from findbox.cli import main as cli_main
    from findbox.images import load_image_file
    from findbox.score.transformers import TransformersScorer
    from findbox.synth import SynthConfig
    from findbox.synth.dataset import write_dataset
    from findbox.train.crops import make_crops, read_manifest

    # data: 6 small scenes -> a few dozen ground-truth crops (the demo scorer's tokenizer knows the synth captions)
    jsonl = write_dataset(tmp_path / "synth", SynthConfig(width=640, height=480, noise="low"), 6, seed=15,
                          progress=False)
    make_crops(jsonl, tmp_path / "crops", progress=False)

    # one epoch of two or three steps, the CUDA path the flags name
    out = tmp_path / "trained"
    code = cli_main(["train", "scorer", "--init", str(bundled_paths()["scorer"]), "--crops", str(tmp_path / "crops"),
                     "--out", str(out), "--epochs", "1", "--batch", "8", "--micro-batch", "4", "--augs", "none",
                     "--device", "cuda", "--precision", "bf16", "--workers", "0", "--no-progress"])
    assert code == 0

    record = json.loads((out / "train_config.json").read_text())
    assert record["device"] == "cuda" and record["precision"] == "bf16", record
    steps = [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "step" in r]
    assert steps and all(np.isfinite(r["loss"]) for r in steps), steps

    # the saved folder loads as the server loads it, on the GPU, and embeds a crop
    scorer = TransformersScorer.from_pretrained(out, device=torch.device("cuda"), dtype=torch.bfloat16)
    crop = load_image_file(tmp_path / "crops" / read_manifest(tmp_path / "crops")[0].crop)
    embedding = scorer.embed_images([crop])
    assert embedding.shape == (1, scorer.embed_dim) and torch.isfinite(embedding.float()).all()
