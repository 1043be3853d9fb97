"""Training options a command cannot honour are refused by name; `--init demo` starts the scorer from
the bundled demo scorer (the only start an offline user has)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from findbox.bundle import bundled_paths
from findbox.train.detector import DetectorTrainConfig
from findbox.train.scorer import TrainScorerConfig


@pytest.mark.parametrize("precision", ["int8", "bf16-mixed"])
def test_detector_training_refuses_a_precision_it_cannot_train_in(tmp_path, precision):
    with pytest.raises(ValueError, match=f"precision: expected one of auto, fp32, fp16, bf16.*got '{precision}'"):
        DetectorTrainConfig(data=str(tmp_path / "d.jsonl"), out=str(tmp_path / "o"), precision=precision)
    r = subprocess.run([sys.executable, "-m", "findbox.cli", "train", "detector", "--data", "d.jsonl", "--out", "o",
                        "--precision", precision], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice" in r.stderr and "findbox train detector" in r.stderr


def test_init_demo_is_the_bundled_scorer(tmp_path):
    demo = bundled_paths()["scorer"]
    assert demo is not None
    config = TrainScorerConfig(init="demo", crops=str(tmp_path / "c"), out=str(tmp_path / "o"))
    assert config.init == str(demo)
    r = subprocess.run([sys.executable, "-m", "findbox.cli", "train", "scorer", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert "demo" in " ".join(r.stdout.split()).split("--init INIT")[-1].split("--crops")[0]
