"""Fixtures for the evaluation tests: a tiny vlm.jsonl data set the tiny detector can solve.

Random weights find nothing real, so the truths are made from the detector's own
proposals (each truth is one proposal of its image, at different confidence ranks):
the detector covers them at the lowest threshold, higher thresholds drop some, and
the random scorer picks some right. That makes recall, the sweep and accuracy
numbers that can move. One truth per image is a box no proposal covers.

A freshly initialised YOLO's activations vanish through the backbone, so its
confidences are set by the head's biases alone: a few tied values, the same for
every image. `build_spread_detector` calibrates the batch norms on a few images
and re-draws the class convolutions, so confidences differ per box and per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CAPTIONS, TINY_DETECTION, make_image

N_IMAGES = 6
TRUTH_RANKS = (0, 3, 6)  # proposals by descending confidence that become truths


def build_spread_detector(out_path: Path) -> Path:
    """A random yolov8n whose confidences spread over (0, 1) and depend on the image."""
    import torch
    from ultralytics import YOLO

    from findbox.testing.builders import build_yolo

    yolo = YOLO(str(build_yolo(out_path, "yolov8n.yaml")))
    model = yolo.model
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0  # running stats := the calibration batch's stats
    batch = np.stack([make_image(seed, 160, 160) for seed in range(4)])
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255)
        for branch in model.model[-1].cv3:  # the class logits: unit-variance inputs -> logits ~ N(-4, 2)
            branch[-1].weight.normal_(0, 2.0 / branch[-1].weight[0].numel() ** 0.5)
            branch[-1].bias.fill_(-4.0)
    model.eval()
    yolo.save(str(out_path))
    return out_path


@pytest.fixture(scope="session")
def eval_models(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The spread detector and the shared tiny scorer."""
    detector = build_spread_detector(tmp_path_factory.mktemp("evalmodels") / "detector.pt")
    return {"detector": detector, "scorer": tiny_models["scorer"]}


def model_args(models: dict[str, Path]) -> list[str]:
    """`findbox eval` / `findbox serve` model options for the tiny models (no upscaler: faster)."""
    args = ["--detector", str(models["detector"]), "--scorer", str(models["scorer"]), "--device", "cpu",
            "--no-upscaler"]
    for key, value in TINY_DETECTION.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.fixture(scope="session")
def eval_data(eval_models, tmp_path_factory) -> Path:
    """data/vlm.jsonl with N_IMAGES good JPEGs (split testA / testB alternately), then one missing and one
    corrupt image (no split)."""
    from findbox.config import DetectorConfig
    from findbox.detect.ultralytics import Detector
    from findbox.images import load_image_file

    root = tmp_path_factory.mktemp("evaldata")
    (root / "images").mkdir()
    detector = Detector.from_file(eval_models["detector"], DetectorConfig(**TINY_DETECTION))
    lines = []
    for k in range(N_IMAGES):
        name = f"image_{k}.jpg"
        Image.fromarray(make_image(100 + k)).save(root / "images" / name, quality=95)
        image = load_image_file(root / "images" / name)
        proposals = detector.detect([image])[0]
        assert len(proposals) > max(TRUTH_RANKS), "the tiny detector must propose enough boxes"
        annotations = []
        for j, rank in enumerate(TRUTH_RANKS):
            l, t, w, h = (round(float(v), 2) for v in proposals.ltwh[rank])
            annotations.append({"caption": CAPTIONS[(k + j) % len(CAPTIONS)], "bbox": [l, t, w, h]})
        annotations.append({"caption": CAPTIONS[(k + 5) % len(CAPTIONS)], "bbox": [1.0, 1.0, 3.0, 2.0]})
        # the data set's own split (as RefCOCO's testA/testB), on the line; the bad images below have none
        lines.append({"image": name, "split": "testA" if k % 2 == 0 else "testB", "annotations": annotations})
    lines.append({"image": "missing.jpg", "annotations": [{"caption": "grey missile", "bbox": [1, 2, 30, 20]}]})
    (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    lines.append({"image": "corrupt.jpg", "annotations": [{"caption": "yellow drone", "bbox": [5, 5, 10, 10]},
                                                          {"caption": "grey missile", "bbox": [0, 0, 8, 8]}]})
    data = root / "vlm.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return data


@pytest.fixture(scope="session")
def second_scorer(tmp_path_factory) -> Path:
    """Another random tiny SigLIP (different seed) to compare against the run's scorer."""
    from findbox.testing.builders import build_siglip

    return build_siglip(tmp_path_factory.mktemp("scorer2") / "scorer", CAPTIONS, preset="tiny", seed=1)


@pytest.fixture(scope="session")
def in_process_eval(eval_models, eval_data, second_scorer, tmp_path_factory) -> Path:
    """One `findbox eval` in-process run with a sweep and a scorer comparison; returns its out dir."""
    from findbox.cli import main

    out = tmp_path_factory.mktemp("eval_out")
    argv = ["eval", str(eval_data), "--out", str(out), "--no-progress", "--sweep", "0.001,0.3,0.6",
            "--compare-scorer", str(eval_models["scorer"]), "--compare-scorer", str(second_scorer),
            *model_args(eval_models)]
    assert main(argv) == 0
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def predictions_equal(a: list[dict], b: list[dict]) -> bool:
    """Same instances, same boxes (null for unanswered) within float32 noise."""
    if [(r["image"], r["caption"]) for r in a] != [(r["image"], r["caption"]) for r in b]:
        return False
    for ra, rb in zip(a, b):
        if (ra["pred_ltwh"] is None) != (rb["pred_ltwh"] is None):
            return False
        if ra["pred_ltwh"] is not None and not np.allclose(ra["pred_ltwh"], rb["pred_ltwh"], atol=1e-3):
            return False
    return True
